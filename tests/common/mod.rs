//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod numpy_rng;

use std::sync::OnceLock;

use ndarray::{Array, Array4, ArrayD, Dimension, Ix4};
use wgpu_cnn::{cpu, ConvParams, Error, Gpu, Padding, PoolMode, PoolParams, Tensor};

/// A convolution's input, weights and bias uploaded to `g`.
pub fn upload_conv<D1: Dimension, D2: Dimension, D3: Dimension>(
    g: &Gpu,
    x: &Array<f32, D1>,
    w: &Array<f32, D2>,
    b: &Array<f32, D3>,
) -> (Tensor, Tensor, Tensor) {
    (
        g.upload(x).expect("upload x"),
        g.upload(w).expect("upload w"),
        g.upload(b).expect("upload b"),
    )
}

/// One adapter for the whole test binary (wgpu's environment conventions choose it).
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = Gpu::new().expect("a wgpu adapter (lavapipe or llvmpipe on CI)");
        eprintln!("tests run on {:?}", gpu.adapter_info());
        gpu
    })
}

/// Largest absolute difference between two arrays of the same shape.
pub fn max_abs_diff<D: Dimension>(a: &Array<f32, D>, b: &Array<f32, D>) -> f32 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Asserts `gpu` is within `atol + rtol * |cpu|` of `cpu`, element by element.
pub fn assert_close<D: Dimension>(what: &str, gpu: &Array<f32, D>, cpu: &Array<f32, D>, tol: f32) {
    assert_eq!(gpu.shape(), cpu.shape(), "{what}: shapes differ");
    for ((idx, g), c) in gpu.indexed_iter().zip(cpu.iter()) {
        let bound = tol * (1.0 + c.abs());
        assert!(
            (g - c).abs() <= bound,
            "{what}: at {idx:?} GPU {g} vs CPU {c} (tolerance {bound})"
        );
    }
}

/// `x` rounded to `f32`, the precision the GPU computes in.
pub fn to_f32<D: Dimension>(x: &Array<f64, D>) -> Array<f32, D> {
    x.mapv(|v| v as f32)
}

/// `x` widened to `f64` (exactly), to run the CPU reference on the GPU's own inputs.
pub fn to_f64<D: Dimension>(x: &Array<f32, D>) -> Array<f64, D> {
    x.mapv(f64::from)
}

/// Unit roundoff of `f32`, `2^-24`.
pub const F32_UNIT_ROUNDOFF: f64 = f32::EPSILON as f64 / 2.0;

/// How many times the typical rounding error of a sum a GPU result may be off by; see
/// [`check_sum_rounding`].
pub const ROUNDING_SLACK: f64 = 8.0;

/// The worst agreement seen so far between GPU results and the reference.
#[derive(Debug, Clone, Copy, Default)]
pub struct Agreement {
    /// Largest `|GPU - reference|`.
    pub max_abs: f64,
    /// Largest `|GPU - reference| / bound` (must stay at most 1).
    pub max_ratio: f64,
    /// Elements compared.
    pub elements: usize,
}

impl Agreement {
    /// The worse of two.
    pub fn merge(&mut self, other: Agreement) {
        self.max_abs = self.max_abs.max(other.max_abs);
        self.max_ratio = self.max_ratio.max(other.max_ratio);
        self.elements += other.elements;
    }
}

/// Checks a GPU result (`f32`) against the CPU reference run in `f64` on the same inputs.
///
/// Each element is a sum of at most `k` terms; `magnitude` is the same op run on the absolute
/// values of its inputs, i.e. the sum of the terms' absolute values. An `f32` sum of `k` terms
/// carries a rounding error of about `u * sqrt(k) * magnitude` (`u = 2^-24`), so the bound is
/// `ROUNDING_SLACK * u * sqrt(k) * magnitude`. It is tight: one missing, extra or misplaced term
/// moves the result by a whole term, far above it; elements with no terms must be exactly 0.
pub fn check_sum_rounding<D: Dimension>(
    what: &str,
    gpu: &Array<f32, D>,
    reference: &Array<f64, D>,
    magnitude: &Array<f64, D>,
    k: usize,
) -> Result<Agreement, String> {
    if gpu.shape() != reference.shape() || magnitude.shape() != reference.shape() {
        return Err(format!(
            "{what}: GPU shape {:?}, reference shape {:?}, magnitude shape {:?}",
            gpu.shape(),
            reference.shape(),
            magnitude.shape()
        ));
    }
    let scale = ROUNDING_SLACK * F32_UNIT_ROUNDOFF * (k.max(1) as f64).sqrt();
    let mut agreement = Agreement {
        elements: gpu.len(),
        ..Agreement::default()
    };
    for ((idx, &g), (&r, &mag)) in gpu
        .indexed_iter()
        .zip(reference.iter().zip(magnitude.iter()))
    {
        let err = (f64::from(g) - r).abs();
        let bound = scale * mag;
        if err.is_nan() || err > bound {
            return Err(format!(
                "{what}: at {idx:?} GPU {g:e} vs CPU {r:e}: error {err:e} exceeds {bound:e} \
                 (= {ROUNDING_SLACK} * 2^-24 * sqrt({k}) * sum of |terms| {mag:e})"
            ));
        }
        agreement.max_abs = agreement.max_abs.max(err);
        if bound > 0.0 {
            agreement.max_ratio = agreement.max_ratio.max(err / bound);
        }
    }
    Ok(agreement)
}

