//! The fully connected layers of cs231n's `layers.py`: ReLU, affine, softmax loss, and the L2
//! penalty of the weights, forward and backward.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayD, ArrayView1, ArrayView2, ArrayViewD, Axis, Dim, IxDyn, Zip};

use super::{checked_len, filled, real_from_f64, real_from_usize, try_array, try_map, Real};
use crate::error::{Error, Result};
use crate::layers::Labels;

/// What [`relu_backward`] needs from [`relu_forward`]: its input.
///
/// # Example
/// ```
/// use ndarray::arr1;
/// use wgpu_cnn::cpu::relu_forward;
///
/// let x = arr1(&[-1.0_f32, 2.0]).into_dyn();
/// let (_, cache) = relu_forward(x.view())?;
/// assert_eq!(cache.x, x);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ReluCache<A> {
    /// The input `x`, any shape.
    pub x: ArrayD<A>,
}

/// The rectified linear unit, element-wise: `out = max(0, x)`.
///
/// `x` has any shape (an empty one too); `out` has the same. NaN stays NaN (numpy's
/// `np.maximum(0, x)`). Returns `out` and the cache for [`relu_backward`].
///
/// # Errors
/// [`Error::TooLarge`] or [`Error::HostOutOfMemory`] when `out` or the cached copy of `x`
/// cannot be allocated (see [`MAX_HOST_BYTES`](super::MAX_HOST_BYTES)). Never panics.
///
/// # Example
/// ```
/// use ndarray::arr2;
/// use wgpu_cnn::cpu::relu_forward;
///
/// let x = arr2(&[[-1.5_f64, 0.0], [2.0, f64::NAN]]).into_dyn();
/// let (out, _cache) = relu_forward(x.view())?;
/// assert_eq!(out[[0, 0]], 0.0);
/// assert_eq!(out[[1, 0]], 2.0);
/// assert!(out[[1, 1]].is_nan());
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn relu_forward<A: Real>(x: ArrayViewD<A>) -> Result<(ArrayD<A>, ReluCache<A>)> {
    let out = try_map("relu out", x.view(), |&v| {
        if v > A::zero() || v.is_nan() {
            v
        } else {
            A::zero()
        }
    })?;
    let x = try_map("relu cache x", x, |&v| v)?;
    Ok((out, ReluCache { x }))
}

/// Backward pass of [`relu_forward`]: `dx = dout * (x > 0)`.
///
/// `dout` must have the shape of the forward input; `dx` has it too. As in numpy, the mask is a
/// factor: where `x <= 0` (or `x` is NaN) `dx` is `dout * 0`, so a NaN or infinite `dout` gives
/// NaN there.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `dout` and `cache.x` differ in shape; [`Error::TooLarge`] or
/// [`Error::HostOutOfMemory`] when `dx` cannot be allocated. Never panics.
///
/// # Example
/// ```
/// use ndarray::{arr1, Array1};
/// use wgpu_cnn::cpu::{relu_backward, relu_forward};
///
/// let x = arr1(&[-1.0_f64, 3.0]).into_dyn();
/// let (_, cache) = relu_forward(x.view())?;
/// let dx = relu_backward(arr1(&[5.0, 7.0]).into_dyn().view(), &cache)?;
/// assert_eq!(dx, arr1(&[0.0, 7.0]).into_dyn());
///
/// // dout must have x's shape.
/// assert!(relu_backward(Array1::<f64>::ones(3).into_dyn().view(), &cache).is_err());
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn relu_backward<A: Real>(dout: ArrayViewD<A>, cache: &ReluCache<A>) -> Result<ArrayD<A>> {
    if dout.shape() != cache.x.shape() {
        return Err(Error::ShapeMismatch {
            what: "relu_backward: dout must have the shape of the forward input x",
            expected: cache.x.shape().to_vec(),
            got: dout.shape().to_vec(),
        });
    }
    let mask = |x: A| if x > A::zero() { A::one() } else { A::zero() };
    try_array(
        "relu dx",
        dout.raw_dim(),
        dout.iter().zip(cache.x.iter()).map(|(&d, &x)| d * mask(x)),
    )
}

