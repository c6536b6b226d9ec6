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
//!   rounds time every variant (a slow moment of the machine hits all of them alike). Each
//!   variant is judged by its fastest round: a busy machine only ever adds time, so the fastest
//!   round is the one nearest the kernel's own cost (judged by medians, one benchmark run kept a
//!   variant for the `stem` shape's data gradient that took 21.5 ms where other runs chose one
//!   of 6.4 ms). The default (first) variant is kept unless another one's fastest round is at
//!   least [`MARGIN`] faster than the default's.
//! * Ops under [`TUNE_MIN_MACS`] multiply-adds take the default untimed;
//!   `GpuOptions::no_autotune` skips the timing everywhere.
//! * **Choices persist** in a small JSON file (the tuning cache, see [`TuningCache`]), keyed by
//!   the adapter, its driver, the kernels' source and the op's key, so a later process on the
//!   same machine skips the timing (and the compiling of the variants it would not pick). Every
//!   variant of an op gives the same bits, so the cache can change speed, never a result. A
//!   stored choice that names no current variant is ignored; a cache that cannot be read or
//!   written is ignored too.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use super::Gpu;
use crate::error::{Error, Result};

/// Below this many multiply-adds an op takes its default variant untimed. Seed 001's second
/// convolution (64x8x8x8 * 2x2x8x16, 2.1M multiply-adds) is above it: timed, its forward takes
/// the row-segment kernel, 2.2 -> 1.1 ms per training step on lavapipe (it was untimed at 2e7).
pub(crate) const TUNE_MIN_MACS: f64 = 1e6;

/// Timed rounds per decision.
pub(crate) const ROUNDS: usize = 3;

/// How much faster (fastest round) another variant must be than the default to be chosen.
pub(crate) const MARGIN: f64 = 0.10;

/// The ops that have variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TunedOp {
    /// The implicit-GEMM convolution (forward, or a stride phase of backward data).
    Gemm,
    /// The filter gradient.
    Filter,
    /// The filter gradient of a small filter, split over runs of pixels.
    FilterSplit,
    /// The fully connected layer's matrix products (offered a choice only below
    /// [`TUNE_MIN_MACS`], so never timed: the variants exist for the tests).
    Matmul,
}

/// What a choice is keyed by: the op and the bucket of shapes it serves (the per-image
/// geometry: input, output and kernel sizes, strides and padding; not the batch size).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TuneKey {
    pub op: TunedOp,
    pub image: [i64; 12],
}

/// Where the autotune keeps its choices between processes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TuningCache {
    /// `WGPU_CNN_TUNING_CACHE` (a file path, or `off`), else
    /// `$XDG_CACHE_HOME/wgpu-cnn/tuning.json`, else `$HOME/.cache/wgpu-cnn/tuning.json`.
    #[default]
    Default,
    /// This file.
    File(PathBuf),
    /// No file: every process times its variants again.
    Off,
}

impl TuningCache {
    /// The file this setting names, if any.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Self::File(p) => Some(p.clone()),
            Self::Off => None,
            Self::Default => match std::env::var_os("WGPU_CNN_TUNING_CACHE") {
                Some(v) if v == "off" => None,
                Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
                _ => std::env::var_os("XDG_CACHE_HOME")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
                    .map(|d| d.join("wgpu-cnn").join("tuning.json")),
            },
        }
    }
}

/// Serialises this process's writes of tuning caches.
static CACHE_WRITE: Mutex<()> = Mutex::new(());

/// The tuning cache file: one JSON object of `key -> variant` strings.
struct CacheFile {
    path: PathBuf,
    /// What identifies this adapter, driver and these kernels in every key.
    prefix: String,
}

