//! The benchmark suite: named shapes, the ops run on them, and how each is measured. Used by
//! the `wgpu-cnn bench` binary and by the criterion benches in `benches/`.

use std::time::Instant;

use ndarray::{Array1, Array4, Ix4};
use serde::Serialize;

use crate::cpu;
use crate::error::Result;
use crate::gpu::{Gpu, Tensor};
use crate::nn::{GpuNet, Sequential, ThreeLayer};

mod profile;
mod roofline;

use crate::params::{ConvGeometry, ConvParams, Padding, PoolGeometry, PoolMode, PoolParams, Ties};
pub use profile::{gpu_seconds, gpu_time, GpuTime};
pub use roofline::{probe_copy, probe_fma, time_op, time_wall, OpTiming, Probe, Spread};

/// A convolution of the suite.
#[derive(Debug, Clone, Copy)]
pub struct ConvCase {
    /// Shape name (`cifar`, `deep`, `stem`, `seed`, `signs1`, ...).
    pub name: &'static str,
    /// Input `(m, n_H, n_W, n_C)`.
    pub input: [usize; 4],
    /// Weights `(f_h, f_w, n_C_prev, n_C)`.
    pub weights: [usize; 4],
    /// Stride and padding.
    pub params: ConvParams,
}

/// A pooling layer of the suite.
#[derive(Debug, Clone, Copy)]
pub struct PoolCase {
    /// Shape name (`pool`, `seed`, `signs1`, ...).
    pub name: &'static str,
    /// Input `(m, n_H, n_W, n_C)`.
    pub input: [usize; 4],
    /// Window, stride (mode is set per op).
    pub f: usize,
    /// Stride.
    pub stride: usize,
}

/// The fixed convolution shapes: the anchors, the seed's, the `signs` network's.
pub fn conv_cases() -> Vec<ConvCase> {
    vec![
        ConvCase {
            name: "cifar",
            input: [64, 32, 32, 16],
            weights: [3, 3, 16, 32],
            params: ConvParams::new(1, 1),
        },
        ConvCase {
            name: "deep",
            input: [16, 16, 16, 128],
            weights: [3, 3, 128, 128],
            params: ConvParams::new(1, 1),
        },
        ConvCase {
            name: "stem",
            input: [16, 64, 64, 3],
            weights: [4, 4, 3, 8],
            params: ConvParams::new(1, 2),
        },
        // A downsampling layer (stride 2, as ResNets halve the image): its data gradient is
        // one product per stride phase.
        ConvCase {
            name: "down",
            input: [64, 32, 32, 32],
            weights: [3, 3, 32, 64],
            params: ConvParams::new(2, 1),
        },
        ConvCase {
            name: "seed",
            input: [10, 4, 4, 3],
            weights: [2, 2, 3, 8],
            params: ConvParams::new(2, 2),
        },
        // The course's SIGNS model (seed 001): CONV2D 4x4 8 SAME -> RELU -> MAXPOOL 8x8/8 ->
        // CONV2D 2x2 16 SAME -> RELU -> MAXPOOL 4x4/4, minibatch 64.
        ConvCase {
            name: "signs1",
            input: [64, 64, 64, 3],
            weights: [4, 4, 3, 8],
            params: ConvParams::new(1, 0).with_padding(Padding::same((64, 64), (4, 4), (1, 1))),
        },
        ConvCase {
            name: "signs2",
            input: [64, 8, 8, 8],
            weights: [2, 2, 8, 16],
            params: ConvParams::new(1, 0).with_padding(Padding::same((8, 8), (2, 2), (1, 1))),
        },
    ]
}

/// The fixed pooling shapes.
pub fn pool_cases() -> Vec<PoolCase> {
    vec![
        PoolCase {
            name: "pool",
            input: [64, 32, 32, 32],
            f: 2,
            stride: 2,
        },
        PoolCase {
            name: "seed",
            input: [2, 4, 4, 3],
            f: 3,
            stride: 2,
        },
        PoolCase {
            name: "signs1",
            input: [64, 64, 64, 8],
            f: 8,
            stride: 8,
        },
        PoolCase {
            name: "signs2",
            input: [64, 8, 8, 16],
            f: 4,
            stride: 4,
        },
    ]
}

