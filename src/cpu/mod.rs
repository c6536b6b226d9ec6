//! The CPU reference path: the seeds' numpy functions, written again on `ndarray`.
//!
//! This module is the oracle every GPU kernel is checked against, so it reads like the seeds:
//! the same names (`zero_pad`, `conv_single_step`, `conv_forward`, `conv_backward`,
//! `pool_forward`, `create_mask_from_window`, `distribute_value`, `pool_backward`), the same
//! loop order (`i`, `h`, `w`, `c`), NHWC layout, and slices that look like the numpy slices
//! (`a_prev_pad.slice(s![vert_start..vert_end, horiz_start..horiz_end, ..])`). Obvious beats
//! fast.
//!
//! It differs from the seeds where the seeds are wrong (see `SPEC.md`):
//!
//! - the bias is added once per output element, not once per product;
//! - pooling backward reads `dA[i, h, w, c]`, which is right for every stride;
//! - `pad = 0` works (no `X[pad:-pad]`), and padding may differ on each side;
//! - stride and kernel may differ between height and width.
//!
//! Shapes are checked by [`ConvGeometry`](crate::ConvGeometry) and
//! [`PoolGeometry`](crate::PoolGeometry), the one place that knows the output-size formula;
//! bad shapes are an [`Error`], never a panic.
//!
//! Everything is generic over the float type ([`Real`]: `f32` or `f64`), so tests can run the
//! reference in `f64`.
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
mod pad;
mod pool;

pub use conv::{conv_backward, conv_forward, conv_single_step, ConvCache, ConvGrads};
pub use pad::zero_pad;
pub use pool::{
    create_mask_from_window, distribute_value, first_max_mask, pool_backward, pool_forward,
    PoolCache,
};

use ndarray::{Array, ArrayBase, Data, Dim, Dimension, Ix4};

use crate::error::{Error, Result};

/// The float types the CPU reference runs in: `f32` (what the GPU computes) and `f64` (what the
/// gradient checks and the seed numbers need).
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

/// The shape of a 4-d array as `[m, n_H, n_W, n_C]`.
fn shape4<S: Data>(x: &ArrayBase<S, Ix4>) -> [usize; 4] {
    let (m, h, w, c) = x.dim();
    [m, h, w, c]
}

/// An array of `shape` filled with `value`, or [`Error::TooLarge`] when its element count or its
/// size in bytes would overflow `isize` (where `ndarray` would panic).
fn filled<A: Real, D: Dimension>(what: &'static str, shape: D, value: A) -> Result<Array<A, D>> {
    let limit = isize::MAX.unsigned_abs() as u64;
    let elements = shape
        .slice()
        .iter()
        .filter(|&&n| n != 0)
        .try_fold(1usize, |acc, &n| acc.checked_mul(n));
    let bytes = elements.and_then(|n| n.checked_mul(std::mem::size_of::<A>()));
    match bytes {
        Some(bytes) if bytes as u64 <= limit => Ok(Array::from_elem(shape, value)),
        _ => Err(Error::TooLarge {
            what,
            shape: shape.slice().to_vec(),
            bytes: shape
                .slice()
                .iter()
                .fold(std::mem::size_of::<A>() as u64, |acc, &n| {
                    acc.saturating_mul(n as u64)
                }),
            limit,
        }),
    }
}

/// A 4-d array of zeros, checked like [`filled`].
fn zeros4<A: Real>(what: &'static str, shape: [usize; 4]) -> Result<Array<A, Ix4>> {
    filled(what, Dim(shape), A::zero())
}