impl CacheFile {
    fn read(path: &Path) -> BTreeMap<String, String> {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn key(&self, key: &TuneKey) -> String {
        format!("{}|{:?}|{:?}", self.prefix, key.op, key.image)
    }

    fn get(&self, key: &TuneKey) -> Option<String> {
        Self::read(&self.path).remove(&self.key(key))
    }

    /// Adds `key -> choice` to the file (read again, merged, written to a temporary file and
    /// renamed over it, so a reader never sees half a file). Errors are ignored: the cache only
    /// saves time.
    fn put(&self, key: &TuneKey, choice: String) {
        let _guard = CACHE_WRITE.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = Self::read(&self.path);
        all.insert(self.key(key), choice);
        let Ok(text) = serde_json::to_vec_pretty(&all) else {
            return;
        };
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, &self.path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// The choices made so far.
pub(crate) struct Tuner {
    chosen: Mutex<HashMap<TuneKey, usize>>,
    enabled: bool,
    force_variant: Option<usize>,
    file: Option<CacheFile>,
}

impl Tuner {
    /// `enabled`: time variants at all; `force_variant`: tests run variant `i` untimed;
    /// `cache`: where choices persist, for the adapter `info`.
    pub fn new(
        enabled: bool,
        force_variant: Option<usize>,
        cache: &TuningCache,
        info: &wgpu::AdapterInfo,
    ) -> Self {
        let file = cache.path().map(|path| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            super::conv::TUNED_SOURCES.hash(&mut h);
            CacheFile {
                path,
                prefix: format!(
                    "{}|{:?}|{}|{}|{}|{:016x}",
                    info.name,
                    info.backend,
                    info.driver,
                    info.driver_info,
                    env!("CARGO_PKG_VERSION"),
                    h.finish()
                ),
            }
        });
        Self {
            chosen: Mutex::default(),
            enabled,
            force_variant,
            file,
        }
    }
}

/// The variant to keep from each variant's timed rounds: the default (0) unless another's
/// fastest round is clearly faster than the default's (see the module docs).
pub(crate) fn decide(rounds: &[Vec<f64>]) -> usize {
    let fastest: Vec<f64> = rounds
        .iter()
        .map(|r| r.iter().copied().fold(f64::INFINITY, f64::min))
        .collect();
    let Some(&default) = fastest.first() else {
        return 0;
    };
    let (best, &best_time) = fastest
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .unwrap_or((0, &default));
    if best != 0 && best_time < default * (1.0 - MARGIN) {
        best
    } else {
        0
    }
}

/// Adds the channel-lane variants `lanes` to `candidates`, in their order: first (the first of
/// them the default) where `first` (see `Gpu::lanes_first`), else last.
pub(crate) fn offer_lanes<C>(
    candidates: &mut Vec<C>,
    lanes: impl IntoIterator<Item = C>,
    first: bool,
) {
    let at = if first { 0 } else { candidates.len() };
    candidates.splice(at..at, lanes);
}

impl Gpu {
    /// Whether the channel-lane kernels are the default variant where they apply: on CPU
    /// adapters with fixed-size subgroups (`Quirks::spread_windows` is set for exactly those),
    /// where they won every timing. The default is what runs untimed (`no_autotune`, small
    /// shapes) and what a noisy timing keeps; every variant gives the same bits.
    pub(crate) fn lanes_first(&self) -> bool {
        self.quirks().spread_windows.is_some()
    }

    /// The variant of `candidates` to use for `key`: cached, or measured now with `run`.
    /// `macs` is the op's size in multiply-adds.
    pub(crate) fn pick<C: Copy + std::fmt::Debug>(
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
        let stored = tuner.file.as_ref().and_then(|f| f.get(&key));
        if let Some(i) = stored.and_then(|s| candidates.iter().position(|c| format!("{c:?}") == s))
        {
            tuner
                .chosen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, i);
            return Ok(candidates[i]);
        }
        // Each variant timed with the texture copies it makes (none taken from an op before).
        let rounds = self.not_sharing_textures(|| {
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
            Ok(rounds)
        })?;
        let chosen = decide(&rounds);
        if let Some(f) = &tuner.file {
            f.put(&key, format!("{:?}", candidates[chosen]));
        }
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
        // Within the margin: keep the default.
        assert_eq!(decide(&[vec![10.0, 11.0, 12.0], vec![9.5, 10.0, 30.0]]), 0);
        assert_eq!(decide(&[vec![10.0, 10.0, 10.0], vec![9.2, 9.0, 9.1]]), 0);
        // Clearly faster in every round.
        assert_eq!(decide(&[vec![10.0, 10.0, 10.0], vec![8.0, 8.5, 8.9]]), 1);
        assert_eq!(decide(&[vec![10.0], vec![9.0], vec![4.0]]), 2);
        // Two of the fast variant's rounds slowed by other work (its median is the slowest):
        // its fastest round still shows what it costs.
        assert_eq!(
            decide(&[
                vec![21.5, 22.0, 21.0],
                vec![30.0, 6.4, 25.0],
                vec![12.0, 12.5, 13.0]
            ]),
            1
        );
        // A default slowed in one round keeps its place against a variant that is not faster.
        assert_eq!(decide(&[vec![40.0, 10.0, 10.5], vec![10.0, 9.8, 9.9]]), 0);
    }
}
