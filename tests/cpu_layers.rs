//! The CPU reference of the network layers (ReLU, affine, softmax loss, L2 penalty, spatial
//! batch and group norm, optimizers, layout conversions): every backward pass against central
//! finite differences in `f64`, the forward passes and optimizers against their formulas and
//! hand-computed values, and the errors.

mod common;

use common::assert_setting;
use ndarray::{arr1, arr2, s, Array, Array1, Array2, Array4, ArrayD, Dimension, ShapeBuilder};
use wgpu_cnn::cpu::{
    adam, affine_backward, affine_forward, conv_forward, hwio_to_oihw, l2_penalty, nchw_to_nhwc,
    nhwc_to_nchw, oihw_to_hwio, relu_backward, relu_forward, sgd, sgd_momentum, softmax_loss,
    spatial_batchnorm_backward, spatial_batchnorm_forward, spatial_groupnorm_backward,
    spatial_groupnorm_forward, AdamState, BatchNormState,
};
use wgpu_cnn::{
    AdamConfig, BatchNorm, ConvParams, Error, GroupNorm, Labels, MomentumConfig, NormMode,
    SgdConfig,
};

/// Step of the central differences.
const H: f64 = 1e-5;
/// Largest relative error ([`rel_error`]) accepted between an analytic gradient and the
/// finite differences.
const TOL: f64 = 1e-7;

/// A small deterministic generator (xorshift64*), uniform in `[-1, 1)`.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let bits = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// An array of `shape` with values uniform in `[-1, 1)`.
fn rand<D: Dimension, Sh: ShapeBuilder<Dim = D>>(shape: Sh, seed: u64) -> Array<f64, D> {
    let mut rng = Rng::new(seed);
    Array::from_shape_simple_fn(shape, || rng.next())
}

/// `max |a - b| / max(max |a|, max |b|)`: the error relative to the gradient's scale (an
/// element-wise relative error is meaningless where a gradient is 0).
fn rel_error<D: Dimension>(a: &Array<f64, D>, b: &Array<f64, D>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    let scale = a.iter().chain(b).map(|v| v.abs()).fold(1e-12, f64::max);
    diff / scale
}

/// The gradient of `f` at `x` by central differences of step [`H`].
fn num_grad<D: Dimension>(x: &Array<f64, D>, f: impl Fn(&Array<f64, D>) -> f64) -> Array<f64, D> {
    num_grad_step(x, H, f)
}

/// The gradient of `f` at `x` by central differences of step `h`.
fn num_grad_step<D: Dimension>(
    x: &Array<f64, D>,
    h: f64,
    f: impl Fn(&Array<f64, D>) -> f64,
) -> Array<f64, D> {
    let mut xp = x.as_standard_layout().into_owned();
    let mut grad = Array::zeros(x.raw_dim());
    for k in 0..x.len() {
        let old = xp.as_slice().unwrap()[k];
        xp.as_slice_mut().unwrap()[k] = old + h;
        let plus = f(&xp);
        xp.as_slice_mut().unwrap()[k] = old - h;
        let minus = f(&xp);
        xp.as_slice_mut().unwrap()[k] = old;
        grad.as_slice_mut().unwrap()[k] = (plus - minus) / (2.0 * h);
    }
    grad
}

/// `sum(out * dout)`: the loss whose gradient with respect to `out` is `dout`.
fn dot<D: Dimension>(out: &Array<f64, D>, dout: &Array<f64, D>) -> f64 {
    out.iter().zip(dout).map(|(a, b)| a * b).sum()
}

// ---------------------------------------------------------------------------------------------
// ReLU

#[test]
fn relu_backward_matches_finite_differences() {
    // Values at least 0.1 away from the kink at 0.
    let x = rand((2, 3, 4, 5), 1)
        .mapv(|v| v.signum() * (0.1 + v.abs()))
        .into_dyn();
    let dout = rand((2, 3, 4, 5), 2).into_dyn();
    let (_, cache) = relu_forward(x.view()).unwrap();
    let dx = relu_backward(dout.view(), &cache).unwrap();
    let num = num_grad(&x, |x| dot(&relu_forward(x.view()).unwrap().0, &dout));
    assert!(rel_error(&dx, &num) < TOL, "{}", rel_error(&dx, &num));
    // Both signs occur, so the mask matters.
    assert!(dx.iter().any(|&g| g == 0.0) && dx.iter().any(|&g| g != 0.0));
}

#[test]
fn relu_forward_is_max_0_x_and_keeps_nan() {
    let x = arr1(&[
        -2.0_f32,
        -0.0,
        0.0,
        1.5,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ])
    .into_dyn();
    let (out, cache) = relu_forward(x.view()).unwrap();
    assert_eq!(out.slice(s![..4]), arr1(&[0.0, 0.0, 0.0, 1.5]));
    assert!(out[4].is_nan());
    assert_eq!(out[5], f32::INFINITY);
    assert_eq!(out[6], 0.0);
    let dx = relu_backward(Array1::ones(7).into_dyn().view(), &cache).unwrap();
    assert_eq!(dx, arr1(&[0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]).into_dyn());
}

#[test]
fn relu_backward_rejects_dout_of_another_shape() {
    let (_, cache) = relu_forward(Array2::<f64>::zeros((2, 3)).into_dyn().view()).unwrap();
    let err = relu_backward(Array2::<f64>::zeros((3, 2)).into_dyn().view(), &cache).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { expected, got, .. } if expected == &[2, 3] && got == &[3, 2]),
        "{err}"
    );
}

#[test]
fn relu_of_an_empty_input_is_empty() {
    let x = ArrayD::<f64>::zeros(vec![0, 3]);
    let (out, cache) = relu_forward(x.view()).unwrap();
    assert_eq!(out.shape(), &[0, 3]);
    assert_eq!(relu_backward(x.view(), &cache).unwrap().shape(), &[0, 3]);
}

// ---------------------------------------------------------------------------------------------
// Affine

#[test]
fn affine_backward_matches_finite_differences() {
    let x = rand((3, 2, 4, 5), 3).into_dyn(); // NHWC, D = 40
    let w = rand((40, 6), 4);
    let b = rand(6, 5);
    let dout = rand((3, 6), 6);
    let (_, cache) = affine_forward(x.view(), w.view(), b.view()).unwrap();
    let grads = affine_backward(dout.view(), &cache).unwrap();
    assert_eq!(grads.dx.shape(), &[3, 2, 4, 5]);

    let loss = |x: &ArrayD<f64>, w: &Array2<f64>, b: &Array1<f64>| {
        dot(
            &affine_forward(x.view(), w.view(), b.view()).unwrap().0,
            &dout,
        )
    };
    let dx = num_grad(&x, |x| loss(x, &w, &b));
    let dw = num_grad(&w, |w| loss(&x, w, &b));
    let db = num_grad(&b, |b| loss(&x, &w, b));
    assert!(
        rel_error(&grads.dx, &dx) < TOL,
        "dx {}",
        rel_error(&grads.dx, &dx)
    );
    assert!(
        rel_error(&grads.dw, &dw) < TOL,
        "dw {}",
        rel_error(&grads.dw, &dw)
    );
    assert!(
        rel_error(&grads.db, &db) < TOL,
        "db {}",
        rel_error(&grads.db, &db)
    );
}