/// One line of the benchmark's results.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// `op/shape`, e.g. `conv_forward/cifar`.
    pub name: String,
    /// The op.
    pub op: String,
    /// The shape name.
    pub shape: String,
    /// Human-readable sizes.
    pub dims: String,
    /// Median GPU time of one run, milliseconds.
    pub median_ms: f64,
    /// Arithmetic rate (compute-bound ops, roofline FMA probe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    /// Memory rate (memory-bound ops, roofline copy probe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbps: Option<f64>,
    /// Percent of the adapter's measured roofline (FMA for flops, copy for bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roofline_pct: Option<f64>,
    /// Largest absolute difference from the CPU reference over all outputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_err: Option<f64>,
    /// Time of one run of the CPU reference, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<f64>,
    /// Device bytes the op holds at its peak (outputs and temporaries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_allocated: Option<u64>,
    /// Batch size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Median time per image, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_image_ms: Option<f64>,
    /// Fastest run, milliseconds (same clock as `median_ms`).
    pub min_ms: f64,
    /// Slowest run, milliseconds (same clock as `median_ms`).
    pub max_ms: f64,
    /// Median wall-clock time, submit to completion, milliseconds.
    pub wall_ms: f64,
    /// How `median_ms` was taken.
    pub timing: &'static str,
    /// With GPU timestamps: each kernel's median milliseconds per run, in the order of first
    /// use (where the op's time goes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernels: Vec<KernelTime>,
}

/// One kernel's share of an op (see [`Record::kernels`]).
#[derive(Debug, Clone, Serialize)]
pub struct KernelTime {
    /// The kernel's entry point.
    pub kernel: &'static str,
    /// Median milliseconds per run, its passes summed.
    pub ms: f64,
}

impl Record {
    fn new(op: &str, shape: &str, dims: String, median_ms: f64) -> Self {
        Self {
            name: format!("{op}/{shape}"),
            op: op.to_string(),
            shape: shape.to_string(),
            dims,
            median_ms,
            gflops: None,
            gbps: None,
            roofline_pct: None,
            max_err: None,
            cpu_ms: None,
            bytes_allocated: None,
            batch: None,
            per_image_ms: None,
            min_ms: median_ms,
            max_ms: median_ms,
            wall_ms: median_ms,
            timing: "wall clock, submit to completion",
            kernels: Vec::new(),
        }
    }

    fn timed(op: &str, shape: &str, dims: String, timing: OpTiming) -> Self {
        let best = timing.best();
        let mut r = Self::new(op, shape, dims, best.median * 1e3);
        r.min_ms = best.min * 1e3;
        r.max_ms = best.max * 1e3;
        r.wall_ms = timing.wall.median * 1e3;
        if timing.gpu.is_some() {
            r.timing = "GPU timestamps, first pass start to last pass end";
        }
        r.kernels = timing
            .kernels
            .iter()
            .map(|&(kernel, s)| KernelTime {
                kernel,
                ms: s * 1e3,
            })
            .collect();
        r
    }
}

/// Deterministic pseudo-random inputs in [-1, 1) (a small LCG; the benchmark needs no more).
pub fn test_array(shape: [usize; 4], seed: u64) -> Array4<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    Array4::from_shape_simple_fn(shape, || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
}

fn max_abs(a: &Array4<f32>, b: &Array4<f32>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| f64::from((x - y).abs()))
        .fold(0.0, f64::max)
}

fn dims4(s: [usize; 4]) -> String {
    format!("{}x{}x{}x{}", s[0], s[1], s[2], s[3])
}