/// What [`affine_backward`] needs from [`affine_forward`]: cs231n's `(x, w, b)`.
///
/// Shapes: `x` `(N, d_1, ..., d_k)` with `k >= 1` (standard layout), `w` `(D, M)` with
/// `D = d_1 * ... * d_k`, `b` `(M,)`.
///
/// # Example
/// ```
/// use ndarray::{Array1, Array2, Array4};
/// use wgpu_cnn::cpu::affine_forward;
///
/// let x = Array4::<f32>::zeros((2, 3, 4, 5)).into_dyn();
/// let (w, b) = (Array2::<f32>::zeros((60, 10)), Array1::<f32>::zeros(10));
/// let (_, cache) = affine_forward(x.view(), w.view(), b.view())?;
/// assert_eq!(cache.x.shape(), &[2, 3, 4, 5]);
/// assert_eq!(cache.w.dim(), (60, 10));
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct AffineCache<A> {
    /// The input `x`, `(N, d_1, ..., d_k)`.
    pub x: ArrayD<A>,
    /// The weights, `(D, M)`.
    pub w: Array2<A>,
    /// The bias, `(M,)`.
    pub b: Array1<A>,
}

/// The gradients returned by [`affine_backward`].
///
/// Shapes: `dx` that of `x`, `(N, d_1, ..., d_k)`; `dw` `(D, M)`; `db` `(M,)`.
///
/// # Example
/// ```
/// use ndarray::{Array1, Array2};
/// use wgpu_cnn::cpu::{affine_backward, affine_forward};
///
/// let x = Array2::<f64>::ones((4, 3)).into_dyn();
/// let (w, b) = (Array2::<f64>::ones((3, 2)), Array1::<f64>::zeros(2));
/// let (out, cache) = affine_forward(x.view(), w.view(), b.view())?;
/// let grads = affine_backward(Array2::ones(out.raw_dim()).view(), &cache)?;
/// assert_eq!(grads.dx.shape(), &[4, 3]);
/// assert_eq!(grads.dw.dim(), (3, 2));
/// assert_eq!(grads.db.len(), 2);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct AffineGrads<A> {
    /// Gradient with respect to `x`, shaped like `x`.
    pub dx: ArrayD<A>,
    /// Gradient with respect to `w`, `(D, M)`.
    pub dw: Array2<A>,
    /// Gradient with respect to `b`, `(M,)`.
    pub db: Array1<A>,
}

/// `D = d_1 * ... * d_k` for `x` of shape `(N, d_1, ..., d_k)`, or [`Error::Rank`] when `x`
/// has no feature axis.
fn features(what: &'static str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape.split_first() {
        Some((&n, rest)) if !rest.is_empty() => {
            // The product of the non-empty axes of an existing array fits in isize, and an empty
            // axis makes it 0, so this never saturates; saturating keeps it panic-free anyway.
            let d = rest.iter().fold(1usize, |acc, &k| acc.saturating_mul(k));
            Ok((n, d))
        }
        _ => Err(Error::Rank {
            what,
            expected: 2,
            shape: shape.to_vec(),
        }),
    }
}