#[test]
fn affine_forward_flattens_nhwc_h_then_w_then_c() {
    let (h, w, c) = (2, 3, 4);
    let d = h * w * c;
    let x = rand((2, h, w, c), 7);
    // The identity weights copy the flattened input: out[n, d] = x2d[n, d].
    let (out, _) = affine_forward(
        x.view().into_dyn(),
        Array2::eye(d).view(),
        Array1::zeros(d).view(),
    )
    .unwrap();
    for ((n, i, j, k), &v) in x.indexed_iter() {
        assert_eq!(out[[n, (i * w + j) * c + k]], v);
    }
    // A non-contiguous view is read in its logical order too.
    let t = x.view().reversed_axes(); // (c, w, h, 2)
    let t_copy = t.to_owned();
    let w_rand = rand((2 * w * h, 5), 8);
    let b_rand = rand(5, 9);
    let (a, _) = affine_forward(t.into_dyn(), w_rand.view(), b_rand.view()).unwrap();
    let (b, _) = affine_forward(t_copy.view().into_dyn(), w_rand.view(), b_rand.view()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn affine_forward_hand_checked() {
    let x = arr2(&[[1.0, 2.0], [3.0, 4.0]]).into_dyn();
    let w = arr2(&[[1.0, -1.0, 0.5], [2.0, 0.0, 1.0]]);
    let b = arr1(&[0.25, 0.5, 1.0]);
    let (out, _) = affine_forward(x.view(), w.view(), b.view()).unwrap();
    assert_eq!(out, arr2(&[[5.25, -0.5, 3.5], [11.25, -2.5, 6.5]]));
}

#[test]
fn affine_rejects_inputs_without_a_batch_or_feature_axis() {
    let (w, b) = (Array2::<f64>::zeros((3, 2)), Array1::<f64>::zeros(2));
    for x in [ArrayD::<f64>::zeros(vec![3]), ArrayD::<f64>::zeros(vec![])] {
        let err = affine_forward(x.view(), w.view(), b.view()).unwrap_err();
        assert!(
            matches!(&err, Error::Rank { expected: 2, shape, .. } if shape == x.shape()),
            "{err}"
        );
    }
}

#[test]
fn affine_rejects_feature_count_mismatch_naming_both_shapes() {
    let x = Array4::<f64>::zeros((2, 3, 4, 5)).into_dyn(); // D = 60
    let w = Array2::<f64>::zeros((50, 7));
    let err = affine_forward(x.view(), w.view(), Array1::zeros(7).view()).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { expected, got, .. } if expected == &[60, 7] && got == &[50, 7]),
        "{err}"
    );
    let w = Array2::<f64>::zeros((60, 7));
    let err = affine_forward(x.view(), w.view(), Array1::zeros(6).view()).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { expected, got, .. } if expected == &[7] && got == &[6]),
        "{err}"
    );
}

#[test]
fn affine_backward_rejects_dout_of_another_shape() {
    let x = Array2::<f64>::zeros((4, 3)).into_dyn();
    let (w, b) = (Array2::<f64>::zeros((3, 2)), Array1::<f64>::zeros(2));
    let (_, cache) = affine_forward(x.view(), w.view(), b.view()).unwrap();
    let err = affine_backward(Array2::zeros((4, 3)).view(), &cache).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { expected, got, .. } if expected == &[4, 2] && got == &[4, 3]),
        "{err}"
    );
    // A hand-built cache that disagrees with itself is an error, not a panic.
    let mut bad = cache.clone();
    bad.w = Array2::zeros((5, 2));
    assert!(matches!(
        affine_backward(Array2::zeros((4, 2)).view(), &bad),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn affine_of_empty_axes_is_well_defined() {
    // N = 0: no rows.
    let x = ArrayD::<f64>::zeros(vec![0, 2, 3]);
    let (w, b) = (Array2::<f64>::ones((6, 4)), arr1(&[1.0, 2.0, 3.0, 4.0]));
    let (out, cache) = affine_forward(x.view(), w.view(), b.view()).unwrap();
    assert_eq!(out.dim(), (0, 4));
    let grads = affine_backward(out.view(), &cache).unwrap();
    assert_eq!(grads.dx.shape(), &[0, 2, 3]);
    assert!(grads.dw.iter().all(|&g| g == 0.0) && grads.db.iter().all(|&g| g == 0.0));
    // D = 0: out = b on every row.
    let x = ArrayD::<f64>::zeros(vec![2, 0]);
    let (out, _) = affine_forward(x.view(), Array2::zeros((0, 4)).view(), b.view()).unwrap();
    assert_eq!(out, arr2(&[[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]]));
}

// ---------------------------------------------------------------------------------------------
// Softmax loss and L2 penalty

/// `softmax_loss`'s gradient against finite differences of its loss.
fn check_softmax_gradient(scores: &Array2<f64>, labels: &Labels) {
    let (_, dscores) = softmax_loss(scores.view(), labels).unwrap();
    let num = num_grad(scores, |s| softmax_loss(s.view(), labels).unwrap().0);
    assert!(
        rel_error(&dscores, &num) < TOL,
        "{}",
        rel_error(&dscores, &num)
    );
}

#[test]
fn softmax_loss_gradient_matches_finite_differences_with_index_labels() {
    let scores = rand((5, 7), 10).mapv(|v| 3.0 * v);
    check_softmax_gradient(&scores, &Labels::Indices(vec![0, 6, 3, 3, 1]));
}

#[test]
fn softmax_loss_gradient_matches_finite_differences_with_one_hot_labels() {
    let scores = rand((4, 3), 11).mapv(|v| 3.0 * v);
    let one_hot = arr2(&[
        [0.0_f32, 1.0, 0.0],
        [1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0],
        [0.0, 1.0, 0.0],
    ]);
    check_softmax_gradient(&scores, &Labels::OneHot(one_hot.clone()));
    // The same as the indices.
    let (a, da) = softmax_loss(scores.view(), &Labels::OneHot(one_hot)).unwrap();
    let (b, db) = softmax_loss(scores.view(), &Labels::Indices(vec![1, 0, 2, 1])).unwrap();
    assert_eq!((a, da), (b, db));
    // Soft targets (rows of probabilities) too.
    let soft = arr2(&[
        [0.25_f32, 0.75, 0.0],
        [0.5, 0.25, 0.25],
        [0.0, 0.0, 1.0],
        [1.0, 0.0, 0.0],
    ]);
    check_softmax_gradient(&scores, &Labels::OneHot(soft));
}

#[test]
fn softmax_loss_of_uniform_scores_is_ln_k() {
    for k in [1, 2, 10] {
        let scores = Array2::<f64>::from_elem((3, k), 42.0);
        let (loss, dscores) = softmax_loss(scores.view(), &Labels::Indices(vec![0; 3])).unwrap();
        assert!((loss - (k as f64).ln()).abs() < 1e-12, "K = {k}: {loss}");
        let p = 1.0 / k as f64;
        assert!((dscores[[0, 0]] - (p - 1.0) / 3.0).abs() < 1e-15);
    }
}

#[test]
fn softmax_loss_of_huge_logits_is_finite() {
    let scores = rand((6, 5), 12).mapv(|v| if v < 0.0 { -1e4_f64 } else { 1e4 });
    let labels = Labels::Indices(vec![0, 1, 2, 3, 4, 0]);
    let (loss, dscores) = softmax_loss(scores.view(), &labels).unwrap();
    assert!(loss.is_finite() && dscores.iter().all(|g| g.is_finite()));
    let (loss32, dscores32) = softmax_loss(scores.mapv(|v| v as f32).view(), &labels).unwrap();
    assert!(loss32.is_finite() && dscores32.iter().all(|g| g.is_finite()));
    // By hand: the right class far ahead costs 0, far behind costs the gap.
    let s = arr2(&[[1e4, -1e4, 0.0]]);
    let (loss, d) = softmax_loss(s.view(), &Labels::Indices(vec![0])).unwrap();
    assert_eq!(loss, 0.0);
    assert_eq!(d, arr2(&[[0.0, 0.0, 0.0]]));
    let (loss, d) = softmax_loss(s.view(), &Labels::Indices(vec![1])).unwrap();
    assert_eq!(loss, 2e4);
    assert_eq!(d, arr2(&[[1.0, -1.0, 0.0]]));
}

#[test]
fn softmax_loss_rejects_labels_out_of_range() {
    let scores = Array2::<f64>::zeros((3, 4));
    let err = softmax_loss(scores.view(), &Labels::Indices(vec![0, 3, 4])).unwrap_err();
    assert_eq!(
        err,
        Error::LabelOutOfRange {
            index: 2,
            label: 4,
            classes: 4
        }
    );
}

#[test]
fn softmax_loss_rejects_a_wrong_label_count() {
    let scores = Array2::<f64>::zeros((3, 4));
    let err = softmax_loss(scores.view(), &Labels::Indices(vec![0, 1])).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { expected, got, .. } if expected == &[3] && got == &[2]),
        "{err}"
    );
    let err = softmax_loss(scores.view(), &Labels::OneHot(Array2::zeros((3, 5)))).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { expected, got, .. } if expected == &[3, 4] && got == &[3, 5]),
        "{err}"
    );
}