/// Device bytes held before an op: tensors and the input textures already made (an op's peak
/// counts the texture it makes, not those that earlier ops left for reuse).
fn held(gpu: &Gpu) -> u64 {
    let m = gpu.memory();
    m.live_bytes + m.texture_bytes
}

/// The roofline: peak FMA rate and copy bandwidth of the adapter, and the floor of one dispatch
/// (the copy probe's kernel on 16 bytes: one workgroup, one thread with work), as three
/// records; the rates come from the fastest run of each probe (a peak), the times printed are
/// medians like every op's. No op of several dispatches can take less than that many floors.
///
/// # Errors
/// Device errors.
pub fn roofline(gpu: &Gpu, reps: usize) -> Result<[Record; 3]> {
    let fma = probe_fma(gpu, 1 << 16, 1024, reps)?;
    let mut r_fma = Record::timed(
        "roofline",
        "fma",
        "65536 threads x 1024 x 32 vec4 FMA".into(),
        fma.timing.clone(),
    );
    r_fma.gflops = Some(fma.rate() / 1e9);
    r_fma.roofline_pct = Some(100.0);
    let copy = probe_copy(gpu, 64 << 20, reps)?;
    let mut r_copy = Record::timed("roofline", "copy", "64 MiB".into(), copy.timing.clone());
    r_copy.gbps = Some(copy.rate() / 1e9);
    r_copy.roofline_pct = Some(100.0);
    let floor = probe_copy(gpu, 16, reps)?;
    let r_floor = Record::timed(
        "roofline",
        "dispatch",
        "one dispatch, 1 workgroup".into(),
        floor.timing,
    );
    Ok([r_fma, r_copy, r_floor])
}

/// What to measure besides the GPU time.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Timed repetitions (the median is reported).
    pub reps: usize,
    /// Run the CPU reference (time and max error).
    pub check: bool,
    /// Peak FMA rate, flop/s, for `roofline_pct`.
    pub fma_peak: f64,
    /// Copy bandwidth, bytes/s, for `roofline_pct`.
    pub copy_peak: f64,
}

/// One conv case's host inputs and their uploads.
struct ConvInputs {
    x: Array4<f32>,
    w: Array4<f32>,
    b: Array1<f32>,
    tx: Tensor,
    tw: Tensor,
    tb: Tensor,
}

fn upload_conv(gpu: &Gpu, c: &ConvCase) -> Result<ConvInputs> {
    let x = test_array(c.input, 1);
    let w = test_array(c.weights, 2);
    let b = Array1::from_iter(test_array([1, 1, 1, c.weights[3]], 3));
    Ok(ConvInputs {
        tx: gpu.upload(&x)?,
        tw: gpu.upload(&w)?,
        tb: gpu.upload(&b)?,
        x,
        w,
        b,
    })
}

/// `conv_forward` on one case.
///
/// # Errors
/// Shape or device errors.
pub fn conv_forward(gpu: &Gpu, c: &ConvCase, o: &Options) -> Result<Record> {
    let g = ConvGeometry::new(c.input, c.weights, c.params)?;
    let ConvInputs {
        x,
        w,
        b,
        tx,
        tw,
        tb,
    } = upload_conv(gpu, c)?;
    let before = held(gpu);
    gpu.reset_peak();
    let (z, _) = gpu.conv_forward(&tx, &tw, &tb, c.params)?;
    let bytes = gpu.memory().peak_bytes - before;
    let timing = time_op(gpu, o.reps, || {
        gpu.conv_forward(&tx, &tw, &tb, c.params).map(drop)
    })?;
    let seconds = timing.best().median;
    let flops = g.forward_flops();
    let dims = format!(
        "{} * {} -> {}",
        dims4(c.input),
        dims4(c.weights),
        dims4(g.output_shape())
    );
    let mut r = Record::timed("conv_forward", c.name, dims, timing);
    r.gflops = Some(flops / seconds / 1e9);
    r.roofline_pct = Some(100.0 * flops / seconds / o.fma_peak);
    r.bytes_allocated = Some(bytes);
    r.batch = Some(g.m);
    r.per_image_ms = Some(seconds * 1e3 / g.m as f64);
    if o.check {
        let start = Instant::now();
        let (z_ref, _) = cpu::conv_forward(x.view(), w.view(), b.view(), c.params)?;
        r.cpu_ms = Some(start.elapsed().as_secs_f64() * 1e3);
        r.max_err = Some(max_abs(&gpu.download::<Ix4>(&z)?, &z_ref));
    }
    Ok(r)
}

