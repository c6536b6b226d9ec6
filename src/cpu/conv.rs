//! Convolution, forward and backward: the numpy exercises' `conv_single_step`, `conv_forward`
//! and `conv_backward`.

use std::ops::Range;

use ndarray::{
    s, Array1, Array3, Array4, ArrayView, ArrayView3, ArrayView4, Axis, Dim, Dimension, Zip,
};

use super::{filled, shape4, try_array, try_map, zeros4, Real};
use crate::error::{Error, Result};
use crate::params::{check_bias, ConvGeometry, ConvParams, Padding};

/// Applies one filter `w` with bias `b` at one position: `sum(a_slice_prev * w) + b`.
///
/// `a_slice_prev` and `w` both have shape `(f_h, f_w, n_C_prev)`. The bias is added once per
/// output element (three versions of the numpy exercises add it to every product, counting it
/// `f_h * f_w * n_C_prev` times; the printed expected outputs add it once). The products are
/// summed as they are made, without a temporary array.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `w` does not have the shape of `a_slice_prev`. Never panics.
///
/// # Example
/// ```
/// use ndarray::Array3;
/// use wgpu_cnn::cpu::conv_single_step;
///
/// let a_slice_prev = Array3::<f64>::from_elem((2, 2, 3), 2.0);
/// let w = Array3::<f64>::from_elem((2, 2, 3), 0.5);
/// // 12 products of 1.0, plus the bias once.
/// assert_eq!(conv_single_step(a_slice_prev.view(), w.view(), 0.25)?, 12.25);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn conv_single_step<A: Real>(a_slice_prev: ArrayView3<A>, w: ArrayView3<A>, b: A) -> Result<A> {
    if a_slice_prev.shape() != w.shape() {
        return Err(Error::ShapeMismatch {
            what: "conv_single_step: W must have the shape of a_slice_prev",
            expected: a_slice_prev.shape().to_vec(),
            got: w.shape().to_vec(),
        });
    }
    // Element-wise product between a_slice_prev and W, summed over all entries.
    let z = Zip::from(a_slice_prev)
        .and(w)
        .fold(A::zero(), |sum, &a, &w| sum + a * w);
    // Add the bias, once.
    Ok(z + b)
}

/// The part of a window `start..start + f` of a padded axis that lies inside the input, where
/// the input occupies `before..before + n` of that axis (`before` is the padding on that side):
/// as indices of the input, and as indices of the window. Both ranges are empty when the window
/// lies entirely in the padding.
///
/// `start + f` and `before + n` are at most the padded extent, which [`ConvGeometry`] has
/// checked to fit in `usize`.
fn inside_input(start: usize, f: usize, before: usize, n: usize) -> (Range<usize>, Range<usize>) {
    let lo = start.max(before);
    let hi = (start + f).min(before + n);
    if lo >= hi {
        return (0..0, 0..0);
    }
    (lo - before..hi - before, lo - start..hi - start)
}

/// The window `A_pad[vert_start..vert_start + f_h, horiz_start..horiz_start + f_w, :]` of one
/// zero-padded image, read from the unpadded image `a_prev` `(n_H_prev, n_W_prev, n_C_prev)`:
/// the part inside the image is copied, the rest lies in the padding and is 0. The padded image
/// itself is never made, so a huge padding costs nothing.
fn padded_window<A: Real>(
    a_prev: ArrayView3<A>,
    pad: Padding,
    (vert_start, horiz_start): (usize, usize),
    (f_h, f_w): (usize, usize),
) -> Result<Array3<A>> {
    let (n_h_prev, n_w_prev, n_c_prev) = a_prev.dim();
    let (rows, window_rows) = inside_input(vert_start, f_h, pad.top, n_h_prev);
    let (cols, window_cols) = inside_input(horiz_start, f_w, pad.left, n_w_prev);
    let mut window = filled("window of A_prev_pad", Dim([f_h, f_w, n_c_prev]), A::zero())?;
    window
        .slice_mut(s![window_rows, window_cols, ..])
        .assign(&a_prev.slice(s![rows, cols, ..]));
    Ok(window)
}