#[test]
fn softmax_loss_rejects_empty_scores() {
    for shape in [(0, 4), (3, 0)] {
        let scores = Array2::<f64>::zeros(shape);
        let labels = Labels::Indices(vec![0; shape.0]);
        let err = softmax_loss(scores.view(), &labels).unwrap_err();
        assert!(
            matches!(&err, Error::EmptyTensor { shape: s, .. } if s == &[shape.0, shape.1]),
            "{err}"
        );
    }
}

#[test]
fn l2_penalty_gradient_is_reg_times_w() {
    let reg = 0.3;
    let w1 = rand((3, 4), 13).into_dyn();
    let w2 = rand((2, 2, 5), 14).into_dyn();
    let g1 = num_grad(&w1, |w| l2_penalty(&[w.view(), w2.view()], reg));
    let g2 = num_grad(&w2, |w| l2_penalty(&[w1.view(), w.view()], reg));
    assert!(rel_error(&g1, &w1.mapv(|v| reg * v)) < TOL);
    assert!(rel_error(&g2, &w2.mapv(|v| reg * v)) < TOL);
    // By hand, and nothing at all.
    let w = arr1(&[1.0_f32, -2.0, 3.0]).into_dyn();
    assert_eq!(l2_penalty(&[w.view()], 0.5), 3.5);
    assert_eq!(l2_penalty::<f64>(&[], 0.5), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Batch norm

/// A batch `(2, 3, 4, 5)` whose channels have different means and scales.
fn bn_input(seed: u64) -> Array4<f64> {
    let mut x = rand((2, 3, 4, 5), seed);
    for (c, mut xc) in x.axis_iter_mut(ndarray::Axis(3)).enumerate() {
        xc.mapv_inplace(|v| (c as f64 + 0.5) * v + c as f64 - 2.0);
    }
    x
}

/// `sum(out * dout)` of a train-mode batch norm with fresh running statistics.
fn bn_train_loss(
    x: &Array4<f64>,
    gamma: &Array1<f64>,
    beta: &Array1<f64>,
    dout: &Array4<f64>,
) -> f64 {
    let mut state = BatchNormState::new();
    let (out, _) = spatial_batchnorm_forward(
        x.view(),
        gamma.view(),
        beta.view(),
        &mut state,
        BatchNorm::train(),
    )
    .unwrap();
    dot(&out, dout)
}

/// Train-mode batch norm's gradients against finite differences of step `h` for input `x`.
fn check_bn_train_gradients(x: &Array4<f64>, h: f64) {
    let gamma = rand(5, 21).mapv(|v| v + 1.5);
    let beta = rand(5, 22);
    let dout = rand(x.raw_dim(), 23);
    let mut state = BatchNormState::new();
    let (_, cache) = spatial_batchnorm_forward(
        x.view(),
        gamma.view(),
        beta.view(),
        &mut state,
        BatchNorm::train(),
    )
    .unwrap();
    let grads = spatial_batchnorm_backward(dout.view(), &cache).unwrap();
    let dx = num_grad_step(x, h, |x| bn_train_loss(x, &gamma, &beta, &dout));
    let dgamma = num_grad(&gamma, |g| bn_train_loss(x, g, &beta, &dout));
    let dbeta = num_grad(&beta, |b| bn_train_loss(x, &gamma, b, &dout));
    assert!(
        rel_error(&grads.dx, &dx) < TOL,
        "dx {}",
        rel_error(&grads.dx, &dx)
    );
    assert!(
        rel_error(&grads.dgamma, &dgamma) < TOL,
        "dgamma {}",
        rel_error(&grads.dgamma, &dgamma)
    );
    assert!(
        rel_error(&grads.dbeta, &dbeta) < TOL,
        "dbeta {}",
        rel_error(&grads.dbeta, &dbeta)
    );
}

#[test]
fn batchnorm_train_backward_matches_finite_differences() {
    check_bn_train_gradients(&bn_input(20), H);
}

#[test]
fn batchnorm_test_backward_matches_finite_differences() {
    let x = bn_input(24);
    let gamma = rand(5, 25).mapv(|v| v + 1.5);
    let beta = rand(5, 26);
    let dout = rand(x.raw_dim(), 27);
    let state = BatchNormState {
        running_mean: Some(rand(5, 28)),
        running_var: Some(rand(5, 29).mapv(|v| v + 1.5)),
    };
    let loss = |x: &Array4<f64>, g: &Array1<f64>, b: &Array1<f64>| {
        let mut s = state.clone();
        let (out, _) =
            spatial_batchnorm_forward(x.view(), g.view(), b.view(), &mut s, BatchNorm::test())
                .unwrap();
        dot(&out, &dout)
    };
    let mut s = state.clone();
    let (_, cache) = spatial_batchnorm_forward(
        x.view(),
        gamma.view(),
        beta.view(),
        &mut s,
        BatchNorm::test(),
    )
    .unwrap();
    assert_eq!(cache.mode, NormMode::Test);
    let grads = spatial_batchnorm_backward(dout.view(), &cache).unwrap();
    let dx = num_grad(&x, |x| loss(x, &gamma, &beta));
    let dgamma = num_grad(&gamma, |g| loss(&x, g, &beta));
    let dbeta = num_grad(&beta, |b| loss(&x, &gamma, b));
    assert!(
        rel_error(&grads.dx, &dx) < TOL,
        "dx {}",
        rel_error(&grads.dx, &dx)
    );
    assert!(rel_error(&grads.dgamma, &dgamma) < TOL);
    assert!(rel_error(&grads.dbeta, &dbeta) < TOL);
}

/// Per-channel mean and biased variance over `(N, H, W)`, by explicit loops.
fn channel_stats(x: &Array4<f64>) -> (Vec<f64>, Vec<f64>) {
    let (n, h, w, c) = x.dim();
    let count = (n * h * w) as f64;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for k in 0..c {
        for i in 0..n {
            for y in 0..h {
                for z in 0..w {
                    mean[k] += x[[i, y, z, k]];
                }
            }
        }
        mean[k] /= count;
        for i in 0..n {
            for y in 0..h {
                for z in 0..w {
                    var[k] += (x[[i, y, z, k]] - mean[k]).powi(2);
                }
            }
        }
        var[k] /= count;
    }
    (mean, var)
}

#[test]
fn batchnorm_running_stats_after_two_train_steps_follow_momentum() {
    let (x1, x2) = (bn_input(30), bn_input(31).mapv(|v| 2.0 * v + 1.0));
    let (gamma, beta) = (Array1::ones(5), Array1::zeros(5));
    let bn = BatchNorm::train().with_momentum(0.8);
    let mut state = BatchNormState::new();
    spatial_batchnorm_forward(x1.view(), gamma.view(), beta.view(), &mut state, bn).unwrap();
    spatial_batchnorm_forward(x2.view(), gamma.view(), beta.view(), &mut state, bn).unwrap();
    let (mu1, var1) = channel_stats(&x1);
    let (mu2, var2) = channel_stats(&x2);
    let rm = state.running_mean.unwrap();
    let rv = state.running_var.unwrap();
    for k in 0..5 {
        // Starting from zeros: 0.8 * (0.8 * 0 + 0.2 * s1) + 0.2 * s2.
        let want_mean = 0.8 * (0.2 * mu1[k]) + 0.2 * mu2[k];
        let want_var = 0.8 * (0.2 * var1[k]) + 0.2 * var2[k];
        assert!(
            (rm[k] - want_mean).abs() < 1e-12,
            "mean {k}: {} vs {want_mean}",
            rm[k]
        );
        assert!(
            (rv[k] - want_var).abs() < 1e-12,
            "var {k}: {} vs {want_var}",
            rv[k]
        );
    }
}

#[test]
fn batchnorm_train_output_has_zero_mean_and_unit_variance() {
    let x = bn_input(32);
    let mut state = BatchNormState::new();
    let bn = BatchNorm::train().with_eps(0.0);
    let (out, _) = spatial_batchnorm_forward(
        x.view(),
        Array1::ones(5).view(),
        Array1::zeros(5).view(),
        &mut state,
        bn,
    )
    .unwrap();
    let (mean, var) = channel_stats(&out);
    assert!(mean.iter().all(|m| m.abs() < 1e-12), "{mean:?}");
    assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-12), "{var:?}");
}

