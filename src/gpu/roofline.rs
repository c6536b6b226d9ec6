//! Roofline probes (peak FMA rate, copy bandwidth) for the benchmark; kernel:
//! `shaders/roofline.wgsl`.

use std::time::Instant;

use super::launch::{simple, to_u32, WG};
use super::{Arg, Gpu, Kernel};
use crate::error::Result;

const FMA: Kernel = Kernel {
    name: "roofline.wgsl",
    source: include_str!("../../shaders/roofline.wgsl"),
    entry: "fma_probe",
    bindings: simple(1, 1),
};

const COPY: Kernel = Kernel {
    entry: "copy_probe",
    ..FMA
};

/// vec4 FMAs per thread and round in the shader (8 chains, unrolled 4 times).
const FMAS_PER_ROUND: u64 = 32;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    iters: u32,
}

/// One measurement: the median seconds of `reps` timed runs and the work of one run.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// Median seconds of one run (device timestamps, or wall clock without them).
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

/// The two clocks of one op (see [`Gpu::time_op`]).
#[derive(Debug, Clone, Copy)]
pub struct OpTiming {
    /// Median wall-clock seconds, submit to completion.
    pub wall: f64,
    /// Median device seconds from timestamps, if the device has them.
    pub gpu: Option<f64>,
}

impl OpTiming {
    /// The device time when there is one, else the wall clock.
    pub fn best(&self) -> f64 {
        self.gpu.unwrap_or(self.wall)
    }
}

/// Median of the samples (sorted in place).
pub fn median(samples: &mut [f64]) -> f64 {
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

impl Gpu {
    /// Times `record` (which records work on this `Gpu`) from submit to completion: one warm-up
    /// run (which also settles any autotuning), then the median of `reps` runs.
    ///
    /// # Errors
    /// Whatever `record` or the device reports.
    pub fn time_median(&self, reps: usize, mut record: impl FnMut() -> Result<()>) -> Result<f64> {
        record()?;
        self.synchronize()?;
        let mut samples = Vec::with_capacity(reps.max(1));
        for _ in 0..reps.max(1) {
            let start = Instant::now();
            record()?;
            self.synchronize()?;
            samples.push(start.elapsed().as_secs_f64());
        }
        Ok(median(&mut samples))
    }

    /// Both clocks for `record`: the median wall-clock seconds from submit to completion, and,
    /// when the device has timestamps, the median device seconds from the first pass's start to
    /// the last pass's end (after one warm-up run; `reps` runs each).
    ///
    /// # Errors
    /// Whatever `record` or the device reports.
    pub fn time_op(&self, reps: usize, mut record: impl FnMut() -> Result<()>) -> Result<OpTiming> {
        let wall = self.time_median(reps, &mut record)?;
        let mut samples = Vec::with_capacity(reps.max(1));
        for _ in 0..reps.max(1) {
            match self.gpu_seconds(&mut record)? {
                Some(s) => samples.push(s),
                None => break,
            }
        }
        let gpu = (samples.len() == reps.max(1)).then(|| median(&mut samples));
        Ok(OpTiming { wall, gpu })
    }

    /// Peak FMA throughput: `threads` threads each running `iters` rounds of 32 vec4 FMAs (8
    /// independent chains). Flops counted as 2 per scalar FMA.
    ///
    /// # Errors
    /// Device errors.
    pub fn probe_fma(&self, threads: usize, iters: u32, reps: usize) -> Result<Probe> {
        let src = self.upload(&ndarray::Array1::<f32>::from_elem(8, 0.999_999))?;
        let dst = self.empty("fma probe", &[threads * 4])?;
        let timing = self.time_op(reps, || {
            self.launch(&FMA, 1, &[Arg::Whole(&src), Arg::Whole(&dst)], |_| {
                let p = Params {
                    total: to_u32(threads)?,
                    iters,
                };
                Ok((p, (threads as u64).div_ceil(WG)))
            })
        })?;
        let work = threads as f64 * f64::from(iters) * (FMAS_PER_ROUND * 4 * 2) as f64;
        Ok(Probe {
            seconds: timing.best(),
            work,
            timing,
        })
    }

    /// Copy bandwidth: a kernel copying `bytes` (rounded to 16) from one buffer to another.
    /// Bytes counted as read plus written.
    ///
    /// # Errors
    /// [`crate::Error::TooLarge`] beyond the binding limit; device errors.
    pub fn probe_copy(&self, bytes: usize, reps: usize) -> Result<Probe> {
        let n = bytes.div_ceil(16);
        let src = self.upload(&ndarray::Array1::<f32>::from_elem(n * 4, 1.0))?;
        let dst = self.empty("copy probe", &[n * 4])?;
        let timing = self.time_op(reps, || {
            self.launch(&COPY, 1, &[Arg::Whole(&src), Arg::Whole(&dst)], |_| {
                let p = Params {
                    total: to_u32(n)?,
                    iters: 0,
                };
                Ok((p, (n as u64).div_ceil(WG)))
            })
        })?;
        Ok(Probe {
            seconds: timing.best(),
            work: 2.0 * 16.0 * n as f64,
            timing,
        })
    }
}
