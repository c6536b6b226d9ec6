//! Zero padding, the seeds' `zero_pad`.

use ndarray::{s, Array4, ArrayView4};

use super::{shape4, zeros4, Real};
use crate::error::Result;
use crate::params::Padding;

/// Pads every image of the batch `x` with zeros around height and width only: the seeds'
/// `np.pad(X, ((0,0), (top,bottom), (left,right), (0,0)), 'constant')`.
///
/// `x` has shape `(m, n_H, n_W, n_C)`; the result has shape
/// `(m, n_H + top + bottom, n_W + left + right, n_C)` with `x` at rows `top..top + n_H` and
/// columns `left..left + n_W`. `pad` is a [`Padding`] or, as in the seeds, one `usize` for all
/// four sides. A padding of 0 returns a copy of `x`. An empty `x` gives an empty result.
///
/// # Errors
/// [`Error::TooLarge`](crate::Error::TooLarge) when the padded array cannot be indexed
/// (its size overflows `isize`).
///
/// # Example
/// ```
/// use ndarray::Array4;
/// use wgpu_cnn::cpu::zero_pad;
/// use wgpu_cnn::Padding;
///
/// let x = Array4::<f32>::ones((4, 3, 3, 2));
/// assert_eq!(zero_pad(x.view(), 2)?.shape(), &[4, 7, 7, 2]);
///
/// // One row on top, none below, two columns on the left, none on the right.
/// let x_pad = zero_pad(x.view(), Padding::explicit(1, 0, 2, 0))?;
/// assert_eq!(x_pad.shape(), &[4, 4, 5, 2]);
/// assert_eq!(x_pad[[0, 0, 2, 0]], 0.0);
/// assert_eq!(x_pad[[0, 1, 2, 0]], 1.0);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn zero_pad<A: Real>(x: ArrayView4<A>, pad: impl Into<Padding>) -> Result<Array4<A>> {
    let pad = pad.into();
    let [m, n_h, n_w, n_c] = shape4(&x);
    let padded = [
        m,
        n_h.saturating_add(pad.top).saturating_add(pad.bottom),
        n_w.saturating_add(pad.left).saturating_add(pad.right),
        n_c,
    ];
    // A saturated axis is at least usize::MAX, which `zeros4` rejects unless another axis is 0;
    // then the padded array is empty and the input fits in it whatever the padding.
    let mut x_pad = zeros4("padded input", padded)?;
    if x.is_empty() {
        return Ok(x_pad);
    }
    x_pad
        .slice_mut(s![.., pad.top..pad.top + n_h, pad.left..pad.left + n_w, ..])
        .assign(&x);
    Ok(x_pad)
}