#[test]
fn batchnorm_test_mode_without_running_stats_is_an_error() {
    let x = bn_input(33);
    let (gamma, beta) = (Array1::ones(5), Array1::zeros(5));
    let mut state = BatchNormState::new();
    let err = spatial_batchnorm_forward(
        x.view(),
        gamma.view(),
        beta.view(),
        &mut state,
        BatchNorm::test(),
    )
    .unwrap_err();
    assert_eq!(err, Error::NoRunningStats { channels: 5 });
    // One of the two is not enough either.
    let mut half = BatchNormState {
        running_mean: Some(Array1::zeros(5)),
        running_var: None,
    };
    let err = spatial_batchnorm_forward(
        x.view(),
        gamma.view(),
        beta.view(),
        &mut half,
        BatchNorm::test(),
    )
    .unwrap_err();
    assert_eq!(err, Error::NoRunningStats { channels: 5 });
    assert_eq!(state, BatchNormState::new());
}

#[test]
fn batchnorm_test_mode_uses_running_stats() {
    let x = bn_input(34);
    let gamma = rand(5, 35);
    let beta = rand(5, 36);
    let rm = rand(5, 37);
    let rv = rand(5, 38).mapv(|v| v + 1.5);
    let mut state = BatchNormState {
        running_mean: Some(rm.clone()),
        running_var: Some(rv.clone()),
    };
    let bn = BatchNorm::test().with_eps(1e-3);
    let (out, _) =
        spatial_batchnorm_forward(x.view(), gamma.view(), beta.view(), &mut state, bn).unwrap();
    for ((i, h, w, c), &o) in out.indexed_iter() {
        let want = gamma[c] * (x[[i, h, w, c]] - rm[c]) / (rv[c] + 1e-3).sqrt() + beta[c];
        assert!((o - want).abs() < 1e-12);
    }
    // Test mode leaves the running statistics alone.
    assert_eq!(state.running_mean, Some(rm));
    assert_eq!(state.running_var, Some(rv));
}

#[test]
fn batchnorm_constant_channel_gives_finite_output_and_gradients() {
    let mut x = bn_input(39);
    x.slice_mut(s![.., .., .., 2]).fill(3.0);
    let gamma = arr1(&[1.0, 2.0, 3.0, 4.0, 5.0]);
    let beta = arr1(&[0.1, 0.2, 0.3, 0.4, 0.5]);
    let mut state = BatchNormState::new();
    let (out, cache) = spatial_batchnorm_forward(
        x.view(),
        gamma.view(),
        beta.view(),
        &mut state,
        BatchNorm::train(),
    )
    .unwrap();
    assert!(cache
        .xhat
        .slice(s![.., .., .., 2])
        .iter()
        .all(|&v| v == 0.0));
    assert!(out.slice(s![.., .., .., 2]).iter().all(|&v| v == 0.3));
    assert!(out.iter().all(|v| v.is_finite()));
    let grads = spatial_batchnorm_backward(rand(x.raw_dim(), 40).view(), &cache).unwrap();
    assert!(grads.dx.iter().all(|v| v.is_finite()));
    assert!(grads.dgamma.iter().all(|v| v.is_finite()));
    assert_eq!(grads.dgamma[2], 0.0);
    // The gradients are right there too: eps keeps the function smooth.
    // Near variance 0 the loss curves on the scale sqrt(eps) ~ 3e-3, so the differences need a
    // smaller step (with H the truncation error is about 2e-7).
    check_bn_train_gradients(&x, 1e-6);
}

