//! Pooling, forward and backward: the numpy exercises' `pool_forward`,
//! `create_mask_from_window`, `distribute_value` and `pool_backward`, plus [`first_max_mask`]
//! for PyTorch's tie rule.

use ndarray::{s, Array2, Array4, ArrayView2, ArrayView4, Axis, Ix2, Zip};

use super::{filled, real_from_usize, shape4, try_map, zeros4, Real};
use crate::error::{Error, Result};
use crate::params::{PoolGeometry, PoolMode, PoolParams, Ties};

/// What [`pool_backward`] needs from [`pool_forward`]: the numpy exercises'
/// `(A_prev, hparameters)`, with the mode and tie rule in `params` and the sizes in `geometry`.
///
/// `a_prev` has shape `(m, n_H_prev, n_W_prev, n_C)`.
///
/// # Example
/// ```
/// use ndarray::Array4;
/// use wgpu_cnn::cpu::pool_forward;
/// use wgpu_cnn::{PoolMode, PoolParams};
///
/// let a_prev = Array4::<f32>::zeros((2, 4, 4, 3));
/// let (_, cache) = pool_forward(a_prev.view(), PoolParams::new(3, 2, PoolMode::Max))?;
/// assert_eq!(cache.params.mode, PoolMode::Max);
/// assert_eq!(cache.geometry.output_shape(), [2, 1, 1, 3]);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PoolCache<A> {
    /// The input `A_prev`, `(m, n_H_prev, n_W_prev, n_C)`.
    pub a_prev: Array4<A>,
    /// Window, stride, mode and tie rule.
    pub params: PoolParams,
    /// Sizes of the layer.
    pub geometry: PoolGeometry,
}

/// The largest element of a non-empty window, NaN if any element is NaN (as `np.max`).
fn window_max<A: Real>(x: ArrayView2<A>) -> Result<A> {
    let mut elements = x.iter().copied();
    let first = elements.next().ok_or(Error::EmptyWindow)?;
    Ok(elements.fold(first, |max, v| {
        if max.is_nan() || v.is_nan() {
            A::nan()
        } else if v > max {
            v
        } else {
            max
        }
    }))
}

/// Slides an `(f_h, f_w)` window over every image and channel of `a_prev` and keeps its maximum
/// or its mean, as `params.mode` says. No padding.
///
/// `a_prev` has shape `(m, n_H_prev, n_W_prev, n_C)`; the output has shape `(m, n_H, n_W, n_C)`
/// with the sizes of [`PoolGeometry`]. Returns the output and the cache for [`pool_backward`].
/// A window holding NaN gives NaN in both modes.
///
/// Windows are slices of `a_prev` itself, clipped to it when there is padding (TensorFlow's
/// rule: padding never wins a maximum and is not counted in an average); nothing padded is made.
///
/// # Errors
/// From [`PoolGeometry::new`]: [`Error::ZeroStride`], [`Error::ZeroKernel`],
/// [`Error::EmptyTensor`], [`Error::KernelTooLarge`]. [`Error::TooLarge`] or
/// [`Error::HostOutOfMemory`] when the output or the cache's copy of `a_prev` cannot be
/// allocated (checked before allocating). Never panics.
///
/// # Example
/// ```
/// use ndarray::Array4;
/// use wgpu_cnn::cpu::pool_forward;
/// use wgpu_cnn::{PoolMode, PoolParams};
///
/// // One 4x4 image, one channel, values 0..16 in row-major order; 2x2 windows, stride 2.
/// let a_prev = Array4::from_shape_fn((1, 4, 4, 1), |(_, h, w, _)| (4 * h + w) as f64);
/// let (a, _) = pool_forward(a_prev.view(), PoolParams::new(2, 2, PoolMode::Max))?;
/// assert_eq!(a.into_raw_vec_and_offset().0, vec![5.0, 7.0, 13.0, 15.0]);
/// let (a, _) = pool_forward(a_prev.view(), PoolParams::new(2, 2, PoolMode::Average))?;
/// assert_eq!(a.into_raw_vec_and_offset().0, vec![2.5, 4.5, 10.5, 12.5]);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn pool_forward<A: Real>(
    a_prev: ArrayView4<A>,
    params: PoolParams,
) -> Result<(Array4<A>, PoolCache<A>)> {
    let geometry = PoolGeometry::new(shape4(&a_prev), params)?;
    // The cache's copy first: a view (a broadcast) may be far larger than its memory.
    let cached_a_prev = try_map("cache A_prev", a_prev, |&v| v)?;
    let PoolGeometry {
        m,
        c: n_c,
        out_h: n_h,
        out_w: n_w,
        ..
    } = geometry;

    // Initialize the output matrix A.
    let mut a = zeros4("A", geometry.output_shape())?;
    for i in 0..m {
        for h in 0..n_h {
            for w in 0..n_w {
                for c in 0..n_c {
                    // Find the corners of the current "slice" (clipped to the input: padding
                    // never wins a maximum and is not counted in an average).
                    let (vert_start, vert_end) = geometry.rows(h);
                    let (horiz_start, horiz_end) = geometry.cols(w);
                    // The current slice on the ith training example of A_prev, channel c.
                    let a_prev_slice =
                        a_prev.slice(s![i, vert_start..vert_end, horiz_start..horiz_end, c]);
                    // The pooling operation on the slice.
                    a[[i, h, w, c]] = match params.mode {
                        PoolMode::Max => window_max(a_prev_slice)?,
                        PoolMode::Average => {
                            a_prev_slice.sum() / real_from_usize(a_prev_slice.len())
                        }
                    };
                }
            }
        }
    }

    let cache = PoolCache {
        a_prev: cached_a_prev,
        params,
        geometry,
    };
    Ok((a, cache))
}