/// What [`conv_backward`] needs from [`conv_forward`]: the numpy exercises'
/// `(A_prev, W, b, hparameters)`, with the hyperparameters as the layer's [`ConvGeometry`].
///
/// Shapes: `a_prev` `(m, n_H_prev, n_W_prev, n_C_prev)`, `w` `(f_h, f_w, n_C_prev, n_C)`, `b`
/// `(n_C,)`; they agree with `geometry` (when built by [`conv_forward`]).
///
/// # Example
/// ```
/// use ndarray::{Array1, Array4};
/// use wgpu_cnn::cpu::conv_forward;
/// use wgpu_cnn::ConvParams;
///
/// let a_prev = Array4::<f32>::zeros((2, 5, 5, 3));
/// let w = Array4::<f32>::zeros((3, 3, 3, 4));
/// let b = Array1::<f32>::zeros(4);
/// let (_, cache) = conv_forward(a_prev.view(), w.view(), b.view(), ConvParams::new(1, 1))?;
/// assert_eq!(cache.a_prev.shape(), &[2, 5, 5, 3]);
/// assert_eq!(cache.b.len(), 4);
/// assert_eq!(cache.geometry.output_shape(), [2, 5, 5, 4]);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConvCache<A> {
    /// The input `A_prev`, `(m, n_H_prev, n_W_prev, n_C_prev)`.
    pub a_prev: Array4<A>,
    /// The weights `W`, `(f_h, f_w, n_C_prev, n_C)`.
    pub w: Array4<A>,
    /// The bias, one value per output channel, `(n_C,)`.
    pub b: Array1<A>,
    /// Sizes, stride and padding of the layer.
    pub geometry: ConvGeometry,
}