/// Forward pass of an affine (fully connected) layer: `out = x2d @ w + b`, where `x2d` is `x`
/// of shape `(N, d_1, ..., d_k)` read as `(N, D)` row-major, `D = d_1 * ... * d_k` (for an NHWC
/// activation `(N, H, W, C)`: H, then W, then C, TensorFlow's flatten). `w` is `(D, M)`, `b`
/// `(M,)`, `out` `(N, M)`. Empty axes are allowed (`D = 0` gives `out = b` on every row).
/// Returns `out` and the cache for [`affine_backward`].
///
/// # Errors
/// [`Error::Rank`] when `x` has fewer than 2 axes (no batch axis, or no feature axis);
/// [`Error::ShapeMismatch`] when `w` is not `(D, M)` (`expected` is `[D, M]` with `D` from `x`,
/// `got` is `w`'s shape) or `b` is not `(M,)`; [`Error::TooLarge`] or
/// [`Error::HostOutOfMemory`] when `out` or a cached copy cannot be allocated. Never panics.
///
/// # Example
/// ```
/// use ndarray::{arr1, arr2, Array3};
/// use wgpu_cnn::cpu::affine_forward;
/// use wgpu_cnn::Error;
///
/// // Two examples of shape (1, 2), flattened to D = 2.
/// let x = Array3::from_shape_vec((2, 1, 2), vec![1.0_f64, 2.0, 3.0, 4.0]).unwrap().into_dyn();
/// let w = arr2(&[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]);
/// let b = arr1(&[0.5, 0.5, 0.5]);
/// let (out, _cache) = affine_forward(x.view(), w.view(), b.view())?;
/// assert_eq!(out, arr2(&[[1.5, 2.5, 3.5], [3.5, 4.5, 7.5]]));
///
/// // A rank-1 x has no batch axis.
/// let err = affine_forward(arr1(&[1.0, 2.0]).into_dyn().view(), w.view(), b.view());
/// assert!(matches!(err, Err(Error::Rank { .. })));
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn affine_forward<A: Real>(
    x: ArrayViewD<A>,
    w: ArrayView2<A>,
    b: ArrayView1<A>,
) -> Result<(Array2<A>, AffineCache<A>)> {
    let (n, d) = features("affine_forward x (N, d_1, ..., d_k) with k >= 1", x.shape())?;
    let m = w.ncols();
    if w.nrows() != d {
        return Err(Error::ShapeMismatch {
            what: "affine_forward: w must be (D, M) with D the product of x's axes after N",
            expected: vec![d, m],
            got: w.shape().to_vec(),
        });
    }
    if b.len() != m {
        return Err(Error::ShapeMismatch {
            what: "affine_forward: b must hold one value per column of w",
            expected: vec![m],
            got: b.shape().to_vec(),
        });
    }
    // Copies first, in standard layout: x2d is the cached x reshaped.
    let x = try_map("affine cache x", x, |&v| v)?;
    let w = try_map("affine cache w", w, |&v| v)?;
    let b = try_map("affine cache b", b, |&v| v)?;
    let x2d = x2d(&x, n, d)?;
    // out = b on every row, then out += x2d @ w.
    let mut out = try_array(
        "affine out",
        Dim([n, m]),
        (0..n).flat_map(|_| b.iter().copied()),
    )?;
    general_mat_mul(A::one(), &x2d, &w, A::one(), &mut out);
    Ok((out, AffineCache { x, w, b }))
}

/// `x` (standard layout, `N * D` elements) as an `(N, D)` view.
fn x2d<A>(x: &ArrayD<A>, n: usize, d: usize) -> Result<ArrayView2<'_, A>> {
    x.view()
        .into_shape_with_order((n, d))
        .map_err(|_| Error::ShapeMismatch {
            what: "affine: x must be in standard layout with N * D elements",
            expected: vec![n, d],
            got: x.shape().to_vec(),
        })
}