/// The numpy exercises' mask: `x == np.max(x)`, true at every element equal to the window's
/// maximum (so at each of several equal maxima).
///
/// `x` is one window `(f_h, f_w)`; the mask has its shape. A window holding NaN has a NaN
/// maximum, which equals nothing: the mask is all false (as in numpy).
///
/// # Errors
/// [`Error::EmptyWindow`] when `x` has no elements; [`Error::TooLarge`] or
/// [`Error::HostOutOfMemory`] when the mask cannot be allocated (a broadcast view may be far
/// larger than its memory).
///
/// # Example
/// ```
/// use ndarray::arr2;
/// use wgpu_cnn::cpu::create_mask_from_window;
///
/// let x = arr2(&[[1.0_f64, 3.0], [4.0, 2.0]]);
/// assert_eq!(create_mask_from_window(x.view())?, arr2(&[[false, false], [true, false]]));
/// // Two equal maxima: both are marked.
/// let x = arr2(&[[4.0_f64, 3.0], [4.0, 2.0]]);
/// assert_eq!(create_mask_from_window(x.view())?, arr2(&[[true, false], [true, false]]));
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn create_mask_from_window<A: Real>(x: ArrayView2<A>) -> Result<Array2<bool>> {
    let mut mask = false_mask(x)?;
    // mask = (x == np.max(x))
    let max = window_max(x)?;
    Zip::from(&mut mask).and(x).for_each(|m, &v| *m = v == max);
    Ok(mask)
}

/// An all-false mask of `x`'s shape, made before the window is scanned: a view (a broadcast)
/// may be far larger than its memory, and is then refused at once.
fn false_mask<A: Real>(x: ArrayView2<A>) -> Result<Array2<bool>> {
    if x.is_empty() {
        return Err(Error::EmptyWindow);
    }
    filled("mask", x.raw_dim(), false)
}