/// Convolves the filters `w` over the batch `a_prev`:
/// `Z[i,h,w,c] = sum_{dh,dw,k} A_pad[i, h*s_h+dh, w*s_w+dw, k] * W[dh,dw,k,c] + b[c]`.
///
/// Shapes: `a_prev` `(m, n_H_prev, n_W_prev, n_C_prev)`, `w` `(f_h, f_w, n_C_prev, n_C)`, `b`
/// `(1, 1, 1, n_C)` (as in the numpy exercises) or `(n_C,)`; `Z` is `(m, n_H, n_W, n_C)` with
/// the sizes of [`ConvGeometry`]. Returns `Z` and the cache for [`conv_backward`].
///
/// The padded input `A_pad` is not materialised: each window is read from `a_prev`, with 0 where
/// it covers padding. Memory is `Z`, the cache's copies of the inputs and one window.
///
/// # Errors
/// From [`ConvGeometry::new`]: [`Error::ZeroStride`], [`Error::ZeroKernel`],
/// [`Error::EmptyTensor`], [`Error::ChannelMismatch`], [`Error::SizeOverflow`],
/// [`Error::KernelTooLarge`]. From [`check_bias`]: [`Error::BiasShape`]. [`Error::TooLarge`]
/// when `Z` or a cached copy exceeds [`MAX_HOST_BYTES`](super::MAX_HOST_BYTES), before
/// anything is allocated; [`Error::HostOutOfMemory`] when the allocator refuses. Never panics.
///
/// # Example
/// ```
/// use ndarray::{Array, Array4};
/// use wgpu_cnn::cpu::conv_forward;
/// use wgpu_cnn::ConvParams;
///
/// // The exercises' shapes: 10 images 4x4x3, 8 filters 2x2, pad 2, stride 2.
/// let a_prev = Array4::<f64>::ones((10, 4, 4, 3));
/// let w = Array4::<f64>::ones((2, 2, 3, 8));
/// let b = Array::from_elem((1, 1, 1, 8), 1.0);
/// let (z, _cache) = conv_forward(a_prev.view(), w.view(), b.view(), ConvParams::new(2, 2))?;
/// assert_eq!(z.shape(), &[10, 4, 4, 8]);
/// // The window at (1, 1) covers the input's top-left 2x2 corner: 12 ones, plus the bias.
/// assert_eq!(z[[0, 1, 1, 0]], 13.0);
/// // The window at (0, 0) covers only padding.
/// assert_eq!(z[[0, 0, 0, 0]], 1.0);
///
/// // Padding 2^16 and stride 2^17: a 2x2 output, without a padded copy of 2^34 elements.
/// let (z, _) = conv_forward(a_prev.view(), w.view(), b.view(), ConvParams::new(1 << 17, 1 << 16))?;
/// assert_eq!(z.shape(), &[10, 2, 2, 8]);
/// assert!(z.iter().all(|&v| v == 1.0)); // both windows lie in the padding: only the bias
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn conv_forward<A: Real, D: Dimension>(
    a_prev: ArrayView4<A>,
    w: ArrayView4<A>,
    b: ArrayView<A, D>,
    params: ConvParams,
) -> Result<(Array4<A>, ConvCache<A>)> {
    let geometry = ConvGeometry::new(shape4(&a_prev), shape4(&w), params)?;
    check_bias(b.shape(), geometry.c_out)?;
    // `(1, 1, 1, n_C)` or `(n_C,)`: either way, n_C values in order.
    let b: Array1<A> = try_array("b", Dim([geometry.c_out]), b.iter().copied())?;
    // The cache's copies first: a view (a broadcast) may be far larger than its memory.
    let cached_a_prev = try_map("cache A_prev", a_prev, |&v| v)?;
    let cached_w = try_map("cache W", w, |&v| v)?;
    // The loops below use `w` for the column, as the numpy exercises do; the weights (their `W`)
    // are `weights`.
    let weights = w;

    let ConvGeometry {
        m,
        f_h,
        f_w,
        c_out: n_c,
        s_h,
        s_w,
        pad,
        out_h: n_h,
        out_w: n_w,
        ..
    } = geometry;

    // Initialize the output volume Z with zeros.
    let mut z = zeros4("Z", geometry.output_shape())?;

    for i in 0..m {
        // Select the ith training example's activation (padded as it is read).
        let a_prev_i = a_prev.index_axis(Axis(0), i);
        for h in 0..n_h {
            for w in 0..n_w {
                // Find the corners of the current "slice" in the padded image
                // (vert_end = vert_start + f_h, horiz_end = horiz_start + f_w).
                let vert_start = h * s_h;
                let horiz_start = w * s_w;
                // The (3D) slice a_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :],
                // zeros where it covers padding. The same for every filter c.
                let a_slice_prev =
                    padded_window(a_prev_i, pad, (vert_start, horiz_start), (f_h, f_w))?;
                for c in 0..n_c {
                    // Convolve the slice with filter c and its bias to get one output neuron.
                    z[[i, h, w, c]] = conv_single_step(
                        a_slice_prev.view(),
                        weights.slice(s![.., .., .., c]),
                        b[c],
                    )?;
                }
            }
        }
    }

    let cache = ConvCache {
        a_prev: cached_a_prev,
        w: cached_w,
        b,
        geometry,
    };
    Ok((z, cache))
}