/// `conv_backward` (dA_prev, dW and db together) on one case.
///
/// # Errors
/// Shape or device errors.
pub fn conv_backward(gpu: &Gpu, c: &ConvCase, o: &Options) -> Result<Record> {
    let g = ConvGeometry::new(c.input, c.weights, c.params)?;
    let ConvInputs {
        x,
        w,
        b,
        tx,
        tw,
        tb,
    } = upload_conv(gpu, c)?;
    let dz = test_array(g.output_shape(), 4);
    let tdz = gpu.upload(&dz)?;
    let (_, cache) = gpu.conv_forward(&tx, &tw, &tb, c.params)?;
    let before = held(gpu);
    gpu.reset_peak();
    let grads = gpu.conv_backward(&tdz, &cache)?;
    let bytes = gpu.memory().peak_bytes - before;
    let timing = time_op(gpu, o.reps, || gpu.conv_backward(&tdz, &cache).map(drop))?;
    let seconds = timing.best().median;
    // dA and dW: each the forward's multiply-adds.
    let flops = 2.0 * g.forward_flops();
    let dims = format!("dZ {} -> dA, dW, db", dims4(g.output_shape()));
    let mut r = Record::timed("conv_backward", c.name, dims, timing);
    r.gflops = Some(flops / seconds / 1e9);
    r.roofline_pct = Some(100.0 * flops / seconds / o.fma_peak);
    r.bytes_allocated = Some(bytes);
    r.batch = Some(g.m);
    r.per_image_ms = Some(seconds * 1e3 / g.m as f64);
    if o.check {
        let (_, ref_cache) = cpu::conv_forward(x.view(), w.view(), b.view(), c.params)?;
        let start = Instant::now();
        let reference = cpu::conv_backward(dz.view(), &ref_cache)?;
        r.cpu_ms = Some(start.elapsed().as_secs_f64() * 1e3);
        let err = max_abs(&gpu.download::<Ix4>(&grads.da_prev)?, &reference.da_prev)
            .max(max_abs(&gpu.download::<Ix4>(&grads.dw)?, &reference.dw))
            .max(max_abs(&gpu.download::<Ix4>(&grads.db)?, &reference.db));
        r.max_err = Some(err);
    }
    Ok(r)
}

/// The pools the suite times: max with either tie rule (`max`: every maximum, the exercises';
/// `max_first`: the first, seed 001's network's), and average.
pub const POOLINGS: [(PoolMode, Ties); 3] = [
    (PoolMode::Max, Ties::EveryMax),
    (PoolMode::Max, Ties::FirstMax),
    (PoolMode::Average, Ties::EveryMax),
];

/// The name of a pooling in the records: `max`, `max_first` or `avg`.
pub fn pooling_name(mode: PoolMode, ties: Ties) -> &'static str {
    match (mode, ties) {
        (PoolMode::Max, Ties::EveryMax) => "max",
        (PoolMode::Max, Ties::FirstMax) => "max_first",
        (PoolMode::Average, _) => "avg",
    }
}

/// A pool op's record: its rate in bytes `moved` per second against the copy probe, its peak
/// `bytes` and per-image time at batch `m`.
fn pool_record(
    op: &str,
    c: &PoolCase,
    dims: String,
    timing: OpTiming,
    moved: f64,
    (bytes, m): (u64, usize),
    o: &Options,
) -> Record {
    let seconds = timing.best().median;
    let mut r = Record::timed(op, c.name, dims, timing);
    r.gbps = Some(moved / seconds / 1e9);
    r.roofline_pct = Some(100.0 * moved / seconds / o.copy_peak);
    r.bytes_allocated = Some(bytes);
    r.batch = Some(m);
    r.per_image_ms = Some(seconds * 1e3 / m as f64);
    r
}

