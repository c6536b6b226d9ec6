//! Timing and the roofline probes (peak FMA rate, copy bandwidth); kernel:
//! `shaders/roofline.wgsl`.

use std::time::Instant;

use super::profile::gpu_time;
use crate::error::{Error, Result};
use crate::gpu::kernels::{simple, uniform, Kernel};
use crate::gpu::launch::{count, WG};
use crate::gpu::{Arg, Gpu};

uniform! {
    /// The uniform block of `roofline.wgsl`.
    struct Params {
        total: u32,
        iters: u32,
    }
}

pub(crate) const FMA: Kernel = Kernel::new::<Params>(
    "roofline.wgsl",
    concat!(
        include_str!("../../shaders/roofline.wgsl"),
        include_str!("../../shaders/stream.wgsl")
    ),
    "fma_probe",
    simple(1, 1),
);

pub(crate) const COPY: Kernel = FMA.entry("copy_probe", simple(1, 1)).streamed();

/// vec4 FMAs per thread and round in the shader (8 chains, unrolled 4 times).
const FMAS_PER_ROUND: u64 = 32;

/// Minimum, median and maximum of a set of timings, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    /// Fastest run.
    pub min: f64,
    /// Median run.
    pub median: f64,
    /// Slowest run.
    pub max: f64,
}

