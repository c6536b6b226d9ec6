//! The GPU path against the CPU reference (`wgpu_cnn::cpu`) on random configurations, with
//! proptest shrinking a failure to a small case.
//!
//! The CPU reference runs in `f64` on the GPU's own `f32` inputs (widened exactly), so the only
//! difference allowed is the GPU's `f32` rounding: every element that is a sum of `k` terms must
//! lie within `8 * 2^-24 * sqrt(k) * (sum of |terms|)` of the reference (see
//! `common::check_sum_rounding`), elements with no terms must be exactly 0, and maxima, padding
//! and everything computed from small integers must be exact. Each property prints the largest
//! error it saw (`cargo test -- --nocapture`).
//!
//! Sizes: batch 1..=4, height and width 1..=17, channels 1..=37, kernels 1..=5 per axis, strides
//! 1..=4 per axis, padding 0..=3 per side (uniform, asymmetric or TensorFlow's `SAME`).
//! `PROPTEST_CASES` overrides the number of cases.

mod common;

use std::cell::RefCell;
use std::fmt::Debug;
use std::sync::OnceLock;

use common::numpy_rng::NumpyRng;
use common::{
    check_exact, compare_conv, compare_pool, compare_zero_pad, gpu, randn_f32, small_integers,
    Agreement, ConvAgreement, PoolAgreement,
};
use ndarray::{Array4, Ix4};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use wgpu_cnn::{cpu, ConvParams, Gpu, GpuOptions, Padding, PoolMode, PoolParams, Ties};

// ---------------------------------------------------------------------------------------------
// Running a property and reporting the largest error
// ---------------------------------------------------------------------------------------------

/// A second `Gpu` that skips the autotune and runs each op's default kernel variant.
fn gpu_without_autotune() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        Gpu::with_options(GpuOptions {
            no_autotune: true,
            ..Default::default()
        })
        .expect("a Gpu without autotune")
    })
}

/// Cases per property unless `PROPTEST_CASES` says otherwise: the adapter is a CPU emulator.
const CASES: u32 = 64;

/// Runs `test` on `cases` values of `strategy`, shrinking a failure, then prints `report` of
/// the state the cases accumulated.
fn check_property<S, T>(
    name: &str,
    strategy: S,
    state: T,
    test: impl Fn(S::Value, &mut T) -> Result<(), TestCaseError>,
    report: impl FnOnce(&T) -> String,
) where
    S: Strategy,
    S::Value: Debug,
{
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CASES);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        // Shrinking stops after 400 steps or 30 s: a flaky failure does not shrink anyway.
        max_shrink_iters: 400,
        max_shrink_time: 30_000,
        ..Config::default()
    });
    let state = RefCell::new(state);
    let result = runner.run(&strategy, |value| test(value, &mut state.borrow_mut()));
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    eprintln!("{name} ({cases} cases): {}", report(&state.borrow()));
}

/// Turns a comparison's message into a proptest failure.
fn fail(message: String) -> TestCaseError {
    TestCaseError::fail(message)
}

fn describe(what: &str, a: &Agreement) -> String {
    format!(
        "{what}: max |GPU - CPU| {:.3e}, max error/bound {:.3} over {} elements",
        a.max_abs, a.max_ratio, a.elements
    )
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Padding as given to a conv: explicit (possibly asymmetric), or `SAME` computed from the
/// input, kernel and stride.
#[derive(Debug, Clone, Copy)]
enum PadChoice {
    Explicit(Padding),
    Same,
}

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![
        (0usize..=3).prop_map(Padding::uniform),
        (0usize..=3, 0usize..=3, 0usize..=3, 0usize..=3)
            .prop_map(|(t, b, l, r)| Padding::explicit(t, b, l, r)),
    ]
}

fn pad_choice() -> impl Strategy<Value = PadChoice> {
    prop_oneof![
        4 => padding().prop_map(PadChoice::Explicit),
        1 => Just(PadChoice::Same),
    ]
}

