//! The CPU reference path: the convolution and pooling layers of the numpy exercises this crate
//! started from, and the other layers of a network (ReLU, affine, softmax loss, batch and group
//! norm, optimizers, after cs231n's `layers.py` and `optim.py`), written again on `ndarray`.
//!
//! This module is the oracle every GPU kernel is checked against, so it reads like those
//! exercises: the same function names, the same loop order (`i`, `h`, `w`, `c`), NHWC layout,
//! and slices that look like the numpy slices
//! (`a_prev.slice(s![i, vert_start..vert_end, horiz_start..horiz_end, c])`). Obvious beats
//! fast. Everything is generic over the float type ([`Real`]: `f32` or `f64`), so tests can run
//! the reference in `f64`.
//!
//! # Shapes (NHWC)
//!
//! | tensor | shape |
//! |---|---|
//! | input `A_prev`, its gradient `dA_prev` | `(m, n_H_prev, n_W_prev, n_C_prev)` |
//! | weights `W`, their gradient `dW` | `(f_h, f_w, n_C_prev, n_C)` |
//! | bias `b` | `(1, 1, 1, n_C)` or `(n_C,)`; its gradient `db` is `(1, 1, 1, n_C)` |
//! | convolution output `Z`, its gradient `dZ` | `(m, n_H, n_W, n_C)` |
//! | pooling output `A`, its gradient `dA` | `(m, n_H, n_W, n_C_prev)` (channels unchanged) |
//!
//! Along each axis the output size is
//!
//! ```text
//! n_out = floor((n_in + pad_before + pad_after - f) / stride) + 1
//! ```
//!
//! with `f` the kernel (filter or window) extent on that axis; pooling has no padding. Stride,
//! kernel and padding may differ between height and width, and padding may differ on each side
//! ([`Padding`](crate::Padding)). The formula lives in one place,
//! [`ConvGeometry`](crate::ConvGeometry) and [`PoolGeometry`](crate::PoolGeometry), which check
//! every shape with overflow-checked arithmetic; bad shapes are an [`Error`], never a panic.
//! Below, `s_h`, `s_w` are the strides and `A_pad` is `A_prev` with zero padding, that is
//! `A_pad[i, h, w, k] = A_prev[i, h - top, w - left, k]` inside the input and 0 elsewhere.
//!
//! # What each function computes
//!
//! - [`zero_pad`]`(X, pad)`: `X` with `top`/`bottom` rows and `left`/`right` columns of zeros
//!   added around height and width of every image, shape
//!   `(m, n_H + top + bottom, n_W + left + right, n_C)`; `pad = 0` returns a copy.
//! - [`conv_single_step`]`(a_slice_prev, W, b)`: `sum(a_slice_prev * W) + b`, both slices
//!   `(f_h, f_w, n_C_prev)`, the bias added once.
//! - [`conv_forward`]`(A_prev, W, b, params)`:
//!   `Z[i,h,w,c] = sum_{dh,dw,k} A_pad[i, h*s_h+dh, w*s_w+dw, k] * W[dh,dw,k,c] + b[c]`,
//!   sums over `dh < f_h`, `dw < f_w`, `k < n_C_prev`. Returns `Z` and a [`ConvCache`].
//! - [`conv_backward`]`(dZ, cache)`: with the same sums,
//!   - `dA_prev[i, h_in, w_in, k] = sum W[dh,dw,k,c] * dZ[i,h,w,c]` over every
//!     `(h, w, c, dh, dw)` with `h*s_h + dh = h_in + top` and `w*s_w + dw = w_in + left`
//!     (the gradient that lands in the padding is dropped);
//!   - `dW[dh,dw,k,c] = sum_{i,h,w} A_pad[i, h*s_h+dh, w*s_w+dw, k] * dZ[i,h,w,c]`;
//!   - `db[c] = sum_{i,h,w} dZ[i,h,w,c]`.
//! - [`pool_forward`]`(A_prev, params)`: over the window
//!   `A_prev[i, h*s_h .. h*s_h+f_h, w*s_w .. w*s_w+f_w, c]`, `A[i,h,w,c]` is its maximum
//!   ([`PoolMode::Max`](crate::PoolMode::Max), NaN if it holds NaN) or its mean
//!   ([`PoolMode::Average`](crate::PoolMode::Average)). Returns `A` and a [`PoolCache`].
//! - [`create_mask_from_window`]`(x)`: `x == max(x)`, true at every element equal to the
//!   maximum; [`first_max_mask`]`(x)`: true only at the first of them in row-major order.
//! - [`distribute_value`]`(dz, (n_H, n_W))`: an `(n_H, n_W)` matrix whose every entry is
//!   `dz / (n_H * n_W)`.
//! - [`pool_backward`]`(dA, cache)`: each output gradient `dA[i,h,w,c]` flows into its own
//!   window of `dA_prev` (overlapping windows add up). Max: it goes to the window's maximum;
//!   with [`Ties::EveryMax`](crate::Ties::EveryMax) (the exercises' mask,
//!   [`create_mask_from_window`]) every element equal to the maximum receives all of it, with
//!   [`Ties::FirstMax`](crate::Ties::FirstMax) ([`first_max_mask`], PyTorch's rule) only the
//!   first in row-major window order. Average: it is spread evenly, `dA[i,h,w,c] / (f_h * f_w)`
//!   to every element of the window ([`distribute_value`]).
//!
//! The other layers (shapes NHWC, statistics with the biased variance, settings in
//! [`BatchNorm`](crate::BatchNorm), [`GroupNorm`](crate::GroupNorm), [`Labels`](crate::Labels)
//! and the optimizers' configs):
//!
//! - [`relu_forward`]`(x)`: `max(0, x)` element-wise, any shape; NaN stays NaN. Returns the
//!   output and a [`ReluCache`]. [`relu_backward`]`(dout, cache)`: `dout * (x > 0)`.
//! - [`affine_forward`]`(x, w, b)`: `x` `(N, d_1, ..., d_k)` read as `(N, D)` row-major (for
//!   `(N, H, W, C)`: H, then W, then C, TensorFlow's flatten), `out = x2d @ w + b`, `w` `(D, M)`,
//!   `b` `(M,)`, `out` `(N, M)`. Returns an [`AffineCache`]. [`affine_backward`]`(dout, cache)`:
//!   [`AffineGrads`] `dx = dout @ w.T` (shaped like `x`), `dw = x2d.T @ dout`,
//!   `db = sum_N dout`.
//! - [`softmax_loss`]`(scores, labels)`: `scores` `(N, K)`, `y = labels.targets(N, K)` (one-hot
//!   rows for class indices); `loss = mean_N(-sum_k y * log_softmax(scores))`, computed with
//!   each row's maximum subtracted, and `dscores = (softmax(scores) - y) / N`.
//! - [`l2_penalty`]`(weights, reg)`: `0.5 * reg * sum(w^2)` over every given tensor; its
//!   gradient is `reg * w`, the optimizers' `weight_decay` term.
//! - [`spatial_batchnorm_forward`]`(x, gamma, beta, state, bn)`: per channel over `(N, H, W)`,
//!   `xhat = (x - mu) / sqrt(var + eps)`, `out = gamma * xhat + beta`. Train mode uses the
//!   batch's `mu`, `var` and updates the [`BatchNormState`] (zeros at first):
//!   `running = momentum * running + (1 - momentum) * batch`; test mode uses the running
//!   statistics. Returns a [`BatchNormCache`]. [`spatial_batchnorm_backward`]`(dout, cache)`:
//!   [`NormGrads`], in train mode `dx = (1/n) * inv_std * (n * dxhat - sum(dxhat) -
//!   xhat * sum(dxhat * xhat))` per channel, `n = N*H*W`, `dxhat = dout * gamma`; in test mode
//!   (constant statistics) `dx = dout * gamma * inv_std`; `dgamma = sum dout * xhat`,
//!   `dbeta = sum dout` over `(N, H, W)`.
//! - [`spatial_groupnorm_forward`]`(x, gamma, beta, gn)`: channels split into `G` groups of
//!   `C/G` consecutive channels, `mu`, `var` per `(sample, group)` over `(H, W, C/G)`, then as
//!   batch norm with per-channel `gamma`, `beta`. Returns a [`GroupNormCache`].
//!   [`spatial_groupnorm_backward`]`(dout, cache)`: the batch-norm `dx` formula per
//!   `(sample, group)` with `n = H*W*C/G`; `dgamma`, `dbeta` per channel over `(N, H, W)`.
//! - [`sgd`]`(w, dw, cfg)`: `w -= lr * g`; [`sgd_momentum`]`(w, dw, v, cfg)`:
//!   `v = momentum * v - lr * g; w += v`; [`adam`]`(w, dw, state, cfg)` with an [`AdamState`]:
//!   `t += 1; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
//!   w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`. All in place, with
//!   `g = dw + weight_decay * w`.
//! - [`nchw_to_nhwc`], [`nhwc_to_nchw`]: activations `(N, C, H, W)` to `(N, H, W, C)` and back;
//!   [`oihw_to_hwio`], [`hwio_to_oihw`]: convolution weights `(F, C, HH, WW)` (cs231n) to
//!   `(HH, WW, C, F)` (this crate) and back. New arrays in standard layout.
//!
//! # Defects of the original numpy exercises that this crate does not copy
//!
//! - (a) Three versions of `conv_single_step` add the bias inside the element-wise product
//!   (`np.multiply(a_slice_prev, W) + b`, then the sum), which counts it `f * f * n_C_prev`
//!   times. Here it is added once per output element.
//! - (b) Pooling backward in two versions reads `dA[i, vert_start, horiz_start, c]`, the
//!   gradient at the window's input corner, which is the output position only at stride 1.
//!   Here each output gradient `dA[i,h,w,c]` flows into its own window, for every stride.
//! - (c) Cutting the padding off with the `X[pad:-pad]` idiom breaks for `pad = 0` (the slice
//!   `0:-0` is empty). `pad = 0` works here, and the padding may differ on each side.
//! - (d) cs231n's group-norm backward write-up has `sum(dxhat) * xhat` where the formula needs
//!   `xhat * sum(dxhat * xhat)`; its `dx` fails a finite-difference check. Here the correct
//!   formula is used (and `tests/cpu_layers.rs` shows the other one failing).
//!
//! # Memory
//!
//! No function here aborts the process on a huge allocation. The padded input is never
//! materialised by the convolution: windows are read from the unpadded input, positions in the
//! padding count as 0, so a huge padding costs nothing when the output is small. Every array the
//! reference allocates (outputs, gradients, the copies in the caches) is checked first: its
//! element count must be indexable (fit in `isize`) and its size at most [`MAX_HOST_BYTES`],
//! else [`Error::TooLarge`] names the shape, the bytes and the limit, before anything is
//! allocated. Below the limit the memory is reserved with `Vec::try_reserve_exact`, and a
//! refusal is [`Error::HostOutOfMemory`].
//!
//! ```
//! use ndarray::Array4;
//! use wgpu_cnn::cpu::{conv_backward, conv_forward};
//! use wgpu_cnn::ConvParams;
//!
//! let a_prev = Array4::<f64>::ones((1, 3, 3, 1));
//! let w = Array4::<f64>::ones((2, 2, 1, 1));
//! let b = ndarray::arr1(&[0.5]);
//! let (z, cache) = conv_forward(a_prev.view(), w.view(), b.view(), ConvParams::new(1, 0))?;
//! assert_eq!(z.shape(), &[1, 2, 2, 1]);
//! assert_eq!(z[[0, 0, 0, 0]], 4.5);
//! let grads = conv_backward(Array4::ones(z.raw_dim()).view(), &cache)?;
//! assert_eq!(grads.db[[0, 0, 0, 0]], 4.0);
//! # Ok::<(), wgpu_cnn::Error>(())
//! ```