impl Spread {
    fn of(samples: &mut [f64]) -> Self {
        let median = median(samples);
        Self {
            min: samples.first().copied().unwrap_or(f64::NAN),
            median,
            max: samples.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// One roofline measurement: the fastest of its runs (a peak: the machine's noise only ever
/// slows a run down) and its work.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Seconds of the fastest run (device timestamps, or wall clock without them).
    pub seconds: f64,
    /// Floating-point operations (FMA = 2) or bytes moved in one run.
    pub work: f64,
    /// Both clocks.
    pub timing: OpTiming,
}

impl Probe {
    /// Work per second.
    pub fn rate(&self) -> f64 {
        self.work / self.seconds
    }
}

/// The two clocks of one op (see [`time_op`]).
#[derive(Debug, Clone)]
pub struct OpTiming {
    /// Wall-clock seconds, submit to completion.
    pub wall: Spread,
    /// Device seconds from timestamps, if the device has them.
    pub gpu: Option<Spread>,
    /// With timestamps: each kernel's median device seconds per run (its passes in one run
    /// summed), in the order of first use.
    pub kernels: Vec<(&'static str, f64)>,
}

impl OpTiming {
    /// The device time when there is one, else the wall clock.
    pub fn best(&self) -> Spread {
        self.gpu.unwrap_or(self.wall)
    }

    /// The same runs timed by the wall clock only: for ops whose buffer clears (recorded outside
    /// any compute pass, so outside the timestamps) are part of their work.
    pub fn wall_only(self) -> Self {
        Self { gpu: None, ..self }
    }
}

/// Times `record` (which records work on `gpu`) from submit to completion: one warm-up run
/// (which also settles any tuning), then `reps` runs.
///
/// # Errors
/// Whatever `record` or the device reports.
pub fn time_wall(gpu: &Gpu, reps: usize, mut record: impl FnMut() -> Result<()>) -> Result<Spread> {
    record()?;
    gpu.synchronize()?;
    let mut samples = Vec::with_capacity(reps.max(1));
    for _ in 0..reps.max(1) {
        let start = Instant::now();
        record()?;
        gpu.synchronize()?;
        samples.push(start.elapsed().as_secs_f64());
    }
    Ok(Spread::of(&mut samples))
}

/// Both clocks for `record`: wall clock from submit to completion and, when the device has
/// timestamps, device time from the first pass's start to the last pass's end (after one
/// warm-up run; `reps` runs each).
///
/// # Errors
/// Whatever `record` or the device reports.
pub fn time_op(gpu: &Gpu, reps: usize, mut record: impl FnMut() -> Result<()>) -> Result<OpTiming> {
    let wall = time_wall(gpu, reps, &mut record)?;
    let mut samples = Vec::with_capacity(reps.max(1));
    // Per kernel: its seconds in each run.
    let mut kernels: Vec<(&'static str, Vec<f64>)> = Vec::new();
    for run in 0..reps.max(1) {
        let Some(t) = gpu_time(gpu, &mut record)? else {
            break;
        };
        samples.push(t.seconds);
        for (label, s) in t.passes {
            let k = match kernels.iter().position(|k| k.0 == label) {
                Some(k) => k,
                None => {
                    kernels.push((label, Vec::new()));
                    kernels.len() - 1
                }
            };
            let runs = &mut kernels[k].1;
            runs.resize(run + 1, 0.0);
            runs[run] += s;
        }
    }
    let gpu = (samples.len() == reps.max(1)).then(|| Spread::of(&mut samples));
    let runs = samples.len();
    let kernels = kernels
        .into_iter()
        .map(|(label, mut s)| {
            s.resize(runs, 0.0);
            (label, median(&mut s))
        })
        .collect();
    Ok(OpTiming { wall, gpu, kernels })
}

/// Peak FMA throughput: `threads` threads each running `iters` rounds of 32 vec4 FMAs (8
/// independent chains). Flops counted as 2 per scalar FMA.
///
/// # Errors
/// [`Error::TooLarge`] when the threads' output exceeds a binding; device errors.
pub fn probe_fma(gpu: &Gpu, threads: usize, iters: u32, reps: usize) -> Result<Probe> {
    let floats = threads
        .checked_mul(4)
        .filter(|&f| (f as u64) * 4 < gpu.max_binding_bytes());
    let Some(floats) = floats else {
        return Err(Error::TooLarge {
            what: "fma probe output",
            shape: vec![threads, 4],
            bytes: (threads as u64).saturating_mul(16),
            limit: gpu.max_binding_bytes(),
        });
    };
    let src = gpu.upload(&ndarray::Array1::<f32>::from_elem(8, 0.999_999))?;
    let dst = gpu.zeros(&[floats])?;
    let p = Params {
        total: count(threads)?,
        iters,
    };
    let timing = time_op(gpu, reps, || {
        gpu.launch(&FMA, &[], 1, &[Arg::Whole(&src), Arg::Whole(&dst)], |_| {
            Ok((p, (threads as u64).div_ceil(WG)))
        })
    })?;
    let work = threads as f64 * f64::from(iters) * (FMAS_PER_ROUND * 4 * 2) as f64;
    Ok(Probe {
        seconds: timing.best().min,
        work,
        timing,
    })
}

/// Copy bandwidth: a kernel copying `bytes` (rounded up to 16) from one buffer to another.
/// Bytes counted as read plus written.
///
/// # Errors
/// [`Error::TooLarge`] when `bytes` exceeds the binding limit (checked before anything is
/// allocated); device errors.
pub fn probe_copy(gpu: &Gpu, bytes: usize, reps: usize) -> Result<Probe> {
    let limit = gpu.max_binding_bytes();
    if bytes as u64 > limit - 16 {
        return Err(Error::TooLarge {
            what: "copy probe buffer",
            shape: vec![bytes],
            bytes: bytes as u64,
            limit,
        });
    }
    let n = bytes.div_ceil(16);
    let src = gpu.upload(&ndarray::Array1::<f32>::from_elem(n * 4, 1.0))?;
    let dst = gpu.zeros(&[n * 4])?;
    let p = Params {
        total: count(n)?,
        iters: 0,
    };
    let timing = time_op(gpu, reps, || {
        gpu.launch(&COPY, &[], 1, &[Arg::Whole(&src), Arg::Whole(&dst)], |_| {
            Ok((p, gpu.stream_workgroups(n as u64, 0)))
        })
    })?;
    Ok(Probe {
        seconds: timing.best().min,
        work: 2.0 * 16.0 * n as f64,
        timing,
    })
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