/// PyTorch's mask: true only at the first element equal to the window's maximum, in row-major
/// order of the window. If the window holds NaN, the first NaN is marked (NaN is the maximum,
/// as in PyTorch).
///
/// `x` is one window `(f_h, f_w)`; the mask has its shape and exactly one true element.
///
/// # Errors
/// [`Error::EmptyWindow`] when `x` has no elements; [`Error::TooLarge`] or
/// [`Error::HostOutOfMemory`] when the mask cannot be allocated.
///
/// # Example
/// ```
/// use ndarray::arr2;
/// use wgpu_cnn::cpu::first_max_mask;
///
/// let x = arr2(&[[1.0_f32, 4.0], [4.0, 2.0]]);
/// assert_eq!(first_max_mask(x.view())?, arr2(&[[false, true], [false, false]]));
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn first_max_mask<A: Real>(x: ArrayView2<A>) -> Result<Array2<bool>> {
    let mut mask = false_mask(x)?;
    let max = window_max(x)?;
    // A NaN maximum means the window holds NaN; otherwise it holds none.
    let first = x.indexed_iter().find(|&(_, &v)| v == max || v.is_nan());
    if let Some((index, _)) = first {
        mask[index] = true;
    }
    Ok(mask)
}

/// Spreads `dz` evenly over a window of `shape = (n_H, n_W)`: every element is
/// `dz / (n_H * n_W)` (the gradient of an average).
///
/// # Errors
/// [`Error::EmptyWindow`] when `n_H` or `n_W` is 0; [`Error::TooLarge`] when `n_H * n_W`
/// overflows or the matrix exceeds [`MAX_HOST_BYTES`](super::MAX_HOST_BYTES), before anything is
/// allocated; [`Error::HostOutOfMemory`] when the allocator refuses it. Never panics.
///
/// # Example
/// ```
/// use ndarray::arr2;
/// use wgpu_cnn::cpu::distribute_value;
/// use wgpu_cnn::Error;
///
/// assert_eq!(distribute_value(2.0_f64, (2, 2))?, arr2(&[[0.5, 0.5], [0.5, 0.5]]));
/// assert!(distribute_value(2.0_f64, (0, 2)).is_err());
/// // 2^40 elements: an error, not an abort.
/// assert!(matches!(distribute_value(2.0_f64, (1 << 20, 1 << 20)), Err(Error::TooLarge { .. })));
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn distribute_value<A: Real>(dz: A, shape: (usize, usize)) -> Result<Array2<A>> {
    // Retrieve dimensions from shape.
    let (n_h, n_w) = shape;
    if n_h == 0 || n_w == 0 {
        return Err(Error::EmptyWindow);
    }
    let size = n_h.checked_mul(n_w).ok_or_else(|| Error::TooLarge {
        what: "distribute_value window",
        shape: vec![n_h, n_w],
        bytes: (n_h as u64)
            .saturating_mul(n_w as u64)
            .saturating_mul(std::mem::size_of::<A>() as u64),
        limit: super::MAX_HOST_BYTES,
    })?;
    // The value to distribute on the matrix.
    let average = dz / real_from_usize(size);
    // A matrix where every entry is the average.
    filled("distribute_value window", Ix2(n_h, n_w), average)
}

