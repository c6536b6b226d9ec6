//! The CPU reference path (`wgpu_cnn::cpu`) against finite differences, the numbers printed in
//! the seeds, hand-made tie cases, and its error cases.

#[path = "common/numpy_rng.rs"]
mod numpy_rng;

use ndarray::{arr1, arr2, s, Array, Array1, Array4, Dimension, Ix1, Ix3};
use numpy_rng::NumpyRng;
use wgpu_cnn::cpu::{
    conv_backward, conv_forward, conv_single_step, create_mask_from_window, distribute_value,
    first_max_mask, pool_backward, pool_forward, zero_pad, ConvCache, PoolCache,
};
use wgpu_cnn::{ConvParams, Error, Padding, PoolMode, PoolParams, Ties};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Step of the centered differences.
const H: f64 = 1e-5;
/// Largest relative error accepted between analytic and numerical gradients.
const MAX_REL_ERROR: f64 = 1e-7;

/// cs231n's `eval_numerical_gradient`: the centered difference `(f(x + h) - f(x - h)) / 2h` of
/// `f` along each element of `x`.
fn eval_numerical_gradient<D: Dimension>(
    f: impl Fn(&Array<f64, D>) -> f64,
    x: &Array<f64, D>,
) -> Array<f64, D> {
    let mut x = x.to_owned();
    let mut grad = x.clone(); // same memory order as `x`
    for ix in 0..x.len() {
        let old = x.as_slice_memory_order().expect("owned array")[ix];
        x.as_slice_memory_order_mut().expect("owned array")[ix] = old + H;
        let fxph = f(&x);
        x.as_slice_memory_order_mut().expect("owned array")[ix] = old - H;
        let fxmh = f(&x);
        x.as_slice_memory_order_mut().expect("owned array")[ix] = old;
        grad.as_slice_memory_order_mut().expect("owned array")[ix] = (fxph - fxmh) / (2.0 * H);
    }
    grad
}

/// cs231n's `rel_error`: `max |x - y| / max(1e-8, |x| + |y|)`, elements in logical order.
fn rel_error<'a>(
    x: impl IntoIterator<Item = &'a f64>,
    y: impl IntoIterator<Item = &'a f64>,
) -> f64 {
    x.into_iter()
        .zip(y)
        .map(|(x, y)| (x - y).abs() / (x.abs() + y.abs()).max(1e-8))
        .fold(0.0, f64::max)
}

fn assert_close(actual: f64, expected: f64, tol: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tol,
        "{what}: got {actual:.15}, expected {expected:.15} (tolerance {tol:e})"
    );
}

fn assert_all_close<'a>(
    actual: impl IntoIterator<Item = &'a f64>,
    expected: &[f64],
    tol: f64,
    what: &str,
) {
    let actual: Vec<f64> = actual.into_iter().copied().collect();
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (k, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert_close(a, e, tol, &format!("{what}[{k}]"));
    }
}

fn mean(x: &Array4<f64>) -> f64 {
    x.sum() / x.len() as f64
}

// ---------------------------------------------------------------------------------------------
// Finite-difference gradient checks (f64)
// ---------------------------------------------------------------------------------------------

/// Checks `conv_backward` against centered differences of `loss = sum(Z * dout)` with respect to
/// `A_prev`, `W` and `b`, for random inputs and a random `dout`.
fn check_conv_gradients(a_shape: [usize; 4], w_shape: [usize; 4], params: ConvParams, seed: u32) {
    let mut rng = NumpyRng::seed(seed);
    let a_prev = rng.randn4(a_shape);
    let w = rng.randn4(w_shape);
    let b = rng
        .randn(&[w_shape[3]])
        .into_dimensionality::<Ix1>()
        .expect("1-d");
    let (z, cache) = conv_forward(a_prev.view(), w.view(), b.view(), params).expect("forward");
    let dout = rng.randn4(cache.geometry.output_shape());
    let grads = conv_backward(dout.view(), &cache).expect("backward");
    let loss = |a: &Array4<f64>, w: &Array4<f64>, b: &Array1<f64>| {
        let (z, _) = conv_forward(a.view(), w.view(), b.view(), params).expect("forward");
        (z * &dout).sum()
    };
    assert_eq!(z.shape(), dout.shape());

    let da_num = eval_numerical_gradient(|a| loss(a, &w, &b), &a_prev);
    let dw_num = eval_numerical_gradient(|w_| loss(&a_prev, w_, &b), &w);
    let db_num = eval_numerical_gradient(|b_| loss(&a_prev, &w, b_), &b);

    assert_eq!(grads.da_prev.shape(), a_prev.shape());
    assert_eq!(grads.dw.shape(), w.shape());
    assert_eq!(grads.db.shape(), &[1, 1, 1, w_shape[3]]);
    let (e_da, e_dw, e_db) = (
        rel_error(&grads.da_prev, &da_num),
        rel_error(&grads.dw, &dw_num),
        rel_error(&grads.db, &db_num),
    );
    assert!(
        e_da < MAX_REL_ERROR && e_dw < MAX_REL_ERROR && e_db < MAX_REL_ERROR,
        "{params:?}: relative errors dA_prev {e_da:e}, dW {e_dw:e}, db {e_db:e}"
    );
}