/// Backward pass of [`affine_forward`], from `dout` `(N, M)`: `dx = dout @ w.T` reshaped to
/// `x`'s shape, `dw = x2d.T @ dout`, `db = sum_N dout`.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `dout` is not `(N, M)`, or when a hand-built cache disagrees
/// with itself (`w` not `(D, M)`, `b` not `(M,)`); [`Error::Rank`] when the cached `x` has
/// fewer than 2 axes; [`Error::TooLarge`] or [`Error::HostOutOfMemory`] when a gradient cannot
/// be allocated. Never panics.
///
/// # Example
/// ```
/// use ndarray::{arr1, arr2};
/// use wgpu_cnn::cpu::{affine_backward, affine_forward};
///
/// let x = arr2(&[[1.0_f64, 2.0]]).into_dyn();
/// let w = arr2(&[[3.0], [4.0]]);
/// let (_, cache) = affine_forward(x.view(), w.view(), arr1(&[0.0]).view())?;
/// let grads = affine_backward(arr2(&[[10.0]]).view(), &cache)?;
/// assert_eq!(grads.dx, arr2(&[[30.0, 40.0]]).into_dyn());
/// assert_eq!(grads.dw, arr2(&[[10.0], [20.0]]));
/// assert_eq!(grads.db, arr1(&[10.0]));
///
/// // dout must be (N, M).
/// assert!(affine_backward(arr2(&[[1.0, 2.0]]).view(), &cache).is_err());
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn affine_backward<A: Real>(
    dout: ArrayView2<A>,
    cache: &AffineCache<A>,
) -> Result<AffineGrads<A>> {
    let AffineCache { x, w, b } = cache;
    let (n, d) = features(
        "affine_backward cache.x (N, d_1, ..., d_k) with k >= 1",
        x.shape(),
    )?;
    let m = w.ncols();
    if w.nrows() != d {
        return Err(Error::ShapeMismatch {
            what: "affine_backward: cache.w must be (D, M) with D the product of cache.x's axes after N",
            expected: vec![d, m],
            got: w.shape().to_vec(),
        });
    }
    if b.len() != m {
        return Err(Error::ShapeMismatch {
            what: "affine_backward: cache.b must hold one value per column of cache.w",
            expected: vec![m],
            got: b.shape().to_vec(),
        });
    }
    if dout.dim() != (n, m) {
        return Err(Error::ShapeMismatch {
            what: "affine_backward: dout must have the shape (N, M) of the forward output",
            expected: vec![n, m],
            got: dout.shape().to_vec(),
        });
    }
    let x2d = x2d(x, n, d)?;
    // dx = dout @ w.T, as (N, D), then shaped like x.
    let mut dx2d = filled("affine dx", Dim([n, d]), A::zero())?;
    general_mat_mul(A::one(), &dout, &w.t(), A::zero(), &mut dx2d);
    let dx = dx2d
        .into_shape_with_order(IxDyn(x.shape()))
        .map_err(|_| Error::ShapeMismatch {
            what: "affine_backward: dx must reshape to x's shape",
            expected: x.shape().to_vec(),
            got: vec![n, d],
        })?;
    // dw = x2d.T @ dout.
    let mut dw = filled("affine dw", Dim([d, m]), A::zero())?;
    general_mat_mul(A::one(), &x2d.t(), &dout, A::zero(), &mut dw);
    // db = sum over N of dout.
    let db = try_array(
        "affine db",
        Dim([m]),
        dout.axis_iter(Axis(1)).map(|col| col.sum()),
    )?;
    Ok(AffineGrads { dx, dw, db })
}