#[derive(Debug, Clone, Copy)]
struct ConvCase {
    /// `(m, n_H_prev, n_W_prev, n_C_prev)`.
    input: [usize; 4],
    /// `n_C`.
    c_out: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    pad: PadChoice,
    /// Bias as `(1, 1, 1, n_C)` rather than `(n_C,)`.
    bias_4d: bool,
    /// Run on a `Gpu` that autotunes kernel variants (the fastest for the shape) rather than
    /// one that uses each op's default variant.
    autotune: bool,
    seed: u32,
}

impl ConvCase {
    fn padding(&self) -> Padding {
        match self.pad {
            PadChoice::Explicit(p) => p,
            PadChoice::Same => {
                Padding::same((self.input[1], self.input[2]), self.kernel, self.stride)
            }
        }
    }

    fn params(&self) -> ConvParams {
        ConvParams::new(1, 0)
            .with_stride(self.stride.0, self.stride.1)
            .with_padding(self.padding())
    }

    /// Whether the kernel fits in the padded input.
    fn valid(&self) -> bool {
        let p = self.padding();
        self.input[1] + p.top + p.bottom >= self.kernel.0
            && self.input[2] + p.left + p.right >= self.kernel.1
    }
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        (
            1usize..=4,
            1usize..=17,
            1usize..=17,
            1usize..=37,
            1usize..=37,
        ),
        (1usize..=5, 1usize..=5, 1usize..=4, 1usize..=4),
        pad_choice(),
        (any::<bool>(), any::<bool>()),
        any::<u32>(),
    )
        .prop_map(
            |((m, h, w, c_in, c_out), (f_h, f_w, s_h, s_w), pad, (bias_4d, autotune), seed)| {
                ConvCase {
                    input: [m, h, w, c_in],
                    c_out,
                    kernel: (f_h, f_w),
                    stride: (s_h, s_w),
                    pad,
                    bias_4d,
                    autotune,
                    seed,
                }
            },
        )
}

#[derive(Debug, Clone, Copy)]
struct PoolCase {
    /// `(m, n_H_prev, n_W_prev, n_C)`.
    input: [usize; 4],
    kernel: (usize, usize),
    stride: (usize, usize),
    seed: u32,
}

impl PoolCase {
    fn params(&self, mode: PoolMode, ties: Ties) -> PoolParams {
        PoolParams::new(1, 1, mode)
            .with_kernel(self.kernel.0, self.kernel.1)
            .with_stride(self.stride.0, self.stride.1)
            .with_ties(ties)
    }

    fn valid(&self) -> bool {
        self.input[1] >= self.kernel.0 && self.input[2] >= self.kernel.1
    }

    /// `(m, n_H, n_W, n_C)`.
    fn output_shape(&self) -> [usize; 4] {
        let [m, h, w, c] = self.input;
        [
            m,
            (h - self.kernel.0) / self.stride.0 + 1,
            (w - self.kernel.1) / self.stride.1 + 1,
            c,
        ]
    }
}

fn pool_case() -> impl Strategy<Value = PoolCase> {
    (
        (1usize..=4, 1usize..=17, 1usize..=17, 1usize..=37),
        (1usize..=5, 1usize..=5, 1usize..=4, 1usize..=4),
        any::<u32>(),
    )
        .prop_map(|((m, h, w, c), (f_h, f_w, s_h, s_w), seed)| PoolCase {
            input: [m, h, w, c],
            kernel: (f_h, f_w),
            stride: (s_h, s_w),
            seed,
        })
}

fn mode() -> impl Strategy<Value = PoolMode> {
    prop_oneof![Just(PoolMode::Max), Just(PoolMode::Average)]
}

fn ties() -> impl Strategy<Value = Ties> {
    prop_oneof![Just(Ties::EveryMax), Just(Ties::FirstMax)]
}

// ---------------------------------------------------------------------------------------------
// Convolution
// ---------------------------------------------------------------------------------------------