/// `pool_forward` in one pooling on one case. Bytes counted: input read once, output written
/// (twice when the first maxima are kept).
///
/// # Errors
/// Shape or device errors.
pub fn pool_forward(
    gpu: &Gpu,
    c: &PoolCase,
    (mode, ties): (PoolMode, Ties),
    o: &Options,
) -> Result<Record> {
    let params = PoolParams::new(c.f, c.stride, mode).with_ties(ties);
    let g = PoolGeometry::new(c.input, params)?;
    let x = test_array(c.input, 5);
    let tx = gpu.upload(&x)?;
    let before = held(gpu);
    gpu.reset_peak();
    let (a, cache) = gpu.pool_forward(&tx, params)?;
    let bytes = gpu.memory().peak_bytes - before;
    let timing = time_op(gpu, o.reps, || gpu.pool_forward(&tx, params).map(drop))?;
    // A pool that keeps its windows' first maxima writes them too (output-sized).
    let outputs = if cache.keeps_first_maxima() { 2 } else { 1 };
    let moved = 4.0 * (x.len() + outputs * a.len()) as f64;
    let op = format!("pool_{}_forward", pooling_name(mode, ties));
    let dims = format!(
        "{} f{} s{} -> {}",
        dims4(c.input),
        c.f,
        c.stride,
        dims4(g.output_shape())
    );
    let mut r = pool_record(&op, c, dims, timing, moved, (bytes, g.m), o);
    if o.check {
        let start = Instant::now();
        let (a_ref, _) = cpu::pool_forward(x.view(), params)?;
        r.cpu_ms = Some(start.elapsed().as_secs_f64() * 1e3);
        r.max_err = Some(max_abs(&gpu.download::<Ix4>(&a)?, &a_ref));
    }
    Ok(r)
}

/// `pool_backward` in one pooling on one case. Bytes counted: `dA` read and `dA_prev` written
/// once, and in max mode `A_prev` read once (average mode does not read it), or the first maxima
/// (`dA`'s size) where the forward kept them.
///
/// # Errors
/// Shape or device errors.
pub fn pool_backward(
    gpu: &Gpu,
    c: &PoolCase,
    (mode, ties): (PoolMode, Ties),
    o: &Options,
) -> Result<Record> {
    let params = PoolParams::new(c.f, c.stride, mode).with_ties(ties);
    let g = PoolGeometry::new(c.input, params)?;
    let x = test_array(c.input, 5);
    let da = test_array(g.output_shape(), 6);
    let tx = gpu.upload(&x)?;
    let tda = gpu.upload(&da)?;
    let (_, cache) = gpu.pool_forward(&tx, params)?;
    let before = held(gpu);
    gpu.reset_peak();
    let dx = gpu.pool_backward(&tda, &cache)?;
    let bytes = gpu.memory().peak_bytes - before;
    let mut timing = time_op(gpu, o.reps, || gpu.pool_backward(&tda, &cache).map(drop))?;
    // From kept first maxima the backward reads them instead of `A_prev`, and its output is
    // zero-filled (outside any pass, so outside the timestamps) before the kernel writes the
    // maxima: count the fill.
    let kept = cache.keeps_first_maxima();
    if kept {
        timing = timing.wall_only();
    }
    let a_prev_reads = match mode {
        _ if kept => da.len(),
        PoolMode::Max => x.len(),
        PoolMode::Average => 0,
    };
    let moved = 4.0 * (x.len() + a_prev_reads + da.len()) as f64;
    let op = format!("pool_{}_backward", pooling_name(mode, ties));
    let dims = format!("dA {} -> {}", dims4(g.output_shape()), dims4(c.input));
    let mut r = pool_record(&op, c, dims, timing, moved, (bytes, g.m), o);
    if o.check {
        let (_, ref_cache) = cpu::pool_forward(x.view(), params)?;
        let start = Instant::now();
        let reference = cpu::pool_backward(da.view(), &ref_cache)?;
        r.cpu_ms = Some(start.elapsed().as_secs_f64() * 1e3);
        r.max_err = Some(max_abs(&gpu.download::<Ix4>(&dx)?, &reference));
    }
    Ok(r)
}