#[test]
fn batchnorm_rejects_wrong_parameter_lengths_and_leaves_state_unchanged() {
    let x = bn_input(41);
    let (gamma, beta) = (Array1::<f64>::ones(5), Array1::<f64>::zeros(5));
    let mut state = BatchNormState::new();
    let bn = BatchNorm::train();
    let err = spatial_batchnorm_forward(
        x.view(),
        Array1::ones(4).view(),
        beta.view(),
        &mut state,
        bn,
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { expected, got, .. } if expected == &[5] && got == &[4]),
        "{err}"
    );
    let err = spatial_batchnorm_forward(
        x.view(),
        gamma.view(),
        Array1::zeros(6).view(),
        &mut state,
        bn,
    )
    .unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    // Running statistics of another layer.
    let mut other = BatchNormState {
        running_mean: Some(Array1::zeros(3)),
        running_var: Some(Array1::ones(3)),
    };
    let before = other.clone();
    for mode in [BatchNorm::train(), BatchNorm::test()] {
        let err = spatial_batchnorm_forward(x.view(), gamma.view(), beta.view(), &mut other, mode)
            .unwrap_err();
        assert!(
            matches!(&err, Error::ShapeMismatch { expected, got, .. } if expected == &[5] && got == &[3]),
            "{err}"
        );
    }
    assert_eq!(other, before);
    assert_eq!(state, BatchNormState::new());
    // dout of another shape.
    let (_, cache) =
        spatial_batchnorm_forward(x.view(), gamma.view(), beta.view(), &mut state, bn).unwrap();
    let err = spatial_batchnorm_backward(Array4::zeros((2, 3, 4, 4)).view(), &cache).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { expected, got, .. } if expected == &[2, 3, 4, 5] && got == &[2, 3, 4, 4]),
        "{err}"
    );
}

#[test]
fn batchnorm_rejects_empty_inputs() {
    for shape in [(0, 3, 4, 5), (2, 0, 4, 5), (2, 3, 0, 5), (2, 3, 4, 0)] {
        let x = Array4::<f64>::zeros(shape);
        let c = shape.3;
        let mut state = BatchNormState::new();
        let err = spatial_batchnorm_forward(
            x.view(),
            Array1::ones(c).view(),
            Array1::zeros(c).view(),
            &mut state,
            BatchNorm::train(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::EmptyTensor { shape: s, .. } if s == x.shape()),
            "{err}"
        );
        assert_eq!(state, BatchNormState::new());
    }
}

// ---------------------------------------------------------------------------------------------
// Group norm

/// `sum(out * dout)` of a group norm.
fn gn_loss(
    x: &Array4<f64>,
    gamma: &Array1<f64>,
    beta: &Array1<f64>,
    gn: GroupNorm,
    dout: &Array4<f64>,
) -> f64 {
    let (out, _) = spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), gn).unwrap();
    dot(&out, dout)
}

/// Inputs for the group-norm checks: `x` `(2, 3, 4, 6)`, `gamma`, `beta`, `dout`.
fn gn_inputs(seed: u64) -> (Array4<f64>, Array1<f64>, Array1<f64>, Array4<f64>) {
    let mut x = rand((2, 3, 4, 6), seed);
    for (c, mut xc) in x.axis_iter_mut(ndarray::Axis(3)).enumerate() {
        xc.mapv_inplace(|v| (c as f64 * 0.3 + 0.5) * v + c as f64 - 2.0);
    }
    let gamma = rand(6, seed + 1).mapv(|v| v + 1.5);
    let beta = rand(6, seed + 2);
    let dout = rand((2, 3, 4, 6), seed + 3);
    (x, gamma, beta, dout)
}

#[test]
fn groupnorm_backward_matches_finite_differences_for_every_group_count() {
    let (x, gamma, beta, dout) = gn_inputs(50);
    for groups in [1, 2, 3, 6] {
        let gn = GroupNorm::new(groups);
        let (_, cache) =
            spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), gn).unwrap();
        let grads = spatial_groupnorm_backward(dout.view(), &cache).unwrap();
        let dx = num_grad(&x, |x| gn_loss(x, &gamma, &beta, gn, &dout));
        let dgamma = num_grad(&gamma, |g| gn_loss(&x, g, &beta, gn, &dout));
        let dbeta = num_grad(&beta, |b| gn_loss(&x, &gamma, b, gn, &dout));
        let (ex, eg, eb) = (
            rel_error(&grads.dx, &dx),
            rel_error(&grads.dgamma, &dgamma),
            rel_error(&grads.dbeta, &dbeta),
        );
        assert!(
            ex < TOL && eg < TOL && eb < TOL,
            "G = {groups}: dx {ex}, dgamma {eg}, dbeta {eb}"
        );
    }
}

#[test]
fn groupnorm_cs231n_backward_formula_fails_finite_differences() {
    let (x, gamma, beta, dout) = gn_inputs(60);
    let gn = GroupNorm::new(2);
    let (_, cache) = spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), gn).unwrap();
    let ours = spatial_groupnorm_backward(dout.view(), &cache).unwrap().dx;

    // The cs231n write-up: dx = (1/n) * inv_std * (n * dxhat - sum(dxhat) - sum(dxhat) * xhat).
    let (n_batch, h, w, c) = x.dim();
    let group_size = c / 2;
    let n = (h * w * group_size) as f64;
    let mut wrong = Array4::<f64>::zeros(x.raw_dim());
    for i in 0..n_batch {
        for g in 0..2 {
            let chans = g * group_size..(g + 1) * group_size;
            let dxhat = &dout.slice(s![i, .., .., chans.clone()]) * &gamma.slice(s![chans.clone()]);
            let xhat = cache.xhat.slice(s![i, .., .., chans.clone()]);
            let sum_dxhat = dxhat.sum();
            let inv_std = cache.inv_std[[i, g]];
            let dx = (&dxhat * n - sum_dxhat - &xhat * sum_dxhat) * (inv_std / n);
            wrong.slice_mut(s![i, .., .., chans]).assign(&dx);
        }
    }

    let num = num_grad(&x, |x| gn_loss(x, &gamma, &beta, gn, &dout));
    assert!(
        rel_error(&ours, &num) < TOL,
        "ours {}",
        rel_error(&ours, &num)
    );
    assert!(
        rel_error(&wrong, &num) > 1e-2,
        "cs231n {}",
        rel_error(&wrong, &num)
    );
}

#[test]
fn groupnorm_normalises_each_sample_and_group() {
    let (x, _, _, _) = gn_inputs(70);
    let gn = GroupNorm::new(3).with_eps(0.0);
    let (out, cache) = spatial_groupnorm_forward(
        x.view(),
        Array1::ones(6).view(),
        Array1::zeros(6).view(),
        gn,
    )
    .unwrap();
    assert_eq!(cache.inv_std.dim(), (2, 3));
    for i in 0..2 {
        for g in 0..3 {
            let group = out.slice(s![i, .., .., 2 * g..2 * g + 2]);
            let mean = group.mean().unwrap();
            let var = group.mapv(|v| (v - mean).powi(2)).mean().unwrap();
            assert!(
                mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12,
                "({i}, {g}): {mean} {var}"
            );
        }
    }
    // gamma and beta are per channel.
    let gamma = arr1(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let beta = arr1(&[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]);
    let (scaled, _) = spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), gn).unwrap();
    for ((i, h, w, c), &v) in scaled.indexed_iter() {
        assert!((v - (gamma[c] * out[[i, h, w, c]] + beta[c])).abs() < 1e-12);
    }
}