mod conv;
mod layers;
mod layout;
mod norm;
mod optim;
mod pad;
mod pool;

pub use conv::{conv_backward, conv_forward, conv_single_step, ConvCache, ConvGrads};
pub use layers::{
    affine_backward, affine_forward, l2_penalty, relu_backward, relu_forward, softmax_loss,
    AffineCache, AffineGrads, ReluCache,
};
pub use layout::{hwio_to_oihw, nchw_to_nhwc, nhwc_to_nchw, oihw_to_hwio};
pub use norm::{
    spatial_batchnorm_backward, spatial_batchnorm_forward, spatial_groupnorm_backward,
    spatial_groupnorm_forward, BatchNormCache, BatchNormState, GroupNormCache, NormGrads,
};
pub use optim::{adam, sgd, sgd_momentum, AdamState};
pub use pad::zero_pad;
pub use pool::{
    create_mask_from_window, distribute_value, first_max_mask, pool_backward, pool_forward,
    PoolCache,
};

use ndarray::{Array, ArrayBase, ArrayView, Data, Dim, Dimension, Ix4};

use crate::error::{Error, Result};

/// The float types the CPU reference runs in: `f32` (what the GPU computes) and `f64` (what the
/// gradient checks and the numbers printed by the numpy exercises need).
///
/// ```
/// use wgpu_cnn::cpu::Real;
///
/// fn half<A: Real>(x: A) -> A {
///     x / (A::one() + A::one())
/// }
/// assert_eq!(half(3.0_f32), 1.5);
/// assert_eq!(half(3.0_f64), 1.5);
/// ```
pub trait Real:
    num_traits::Float
    + ndarray::ScalarOperand
    + std::iter::Sum
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl Real for f32 {}
impl Real for f64 {}