/// Random inputs for a conv case: `A_prev`, `W`, `b` (in the case's bias shape) and `dZ`.
fn conv_inputs(
    case: &ConvCase,
    output: [usize; 4],
) -> (Array4<f32>, Array4<f32>, ndarray::ArrayD<f32>, Array4<f32>) {
    let mut rng = NumpyRng::seed(case.seed);
    let a = randn_f32(&mut rng, case.input);
    let w = randn_f32(
        &mut rng,
        [case.kernel.0, case.kernel.1, case.input[3], case.c_out],
    );
    let b = randn_f32(&mut rng, [1, 1, 1, case.c_out]).into_dyn();
    let b = if case.bias_4d {
        b
    } else {
        b.into_shape_with_order(vec![case.c_out])
            .expect("n_C values")
    };
    let dz = randn_f32(&mut rng, output);
    (a, w, b, dz)
}

fn run_conv_case(case: &ConvCase) -> Result<ConvAgreement, TestCaseError> {
    let geometry = wgpu_cnn::ConvGeometry::new(
        case.input,
        [case.kernel.0, case.kernel.1, case.input[3], case.c_out],
        case.params(),
    )
    .map_err(|e| fail(format!("valid case rejected: {e:?}")))?;
    let (a, w, b, dz) = conv_inputs(case, geometry.output_shape());
    let g = if case.autotune {
        gpu()
    } else {
        gpu_without_autotune()
    };
    compare_conv(g, &a, &w, &b, case.params(), &dz).map_err(fail)
}

fn report_conv(a: &ConvAgreement) -> String {
    [
        describe("Z", &a.z),
        describe("dA_prev", &a.da_prev),
        describe("dW", &a.dw),
        describe("db", &a.db),
    ]
    .join("; ")
}

fn merge_conv(total: &mut ConvAgreement, one: ConvAgreement) {
    total.z.merge(one.z);
    total.da_prev.merge(one.da_prev);
    total.dw.merge(one.dw);
    total.db.merge(one.db);
}

#[test]
fn conv_forward_and_backward_match_cpu_reference() {
    check_property(
        "conv_forward_and_backward_match_cpu_reference",
        conv_case(),
        ConvAgreement::default(),
        |case, total| {
            prop_assume!(case.valid());
            merge_conv(total, run_conv_case(&case)?);
            Ok(())
        },
        report_conv,
    );
}

/// Corners that random sizes reach only by luck: 1x1 images, a kernel filling the padded input,
/// strides larger than the kernel (inputs no window reads get exactly zero gradient), padding on
/// one side only, 37 channels, rectangular kernels, the largest weights.
#[test]
fn conv_matches_cpu_reference_on_corner_cases() {
    let cases = [
        // 1x1 image, 1x1 kernel, no padding.
        ([1, 1, 1, 1], 1, (1, 1), (1, 1), Padding::uniform(0)),
        // 1x1 image, kernel as large as the padded input.
        (
            [2, 1, 1, 5],
            3,
            (4, 4),
            (1, 1),
            Padding::explicit(3, 0, 0, 3),
        ),
        // Stride larger than the kernel on both axes: rows and columns no window touches.
        ([3, 17, 17, 37], 37, (2, 1), (4, 3), Padding::uniform(0)),
        // Stride larger than the kernel with padding on one side of each axis.
        (
            [4, 9, 13, 6],
            5,
            (1, 2),
            (3, 4),
            Padding::explicit(0, 3, 2, 0),
        ),
        // Rectangular kernel, rectangular stride, asymmetric padding, odd channel counts.
        (
            [2, 17, 5, 37],
            3,
            (5, 2),
            (2, 1),
            Padding::explicit(1, 3, 0, 2),
        ),
        // Padding larger than the kernel: whole output rows see only zeros (Z = b).
        ([1, 3, 4, 2], 4, (1, 1), (1, 2), Padding::uniform(3)),
        // The largest weights the properties draw (5 x 5 x 37 x 37 floats, 137 KB), stride 1.
        ([2, 9, 8, 37], 37, (5, 5), (1, 1), Padding::uniform(2)),
        // The same weights with stride 2 and a batch of 4.
        (
            [4, 17, 16, 37],
            37,
            (5, 5),
            (2, 2),
            Padding::explicit(2, 1, 0, 3),
        ),
    ];
    let mut total = ConvAgreement::default();
    for (seed, (input, c_out, kernel, stride, pad)) in (1u32..).zip(cases) {
        for autotune in [true, false] {
            let case = ConvCase {
                input,
                c_out,
                kernel,
                stride,
                pad: PadChoice::Explicit(pad),
                bias_4d: seed % 2 == 0,
                autotune,
                seed,
            };
            assert!(case.valid(), "{case:?}");
            let agreement = run_conv_case(&case).unwrap_or_else(|e| panic!("{case:?}: {e}"));
            merge_conv(&mut total, agreement);
        }
    }
    eprintln!("corner cases: {}", report_conv(&total));
}