#[test]
fn conv_backward_matches_finite_differences_stride_1_pad_1() {
    check_conv_gradients([2, 5, 5, 3], [3, 3, 3, 4], ConvParams::new(1, 1), 1);
}

#[test]
fn conv_backward_matches_finite_differences_stride_2_pad_2() {
    // The seeds' hyperparameters, smaller batch.
    check_conv_gradients([2, 4, 4, 3], [2, 2, 3, 5], ConvParams::new(2, 2), 2);
}

#[test]
fn conv_backward_matches_finite_differences_pad_0() {
    check_conv_gradients([2, 5, 4, 2], [3, 2, 2, 3], ConvParams::new(1, 0), 3);
}

#[test]
fn conv_backward_matches_finite_differences_asymmetric_padding_rectangular_kernel() {
    let params = ConvParams::new(1, 0)
        .with_stride(2, 1)
        .with_padding(Padding::explicit(0, 2, 1, 0));
    check_conv_gradients([2, 5, 4, 2], [2, 3, 2, 3], params, 4);
}

#[test]
fn conv_backward_matches_finite_differences_stride_larger_than_kernel() {
    let params = ConvParams::new(3, 1).with_stride(3, 2);
    check_conv_gradients([2, 7, 6, 2], [2, 1, 2, 3], params, 5);
}

#[test]
fn conv_backward_matches_finite_differences_same_padding() {
    let params = ConvParams::new(1, 0).with_padding(Padding::same((6, 6), (4, 4), (1, 1)));
    check_conv_gradients([1, 6, 6, 2], [4, 4, 2, 2], params, 6);
}

/// The pooling configurations the gradient checks run: square and rectangular windows, strides
/// smaller than, equal to and larger than the window.
fn pool_configs(mode: PoolMode) -> Vec<(PoolParams, [usize; 4])> {
    vec![
        (PoolParams::new(2, 1, mode), [2, 5, 5, 3]),
        (PoolParams::new(3, 2, mode), [2, 7, 5, 2]),
        (PoolParams::new(2, 2, mode), [1, 6, 6, 2]),
        (
            PoolParams::new(1, 1, mode)
                .with_kernel(2, 3)
                .with_stride(1, 2),
            [2, 5, 7, 2],
        ),
        (PoolParams::new(2, 3, mode), [2, 8, 7, 2]),
    ]
}

/// The smallest gap between the largest and second largest element over all windows of `x`.
fn smallest_max_gap(x: &Array4<f64>, params: PoolParams) -> f64 {
    let (f_h, f_w) = params.kernel;
    let (s_h, s_w) = params.stride;
    let (m, n_h_prev, n_w_prev, n_c) = x.dim();
    let mut gap = f64::INFINITY;
    for i in 0..m {
        for h in 0..=(n_h_prev - f_h) / s_h {
            for w in 0..=(n_w_prev - f_w) / s_w {
                for c in 0..n_c {
                    let window = x.slice(s![i, h * s_h..h * s_h + f_h, w * s_w..w * s_w + f_w, c]);
                    let mut v: Vec<f64> = window.iter().copied().collect();
                    v.sort_by(|a, b| b.total_cmp(a));
                    if v.len() > 1 {
                        gap = gap.min(v[0] - v[1]);
                    }
                }
            }
        }
    }
    gap
}

/// Replaces each element of `x` by its rank, spread evenly over `[-2, 2)`: the same order, but
/// neighbours at least `4 / x.len()` apart, so no window is near a tie.
fn spread_ranks(x: &Array4<f64>) -> Array4<f64> {
    let values: Vec<f64> = x.iter().copied().collect();
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let step = 4.0 / values.len() as f64;
    for (rank, &index) in order.iter().enumerate() {
        ranks[index] = -2.0 + step * rank as f64;
    }
    Array4::from_shape_vec(x.raw_dim(), ranks).expect("same length")
}