/// Checks that a GPU result equals the reference exactly (`0.0 == -0.0`).
pub fn check_exact<D: Dimension>(
    what: &str,
    gpu: &Array<f32, D>,
    reference: &Array<f64, D>,
) -> Result<Agreement, String> {
    if gpu.shape() != reference.shape() {
        return Err(format!(
            "{what}: GPU shape {:?}, reference shape {:?}",
            gpu.shape(),
            reference.shape()
        ));
    }
    for ((idx, &g), &r) in gpu.indexed_iter().zip(reference.iter()) {
        if f64::from(g) != r {
            return Err(format!(
                "{what}: at {idx:?} GPU {g:e} vs CPU {r:e}, expected exactly equal"
            ));
        }
    }
    Ok(Agreement {
        elements: gpu.len(),
        ..Agreement::default()
    })
}

fn describe(op: &str, e: wgpu_cnn::Error) -> String {
    format!("{op} returned {e:?}")
}

/// How GPU conv forward and backward agreed with the CPU reference.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConvAgreement {
    /// `Z`.
    pub z: Agreement,
    /// `dA_prev`.
    pub da_prev: Agreement,
    /// `dW`.
    pub dw: Agreement,
    /// `db`.
    pub db: Agreement,
}

/// Runs `conv_forward` then `conv_backward(dz)` on `gpu` and on the CPU reference (in `f64`, on
/// the same `f32` inputs) and checks every output with [`check_sum_rounding`]. `b` may be
/// `(n_C,)` or `(1, 1, 1, n_C)`.
pub fn compare_conv(
    gpu: &Gpu,
    a: &Array4<f32>,
    w: &Array4<f32>,
    b: &ArrayD<f32>,
    params: ConvParams,
    dz: &Array4<f32>,
) -> Result<ConvAgreement, String> {
    let (ta, tw, tb) = (
        gpu.upload(a).map_err(|e| describe("upload", e))?,
        gpu.upload(w).map_err(|e| describe("upload", e))?,
        gpu.upload(b).map_err(|e| describe("upload", e))?,
    );
    let (tz, cache) = gpu
        .conv_forward(&ta, &tw, &tb, params)
        .map_err(|e| describe("GPU conv_forward", e))?;
    let tdz = gpu.upload(dz).map_err(|e| describe("upload", e))?;
    let grads = gpu
        .conv_backward(&tdz, &cache)
        .map_err(|e| describe("GPU conv_backward", e))?;
    let download = |t: &Tensor| gpu.download::<Ix4>(t).map_err(|e| describe("download", e));
    let (z, da_prev, dw, db) = (
        download(&tz)?,
        download(&grads.da_prev)?,
        download(&grads.dw)?,
        download(&grads.db)?,
    );

    let reference = |a: &Array4<f64>, w: &Array4<f64>, b: &ArrayD<f64>, dz: &Array4<f64>| {
        let (z, cache) = cpu::conv_forward(a.view(), w.view(), b.view(), params)
            .map_err(|e| describe("CPU conv_forward", e))?;
        let grads =
            cpu::conv_backward(dz.view(), &cache).map_err(|e| describe("CPU conv_backward", e))?;
        Ok::<_, String>((z, grads))
    };
    let (a64, w64, b64, dz64) = (to_f64(a), to_f64(w), to_f64(b), to_f64(dz));
    let (z_ref, g_ref) = reference(&a64, &w64, &b64, &dz64)?;
    let abs = |x: &Array4<f64>| x.mapv(f64::abs);
    let (z_mag, g_mag) = reference(&abs(&a64), &abs(&w64), &b64.mapv(f64::abs), &abs(&dz64))?;

    let geo = cache.geometry();
    let terms_per_output = geo.f_h * geo.f_w * geo.c_in + 1;
    let terms_per_input = geo.f_h * geo.f_w * geo.c_out;
    let terms_per_weight = geo.m * geo.out_h * geo.out_w;
    Ok(ConvAgreement {
        z: check_sum_rounding("Z", &z, &z_ref, &z_mag, terms_per_output)?,
        da_prev: check_sum_rounding(
            "dA_prev",
            &da_prev,
            &g_ref.da_prev,
            &g_mag.da_prev,
            terms_per_input,
        )?,
        dw: check_sum_rounding("dW", &dw, &g_ref.dw, &g_mag.dw, terms_per_weight)?,
        db: check_sum_rounding("db", &db, &g_ref.db, &g_mag.db, terms_per_weight)?,
    })
}