/// Seed 001's model uses `SAME` padding: a 64x64 input and a 4x4 kernel with stride 1 pad 1
/// above and left, 2 below and right. A small version (2 images, 3 -> 8 channels) on the GPU.
#[test]
fn conv_with_same_padding_matches_cpu_reference() {
    let pad = Padding::same((64, 64), (4, 4), (1, 1));
    assert_eq!(pad, Padding::explicit(1, 2, 1, 2));
    let case = ConvCase {
        input: [2, 64, 64, 3],
        c_out: 8,
        kernel: (4, 4),
        stride: (1, 1),
        pad: PadChoice::Same,
        bias_4d: true,
        autotune: true,
        seed: 1,
    };
    assert_eq!(case.padding(), pad);
    let geometry =
        wgpu_cnn::ConvGeometry::new(case.input, [4, 4, 3, 8], case.params()).expect("geometry");
    assert_eq!(geometry.output_shape(), [2, 64, 64, 8], "SAME keeps 64x64");
    let agreement = run_conv_case(&case).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("SAME padding 64x64: {}", report_conv(&agreement));
}

// ---------------------------------------------------------------------------------------------
// zero_pad
// ---------------------------------------------------------------------------------------------

#[test]
fn zero_pad_matches_cpu_reference_with_asymmetric_padding() {
    let strategy = (
        (1usize..=4, 1usize..=17, 1usize..=17, 1usize..=37),
        padding(),
        any::<u32>(),
    );
    check_property(
        "zero_pad_matches_cpu_reference_with_asymmetric_padding",
        strategy,
        Agreement::default(),
        |((m, h, w, c), pad, seed), total| {
            let x = randn_f32(&mut NumpyRng::seed(seed), [m, h, w, c]);
            total.merge(compare_zero_pad(gpu(), &x, pad).map_err(fail)?);
            Ok(())
        },
        |a| format!("{} elements, all exactly equal", a.elements),
    );
}

// ---------------------------------------------------------------------------------------------
// Pooling
// ---------------------------------------------------------------------------------------------

#[test]
fn pool_forward_and_backward_match_cpu_reference() {
    check_property(
        "pool_forward_and_backward_match_cpu_reference",
        (pool_case(), mode(), ties()),
        [PoolAgreement::default(); 2],
        |(case, mode, ties), total| {
            prop_assume!(case.valid());
            let mut rng = NumpyRng::seed(case.seed);
            let a = randn_f32(&mut rng, case.input);
            let da = randn_f32(&mut rng, case.output_shape());
            let agreement = compare_pool(gpu(), &a, case.params(mode, ties), &da).map_err(fail)?;
            let slot = &mut total[usize::from(mode == PoolMode::Average)];
            slot.forward.merge(agreement.forward);
            slot.backward.merge(agreement.backward);
            Ok(())
        },
        |[max, average]| {
            [
                describe("max A", &max.forward),
                describe("max dA_prev", &max.backward),
                describe("average A", &average.forward),
                describe("average dA_prev", &average.backward),
            ]
            .join("; ")
        },
    );
}

/// How many windows of `a` hold their maximum more than once.
fn windows_with_ties(a: &Array4<f32>, case: &PoolCase) -> usize {
    let [m, out_h, out_w, c] = case.output_shape();
    let (f_h, f_w) = case.kernel;
    let mut tied = 0;
    for i in 0..m {
        for h in 0..out_h {
            for w in 0..out_w {
                for ch in 0..c {
                    let window = a.slice(ndarray::s![
                        i,
                        h * case.stride.0..h * case.stride.0 + f_h,
                        w * case.stride.1..w * case.stride.1 + f_w,
                        ch
                    ]);
                    let max = window.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                    tied += usize::from(window.iter().filter(|&&v| v == max).count() > 1);
                }
            }
        }
    }
    tied
}

