//! Zero padding: the numpy exercises' `zero_pad`.

use ndarray::{s, Array4, ArrayView4};

use super::{shape4, zeros4, Real};
use crate::error::Result;
use crate::params::{padded_extent, Padding};

/// Pads every image of the batch `x` with zeros around height and width only: the numpy
/// exercises' `np.pad(X, ((0,0), (top,bottom), (left,right), (0,0)), mode='constant')`.
///
/// `x` has shape `(m, n_H, n_W, n_C)`; the result has shape
/// `(m, n_H + top + bottom, n_W + left + right, n_C)` with `x` at rows `top..top + n_H` and
/// columns `left..left + n_W`. `pad` is a [`Padding`] or, as in the exercises, one `usize` for
/// all four sides. A padding of 0 returns a copy of `x`. An empty `x` gives an empty result.
///
/// # Errors
/// [`Error::SizeOverflow`] when `n_H + top + bottom` or `n_W + left + right` exceeds
/// `usize::MAX`; [`Error::TooLarge`] when the padded array exceeds
/// [`MAX_HOST_BYTES`](super::MAX_HOST_BYTES) (or cannot be indexed), checked before anything is
/// allocated; [`Error::HostOutOfMemory`] when the allocator refuses it. Never panics.
///
/// [`Error::SizeOverflow`]: crate::Error::SizeOverflow
/// [`Error::TooLarge`]: crate::Error::TooLarge
/// [`Error::HostOutOfMemory`]: crate::Error::HostOutOfMemory
///
/// # Example
/// ```
/// use ndarray::Array4;
/// use wgpu_cnn::cpu::zero_pad;
/// use wgpu_cnn::{Error, Padding};
///
/// let x = Array4::<f32>::ones((4, 3, 3, 2));
/// assert_eq!(zero_pad(x.view(), 2)?.shape(), &[4, 7, 7, 2]);
///
/// // One row on top, none below, two columns on the left, none on the right.
/// let x_pad = zero_pad(x.view(), Padding::explicit(1, 0, 2, 0))?;
/// assert_eq!(x_pad.shape(), &[4, 4, 5, 2]);
/// assert_eq!(x_pad[[0, 0, 2, 0]], 0.0);
/// assert_eq!(x_pad[[0, 1, 2, 0]], 1.0);
///
/// // 2^20 on every side would need terabytes: an error, before allocating.
/// assert!(matches!(zero_pad(x.view(), 1 << 20), Err(Error::TooLarge { .. })));
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn zero_pad<A: Real>(x: ArrayView4<A>, pad: impl Into<Padding>) -> Result<Array4<A>> {
    let pad = pad.into();
    let [m, n_h, n_w, n_c] = shape4(&x);
    let padded_h = padded_extent(
        "padded height n_H + top + bottom",
        n_h,
        pad.top,
        pad.bottom,
        x.shape(),
    )?;
    let padded_w = padded_extent(
        "padded width n_W + left + right",
        n_w,
        pad.left,
        pad.right,
        x.shape(),
    )?;
    let mut x_pad = zeros4("padded input", [m, padded_h, padded_w, n_c])?;
    // top + n_H <= padded_h and left + n_W <= padded_w: the slice is in bounds.
    x_pad
        .slice_mut(s![.., pad.top..pad.top + n_h, pad.left..pad.left + n_w, ..])
        .assign(&x);
    Ok(x_pad)
}