/// The gradients returned by [`conv_backward`].
///
/// Shapes: `da_prev` `(m, n_H_prev, n_W_prev, n_C_prev)`, `dw` `(f_h, f_w, n_C_prev, n_C)`, `db`
/// `(1, 1, 1, n_C)` (as in the numpy exercises).
///
/// # Example
/// ```
/// use ndarray::{Array1, Array4};
/// use wgpu_cnn::cpu::{conv_backward, conv_forward};
/// use wgpu_cnn::ConvParams;
///
/// let a_prev = Array4::<f64>::ones((1, 4, 4, 2));
/// let w = Array4::<f64>::ones((3, 3, 2, 5));
/// let b = Array1::<f64>::zeros(5);
/// let (z, cache) = conv_forward(a_prev.view(), w.view(), b.view(), ConvParams::new(1, 0))?;
/// let grads = conv_backward(z.view(), &cache)?;
/// assert_eq!(grads.da_prev.shape(), &[1, 4, 4, 2]);
/// assert_eq!(grads.dw.shape(), &[3, 3, 2, 5]);
/// assert_eq!(grads.db.shape(), &[1, 1, 1, 5]);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConvGrads<A> {
    /// Gradient of the cost with respect to the input, `(m, n_H_prev, n_W_prev, n_C_prev)`.
    pub da_prev: Array4<A>,
    /// Gradient with respect to the weights, `(f_h, f_w, n_C_prev, n_C)`.
    pub dw: Array4<A>,
    /// Gradient with respect to the bias, `(1, 1, 1, n_C)`.
    pub db: Array4<A>,
}

/// Backward pass of [`conv_forward`], from `dZ` (the gradient of the cost with respect to `Z`):
///
/// - `dA_pad[i, h*s_h+dh, w*s_w+dw, k] += W[dh,dw,k,c] * dZ[i,h,w,c]`, then the padding is cut
///   off (any padding, including 0): here the terms that land in the padding are dropped as
///   they are made, and `dA_prev` is accumulated directly;
/// - `dW[dh,dw,k,c] += A_pad[i, h*s_h+dh, w*s_w+dw, k] * dZ[i,h,w,c]`;
/// - `db[c] = sum dZ[..., c]`.
///
/// `dz` must have the forward output's shape `(m, n_H, n_W, n_C)`. The shapes of the result are
/// those of [`ConvGrads`]. As in [`conv_forward`], the padded input is never materialised.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `dz` is not `cache.geometry.output_shape()`, or when a
/// hand-built cache disagrees with itself (`a_prev` or `w` not of the geometry's shapes, or a
/// geometry that [`ConvGeometry::new`] would not compute from them); the errors of
/// [`ConvGeometry::new`] for a hand-built geometry it rejects. [`Error::TooLarge`] or
/// [`Error::HostOutOfMemory`] when a gradient cannot be allocated. Never panics.
///
/// # Example
/// ```
/// use ndarray::{Array1, Array4};
/// use wgpu_cnn::cpu::{conv_backward, conv_forward};
/// use wgpu_cnn::ConvParams;
///
/// // A 1x1 filter of weight 3: every input pixel gets 3 * dZ back.
/// let a_prev = Array4::<f64>::ones((1, 2, 2, 1));
/// let w = Array4::<f64>::from_elem((1, 1, 1, 1), 3.0);
/// let b = Array1::<f64>::zeros(1);
/// let (z, cache) = conv_forward(a_prev.view(), w.view(), b.view(), ConvParams::new(1, 0))?;
/// let dz = Array4::<f64>::ones(z.raw_dim());
/// let grads = conv_backward(dz.view(), &cache)?;
/// assert!(grads.da_prev.iter().all(|&g| g == 3.0));
/// assert_eq!(grads.dw[[0, 0, 0, 0]], 4.0);
/// assert_eq!(grads.db[[0, 0, 0, 0]], 4.0);
///
/// // dZ must have Z's shape.
/// assert!(conv_backward(Array4::<f64>::ones((1, 3, 3, 1)).view(), &cache).is_err());
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn conv_backward<A: Real>(dz: ArrayView4<A>, cache: &ConvCache<A>) -> Result<ConvGrads<A>> {
    let geometry = cache.geometry;
    check_cache(cache)?;
    if shape4(&dz) != geometry.output_shape() {
        return Err(Error::ShapeMismatch {
            what: "dZ must have the shape of the forward output Z",
            expected: geometry.output_shape().to_vec(),
            got: dz.shape().to_vec(),
        });
    }
    let weights = &cache.w;
    let ConvGeometry {
        m,
        in_h: n_h_prev,
        in_w: n_w_prev,
        f_h,
        f_w,
        c_out: n_c,
        s_h,
        s_w,
        pad,
        out_h: n_h,
        out_w: n_w,
        ..
    } = geometry;

    // Initialize dA_prev, dW, db with the correct shapes.
    let mut da_prev = zeros4("dA_prev", geometry.input_shape())?;
    let mut dw = zeros4("dW", geometry.weight_shape())?;
    let mut db = zeros4("db", [1, 1, 1, n_c])?;

    for i in 0..m {
        // Select the ith training example from A_prev (padded as it is read) and dA_prev.
        let a_prev = cache.a_prev.index_axis(Axis(0), i);
        let mut da_prev_i = da_prev.index_axis_mut(Axis(0), i);
        for h in 0..n_h {
            for w in 0..n_w {
                // Find the corners of the current "slice" in the padded image
                // (vert_end = vert_start + f_h, horiz_end = horiz_start + f_w).
                let vert_start = h * s_h;
                let horiz_start = w * s_w;
                // The slice a_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :], zeros
                // where it covers padding.
                let a_slice = padded_window(a_prev, pad, (vert_start, horiz_start), (f_h, f_w))?;
                // The rows and columns of the window inside the image: as indices of dA_prev,
                // and of the window (and so of W). The rest lies in the padding that is cut off.
                let (rows, window_rows) = inside_input(vert_start, f_h, pad.top, n_h_prev);
                let (cols, window_cols) = inside_input(horiz_start, f_w, pad.left, n_w_prev);
                for c in 0..n_c {
                    let dz_ihwc = dz[[i, h, w, c]];
                    // da_prev_pad[vert_start:vert_end, horiz_start:horiz_end, :] += W[:,:,:,c] * dZ[i, h, w, c],
                    // without the part in the padding.
                    let w_c = weights.slice(s![window_rows.clone(), window_cols.clone(), .., c]);
                    da_prev_i
                        .slice_mut(s![rows.clone(), cols.clone(), ..])
                        .scaled_add(dz_ihwc, &w_c);
                    // dW[:,:,:,c] += a_slice * dZ[i, h, w, c]
                    dw.slice_mut(s![.., .., .., c])
                        .scaled_add(dz_ihwc, &a_slice);
                    // db[:,:,:,c] += dZ[i, h, w, c]
                    db[[0, 0, 0, c]] = db[[0, 0, 0, c]] + dz_ihwc;
                }
            }
        }
    }
    Ok(ConvGrads { da_prev, dw, db })
}