/// Inputs in -2..=2 make most windows hold several maxima; gradients in -4..=4 make every sum
/// exact, so the GPU must agree with the CPU bit for bit under either tie rule.
fn max_pool_ties_agree_exactly(ties: Ties, name: &str) {
    check_property(
        name,
        pool_case(),
        (0usize, 0usize),
        |case, (tied, windows)| {
            prop_assume!(case.valid());
            let mut rng = NumpyRng::seed(case.seed);
            let a = small_integers(&mut rng, case.input, -2, 2);
            let da = small_integers(&mut rng, case.output_shape(), -4, 4);
            let params = case.params(PoolMode::Max, ties);

            let g = gpu();
            let run = || -> Result<_, wgpu_cnn::Error> {
                let ta = g.upload(&a)?;
                let (out, cache) = g.pool_forward(&ta, params)?;
                let da_prev = g.pool_backward(&g.upload(&da)?, &cache)?;
                Ok((g.download::<Ix4>(&out)?, g.download::<Ix4>(&da_prev)?))
            };
            let (out, da_prev) = run().map_err(|e| fail(format!("GPU: {e:?}")))?;
            let (out_ref, cache) = cpu::pool_forward(common::to_f64(&a).view(), params)
                .map_err(|e| fail(format!("CPU: {e:?}")))?;
            let da_prev_ref = cpu::pool_backward(common::to_f64(&da).view(), &cache)
                .map_err(|e| fail(format!("CPU: {e:?}")))?;
            check_exact("A (max)", &out, &out_ref).map_err(fail)?;
            check_exact("dA_prev (max, ties)", &da_prev, &da_prev_ref).map_err(fail)?;
            *tied += windows_with_ties(&a, &case);
            *windows += out.len();
            Ok(())
        },
        |(tied, windows)| {
            assert!(
                *tied > 0,
                "only {tied} of {windows} windows had ties: the property did not test ties"
            );
            format!("exact agreement; {tied} of {windows} windows held tied maxima")
        },
    );
}

#[test]
fn max_pool_ties_route_gradient_to_every_max_as_cpu_reference() {
    max_pool_ties_agree_exactly(
        Ties::EveryMax,
        "max_pool_ties_route_gradient_to_every_max_as_cpu_reference",
    );
}

#[test]
fn max_pool_ties_route_gradient_to_first_max_as_cpu_reference() {
    max_pool_ties_agree_exactly(
        Ties::FirstMax,
        "max_pool_ties_route_gradient_to_first_max_as_cpu_reference",
    );
}