/// Checks `pool_backward` against centered differences of `loss = sum(A * dout)`.
fn check_pool_gradients(params: PoolParams, a_shape: [usize; 4], seed: u32) {
    let mut rng = NumpyRng::seed(seed);
    let a_prev = match params.mode {
        PoolMode::Average => rng.randn4(a_shape),
        PoolMode::Max => spread_ranks(&rng.randn4(a_shape)),
    };
    if params.mode == PoolMode::Max {
        // Max is differentiable only away from ties; the perturbation must not reorder a window.
        let gap = smallest_max_gap(&a_prev, params);
        assert!(
            gap > 100.0 * H,
            "{params:?}: test input has a near tie ({gap:e})"
        );
    }
    let (_, cache) = pool_forward(a_prev.view(), params).expect("forward");
    let dout = rng.randn4(cache.geometry.output_shape());
    let da_prev = pool_backward(dout.view(), &cache).expect("backward");
    let loss = |a: &Array4<f64>| {
        let (out, _) = pool_forward(a.view(), params).expect("forward");
        (out * &dout).sum()
    };
    let da_num = eval_numerical_gradient(loss, &a_prev);
    assert_eq!(da_prev.shape(), a_prev.shape());
    let e = rel_error(&da_prev, &da_num);
    assert!(e < MAX_REL_ERROR, "{params:?}: relative error {e:e}");
}

#[test]
fn average_pool_backward_matches_finite_differences() {
    for (k, (params, shape)) in pool_configs(PoolMode::Average).into_iter().enumerate() {
        check_pool_gradients(params, shape, 10 + k as u32);
    }
}