/// How GPU pool forward and backward agreed with the CPU reference.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolAgreement {
    /// `A`.
    pub forward: Agreement,
    /// `dA_prev`.
    pub backward: Agreement,
}

/// Runs `pool_forward` then `pool_backward(da)` on `gpu` and on the CPU reference (in `f64`, on
/// the same `f32` inputs). The max of a window must be exact; averages and the gradient sums
/// are checked with [`check_sum_rounding`].
pub fn compare_pool(
    gpu: &Gpu,
    a: &Array4<f32>,
    params: PoolParams,
    da: &Array4<f32>,
) -> Result<PoolAgreement, String> {
    let ta = gpu.upload(a).map_err(|e| describe("upload", e))?;
    let (tout, cache) = gpu
        .pool_forward(&ta, params)
        .map_err(|e| describe("GPU pool_forward", e))?;
    let tda = gpu.upload(da).map_err(|e| describe("upload", e))?;
    let tda_prev = gpu
        .pool_backward(&tda, &cache)
        .map_err(|e| describe("GPU pool_backward", e))?;
    let out = gpu
        .download::<Ix4>(&tout)
        .map_err(|e| describe("download", e))?;
    let da_prev = gpu
        .download::<Ix4>(&tda_prev)
        .map_err(|e| describe("download", e))?;

    let (a64, da64) = (to_f64(a), to_f64(da));
    let (out_ref, cache_ref) =
        cpu::pool_forward(a64.view(), params).map_err(|e| describe("CPU pool_forward", e))?;
    let da_prev_ref = cpu::pool_backward(da64.view(), &cache_ref)
        .map_err(|e| describe("CPU pool_backward", e))?;
    // The same windows and masks (they depend on `a` only), with |dA|: the sum of |terms|.
    let da_prev_mag = cpu::pool_backward(da64.mapv(f64::abs).view(), &cache_ref)
        .map_err(|e| describe("CPU pool_backward", e))?;

    let window = params.kernel.0 * params.kernel.1;
    let forward = match params.mode {
        PoolMode::Max => check_exact("A (max)", &out, &out_ref)?,
        PoolMode::Average => {
            let (out_mag, _) = cpu::pool_forward(a64.mapv(f64::abs).view(), params)
                .map_err(|e| describe("CPU pool_forward", e))?;
            check_sum_rounding("A (average)", &out, &out_ref, &out_mag, window)?
        }
    };
    let backward = check_sum_rounding("dA_prev", &da_prev, &da_prev_ref, &da_prev_mag, window)?;
    Ok(PoolAgreement { forward, backward })
}

/// Runs `zero_pad` on `gpu` and on the CPU reference; they must agree exactly.
pub fn compare_zero_pad(gpu: &Gpu, x: &Array4<f32>, pad: Padding) -> Result<Agreement, String> {
    let tx = gpu.upload(x).map_err(|e| describe("upload", e))?;
    let ty = gpu
        .zero_pad(&tx, pad)
        .map_err(|e| describe("GPU zero_pad", e))?;
    let y = gpu
        .download::<Ix4>(&ty)
        .map_err(|e| describe("download", e))?;
    let y_ref = cpu::zero_pad(to_f64(x).view(), pad).map_err(|e| describe("CPU zero_pad", e))?;
    check_exact("zero_pad", &y, &y_ref)
}

/// Standard normal values in `f32` from numpy's generator seeded with `seed`.
pub fn randn_f32(rng: &mut numpy_rng::NumpyRng, shape: [usize; 4]) -> Array4<f32> {
    to_f32(&rng.randn4(shape))
}

/// Unwraps a comparison in a plain `#[test]`.
#[track_caller]
pub fn ok<T>(result: Result<T, String>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

/// Integers in `lo..=hi` as `f32` (windows full of ties; sums of them are exact).
pub fn small_integers(
    rng: &mut numpy_rng::NumpyRng,
    shape: [usize; 4],
    lo: i32,
    hi: i32,
) -> Array4<f32> {
    let span = (hi - lo + 1) as u32;
    Array4::from_shape_simple_fn(shape, || (lo + (rng.next_u32() % span) as i32) as f32)
}

/// `err` is [`Error::Setting`] for `what`, and its message names the value given.
#[track_caller]
pub fn assert_setting(err: Error, what: &str, value: &str) {
    assert!(
        matches!(&err, Error::Setting { what: w, .. } if *w == what),
        "expected a Setting error for {what}, got {err:?}"
    );
    assert!(err.to_string().contains(value), "{err}");
}