/// Backward pass of [`pool_forward`]: each output gradient `dA[i,h,w,c]` flows back into its own
/// window of `dA_prev` (for every stride; two versions of the numpy exercises read
/// `dA[i, vert_start, horiz_start, c]`, right only for stride 1). Overlapping windows add up.
///
/// - [`PoolMode::Max`]: the gradient goes to the window's maximum. With
///   [`Ties::EveryMax`] (the exercises' [`create_mask_from_window`]) every element equal to the
///   maximum receives all of it; with [`Ties::FirstMax`] ([`first_max_mask`]) only the first.
/// - [`PoolMode::Average`]: the gradient is spread evenly ([`distribute_value`]).
///
/// Mode and tie rule come from `cache.params`. `da` must have the forward output's shape
/// `(m, n_H, n_W, n_C)`; the result has `cache.a_prev`'s shape `(m, n_H_prev, n_W_prev, n_C)`.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `da` is not `cache.geometry.output_shape()`, or when a
/// hand-built cache disagrees with itself (a geometry that [`PoolGeometry::new`] would not
/// compute from `cache.a_prev` and `cache.params`); the errors of [`PoolGeometry::new`] for
/// hand-built parameters it rejects. [`Error::TooLarge`] or [`Error::HostOutOfMemory`] when
/// `dA_prev` cannot be allocated. Never panics.
///
/// # Example
/// ```
/// use ndarray::Array4;
/// use wgpu_cnn::cpu::{pool_backward, pool_forward};
/// use wgpu_cnn::{PoolMode, PoolParams, Ties};
///
/// // One 2x2 window holding two equal maxima.
/// let window = [[4.0_f64, 1.0], [4.0, 2.0]];
/// let a_prev = Array4::from_shape_fn((1, 2, 2, 1), |(_, h, w, _)| window[h][w]);
/// let da = Array4::<f64>::ones((1, 1, 1, 1));
/// let grad = |params| -> Result<Vec<f64>, wgpu_cnn::Error> {
///     let (_, cache) = pool_forward(a_prev.view(), params)?;
///     Ok(pool_backward(da.view(), &cache)?.into_raw_vec_and_offset().0)
/// };
/// let max = PoolParams::new(2, 1, PoolMode::Max);
/// assert_eq!(grad(max)?, vec![1.0, 0.0, 1.0, 0.0]);
/// assert_eq!(grad(max.with_ties(Ties::FirstMax))?, vec![1.0, 0.0, 0.0, 0.0]);
/// assert_eq!(grad(PoolParams::new(2, 1, PoolMode::Average))?, vec![0.25; 4]);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn pool_backward<A: Real>(da: ArrayView4<A>, cache: &PoolCache<A>) -> Result<Array4<A>> {
    let geometry = cache.geometry;
    let params = cache.params;
    let recomputed = PoolGeometry::new(shape4(&cache.a_prev), params)?;
    if recomputed != geometry {
        return Err(Error::ShapeMismatch {
            what:
                "cache.geometry (output shape) does not follow from cache.a_prev and cache.params",
            expected: recomputed.output_shape().to_vec(),
            got: geometry.output_shape().to_vec(),
        });
    }
    if shape4(&da) != geometry.output_shape() {
        return Err(Error::ShapeMismatch {
            what: "dA must have the shape of the forward output A",
            expected: geometry.output_shape().to_vec(),
            got: da.shape().to_vec(),
        });
    }
    let PoolGeometry {
        m,
        c: n_c,
        out_h: n_h,
        out_w: n_w,
        ..
    } = geometry;

    // Initialize dA_prev with zeros.
    let mut da_prev = zeros4("dA_prev", geometry.input_shape())?;
    for i in 0..m {
        // Select training example i from A_prev.
        let a_prev = cache.a_prev.index_axis(Axis(0), i);
        let mut da_prev_i = da_prev.index_axis_mut(Axis(0), i);
        for h in 0..n_h {
            for w in 0..n_w {
                for c in 0..n_c {
                    // Find the corners of the current "slice" (clipped to the input).
                    let (vert_start, vert_end) = geometry.rows(h);
                    let (horiz_start, horiz_end) = geometry.cols(w);
                    // The gradient of this output, dA[i, h, w, c] (not dA[i, vert_start, ...]).
                    let da_ihwc = da[[i, h, w, c]];
                    let mut window =
                        da_prev_i.slice_mut(s![vert_start..vert_end, horiz_start..horiz_end, c]);
                    match params.mode {
                        PoolMode::Max => {
                            // The current slice from a_prev, and its mask.
                            let a_prev_slice =
                                a_prev.slice(s![vert_start..vert_end, horiz_start..horiz_end, c]);
                            let mask = match params.ties {
                                Ties::EveryMax => create_mask_from_window(a_prev_slice)?,
                                Ties::FirstMax => first_max_mask(a_prev_slice)?,
                            };
                            // dA_prev[i, vert_start:vert_end, horiz_start:horiz_end, c] += mask * dA[i, h, w, c]
                            Zip::from(&mut window).and(&mask).for_each(|d, &is_max| {
                                if is_max {
                                    *d = *d + da_ihwc;
                                }
                            });
                        }
                        PoolMode::Average => {
                            // Distribute dA[i, h, w, c] over the window (its part inside the
                            // input: padding is not counted).
                            let shape = (vert_end - vert_start, horiz_end - horiz_start);
                            let distributed = distribute_value(da_ihwc, shape)?;
                            window.zip_mut_with(&distributed, |d, &v| *d = *d + v);
                        }
                    }
                }
            }
        }
    }
    Ok(da_prev)
}