/// `n` as a float. Integer-to-float casts never fail for `f32` and `f64`; another `Real` that
/// cannot hold `n` gets NaN rather than a panic.
fn real_from_usize<A: Real>(n: usize) -> A {
    A::from(n).unwrap_or_else(A::nan)
}

/// `x` as a float. `f64` to `f32` rounds (and overflows to infinity); another `Real` that
/// cannot hold `x` gets NaN rather than a panic.
fn real_from_f64<A: Real>(x: f64) -> A {
    A::from(x).unwrap_or_else(A::nan)
}

/// The shape of a 4-d array as `[m, n_H, n_W, n_C]`.
fn shape4<S: Data>(x: &ArrayBase<S, Ix4>) -> [usize; 4] {
    let (m, h, w, c) = x.dim();
    [m, h, w, c]
}

/// The largest array, in bytes, that the CPU reference allocates: 16 GiB (`1 << 34`).
///
/// Every output, gradient and cached copy is checked against it before it is allocated; a
/// larger one is [`Error::TooLarge`] with this `limit`. The reference is an oracle for test-sized
/// layers; 16 GiB is far above what they need and below what would be reasonable to fill.
pub const MAX_HOST_BYTES: u64 = 1 << 34;

/// The element count of an array of `shape` holding `T`s, checked before allocating it.
///
/// # Errors
/// [`Error::TooLarge`] when the product of the non-empty axes, in bytes, overflows `isize`
/// (ndarray cannot index such an array, even with an empty axis; `limit` is `isize::MAX`), or
/// when the array's size exceeds [`MAX_HOST_BYTES`] (`limit` is that).
fn checked_len<T>(what: &'static str, shape: &[usize]) -> Result<usize> {
    let size = std::mem::size_of::<T>().max(1) as u64;
    // The bytes of the non-empty axes, saturated: what the error reports.
    let bytes = shape
        .iter()
        .filter(|&&n| n != 0)
        .fold(size, |acc, &n| acc.saturating_mul(n as u64));
    let too_large = |limit| Error::TooLarge {
        what,
        shape: shape.to_vec(),
        bytes,
        limit,
    };
    let index_limit = isize::MAX.unsigned_abs() as u64;
    if bytes > index_limit {
        return Err(too_large(index_limit));
    }
    if shape.contains(&0) {
        return Ok(0);
    }
    if bytes > MAX_HOST_BYTES {
        return Err(too_large(MAX_HOST_BYTES));
    }
    // bytes <= isize::MAX, so the element count fits in usize.
    Ok(shape.iter().product())
}