/// The probe kernels, for the crate's kernel checks.
#[cfg(test)]
pub(crate) fn roofline_kernels() -> (crate::gpu::kernels::Kernel, crate::gpu::kernels::Kernel) {
    (roofline::FMA, roofline::COPY)
}

/// One memory-bound layer measurement: `bytes` is what the layer must move at least (its inputs
/// read once, its outputs written once), so `roofline_pct` compares it with the copy probe.
fn memory_record(
    gpu: &Gpu,
    (op, shape, dims): (&str, &str, String),
    bytes: f64,
    o: &Options,
    mut record: impl FnMut() -> Result<()>,
) -> Result<Record> {
    let before = held(gpu);
    gpu.reset_peak();
    record()?;
    gpu.synchronize()?;
    let peak = gpu.memory().peak_bytes.saturating_sub(before);
    let timing = time_op(gpu, o.reps, record)?;
    let seconds = timing.best().median;
    let mut r = Record::timed(op, shape, dims, timing);
    r.gbps = Some(bytes / seconds / 1e9);
    r.roofline_pct = Some(100.0 * bytes / seconds / o.copy_peak);
    r.bytes_allocated = Some(peak);
    Ok(r)
}

/// [`memory_record`] for an op measured by its arithmetic: `flops` (FMA = 2) against the FMA
/// probe, no byte rate.
fn compute_record(
    gpu: &Gpu,
    name: (&str, &str, String),
    flops: f64,
    o: &Options,
    record: impl FnMut() -> Result<()>,
) -> Result<Record> {
    let mut r = memory_record(gpu, name, 0.0, o, record)?;
    let seconds = r.median_ms * 1e-3;
    r.gbps = None;
    r.gflops = Some(flops / seconds / 1e9);
    r.roofline_pct = Some(100.0 * flops / seconds / o.fma_peak);
    Ok(r)
}

