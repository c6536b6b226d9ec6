//! Conversions between this crate's layouts and cs231n's (PyTorch's): activations NHWC and
//! NCHW, convolution weights HWIO `(HH, WW, C, F)` and OIHW `(F, C, HH, WW)`.

use ndarray::{Array4, ArrayView4};

use super::{try_map, Real};
use crate::error::Result;

/// `x` with its axes permuted (`axes[k]` is the axis of `x` that becomes axis `k`), copied into
/// a new array in standard (row-major) layout.
fn permuted<A: Real>(what: &'static str, x: ArrayView4<A>, axes: [usize; 4]) -> Result<Array4<A>> {
    // try_map fills the new array in the logical order of the permuted view: standard layout.
    try_map(what, x.permuted_axes(axes), |&v| v)
}

/// Activations from NCHW `(N, C, H, W)` (cs231n, PyTorch) to NHWC `(N, H, W, C)` (this crate):
/// `out[n, h, w, c] = x[n, c, h, w]`. The result is a new array in standard layout.
///
/// # Errors
/// [`Error::TooLarge`](crate::Error::TooLarge) or
/// [`Error::HostOutOfMemory`](crate::Error::HostOutOfMemory) when the copy cannot be allocated
/// (a broadcast view may be far larger than its memory). Never panics.
///
/// # Example
/// ```
/// use ndarray::Array4;
/// use wgpu_cnn::cpu::nchw_to_nhwc;
///
/// let x = Array4::from_shape_fn((2, 3, 4, 5), |(n, c, h, w)| (1000 * n + 100 * c + 10 * h + w) as f32);
/// let y = nchw_to_nhwc(x.view())?;
/// assert_eq!(y.shape(), &[2, 4, 5, 3]);
/// assert_eq!(y[[1, 3, 4, 2]], 1234.0);
/// assert!(y.is_standard_layout());
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn nchw_to_nhwc<A: Real>(x: ArrayView4<A>) -> Result<Array4<A>> {
    permuted("nchw_to_nhwc output", x, [0, 2, 3, 1])
}

/// Activations from NHWC `(N, H, W, C)` to NCHW `(N, C, H, W)`:
/// `out[n, c, h, w] = x[n, h, w, c]`; the inverse of [`nchw_to_nhwc`]. The result is a new array
/// in standard layout.
///
/// # Errors
/// [`Error::TooLarge`](crate::Error::TooLarge) or
/// [`Error::HostOutOfMemory`](crate::Error::HostOutOfMemory) when the copy cannot be allocated.
/// Never panics.
///
/// # Example
/// ```
/// use ndarray::Array4;
/// use wgpu_cnn::cpu::{nchw_to_nhwc, nhwc_to_nchw};
///
/// let x = Array4::from_shape_fn((2, 4, 5, 3), |(n, h, w, c)| (1000 * n + 100 * c + 10 * h + w) as f64);
/// let y = nhwc_to_nchw(x.view())?;
/// assert_eq!(y.shape(), &[2, 3, 4, 5]);
/// assert_eq!(y[[1, 2, 3, 4]], 1234.0);
/// assert_eq!(nchw_to_nhwc(y.view())?, x);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn nhwc_to_nchw<A: Real>(x: ArrayView4<A>) -> Result<Array4<A>> {
    permuted("nhwc_to_nchw output", x, [0, 3, 1, 2])
}

/// Convolution weights from cs231n's OIHW `(F, C, HH, WW)` to this crate's HWIO
/// `(HH, WW, C, F)` (the exercises' `(f_h, f_w, n_C_prev, n_C)`):
/// `out[i, j, c, f] = w[f, c, i, j]`. The result is a new array in standard layout.
///
/// # Errors
/// [`Error::TooLarge`](crate::Error::TooLarge) or
/// [`Error::HostOutOfMemory`](crate::Error::HostOutOfMemory) when the copy cannot be allocated.
/// Never panics.
///
/// # Example
/// ```
/// use ndarray::Array4;
/// use wgpu_cnn::cpu::oihw_to_hwio;
///
/// let w = Array4::from_shape_fn((8, 3, 5, 7), |(f, c, i, j)| (1000 * f + 100 * c + 10 * i + j) as f32);
/// let hwio = oihw_to_hwio(w.view())?;
/// assert_eq!(hwio.shape(), &[5, 7, 3, 8]);
/// assert_eq!(hwio[[4, 6, 2, 7]], 7246.0);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn oihw_to_hwio<A: Real>(w: ArrayView4<A>) -> Result<Array4<A>> {
    permuted("oihw_to_hwio output", w, [2, 3, 1, 0])
}

/// Convolution weights from HWIO `(HH, WW, C, F)` to OIHW `(F, C, HH, WW)`:
/// `out[f, c, i, j] = w[i, j, c, f]`; the inverse of [`oihw_to_hwio`]. The result is a new
/// array in standard layout.
///
/// # Errors
/// [`Error::TooLarge`](crate::Error::TooLarge) or
/// [`Error::HostOutOfMemory`](crate::Error::HostOutOfMemory) when the copy cannot be allocated.
/// Never panics.
///
/// # Example
/// ```
/// use ndarray::Array4;
/// use wgpu_cnn::cpu::{hwio_to_oihw, oihw_to_hwio};
///
/// let w = Array4::from_shape_fn((5, 7, 3, 8), |(i, j, c, f)| (1000 * f + 100 * c + 10 * i + j) as f64);
/// let oihw = hwio_to_oihw(w.view())?;
/// assert_eq!(oihw.shape(), &[8, 3, 5, 7]);
/// assert_eq!(oihw[[7, 2, 4, 6]], 7246.0);
/// assert_eq!(oihw_to_hwio(oihw.view())?, w);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn hwio_to_oihw<A: Real>(w: ArrayView4<A>) -> Result<Array4<A>> {
    permuted("hwio_to_oihw output", w, [3, 2, 0, 1])
}