/// Softmax cross-entropy loss and its gradient:
/// `loss = mean_N(-sum_k y[n,k] * log softmax(scores)[n,k])`,
/// `dscores = (softmax(scores) - y) / N`.
///
/// `scores` is `(N, K)`; `y` is `labels.targets(N, K)` ([`Labels::targets`]): one-hot rows for
/// class indices, or the given `(N, K)` rows (any probabilities). Computed stably: each row's
/// maximum is subtracted first and `log softmax = shifted - ln(sum exp(shifted))`, so logits of
/// any finite size (1e4, 1e30) give a finite loss and gradient. NaN or infinite scores give NaN.
/// `dscores` is `(N, K)`.
///
/// # Errors
/// [`Error::EmptyTensor`] when `N` or `K` is 0 (the mean or the softmax would be empty);
/// from [`Labels::targets`]: [`Error::ShapeMismatch`] when there are not `N` labels (or the
/// rows are not `(N, K)`), [`Error::LabelOutOfRange`] when an index is not below `K`;
/// [`Error::TooLarge`] or [`Error::HostOutOfMemory`] when the targets or `dscores` cannot be
/// allocated. Never panics.
///
/// # Example
/// ```
/// use ndarray::{arr2, Array2};
/// use wgpu_cnn::cpu::softmax_loss;
/// use wgpu_cnn::{Error, Labels};
///
/// // Uniform scores: the loss is ln K.
/// let scores = Array2::<f64>::zeros((2, 4));
/// let (loss, dscores) = softmax_loss(scores.view(), &Labels::Indices(vec![0, 3]))?;
/// assert!((loss - 4f64.ln()).abs() < 1e-12);
/// assert!((dscores[[0, 0]] - (0.25 - 1.0) / 2.0).abs() < 1e-12);
/// assert!((dscores[[0, 1]] - 0.25 / 2.0).abs() < 1e-12);
///
/// // Huge logits stay finite.
/// let (loss, dscores) = softmax_loss(arr2(&[[1e4_f64, -1e4]]).view(), &Labels::Indices(vec![1]))?;
/// assert!((loss - 2e4).abs() < 1e-9 && dscores.iter().all(|g| g.is_finite()));
///
/// // Label 4 of 4 classes.
/// let err = softmax_loss(scores.view(), &Labels::Indices(vec![0, 4]));
/// assert!(matches!(err, Err(Error::LabelOutOfRange { index: 1, label: 4, classes: 4 })));
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn softmax_loss<A: Real>(scores: ArrayView2<A>, labels: &Labels) -> Result<(A, Array2<A>)> {
    let (n, k) = scores.dim();
    if n == 0 || k == 0 {
        return Err(Error::EmptyTensor {
            what: "softmax_loss scores (N, K)",
            shape: vec![n, k],
        });
    }
    // Labels::targets allocates (N, K) f32s: check that first.
    checked_len::<f32>("softmax_loss targets", &[n, k])?;
    let y = labels.targets(n, k)?;
    let n_real: A = real_from_usize(n);
    let mut dscores = filled("softmax_loss dscores", Dim([n, k]), A::zero())?;
    let mut loss = A::zero();
    for ((row, y_row), mut d_row) in scores
        .outer_iter()
        .zip(y.outer_iter())
        .zip(dscores.outer_iter_mut())
    {
        // Shift by the row's maximum (NaN if the row holds NaN).
        let max = row.iter().fold(A::neg_infinity(), |m, &s| {
            if s.is_nan() || m.is_nan() {
                A::nan()
            } else {
                m.max(s)
            }
        });
        let log_sum = row.iter().map(|&s| (s - max).exp()).sum::<A>().ln();
        Zip::from(&mut d_row)
            .and(&row)
            .and(&y_row)
            .for_each(|d, &s, &t| {
                let t: A = real_from_f64(f64::from(t));
                let log_p = s - max - log_sum;
                loss = loss - t * log_p;
                *d = (log_p.exp() - t) / n_real;
            });
    }
    Ok((loss / n_real, dscores))
}

/// The L2 penalty of some weight tensors: `0.5 * reg * sum(w^2)` over every element of every
/// tensor in `weights` (any shapes; none at all gives 0). Its gradient with respect to each
/// tensor `w` is `reg * w`, which is what the optimizers' `weight_decay` adds to `dw`.
///
/// Cannot fail: nothing is allocated.
///
/// # Example
/// ```
/// use ndarray::{arr1, arr2};
/// use wgpu_cnn::cpu::l2_penalty;
///
/// let w1 = arr2(&[[1.0_f64, 2.0]]).into_dyn();
/// let w2 = arr1(&[3.0]).into_dyn();
/// // 0.5 * 0.1 * (1 + 4 + 9)
/// assert!((l2_penalty(&[w1.view(), w2.view()], 0.1) - 0.7).abs() < 1e-12);
/// ```
pub fn l2_penalty<A: Real>(weights: &[ArrayViewD<A>], reg: f64) -> A {
    let sum_sq: A = weights
        .iter()
        .map(|w| w.iter().map(|&v| v * v).sum::<A>())
        .sum();
    real_from_f64::<A>(0.5 * reg) * sum_sq
}