/// The memory-bound layers of seed 001's network at batch 64 (`signs1`: its first activation,
/// 64x64x64x8), and the optimizers on a 1M-parameter tensor. Bytes counted: inputs read and
/// outputs written once (ReLU forward: x, y; backward: x, dout, dx; batch / group norm forward:
/// x, y; backward: dout, x, dx; layout: x, y; SGD: w, dw, w; Adam: w, dw, m, v read, w, m, v
/// written). `wanted` filters by `op/shape`.
///
/// # Errors
/// Shape or device errors.
pub fn layer_records(
    gpu: &Gpu,
    o: &Options,
    wanted: impl Fn(&str, &str) -> bool,
) -> Result<Vec<Record>> {
    use crate::{Adam, BatchNorm, BatchNormState, GroupNorm, Sgd};
    let shape = [64, 64, 64, 8];
    let n = shape.iter().product::<usize>() as f64;
    let dims = dims4(shape);
    let x = gpu.upload(&test_array(shape, 11))?;
    let dout = gpu.upload(&test_array(shape, 12))?;
    let gamma = gpu.upload(&Array1::<f32>::ones(8))?;
    let beta = gpu.zeros(&[8])?;
    let mut out = Vec::new();
    let s = "signs1";
    if wanted("relu_forward", s) {
        let x = &x;
        out.push(memory_record(
            gpu,
            ("relu_forward", s, dims.clone()),
            8.0 * n,
            o,
            || gpu.relu_forward(x).map(drop),
        )?);
    }
    if wanted("relu_backward", s) {
        let (_, cache) = gpu.relu_forward(&x)?;
        out.push(memory_record(
            gpu,
            ("relu_backward", s, dims.clone()),
            12.0 * n,
            o,
            || gpu.relu_backward(&dout, &cache).map(drop),
        )?);
    }
    let mut state = BatchNormState::new();
    if wanted("batchnorm_forward", s) {
        out.push(memory_record(
            gpu,
            ("batchnorm_forward", s, dims.clone()),
            8.0 * n,
            o,
            || {
                gpu.spatial_batchnorm_forward(&x, &gamma, &beta, &mut state, BatchNorm::train())
                    .map(drop)
            },
        )?);
    }
    if wanted("batchnorm_backward", s) {
        let (_, cache) =
            gpu.spatial_batchnorm_forward(&x, &gamma, &beta, &mut state, BatchNorm::train())?;
        out.push(memory_record(
            gpu,
            ("batchnorm_backward", s, dims.clone()),
            12.0 * n,
            o,
            || gpu.spatial_batchnorm_backward(&dout, &cache).map(drop),
        )?);
    }
    let gn = GroupNorm::new(2);
    if wanted("groupnorm_forward", s) {
        out.push(memory_record(
            gpu,
            ("groupnorm_forward", s, dims.clone()),
            8.0 * n,
            o,
            || {
                gpu.spatial_groupnorm_forward(&x, &gamma, &beta, gn)
                    .map(drop)
            },
        )?);
    }
    if wanted("groupnorm_backward", s) {
        let (_, cache) = gpu.spatial_groupnorm_forward(&x, &gamma, &beta, gn)?;
        out.push(memory_record(
            gpu,
            ("groupnorm_backward", s, dims.clone()),
            12.0 * n,
            o,
            || gpu.spatial_groupnorm_backward(&dout, &cache).map(drop),
        )?);
    }
    if wanted("nhwc_to_nchw", s) {
        out.push(memory_record(
            gpu,
            ("nhwc_to_nchw", s, dims.clone()),
            8.0 * n,
            o,
            || gpu.nhwc_to_nchw(&x).map(drop),
        )?);
    }
    // Seed 001's first layer: conv 4x4x3->8 SAME then ReLU, unfused and fused.
    let case = conv_cases()
        .into_iter()
        .find(|c| c.name == "signs1")
        .ok_or_else(|| crate::Error::Kernel("no signs1 case".into()))?;
    let g = ConvGeometry::new(case.input, case.weights, case.params)?;
    let flops = g.forward_flops();
    let ConvInputs { tx, tw, tb, .. } = upload_conv(gpu, &case)?;
    let cdims = format!("{} * {} + ReLU", dims4(case.input), dims4(case.weights));
    let pdims = format!("{cdims} + max pool 8x8/8");
    let pool = PoolParams::new(8, 8, PoolMode::Max).with_ties(Ties::FirstMax);
    // Its forward four ways: conv then ReLU, the fused conv + ReLU, then with its max pool
    // 8x8/8 (first maximum, as training runs it) as two ops, and as one
    // (`conv_relu_pool_forward`: one kernel on CPU adapters, the ReLU's output never stored).
    for (op, dims, how) in [
        ("conv_forward_then_relu", &cdims, 0),
        ("conv_relu_forward", &cdims, 1),
        ("conv_relu_then_pool", &pdims, 2),
        ("conv_relu_pool_forward", &pdims, 3),
    ] {
        if !wanted(op, s) {
            continue;
        }
        let r = compute_record(gpu, (op, s, dims.clone()), flops, o, || match how {
            0 => {
                let (z, _) = gpu.conv_forward(&tx, &tw, &tb, case.params)?;
                gpu.relu_forward(&z).map(drop)
            }
            1 => gpu.conv_relu_forward(&tx, &tw, &tb, case.params).map(drop),
            2 => {
                let (a, _) = gpu.conv_relu_forward(&tx, &tw, &tb, case.params)?;
                gpu.pool_forward(&a, pool).map(drop)
            }
            _ => gpu
                .conv_relu_pool_forward(&tx, &tw, &tb, case.params, pool)
                .map(drop),
        })?;
        out.push(r);
    }
    // The first layer's backward as training runs it: dW and db only (no layer before it
    // wants dA), one GEMM's multiply-adds.
    if wanted("conv_backward_filter", s) {
        let (_, cache) = gpu.conv_forward(&tx, &tw, &tb, case.params)?;
        let tdz = gpu.upload(&test_array(g.output_shape(), 4))?;
        let dims = format!("dZ {} -> dW, db", dims4(g.output_shape()));
        out.push(compute_record(
            gpu,
            ("conv_backward_filter", s, dims),
            flops,
            o,
            || gpu.conv_backward_filter(&tdz, &cache).map(drop),
        )?);
    }
    let p = 1usize << 20;
    let pdims = format!("{p} parameters");
    let dw = gpu.upload(&Array1::from_iter(test_array([1, 1, 1, p], 13)))?;
    let mut w = gpu.upload(&Array1::from_iter(test_array([1, 1, 1, p], 14)))?;
    if wanted("sgd", "params1m") {
        let sgd = Sgd::new(1e-3);
        out.push(memory_record(
            gpu,
            ("sgd", "params1m", pdims.clone()),
            12.0 * p as f64,
            o,
            || sgd.step(gpu, &mut w, &dw),
        )?);
    }
    if wanted("adam", "params1m") {
        let mut adam = Adam::new(1e-3);
        out.push(memory_record(
            gpu,
            ("adam", "params1m", pdims),
            28.0 * p as f64,
            o,
            || adam.step(gpu, &mut w, &dw),
        )?);
    }
    // One training step (forward, loss, backward, Adam, as `GpuNet::step` records it) of each
    // model at batch 64 on 64x64x3 images, 6 classes. The rates count the dense multiply-adds:
    // `signs`, both convolutions' forward and filter gradient and the second one's data
    // gradient, nearly all of its arithmetic; the three-layer convnet (cs231n's defaults: conv
    // 7x7 -> 32, 2x2 max pool, affine 100, affine), its convolution's forward and filter
    // gradient and each affine layer's three products.
    let conv1 = 64.0 * 64.0 * 64.0 * 8.0 * 48.0;
    let conv2 = 64.0 * 8.0 * 8.0 * 16.0 * 32.0;
    let conv7 = 64.0 * 64.0 * 64.0 * 32.0 * 147.0;
    let affine = 64.0 * (32.0 * 32.0 * 32.0 * 100.0 + 100.0 * 6.0);
    for (shape, net, lr, macs) in [
        (
            "signs",
            Sequential::signs((64, 64, 3), 6),
            0.009,
            2.0 * conv1 + 3.0 * conv2,
        ),
        (
            "three_layer",
            Sequential::three_layer((64, 64, 3), 6, ThreeLayer::default()),
            1e-3,
            2.0 * conv7 + 3.0 * affine,
        ),
    ] {
        if wanted("train_step", shape) {
            out.push(train_step(gpu, o, shape, &net, lr, 2.0 * macs)?);
        }
    }
    Ok(out)
}

/// One training step of `net` at batch 64 on the built-in set's 64x64x3 images, 6 classes,
/// rated at `flops`.
fn train_step(
    gpu: &Gpu,
    o: &Options,
    shape: &'static str,
    net: &Sequential,
    lr: f64,
    flops: f64,
) -> Result<Record> {
    let data = crate::data::Dataset::synthetic(64, 64, 1);
    let mut model = GpuNet::new(gpu, net, &net.init(1)?, crate::AdamConfig::new(lr))?;
    let name = ("train_step", shape, "batch 64 of 64x64x3, 6 classes".into());
    compute_record(gpu, name, flops, o, || {
        model.step(&data.x, &data.y).map(drop)
    })
}