/// Max pools under the first-maximum rule whose windows do not overlap, with channels in fours
/// (seed 001's pools): the GPU keeps each window's first maximum from the forward pass and the
/// backward writes only that element. Small integers (ties in most windows), some NaN, windows
/// 1..=5 with strides up to two past them (uncovered rows and columns), and every way in: a fresh
/// output, an output the caller passes in full of garbage (which must be zeroed), and the fused
/// ReLU backward, against the CPU reference, exactly.
#[test]
fn max_pool_first_max_backward_from_the_forward_maxima_matches_cpu_reference() {
    let strategy = (
        (1usize..=3, 1usize..=5, 1usize..=5, 1usize..=5),
        (0usize..=2, 0usize..=2, 1usize..=3, 1usize..=3),
        any::<u32>(),
    )
        .prop_map(|((m, f_h, f_w, c4), (x_h, x_w, o_h, o_w), seed)| PoolCase {
            input: [m, o_h * (f_h + x_h), o_w * (f_w + x_w), 4 * c4],
            kernel: (f_h, f_w),
            stride: (f_h + x_h, f_w + x_w),
            seed,
        });
    check_property(
        "max_pool_first_max_backward_from_the_forward_maxima_matches_cpu_reference",
        strategy,
        0usize,
        |case, tied| {
            let mut rng = NumpyRng::seed(case.seed);
            let mut a = small_integers(&mut rng, case.input, -2, 2);
            for v in a.iter_mut().step_by(23) {
                *v = f32::NAN;
            }
            let da = small_integers(&mut rng, case.output_shape(), -4, 4);
            let params = case.params(PoolMode::Max, Ties::FirstMax);
            let g = gpu();
            let run = || -> Result<_, wgpu_cnn::Error> {
                let (_, cache) = g.pool_forward(&g.upload(&a)?, params)?;
                let gda = g.upload(&da)?;
                let fresh = g.pool_backward(&gda, &cache)?;
                let mut into = g.upload(&Array4::from_elem(case.input, 9.0f32))?;
                g.pool_backward_into(&gda, &cache, &mut into)?;
                let relu = g.pool_relu_backward(&gda, &cache)?;
                Ok([fresh, into, relu].map(|t| g.download::<Ix4>(&t)))
            };
            let [fresh, into, relu] = run().map_err(|e| fail(format!("GPU: {e:?}")))?;
            let a64 = common::to_f64(&a);
            let (_, cache) =
                cpu::pool_forward(a64.view(), params).map_err(|e| fail(format!("CPU: {e:?}")))?;
            let want = cpu::pool_backward(common::to_f64(&da).view(), &cache)
                .map_err(|e| fail(format!("CPU: {e:?}")))?;
            let (_, relu_cache) = cpu::relu_forward(a64.clone().into_dyn().view())
                .map_err(|e| fail(format!("CPU: {e:?}")))?;
            let want_relu = cpu::relu_backward(want.clone().into_dyn().view(), &relu_cache)
                .map_err(|e| fail(format!("CPU: {e:?}")))?
                .into_dimensionality::<Ix4>()
                .map_err(|e| fail(format!("CPU: {e:?}")))?;
            let download = |r: Result<Array4<f32>, wgpu_cnn::Error>| {
                r.map_err(|e| fail(format!("download: {e:?}")))
            };
            check_exact("dA_prev", &download(fresh)?, &want).map_err(fail)?;
            check_exact("dA_prev (into)", &download(into)?, &want).map_err(fail)?;
            check_exact("dZ (fused ReLU)", &download(relu)?, &want_relu).map_err(fail)?;
            *tied += windows_with_ties(&a, &case);
            Ok(())
        },
        |tied| {
            assert!(
                *tied > 0,
                "no window had ties: the property did not test ties"
            );
            format!("exact agreement; {tied} windows held tied maxima")
        },
    );
}

/// Every element of a window equal: `EveryMax` gives each element the sum of the gradients of
/// the windows covering it; `FirstMax` gives only each window's top-left element its gradient.
/// Checked against hand-computed values, independently of the CPU reference.
#[test]
fn max_pool_all_equal_window_routes_gradient_by_tie_rule() {
    let g = gpu();
    let a = Array4::<f32>::from_elem((1, 3, 3, 1), 7.0);
    let da = ndarray::arr2(&[[1.0f32, 2.0], [4.0, 8.0]])
        .into_shape_with_order((1, 2, 2, 1))
        .expect("4-d");
    let run = |ties| {
        let params = PoolParams::new(2, 1, PoolMode::Max).with_ties(ties);
        let (_, cache) = g
            .pool_forward(&g.upload(&a).expect("upload"), params)
            .expect("forward");
        let da_prev = g
            .pool_backward(&g.upload(&da).expect("upload"), &cache)
            .expect("backward");
        g.download::<Ix4>(&da_prev)
            .expect("download")
            .into_shape_with_order((3, 3))
            .expect("3x3")
    };
    let every = ndarray::arr2(&[[1.0f32, 3.0, 2.0], [5.0, 15.0, 10.0], [4.0, 12.0, 8.0]]);
    let first = ndarray::arr2(&[[1.0f32, 2.0, 0.0], [4.0, 8.0, 0.0], [0.0, 0.0, 0.0]]);
    assert_eq!(run(Ties::EveryMax), every);
    assert_eq!(run(Ties::FirstMax), first);
}