/// An array of `shape` whose elements, in row-major order, are the first elements of `values`;
/// checked by [`checked_len`], then allocated with `try_reserve_exact`.
///
/// # Errors
/// [`Error::TooLarge`] from [`checked_len`]; [`Error::HostOutOfMemory`] when the allocator
/// refuses; [`Error::ShapeMismatch`] when `values` runs out early (a bug of the caller).
fn try_array<T, D: Dimension>(
    what: &'static str,
    shape: D,
    values: impl IntoIterator<Item = T>,
) -> Result<Array<T, D>> {
    let len = checked_len::<T>(what, shape.slice())?;
    let mut data = Vec::new();
    data.try_reserve_exact(len)
        .map_err(|_| Error::HostOutOfMemory {
            what,
            shape: shape.slice().to_vec(),
            bytes: (len as u64).saturating_mul(std::mem::size_of::<T>() as u64),
        })?;
    data.extend(values.into_iter().take(len));
    let got = data.len();
    Array::from_shape_vec(shape.clone(), data).map_err(|_| Error::ShapeMismatch {
        what,
        expected: shape.slice().to_vec(),
        got: vec![got],
    })
}

/// An array of `shape` filled with `value`, checked like [`try_array`].
fn filled<T: Clone, D: Dimension>(what: &'static str, shape: D, value: T) -> Result<Array<T, D>> {
    try_array(what, shape, std::iter::repeat(value))
}

/// A 4-d array of zeros, checked like [`try_array`].
fn zeros4<A: Real>(what: &'static str, shape: [usize; 4]) -> Result<Array<A, Ix4>> {
    filled(what, Dim(shape), A::zero())
}

/// `f` applied to every element of `x`, as a new array of `x`'s shape, checked like
/// [`try_array`]. With `Clone::clone`, an owned copy that cannot abort the process (a view may
/// be a broadcast far larger than its memory).
fn try_map<T, U, D: Dimension>(
    what: &'static str,
    x: ArrayView<T, D>,
    f: impl FnMut(&T) -> U,
) -> Result<Array<U, D>> {
    try_array(what, x.raw_dim(), x.iter().map(f))
}