#[test]
fn groupnorm_constant_group_gives_finite_output_and_gradients() {
    let (mut x, gamma, beta, dout) = gn_inputs(75);
    x.slice_mut(s![1, .., .., 3..6]).fill(-2.0);
    let gn = GroupNorm::new(2);
    let (out, cache) = spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), gn).unwrap();
    assert!(cache
        .xhat
        .slice(s![1, .., .., 3..6])
        .iter()
        .all(|&v| v == 0.0));
    assert!(out.iter().all(|v| v.is_finite()));
    let grads = spatial_groupnorm_backward(dout.view(), &cache).unwrap();
    assert!(grads.dx.iter().all(|v| v.is_finite()));
    // A smaller step near variance 0, as for batch norm.
    let num = num_grad_step(&x, 1e-6, |x| gn_loss(x, &gamma, &beta, gn, &dout));
    assert!(
        rel_error(&grads.dx, &num) < TOL,
        "{}",
        rel_error(&grads.dx, &num)
    );
}

#[test]
fn groupnorm_rejects_groups_not_dividing_channels() {
    let x = Array4::<f64>::zeros((2, 3, 4, 6));
    let (gamma, beta) = (Array1::<f64>::ones(6), Array1::<f64>::zeros(6));
    for groups in [0, 4, 7] {
        let err =
            spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), GroupNorm::new(groups))
                .unwrap_err();
        assert_eq!(
            err,
            Error::Groups {
                groups,
                channels: 6
            }
        );
    }
    // A hand-built cache with a bad group count is an error in backward too.
    let (_, mut cache) =
        spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), GroupNorm::new(3)).unwrap();
    cache.groups = 4;
    let err = spatial_groupnorm_backward(x.view(), &cache).unwrap_err();
    assert_eq!(
        err,
        Error::Groups {
            groups: 4,
            channels: 6
        }
    );
}

#[test]
fn groupnorm_rejects_wrong_shapes_and_empty_inputs() {
    let x = Array4::<f64>::zeros((2, 3, 4, 6));
    let err = spatial_groupnorm_forward(
        x.view(),
        Array1::ones(5).view(),
        Array1::zeros(6).view(),
        GroupNorm::new(2),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { expected, got, .. } if expected == &[6] && got == &[5]),
        "{err}"
    );
    for shape in [(0, 3, 4, 6), (2, 0, 4, 6), (2, 3, 0, 6)] {
        let x = Array4::<f64>::zeros(shape);
        let err = spatial_groupnorm_forward(
            x.view(),
            Array1::ones(6).view(),
            Array1::zeros(6).view(),
            GroupNorm::new(2),
        )
        .unwrap_err();
        assert!(
            matches!(&err, Error::EmptyTensor { shape: s, .. } if s == x.shape()),
            "{err}"
        );
    }
    let (_, cache) = spatial_groupnorm_forward(
        x.view(),
        Array1::ones(6).view(),
        Array1::zeros(6).view(),
        GroupNorm::new(2),
    )
    .unwrap();
    let err = spatial_groupnorm_backward(Array4::zeros((2, 3, 4, 5)).view(), &cache).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Optimizers

#[test]
fn sgd_follows_the_formula_for_several_steps() {
    let cfg = SgdConfig {
        lr: 0.05,
        weight_decay: 0.01,
    };
    let mut w = rand((3, 4), 80).into_dyn();
    let mut want = w.clone();
    for step in 0..4 {
        let dw = rand((3, 4), 81 + step).into_dyn();
        sgd(w.view_mut(), dw.view(), &cfg).unwrap();
        want = &want - &((&dw + &(&want * 0.01)) * 0.05);
        assert!(rel_error(&w, &want) < 1e-15, "step {step}");
    }
}

#[test]
fn sgd_weight_decay_hand_checked() {
    let mut w = arr1(&[2.0_f64]).into_dyn();
    let cfg = SgdConfig {
        lr: 0.1,
        weight_decay: 0.01,
    };
    sgd(w.view_mut(), arr1(&[0.5]).into_dyn().view(), &cfg).unwrap();
    // g = 0.5 + 0.01 * 2 = 0.52; w = 2 - 0.1 * 0.52.
    assert!((w[0] - 1.948).abs() < 1e-15, "{}", w[0]);
}

#[test]
fn sgd_momentum_follows_the_formula_for_several_steps() {
    let cfg = MomentumConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.02,
    };
    let mut w = rand(6, 90).into_dyn();
    let mut v = ArrayD::<f64>::zeros(vec![6]);
    let (mut want_w, mut want_v) = (w.clone(), v.clone());
    for step in 0..4 {
        let dw = rand(6, 91 + step).into_dyn();
        sgd_momentum(w.view_mut(), dw.view(), v.view_mut(), &cfg).unwrap();
        let g = &dw + &(&want_w * 0.02);
        want_v = &want_v * 0.9 - &g * 0.1;
        want_w = &want_w + &want_v;
        assert!(rel_error(&w, &want_w) < 1e-14, "w, step {step}");
        assert!(rel_error(&v, &want_v) < 1e-14, "v, step {step}");
    }
    // By hand: w = 1, dw = 1 every step, lr 0.5, no decay: v = -0.5, then -0.95.
    let mut w = arr1(&[1.0_f64]).into_dyn();
    let mut v = arr1(&[0.0]).into_dyn();
    let one = arr1(&[1.0]).into_dyn();
    for want in [(0.5, -0.5), (-0.45, -0.95)] {
        sgd_momentum(
            w.view_mut(),
            one.view(),
            v.view_mut(),
            &MomentumConfig::new(0.5),
        )
        .unwrap();
        assert!((w[0] - want.0).abs() < 1e-15 && (v[0] - want.1).abs() < 1e-15);
    }
}

#[test]
fn adam_bias_correction_matches_hand_computed_values_for_t_1_2_3() {
    // w = 1, lr = 0.1, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, gradients 1, -2, 0.5.
    // t = 1: m = 0.1, v = 0.001, m_hat = 1, v_hat = 1.
    // t = 2: m = -0.11, v = 0.004999, m_hat = -0.11 / 0.19, v_hat = 0.004999 / 0.001999.
    // t = 3: m = -0.049, v = 0.005244001, m_hat = -0.049 / 0.271, v_hat = 0.005244001 / 0.002997001.
    let want = [
        (1, 0.1, 0.001, 0.900_000_001),
        (2, -0.11, 0.004_999, 0.936_610_353_472_075_1),
        (3, -0.049, 0.005_244_001, 0.950_279_419_673_821_7),
    ];
    let mut w = arr1(&[1.0_f64]).into_dyn();
    let mut state = AdamState::zeros(w.shape()).unwrap();
    let cfg = AdamConfig::new(0.1);
    for (g, (t, m, v, w_t)) in [1.0, -2.0, 0.5].into_iter().zip(want) {
        adam(w.view_mut(), arr1(&[g]).into_dyn().view(), &mut state, &cfg).unwrap();
        assert_eq!(state.t, t);
        assert!(
            (state.m[0] - m).abs() < 1e-15,
            "m at t = {t}: {}",
            state.m[0]
        );
        assert!(
            (state.v[0] - v).abs() < 1e-15,
            "v at t = {t}: {}",
            state.v[0]
        );
        assert!(
            (w[0] - w_t).abs() < 1e-13,
            "w at t = {t}: {} vs {w_t}",
            w[0]
        );
    }
}

