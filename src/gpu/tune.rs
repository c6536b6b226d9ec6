//! Tuning: which variant of a kernel to run for a shape on this adapter.
//!
//! Where the best variant depends on the adapter (a CPU-emulated adapter has big caches and slow
//! loads; a discrete GPU wants wide workgroups), the first run of an op on a new shape bucket
//! times every variant and keeps the choice for the bucket on this `Gpu`:
//! * **Keys are typed and bucketed**: the op and its per-image geometry; the batch size is not
//!   part of the key, so a ragged last minibatch reuses the choice of the full ones and never
//!   waits for the device in the middle of an epoch. After the first step of a network has run,
//!   no op waits for the device again.
//! * **Decisions resist noise**: each variant runs once to compile, then [`ROUNDS`] interleaved
//!   rounds time every variant (a slow moment of the machine hits all of them alike). The default
//!   (first) variant is kept unless another one's median is at least [`MARGIN`] faster and its
//!   slowest round beats the default's median.
//! * Ops under [`TUNE_MIN_MACS`] multiply-adds take the default untimed;
//!   `GpuOptions::no_autotune` skips the timing everywhere.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::Gpu;
use crate::error::{Error, Result};

/// Below this many multiply-adds an op takes its default variant untimed.
pub(crate) const TUNE_MIN_MACS: f64 = 2e7;

/// Timed rounds per decision.
pub(crate) const ROUNDS: usize = 3;

/// How much faster (median) another variant must be than the default to be chosen.
pub(crate) const MARGIN: f64 = 0.10;

/// The ops that have variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TunedOp {
    /// The implicit-GEMM convolution (forward, or backward data at stride 1).
    Gemm,
    /// The filter gradient.
    Filter,
    /// The filter gradient of a small filter, split over runs of pixels.
    FilterSplit,
}

/// What a choice is keyed by: the op and the bucket of shapes it serves (the per-image
/// geometry: input, output and kernel sizes, strides and padding; not the batch size).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TuneKey {
    pub op: TunedOp,
    pub image: [i64; 12],
}

/// The choices made so far, with the medians they were made from.
pub(crate) struct Tuner {
    chosen: Mutex<HashMap<TuneKey, usize>>,
    enabled: bool,
    force_variant: Option<usize>,
}

impl Tuner {
    /// `enabled`: time variants at all; `force_variant`: tests run variant `i` untimed.
    pub fn new(enabled: bool, force_variant: Option<usize>) -> Self {
        Self {
            chosen: Mutex::default(),
            enabled,
            force_variant,
        }
    }
}

/// Median of the samples (sorted in place); NaN for none.
pub(crate) fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        samples[n / 2]
    } else {
        0.5 * (samples[n / 2 - 1] + samples[n / 2])
    }
}

/// The variant to keep from each variant's timed rounds: the default (0) unless another is
/// clearly faster (see the module docs).
pub(crate) fn decide(rounds: &[Vec<f64>]) -> usize {
    let medians: Vec<f64> = rounds.iter().map(|r| median(&mut r.clone())).collect();
    let Some(&default) = medians.first() else {
        return 0;
    };
    let (best, &best_median) = medians
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .unwrap_or((0, &default));
    let slowest = rounds[best].iter().copied().fold(0.0, f64::max);
    if best != 0 && best_median < default * (1.0 - MARGIN) && slowest < default {
        best
    } else {
        0
    }
}

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
        let tuner = &self.inner.tuner;
        let Some(&first) = candidates.first() else {
            return Err(Error::Kernel("no kernel variant to choose from".into()));
        };
        if let Some(i) = tuner.force_variant {
            return Ok(candidates[i % candidates.len()]);
        }
        if candidates.len() == 1 || !tuner.enabled || macs < TUNE_MIN_MACS {
            return Ok(first);
        }
        let cached = tuner
            .chosen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied();
        if let Some(i) = cached {
            return Ok(candidates[i]);
        }
        self.synchronize()?;
        for &c in candidates {
            run(c)?;
        }
        self.synchronize()?;
        let mut rounds = vec![Vec::with_capacity(ROUNDS); candidates.len()];
        for round in 0..ROUNDS {
            for k in 0..candidates.len() {
                let i = (k + round) % candidates.len();
                let start = Instant::now();
                run(candidates[i])?;
                self.synchronize()?;
                rounds[i].push(start.elapsed().as_secs_f64());
            }
        }
        let chosen = decide(&rounds);
        tuner
            .chosen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, chosen);
        Ok(candidates[chosen])
    }
}

#[cfg(test)]
mod tests {
    use super::decide;

    #[test]
    fn tuning_keeps_the_default_unless_another_is_clearly_faster() {
        // Within noise: keep the default.
        assert_eq!(decide(&[vec![10.0, 11.0, 12.0], vec![9.5, 10.0, 30.0]]), 0);
        // Faster median but one slow round above the default's median: keep the default.
        assert_eq!(decide(&[vec![10.0, 10.0, 10.0], vec![5.0, 5.0, 10.5]]), 0);
        // Clearly faster in every round.
        assert_eq!(decide(&[vec![10.0, 10.0, 10.0], vec![8.0, 8.5, 8.9]]), 1);
        assert_eq!(decide(&[vec![10.0], vec![9.0], vec![4.0]]), 2);
    }
}