/// A cache's fields must agree: `conv_backward` indexes by the geometry.
fn check_cache<A: Real>(cache: &ConvCache<A>) -> Result<()> {
    let geometry = cache.geometry;
    if shape4(&cache.a_prev) != geometry.input_shape() {
        return Err(Error::ShapeMismatch {
            what: "cache.a_prev must have the shape of cache.geometry's input",
            expected: geometry.input_shape().to_vec(),
            got: cache.a_prev.shape().to_vec(),
        });
    }
    if shape4(&cache.w) != geometry.weight_shape() {
        return Err(Error::ShapeMismatch {
            what: "cache.w must have the shape of cache.geometry's weights",
            expected: geometry.weight_shape().to_vec(),
            got: cache.w.shape().to_vec(),
        });
    }
    let params = ConvParams {
        stride: (geometry.s_h, geometry.s_w),
        padding: geometry.pad,
    };
    let recomputed = ConvGeometry::new(geometry.input_shape(), geometry.weight_shape(), params)?;
    if recomputed != geometry {
        return Err(Error::ShapeMismatch {
            what: "cache.geometry's output does not follow from its input, weights, stride and padding",
            expected: recomputed.output_shape().to_vec(),
            got: geometry.output_shape().to_vec(),
        });
    }
    Ok(())
}