#[test]
fn adam_with_weight_decay_matches_hand_computed_values() {
    // w = 2, dw = 0.5 every step, weight decay 0.1: g = 0.5 + 0.1 * w.
    let want = [
        1.900_000_001_428_571_4,
        1.800_040_094_359_044_9,
        1.700_147_709_946_863_5,
    ];
    let mut w = arr1(&[2.0_f64]).into_dyn();
    let mut state = AdamState::zeros(&[1]).unwrap();
    let cfg = AdamConfig::new(0.1).with_weight_decay(0.1);
    for (t, w_t) in want.into_iter().enumerate() {
        adam(
            w.view_mut(),
            arr1(&[0.5]).into_dyn().view(),
            &mut state,
            &cfg,
        )
        .unwrap();
        assert!(
            (w[0] - w_t).abs() < 1e-13,
            "t = {}: {} vs {w_t}",
            t + 1,
            w[0]
        );
    }
}

#[test]
fn adam_follows_the_formula_for_several_steps_in_f32_and_f64() {
    let cfg = AdamConfig {
        lr: 0.01,
        beta1: 0.8,
        beta2: 0.99,
        eps: 1e-6,
        weight_decay: 0.05,
    };
    let w0 = rand((2, 5), 100).into_dyn();
    let mut w = w0.clone();
    let mut w32 = w0.mapv(|v| v as f32);
    let mut state = AdamState::zeros(w.shape()).unwrap();
    let mut state32 = AdamState::<f32>::zeros(w.shape()).unwrap();
    let (mut want, mut m, mut v) = (w0.clone(), w0.mapv(|_| 0.0), w0.mapv(|_| 0.0));
    for t in 1..=5 {
        let dw = rand((2, 5), 100 + t).into_dyn();
        adam(w.view_mut(), dw.view(), &mut state, &cfg).unwrap();
        adam(
            w32.view_mut(),
            dw.mapv(|v| v as f32).view(),
            &mut state32,
            &cfg,
        )
        .unwrap();
        let g = &dw + &(&want * 0.05);
        m = &m * 0.8 + &g * 0.2;
        v = &v * 0.99 + &(&g * &g) * 0.01;
        let m_hat = &m / (1.0 - 0.8_f64.powi(t as i32));
        let v_hat = &v / (1.0 - 0.99_f64.powi(t as i32));
        want = &want - &(&m_hat / &v_hat.mapv(|x| x.sqrt() + 1e-6)) * 0.01;
        assert!(rel_error(&w, &want) < 1e-14, "t = {t}");
        assert!(
            rel_error(&w32.mapv(f64::from), &want) < 1e-5,
            "f32, t = {t}"
        );
    }
}

#[test]
fn optimizers_reject_shape_mismatches_and_leave_everything_unchanged() {
    let w0 = rand((2, 3), 110).into_dyn();
    let good = ArrayD::<f64>::ones(vec![2, 3]);
    let bad = ArrayD::<f64>::ones(vec![3, 2]);
    let is_mismatch = |e: Error| matches!(&e, Error::ShapeMismatch { expected, got, .. } if expected == &[2, 3] && got == &[3, 2]);

    let mut w = w0.clone();
    assert!(is_mismatch(
        sgd(w.view_mut(), bad.view(), &SgdConfig::new(0.1)).unwrap_err()
    ));
    let mut v = good.clone();
    let cfg = MomentumConfig::new(0.1);
    assert!(is_mismatch(
        sgd_momentum(w.view_mut(), bad.view(), v.view_mut(), &cfg).unwrap_err()
    ));
    let mut v_bad = bad.clone();
    assert!(is_mismatch(
        sgd_momentum(w.view_mut(), good.view(), v_bad.view_mut(), &cfg).unwrap_err()
    ));
    assert_eq!((&w, &v), (&w0, &good));

    let cfg = AdamConfig::new(0.1);
    let mut state = AdamState::zeros(&[2, 3]).unwrap();
    assert!(is_mismatch(
        adam(w.view_mut(), bad.view(), &mut state, &cfg).unwrap_err()
    ));
    let mut state_bad = AdamState::zeros(&[3, 2]).unwrap();
    assert!(is_mismatch(
        adam(w.view_mut(), good.view(), &mut state_bad, &cfg).unwrap_err()
    ));
    state_bad.m = ArrayD::zeros(vec![2, 3]);
    assert!(is_mismatch(
        adam(w.view_mut(), good.view(), &mut state_bad, &cfg).unwrap_err()
    ));
    assert_eq!(w, w0);
    assert_eq!((state.t, state_bad.t), (0, 0));
}

#[test]
fn optimizers_on_empty_weights_do_nothing() {
    let mut w = ArrayD::<f64>::zeros(vec![0, 4]);
    let dw = w.clone();
    let mut v = w.clone();
    sgd(w.view_mut(), dw.view(), &SgdConfig::new(0.1)).unwrap();
    sgd_momentum(
        w.view_mut(),
        dw.view(),
        v.view_mut(),
        &MomentumConfig::new(0.1),
    )
    .unwrap();
    let mut state = AdamState::zeros(&[0, 4]).unwrap();
    adam(w.view_mut(), dw.view(), &mut state, &AdamConfig::new(0.1)).unwrap();
    assert_eq!(state.t, 1);
}

#[test]
fn adam_state_too_large_is_an_error() {
    let err = AdamState::<f64>::zeros(&[1 << 40, 1 << 20]).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
}