#[test]
fn max_pool_backward_matches_finite_differences_without_ties() {
    for (k, (params, shape)) in pool_configs(PoolMode::Max).into_iter().enumerate() {
        for ties in [Ties::EveryMax, Ties::FirstMax] {
            check_pool_gradients(params.with_ties(ties), shape, 20 + k as u32);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The seeds' printed outputs (seed 003), from the seeds' own inputs (np.random.seed(1))
// ---------------------------------------------------------------------------------------------

/// Tolerance on numbers printed with 8 decimals.
const TOL_8: f64 = 1e-8;
/// Tolerance on numbers printed with 12 significant digits.
const TOL_12: f64 = 1e-11;

#[test]
fn zero_pad_reproduces_seed_example() {
    let mut rng = NumpyRng::seed(1);
    let x = rng.randn4([4, 3, 3, 2]);
    let x_pad = zero_pad(x.view(), 2).expect("zero_pad");
    assert_eq!(x.shape(), &[4, 3, 3, 2]);
    assert_eq!(x_pad.shape(), &[4, 7, 7, 2]);
    assert_all_close(
        x.slice(s![1, 1, .., ..]),
        &[
            0.90085595,
            -0.68372786,
            -0.12289023,
            -0.93576943,
            -0.26788808,
            0.53035547,
        ],
        TOL_8,
        "x[1,1]",
    );
    assert!(x_pad.slice(s![1, 1, .., ..]).iter().all(|&v| v == 0.0));
    assert_eq!(x_pad.slice(s![.., 2..5, 2..5, ..]), x);
}

#[test]
fn conv_single_step_reproduces_seed_example() {
    let mut rng = NumpyRng::seed(1);
    let a_slice_prev = rng
        .randn(&[4, 4, 3])
        .into_dimensionality::<Ix3>()
        .expect("3-d");
    let w = rng
        .randn(&[4, 4, 3])
        .into_dimensionality::<Ix3>()
        .expect("3-d");
    let b = rng.randn(&[1, 1, 1]);
    let z = conv_single_step(a_slice_prev.view(), w.view(), b[[0, 0, 0]]).expect("step");
    assert_close(z, -6.99908945068, TOL_12, "Z");
}

/// The seed's `conv_forward` example: `Z`, its cache, and the inputs.
fn seed_conv_forward() -> (Array4<f64>, ConvCache<f64>) {
    let mut rng = NumpyRng::seed(1);
    let a_prev = rng.randn4([10, 4, 4, 3]);
    let w = rng.randn4([2, 2, 3, 8]);
    let b = rng.randn4([1, 1, 1, 8]);
    conv_forward(a_prev.view(), w.view(), b.view(), ConvParams::new(2, 2)).expect("forward")
}

#[test]
fn conv_forward_reproduces_seed_example() {
    let (z, cache) = seed_conv_forward();
    assert_eq!(z.shape(), &[10, 4, 4, 8]);
    assert_close(mean(&z), 0.0489952035289, TOL_12, "Z's mean");
    assert_all_close(
        z.slice(s![3, 2, 1, ..]),
        &[
            -0.61490741,
            -6.7439236,
            -2.55153897,
            1.75698377,
            3.56208902,
            0.53036437,
            5.18531798,
            8.75898442,
        ],
        TOL_8,
        "Z[3,2,1]",
    );
    assert_all_close(
        cache.a_prev.slice(s![1, 2, 3, ..]),
        &[-0.20075807, 0.18656139, 0.41005165],
        TOL_8,
        "cache_conv[0][1][2][3]",
    );
}

#[test]
fn conv_backward_reproduces_seed_example_means() {
    let (z, cache) = seed_conv_forward();
    let grads = conv_backward(z.view(), &cache).expect("backward");
    assert_close(mean(&grads.da_prev), 1.45243777754, TOL_12, "dA_mean");
    assert_close(mean(&grads.dw), 1.72699145831, TOL_12, "dW_mean");
    assert_close(mean(&grads.db), 7.83923256462, TOL_12, "db_mean");
}

#[test]
fn pool_forward_reproduces_seed_example_max_and_average() {
    let mut rng = NumpyRng::seed(1);
    let a_prev = rng.randn4([2, 4, 4, 3]);
    let (a, _) = pool_forward(a_prev.view(), PoolParams::new(3, 2, PoolMode::Max)).expect("max");
    assert_eq!(a.shape(), &[2, 1, 1, 3]);
    assert_all_close(
        &a,
        &[
            1.74481176, 0.86540763, 1.13376944, 1.13162939, 1.51981682, 2.18557541,
        ],
        TOL_8,
        "A (max)",
    );
    let (a, _) =
        pool_forward(a_prev.view(), PoolParams::new(3, 2, PoolMode::Average)).expect("average");
    assert_all_close(
        &a,
        &[
            0.02105773,
            -0.20328806,
            -0.40389855,
            -0.22154621,
            0.51716526,
            0.48155844,
        ],
        TOL_8,
        "A (average)",
    );
}

#[test]
fn pool_backward_reproduces_seed_example_max_and_average() {
    let mut rng = NumpyRng::seed(1);
    let a_prev = rng.randn4([5, 5, 3, 2]);
    let (_, cache_max) =
        pool_forward(a_prev.view(), PoolParams::new(2, 1, PoolMode::Max)).expect("max");
    let da = rng.randn4([5, 4, 2, 2]);
    assert_close(mean(&da), 0.145713902729, TOL_12, "mean of dA");

    let da_prev = pool_backward(da.view(), &cache_max).expect("max backward");
    assert_all_close(
        da_prev.slice(s![1, 1, .., ..]),
        &[0.0, 0.0, 5.05844394, -1.68282702, 0.0, 0.0],
        TOL_8,
        "dA_prev[1,1] (max)",
    );

    let (_, cache_average) =
        pool_forward(a_prev.view(), PoolParams::new(2, 1, PoolMode::Average)).expect("average");
    let da_prev = pool_backward(da.view(), &cache_average).expect("average backward");
    assert_all_close(
        da_prev.slice(s![1, 1, .., ..]),
        &[
            0.08485462,
            0.2787552,
            1.26461098,
            -0.25749373,
            1.17975636,
            -0.53624893,
        ],
        TOL_8,
        "dA_prev[1,1] (average)",
    );
}

#[test]
fn create_mask_from_window_reproduces_seed_example() {
    let mut rng = NumpyRng::seed(1);
    let x = rng.randn(&[2, 3]).into_dimensionality().expect("2-d");
    assert_all_close(
        &x,
        &[
            1.62434536,
            -0.61175641,
            -0.52817175,
            -1.07296862,
            0.86540763,
            -2.3015387,
        ],
        TOL_8,
        "x",
    );
    let mask = create_mask_from_window(x.view()).expect("mask");
    assert_eq!(mask, arr2(&[[true, false, false], [false, false, false]]));
}

#[test]
fn distribute_value_reproduces_seed_example() {
    let a = distribute_value(2.0_f64, (2, 2)).expect("distribute");
    assert_eq!(a, arr2(&[[0.5, 0.5], [0.5, 0.5]]));
}

// ---------------------------------------------------------------------------------------------
// Ties in max pooling
// ---------------------------------------------------------------------------------------------

#[test]
fn create_mask_from_window_marks_every_max() {
    let x = arr2(&[[1.0_f64, 7.0, 2.0], [7.0, 0.0, -3.0]]);
    let mask = create_mask_from_window(x.view()).expect("mask");
    assert_eq!(mask, arr2(&[[false, true, false], [true, false, false]]));
}

#[test]
fn first_max_mask_marks_only_the_first_max_in_row_major_order() {
    let x = arr2(&[[1.0_f64, 2.0, 7.0], [7.0, 0.0, 7.0]]);
    let mask = first_max_mask(x.view()).expect("mask");
    assert_eq!(mask, arr2(&[[false, false, true], [false, false, false]]));
    // Row-major order of the window, also for a transposed (column-major) view.
    let t = x.t();
    let mask = first_max_mask(t).expect("mask");
    assert_eq!(mask, arr2(&[[false, true], [false, false], [false, false]]));
}

/// A 3x3 image whose elements are all equal: every 2x2 window (stride 1) is one big tie.
fn all_equal_pool_backward(ties: Ties) -> Array4<f64> {
    let a_prev = Array4::from_elem((1, 3, 3, 1), 0.5);
    let params = PoolParams::new(2, 1, PoolMode::Max).with_ties(ties);
    let (a, cache) = pool_forward(a_prev.view(), params).expect("forward");
    assert!(a.iter().all(|&v| v == 0.5));
    pool_backward(Array4::ones((1, 2, 2, 1)).view(), &cache).expect("backward")
}

#[test]
fn max_pool_ties_route_gradient_to_every_max() {
    let da_prev = all_equal_pool_backward(Ties::EveryMax);
    // Each element gets 1 from every window that covers it.
    let expected = arr2(&[[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]);
    assert_eq!(da_prev.slice(s![0, .., .., 0]), expected);
}

#[test]
fn max_pool_first_max_ties_route_gradient_to_first_max_only() {
    let da_prev = all_equal_pool_backward(Ties::FirstMax);
    // Each window sends its 1 to its top-left element only.
    let expected = arr2(&[[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]);
    assert_eq!(da_prev.slice(s![0, .., .., 0]), expected);
}

#[test]
fn max_pool_ties_in_one_window_split_by_rule() {
    // One window, two maxima at (0, 1) and (1, 0).
    let window = [[1.0, 3.0], [3.0, 2.0]];
    let a_prev = Array4::from_shape_fn((1, 2, 2, 1), |(_, h, w, _)| window[h][w]);
    let da = Array4::from_elem((1, 1, 1, 1), 2.5);
    let run = |ties| {
        let params = PoolParams::new(2, 2, PoolMode::Max).with_ties(ties);
        let (_, cache) = pool_forward(a_prev.view(), params).expect("forward");
        pool_backward(da.view(), &cache).expect("backward")
    };
    let every = run(Ties::EveryMax);
    assert_eq!(
        every.slice(s![0, .., .., 0]),
        arr2(&[[0.0, 2.5], [2.5, 0.0]])
    );
    let first = run(Ties::FirstMax);
    assert_eq!(
        first.slice(s![0, .., .., 0]),
        arr2(&[[0.0, 2.5], [0.0, 0.0]])
    );
}

// ---------------------------------------------------------------------------------------------
// Stride: backward reads dA[i, h, w, c], not dA[i, vert_start, horiz_start, c]
// ---------------------------------------------------------------------------------------------

#[test]
fn pool_backward_with_stride_2_reads_each_outputs_own_gradient() {
    // 4x4 input, 2x2 windows, stride 2: four disjoint windows with distinct gradients.
    let a_prev = Array4::from_shape_fn((1, 4, 4, 1), |(_, h, w, _)| (4 * h + w) as f64);
    let da = Array4::from_shape_fn((1, 2, 2, 1), |(_, h, w, _)| (10 * (2 * h + w + 1)) as f64);
    let (_, cache) =
        pool_forward(a_prev.view(), PoolParams::new(2, 2, PoolMode::Average)).expect("forward");
    let da_prev = pool_backward(da.view(), &cache).expect("backward");
    for h in 0..4 {
        for w in 0..4 {
            assert_eq!(da_prev[[0, h, w, 0]], da[[0, h / 2, w / 2, 0]] / 4.0);
        }
    }
    let (_, cache) =
        pool_forward(a_prev.view(), PoolParams::new(2, 2, PoolMode::Max)).expect("forward");
    let da_prev = pool_backward(da.view(), &cache).expect("backward");
    // The maximum of each window is its bottom-right element.
    let expected = arr2(&[
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 10.0, 0.0, 20.0],
        [0.0, 0.0, 0.0, 0.0],
        [0.0, 30.0, 0.0, 40.0],
    ]);
    assert_eq!(da_prev.slice(s![0, .., .., 0]), expected);
}

// ---------------------------------------------------------------------------------------------
// zero_pad
// ---------------------------------------------------------------------------------------------

#[test]
fn zero_pad_with_asymmetric_padding_puts_zeros_on_each_side() {
    let mut rng = NumpyRng::seed(7);
    let x = rng.randn4([2, 3, 4, 2]);
    let (top, bottom, left, right) = (1, 2, 3, 0);
    let x_pad = zero_pad(x.view(), Padding::explicit(top, bottom, left, right)).expect("pad");
    assert_eq!(x_pad.shape(), &[2, 3 + top + bottom, 4 + left + right, 2]);
    for ((i, h, w, c), &v) in x_pad.indexed_iter() {
        let inside = (top..top + 3).contains(&h) && (left..left + 4).contains(&w);
        if inside {
            assert_eq!(v, x[[i, h - top, w - left, c]], "x_pad[{i},{h},{w},{c}]");
        } else {
            assert_eq!(v, 0.0, "x_pad[{i},{h},{w},{c}] is padding");
        }
    }
}

#[test]
fn zero_pad_with_pad_0_returns_the_input() {
    let mut rng = NumpyRng::seed(8);
    let x = rng.randn4([2, 3, 4, 2]);
    assert_eq!(zero_pad(x.view(), 0).expect("pad"), x);
    assert_eq!(zero_pad(x.view(), Padding::default()).expect("pad"), x);
}

#[test]
fn zero_pad_of_an_empty_batch_is_empty() {
    let x = Array4::<f64>::zeros((0, 3, 3, 2));
    assert_eq!(zero_pad(x.view(), 1).expect("pad").shape(), &[0, 5, 5, 2]);
}

// ---------------------------------------------------------------------------------------------
// Agreement between forms and float types
// ---------------------------------------------------------------------------------------------

#[test]
fn conv_forward_accepts_bias_as_vector_or_4d() {
    let mut rng = NumpyRng::seed(3);
    let a_prev = rng.randn4([2, 4, 4, 3]);
    let w = rng.randn4([2, 2, 3, 4]);
    let b4 = rng.randn4([1, 1, 1, 4]);
    let b1 = b4.iter().copied().collect::<Array1<f64>>();
    let params = ConvParams::new(1, 1);
    let (z4, _) = conv_forward(a_prev.view(), w.view(), b4.view(), params).expect("4-d bias");
    let (z1, _) = conv_forward(a_prev.view(), w.view(), b1.view(), params).expect("1-d bias");
    assert_eq!(z4, z1);
}

#[test]
fn f32_path_agrees_with_f64() {
    let (z64, cache64) = seed_conv_forward();
    let a32 = cache64.a_prev.mapv(|v| v as f32);
    let w32 = cache64.w.mapv(|v| v as f32);
    let b32 = cache64.b.mapv(|v| v as f32);
    let (z32, cache32) =
        conv_forward(a32.view(), w32.view(), b32.view(), ConvParams::new(2, 2)).expect("f32");
    let grads32 = conv_backward(z32.view(), &cache32).expect("f32 backward");
    let grads64 = conv_backward(z64.view(), &cache64).expect("f64 backward");
    let close = |a: &Array4<f32>, b: &Array4<f64>| {
        a.iter()
            .zip(b)
            .all(|(&x, &y)| (f64::from(x) - y).abs() <= 1e-4 * (1.0 + y.abs()))
    };
    assert!(close(&z32, &z64));
    assert!(close(&grads32.da_prev, &grads64.da_prev));
    assert!(close(&grads32.dw, &grads64.dw));
    assert!(close(&grads32.db, &grads64.db));
}

// ---------------------------------------------------------------------------------------------
// NaN
// ---------------------------------------------------------------------------------------------

#[test]
fn nan_inputs_do_not_panic() {
    let mut rng = NumpyRng::seed(9);
    let mut a_prev = rng.randn4([1, 4, 4, 2]);
    a_prev[[0, 1, 1, 0]] = f64::NAN;
    for mode in [PoolMode::Max, PoolMode::Average] {
        for ties in [Ties::EveryMax, Ties::FirstMax] {
            let params = PoolParams::new(2, 1, mode).with_ties(ties);
            let (a, cache) = pool_forward(a_prev.view(), params).expect("forward");
            assert!(
                a[[0, 0, 0, 0]].is_nan(),
                "{params:?}: NaN propagates forward"
            );
            let da = Array4::ones(a.raw_dim());
            pool_backward(da.view(), &cache).expect("backward");
        }
    }
    let window = arr2(&[[1.0, f64::NAN], [3.0, f64::NAN]]);
    assert!(create_mask_from_window(window.view())
        .expect("mask")
        .iter()
        .all(|&m| !m));
    assert_eq!(
        first_max_mask(window.view()).expect("mask"),
        arr2(&[[false, true], [false, false]])
    );
    let w = rng.randn4([2, 2, 2, 3]);
    let b = arr1(&[0.0, f64::NAN, 1.0]);
    let (z, cache) = conv_forward(a_prev.view(), w.view(), b.view(), ConvParams::new(1, 1))
        .expect("conv forward");
    conv_backward(z.view(), &cache).expect("conv backward");
    assert!(distribute_value(f64::NAN, (2, 2)).expect("distribute")[[0, 0]].is_nan());
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

fn conv_err(a_shape: [usize; 4], w_shape: [usize; 4], b_len: usize, params: ConvParams) -> Error {
    let a_prev = Array4::<f64>::zeros(a_shape);
    let w = Array4::<f64>::zeros(w_shape);
    let b = Array1::<f64>::zeros(b_len);
    conv_forward(a_prev.view(), w.view(), b.view(), params).expect_err("must fail")
}

#[test]
fn conv_forward_rejects_zero_stride() {
    let params = ConvParams::new(1, 0).with_stride(0, 1);
    assert_eq!(
        conv_err([1, 4, 4, 3], [2, 2, 3, 2], 2, params),
        Error::ZeroStride(0, 1)
    );
}

#[test]
fn conv_forward_rejects_zero_kernel() {
    assert_eq!(
        conv_err([1, 4, 4, 3], [2, 0, 3, 2], 2, ConvParams::new(1, 0)),
        Error::ZeroKernel(2, 0)
    );
}

#[test]
fn conv_forward_rejects_channel_mismatch() {
    assert_eq!(
        conv_err([1, 4, 4, 3], [2, 2, 4, 2], 2, ConvParams::new(1, 0)),
        Error::ChannelMismatch {
            input: [1, 4, 4, 3],
            weights: [2, 2, 4, 2]
        }
    );
}

#[test]
fn conv_forward_rejects_kernel_larger_than_padded_input() {
    let params = ConvParams::new(1, 0).with_padding(Padding::explicit(0, 1, 0, 0));
    assert_eq!(
        conv_err([1, 4, 4, 3], [6, 2, 3, 2], 2, params),
        Error::KernelTooLarge {
            input: [1, 4, 4, 3],
            kernel: [6, 2],
            padded: [5, 4]
        }
    );
}

#[test]
fn conv_forward_rejects_empty_input() {
    assert!(matches!(
        conv_err([0, 4, 4, 3], [2, 2, 3, 2], 2, ConvParams::new(1, 0)),
        Error::EmptyTensor { .. }
    ));
}

#[test]
fn conv_forward_rejects_bad_bias_length() {
    assert_eq!(
        conv_err([1, 4, 4, 3], [2, 2, 3, 2], 3, ConvParams::new(1, 0)),
        Error::BiasShape {
            bias: vec![3],
            channels: 2
        }
    );
    // (1, 1, 1, n_C) is accepted, (1, n_C) is not.
    let a_prev = Array4::<f64>::zeros((1, 4, 4, 3));
    let w = Array4::<f64>::zeros((2, 2, 3, 2));
    let b = ndarray::Array2::<f64>::zeros((1, 2));
    assert_eq!(
        conv_forward(a_prev.view(), w.view(), b.view(), ConvParams::new(1, 0)).expect_err("2-d"),
        Error::BiasShape {
            bias: vec![1, 2],
            channels: 2
        }
    );
}

#[test]
fn conv_forward_rejects_padding_too_large_to_index() {
    let params = ConvParams::new(1, 0).with_padding(Padding::uniform(usize::MAX / 8));
    assert!(matches!(
        conv_err([1, 4, 4, 3], [2, 2, 3, 2], 2, params),
        Error::TooLarge { .. }
    ));
}

#[test]
fn conv_backward_rejects_wrong_dz_shape() {
    let (z, cache) = seed_conv_forward();
    let dz = Array4::<f64>::zeros((10, 4, 3, 8));
    assert_eq!(
        conv_backward(dz.view(), &cache).expect_err("wrong dZ"),
        Error::ShapeMismatch {
            what: "dZ must have the shape of the forward output Z",
            expected: z.shape().to_vec(),
            got: vec![10, 4, 3, 8]
        }
    );
}

#[test]
fn conv_backward_rejects_inconsistent_cache() {
    let (z, cache) = seed_conv_forward();
    let bad = ConvCache {
        w: Array4::zeros((3, 3, 3, 8)),
        ..cache.clone()
    };
    assert!(matches!(
        conv_backward(z.view(), &bad),
        Err(Error::ShapeMismatch { .. })
    ));
    let mut geometry = cache.geometry;
    geometry.out_h += 1;
    let bad = ConvCache { geometry, ..cache };
    assert!(matches!(
        conv_backward(z.view(), &bad),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn conv_single_step_rejects_shape_mismatch() {
    let a = ndarray::Array3::<f64>::zeros((2, 2, 3));
    let w = ndarray::Array3::<f64>::zeros((2, 3, 2));
    assert_eq!(
        conv_single_step(a.view(), w.view(), 0.0).expect_err("mismatch"),
        Error::ShapeMismatch {
            what: "conv_single_step: W must have the shape of a_slice_prev",
            expected: vec![2, 2, 3],
            got: vec![2, 3, 2]
        }
    );
}

fn pool_err(a_shape: [usize; 4], params: PoolParams) -> Error {
    let a_prev = Array4::<f64>::zeros(a_shape);
    pool_forward(a_prev.view(), params).expect_err("must fail")
}

#[test]
fn pool_forward_rejects_zero_stride_zero_kernel_and_kernel_too_large() {
    let max = PoolParams::new(2, 1, PoolMode::Max);
    assert_eq!(
        pool_err([1, 4, 4, 3], max.with_stride(1, 0)),
        Error::ZeroStride(1, 0)
    );
    assert_eq!(
        pool_err([1, 4, 4, 3], max.with_kernel(0, 2)),
        Error::ZeroKernel(0, 2)
    );
    assert_eq!(
        pool_err([1, 4, 4, 3], max.with_kernel(2, 5)),
        Error::KernelTooLarge {
            input: [1, 4, 4, 3],
            kernel: [2, 5],
            padded: [4, 4]
        }
    );
    assert!(matches!(
        pool_err([1, 4, 0, 3], max),
        Error::EmptyTensor { .. }
    ));
}

#[test]
fn pool_backward_rejects_wrong_da_shape() {
    let a_prev = Array4::<f64>::zeros((2, 4, 4, 3));
    for mode in [PoolMode::Max, PoolMode::Average] {
        let (_, cache) = pool_forward(a_prev.view(), PoolParams::new(2, 2, mode)).expect("fwd");
        let da = Array4::<f64>::zeros((2, 2, 2, 4));
        assert_eq!(
            pool_backward(da.view(), &cache).expect_err("wrong dA"),
            Error::ShapeMismatch {
                what: "dA must have the shape of the forward output A",
                expected: vec![2, 2, 2, 3],
                got: vec![2, 2, 2, 4]
            }
        );
    }
}

#[test]
fn pool_backward_rejects_inconsistent_cache() {
    let a_prev = Array4::<f64>::zeros((2, 4, 4, 3));
    let (a, cache) =
        pool_forward(a_prev.view(), PoolParams::new(2, 2, PoolMode::Max)).expect("fwd");
    let bad = PoolCache {
        params: PoolParams::new(2, 1, PoolMode::Max),
        ..cache.clone()
    };
    assert!(matches!(
        pool_backward(a.view(), &bad),
        Err(Error::ShapeMismatch { .. })
    ));
    let bad = PoolCache {
        a_prev: Array4::zeros((2, 6, 6, 3)),
        ..cache
    };
    assert!(matches!(
        pool_backward(a.view(), &bad),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn window_helpers_reject_empty_windows() {
    let empty = ndarray::Array2::<f64>::zeros((0, 3));
    assert_eq!(
        create_mask_from_window(empty.view()),
        Err(Error::EmptyWindow)
    );
    assert_eq!(first_max_mask(empty.view()), Err(Error::EmptyWindow));
    assert_eq!(distribute_value(1.0_f64, (0, 2)), Err(Error::EmptyWindow));
    assert_eq!(distribute_value(1.0_f64, (2, 0)), Err(Error::EmptyWindow));
    assert!(matches!(
        distribute_value(1.0_f64, (usize::MAX, 2)),
        Err(Error::TooLarge { .. })
    ));
}
