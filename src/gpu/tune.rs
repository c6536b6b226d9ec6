//! A small autotune cache. Where the best kernel variant depends on the adapter (a CPU-emulated
//! adapter has big caches and slow loads; a discrete GPU wants wide workgroups), the first run of
//! an op on a new shape times each variant once (after a run that compiles it) and keeps the
//! fastest for that shape on this `Gpu`. That first run waits for the device; later runs do not.
//! Ops too small to matter (under [`TUNE_MIN_MACS`] multiply-adds) take the first (default)
//! variant without timing. `GpuOptions::no_autotune` skips the timing everywhere.

use std::time::Instant;

use super::Gpu;
use crate::error::Result;

/// Below this many multiply-adds an op takes its default variant untimed.
pub(crate) const TUNE_MIN_MACS: f64 = 2e7;

/// Which op, and the sizes that identify its shape.
pub(crate) type TuneKey = (&'static str, Vec<i64>);

impl Gpu {
    /// The variant of `candidates` to use for `key`: cached, or measured now with `run`.
    /// `macs` is the op's size in multiply-adds.
    pub(crate) fn pick<C: Copy>(
        &self,
        key: TuneKey,
        macs: f64,
        candidates: &[C],
        mut run: impl FnMut(C) -> Result<()>,
    ) -> Result<C> {
        let Some(&first) = candidates.first() else {
            return Err(crate::Error::Gpu("no kernel variant to choose from".into()));
        };
        if let Some(i) = self.inner.force_variant {
            return Ok(candidates[i % candidates.len()]);
        }
        if candidates.len() == 1 || !self.inner.autotune || macs < TUNE_MIN_MACS {
            return Ok(first);
        }
        let cached = self
            .inner
            .tuned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied();
        if let Some(i) = cached {
            return Ok(candidates[i]);
        }
        self.synchronize()?;
        let mut best = (f64::INFINITY, 0);
        for (i, &c) in candidates.iter().enumerate() {
            run(c)?;
            self.synchronize()?;
            let start = Instant::now();
            run(c)?;
            self.synchronize()?;
            let seconds = start.elapsed().as_secs_f64();
            if seconds < best.0 {
                best = (seconds, i);
            }
        }
        self.inner
            .tuned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, best.1);
        Ok(candidates[best.1])
    }
}