#[test]
fn optimizers_reject_settings_out_of_range_and_change_nothing() {
    let w0 = arr1(&[1.0_f64, -2.0]).into_dyn();
    let dw = arr1(&[0.5_f64, 0.5]).into_dyn();
    let mut w = w0.clone();
    for (lr, shown) in [
        (f64::NAN, "NaN"),
        (-0.1, "-0.1"),
        (f64::INFINITY, "inf"),
        (1e39, "1e39"),
    ] {
        let shown = if lr == 1e39 {
            "1000000000000000000000000000000000000000"
        } else {
            shown
        };
        let e = sgd(w.view_mut(), dw.view(), &SgdConfig::new(lr)).unwrap_err();
        assert_setting(e, "SGD: lr", shown);
        let mut state = AdamState::zeros(w.shape()).unwrap();
        let e = adam(w.view_mut(), dw.view(), &mut state, &AdamConfig::new(lr)).unwrap_err();
        assert_setting(e, "Adam: lr", shown);
        assert_eq!(state.t, 0, "a rejected Adam step must not count");
    }
    let decay = SgdConfig {
        weight_decay: -1.0,
        ..SgdConfig::new(0.1)
    };
    assert_setting(
        sgd(w.view_mut(), dw.view(), &decay).unwrap_err(),
        "SGD: weight_decay",
        "-1",
    );
    let mut v = ArrayD::<f64>::zeros(w.shape());
    let momentum = MomentumConfig {
        momentum: 1.5,
        ..MomentumConfig::new(0.1)
    };
    let e = sgd_momentum(w.view_mut(), dw.view(), v.view_mut(), &momentum).unwrap_err();
    assert_setting(e, "SGD momentum: momentum", "1.5");
    let mut state = AdamState::zeros(w.shape()).unwrap();
    for (cfg, what, shown) in [
        (
            AdamConfig {
                beta1: 1.0,
                ..AdamConfig::new(0.1)
            },
            "Adam: beta1",
            "= 1:",
        ),
        (
            AdamConfig {
                beta2: -0.5,
                ..AdamConfig::new(0.1)
            },
            "Adam: beta2",
            "-0.5",
        ),
        (
            AdamConfig {
                eps: f64::NAN,
                ..AdamConfig::new(0.1)
            },
            "Adam: eps",
            "NaN",
        ),
        (
            AdamConfig::new(0.1).with_weight_decay(f64::NEG_INFINITY),
            "Adam: weight_decay",
            "-inf",
        ),
    ] {
        let e = adam(w.view_mut(), dw.view(), &mut state, &cfg).unwrap_err();
        assert_setting(e, what, shown);
    }
    assert_eq!(w, w0, "a rejected step must leave w as it was");
    assert_eq!(v, ArrayD::<f64>::zeros(w.shape()));
    // The edges of the ranges are accepted: lr 0 (no step), momentum 1, beta 0.
    sgd(w.view_mut(), dw.view(), &SgdConfig::new(0.0)).unwrap();
    assert_eq!(w, w0);
    let edge = MomentumConfig {
        momentum: 1.0,
        ..MomentumConfig::new(0.0)
    };
    sgd_momentum(w.view_mut(), dw.view(), v.view_mut(), &edge).unwrap();
    let edge = AdamConfig {
        beta1: 0.0,
        ..AdamConfig::new(0.1)
    };
    adam(w.view_mut(), dw.view(), &mut state, &edge).unwrap();
}

#[test]
fn norms_reject_eps_and_momentum_out_of_range() {
    let x = rand((2, 3, 3, 4), 130);
    let (gamma, beta) = (Array1::<f64>::ones(4), Array1::<f64>::zeros(4));
    for (bn, what, shown) in [
        (
            BatchNorm::train().with_eps(-1e-5),
            "batch norm: eps",
            "-0.00001",
        ),
        (
            BatchNorm::train().with_eps(f64::NAN),
            "batch norm: eps",
            "NaN",
        ),
        (
            BatchNorm::train().with_momentum(1.1),
            "batch norm: momentum",
            "1.1",
        ),
        (
            BatchNorm::test().with_momentum(-0.1),
            "batch norm: momentum",
            "-0.1",
        ),
    ] {
        let mut state = BatchNormState::new();
        let e = spatial_batchnorm_forward(x.view(), gamma.view(), beta.view(), &mut state, bn)
            .unwrap_err();
        assert_setting(e, what, shown);
        assert!(
            state.running_mean.is_none(),
            "a rejected pass must not touch the state"
        );
    }
    let e = spatial_groupnorm_forward(
        x.view(),
        gamma.view(),
        beta.view(),
        GroupNorm::new(2).with_eps(f64::INFINITY),
    )
    .unwrap_err();
    assert_setting(e, "group norm: eps", "inf");
    // eps 0 is a legal (if risky) choice: a constant channel then divides 0 by 0, as IEEE says.
    let mut state = BatchNormState::new();
    let (y, _) = spatial_batchnorm_forward(
        x.view(),
        gamma.view(),
        beta.view(),
        &mut state,
        BatchNorm::train().with_eps(0.0),
    )
    .unwrap();
    assert!(y.iter().all(|v| v.is_finite()));
}

// ---------------------------------------------------------------------------------------------
// Layout

#[test]
fn layout_round_trips_and_hand_checked_elements() {
    let x = rand((2, 3, 4, 5), 120); // NCHW
    let nhwc = nchw_to_nhwc(x.view()).unwrap();
    assert_eq!(nhwc.shape(), &[2, 4, 5, 3]);
    assert!(nhwc.is_standard_layout());
    assert_eq!(nhwc[[1, 3, 2, 1]], x[[1, 1, 3, 2]]);
    for ((n, c, h, w), &v) in x.indexed_iter() {
        assert_eq!(nhwc[[n, h, w, c]], v);
    }
    let back = nhwc_to_nchw(nhwc.view()).unwrap();
    assert!(back.is_standard_layout());
    assert_eq!(back, x);

    let w = rand((8, 3, 2, 5), 121); // OIHW (F, C, HH, WW)
    let hwio = oihw_to_hwio(w.view()).unwrap();
    assert_eq!(hwio.shape(), &[2, 5, 3, 8]);
    assert!(hwio.is_standard_layout());
    assert_eq!(hwio[[1, 4, 2, 7]], w[[7, 2, 1, 4]]);
    for ((f, c, i, j), &v) in w.indexed_iter() {
        assert_eq!(hwio[[i, j, c, f]], v);
    }
    let back = hwio_to_oihw(hwio.view()).unwrap();
    assert!(back.is_standard_layout());
    assert_eq!(back, w);

    // A non-standard view is read in its logical order.
    let t = x.view().reversed_axes(); // (5, 4, 3, 2)
    assert_eq!(
        nchw_to_nhwc(t).unwrap(),
        nchw_to_nhwc(t.to_owned().view()).unwrap()
    );
}

#[test]
fn layout_of_cs231n_conv_weights_gives_the_same_convolution() {
    // cs231n's conv_forward_naive in NCHW/OIHW, stride 1, no padding.
    let x = rand((2, 3, 5, 6), 130);
    let w = rand((4, 3, 2, 3), 131);
    let b = rand(4, 132);
    let (n, c, h, wd) = x.dim();
    let (f, _, hh, ww) = w.dim();
    let (oh, ow) = (h - hh + 1, wd - ww + 1);
    let mut want = Array4::<f64>::zeros((n, f, oh, ow));
    for ((i, k, y, z), out) in want.indexed_iter_mut() {
        let mut sum = b[k];
        for ch in 0..c {
            for dy in 0..hh {
                for dz in 0..ww {
                    sum += x[[i, ch, y + dy, z + dz]] * w[[k, ch, dy, dz]];
                }
            }
        }
        *out = sum;
    }
    let x_nhwc = nchw_to_nhwc(x.view()).unwrap();
    let w_hwio = oihw_to_hwio(w.view()).unwrap();
    let (z, _) = conv_forward(
        x_nhwc.view(),
        w_hwio.view(),
        b.view(),
        ConvParams::new(1, 0),
    )
    .unwrap();
    let got = nhwc_to_nchw(z.view()).unwrap();
    assert!(rel_error(&got, &want) < 1e-14);
}
