//! `conv_forward` and `conv_backward` on the GPU.
//!
//! | file | what |
//! |---|---|
//! | `plan.rs` | the sizes in kernel terms, checked once, and the path of each product |
//! | `gemm.rs` | the implicit GEMM (forward; backward data, one product per stride phase) |
//! | `filter.rs` | the filter gradient by windows of `dZ` rows |
//! | `pack.rs` | filter packing into uniform windows, channel padding of activations |
//! | `direct.rs` | the direct gather kernels for everything else |

mod direct;
mod filter;
mod gemm;
mod pack;
mod plan;
mod pool_filter;

pub use pool_filter::ConvReluPoolCache;

use super::{Gpu, Tensor};
use crate::error::Result;
use crate::params::{check_bias, ConvGeometry, ConvParams};
use gemm::Epilogue;
use pack::Padded;
use plan::{ConvPlan, FilterPath, Path};

/// The geometry of a convolution of `a_prev` `(m, n_H_prev, n_W_prev, n_C_prev)` by `w`
/// `(f_h, f_w, n_C_prev, n_C)`, checked.
fn forward_geometry(a_prev: &Tensor, w: &Tensor, params: ConvParams) -> Result<ConvGeometry> {
    ConvGeometry::new(
        a_prev.dims4("conv_forward input")?,
        w.dims4("conv_forward weights")?,
        params,
    )
}

/// The sources (with their shared parts) of every convolution kernel that has tuned variants:
/// the tuning cache's keys hash them, so a change to any kernel makes old choices stale.
pub(crate) const TUNED_SOURCES: [&str; 4] = [
    gemm::GEMM.source,
    gemm::LANES.source,
    filter::FILTER.source,
    filter::FILTER_LANES.source,
];

/// What `conv_forward` keeps for `conv_backward` (the seeds' `(A_prev, W, b, hparameters)`),
/// with the plan of the convolution. Its parts can be read, not changed, so it always matches
/// the forward pass that made it:
///
/// ```compile_fail
/// fn edit(cache: &mut wgpu_cnn::ConvCache, other: wgpu_cnn::ConvGeometry) {
///     cache.geometry = other; // private: a cache cannot disagree with its tensors
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ConvCache {
    a_prev: Tensor,
    /// `a_prev` with its channels padded to a multiple of 4, when the forward pass made it (the
    /// filter gradient reads it again).
    x4: Option<Tensor>,
    w: Tensor,
    b: Tensor,
    plan: ConvPlan,
}

impl ConvCache {
    /// The input `(m, n_H_prev, n_W_prev, n_C_prev)`.
    pub fn a_prev(&self) -> &Tensor {
        &self.a_prev
    }

    /// The weights `(f_h, f_w, n_C_prev, n_C)`.
    pub fn w(&self) -> &Tensor {
        &self.w
    }

    /// The bias, as given.
    pub fn b(&self) -> &Tensor {
        &self.b
    }

    /// All sizes.
    pub fn geometry(&self) -> ConvGeometry {
        self.plan.geometry
    }
}

/// Gradients from `conv_backward`.
#[derive(Debug, Clone)]
pub struct ConvGrads {
    /// `dA_prev`, shaped like `A_prev`.
    pub da_prev: Tensor,
    /// `dW`, shaped like `W`.
    pub dw: Tensor,
    /// `db`, `(1, 1, 1, n_C)`.
    pub db: Tensor,
}

impl Gpu {
    /// The convolution forward pass,
    /// `Z[i, h, w, c] = sum_{dh, dw, k} A_pad[i, h*s_h + dh, w*s_w + dw, k] * W[dh, dw, k, c] + b[c]`
    /// (the bias added once), and the cache for [`Gpu::conv_backward`].
    ///
    /// Shapes: `a_prev` `(m, n_H_prev, n_W_prev, n_C_prev)`, `w` `(f_h, f_w, n_C_prev, n_C)`,
    /// `b` `(1, 1, 1, n_C)` or `(n_C,)`; `Z` is `(m, n_H, n_W, n_C)` with
    /// `n_H = (n_H_prev + top + bottom - f_h) / stride_h + 1` (likewise `n_W`).
    ///
    /// ```no_run
    /// use ndarray::{Array1, Array4};
    /// use wgpu_cnn::{ConvParams, Gpu};
    /// let gpu = Gpu::new()?;
    /// let x = gpu.upload(&Array4::<f32>::ones((10, 4, 4, 3)))?;
    /// let w = gpu.upload(&Array4::<f32>::ones((2, 2, 3, 8)))?;
    /// let b = gpu.upload(&Array1::<f32>::zeros(8))?;
    /// let (z, _cache) = gpu.conv_forward(&x, &w, &b, ConvParams::new(2, 2))?;
    /// assert_eq!(z.shape(), &[10, 4, 4, 8]);
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::Rank`], [`crate::Error::ZeroStride`], [`crate::Error::ZeroKernel`],
    /// [`crate::Error::EmptyTensor`], [`crate::Error::ChannelMismatch`],
    /// [`crate::Error::KernelTooLarge`], [`crate::Error::BiasShape`],
    /// [`crate::Error::ForeignTensor`], [`crate::Error::TooLarge`] (one image or the weights
    /// exceed a binding), [`crate::Error::IndexRange`] (a size beyond the kernels' 32 bits).
    pub fn conv_forward(
        &self,
        a_prev: &Tensor,
        w: &Tensor,
        b: &Tensor,
        params: ConvParams,
    ) -> Result<(Tensor, ConvCache)> {
        let g = forward_geometry(a_prev, w, params)?;
        let mut z = self.alloc("conv_forward output", &g.output_shape(), false)?;
        let cache = self.conv_forward_into(a_prev, w, b, params, &mut z)?;
        Ok((z, cache))
    }

    /// [`Gpu::conv_forward`] into an existing tensor `z` of the output shape.
    ///
    /// # Errors
    /// As [`Gpu::conv_forward`], and [`crate::Error::ShapeMismatch`] when `z` is not the output
    /// shape.
    pub fn conv_forward_into(
        &self,
        a_prev: &Tensor,
        w: &Tensor,
        b: &Tensor,
        params: ConvParams,
        z: &mut Tensor,
    ) -> Result<ConvCache> {
        self.conv_into(a_prev, w, b, params, false, z)
    }

    /// The convolution with an optional fused ReLU epilogue.
    fn conv_into(
        &self,
        a_prev: &Tensor,
        w: &Tensor,
        b: &Tensor,
        params: ConvParams,
        relu: bool,
        z: &mut Tensor,
    ) -> Result<ConvCache> {
        for t in [a_prev, w, b, &*z] {
            self.check_owner(t)?;
        }
        let g = forward_geometry(a_prev, w, params)?;
        check_bias(b.shape(), g.c_out)?;
        z.expect_shape("conv_forward output", &g.output_shape())?;
        let plan = self.conv_plan(&g)?;
        let x4 = match &plan.forward {
            Path::Gemm { products, .. } => {
                let x = Padded::new(a_prev, None);
                let epilogue = Epilogue {
                    bias: Some(b),
                    relu,
                };
                // Keep the padded copy for the filter gradient only if the chosen kernel reads
                // it: then every step makes the same temporaries as the first (the autotune may
                // have made one while timing the other kernels). A forward pass is one product.
                let mut padded = false;
                for (s, win) in products {
                    padded |= self.gemm_conv(s, win, &x, w, epilogue, z)?;
                }
                x.into_x4().filter(|_| padded)
            }
            Path::Direct => {
                self.direct_forward(&plan.kernel, a_prev, w, b, relu, z)?;
                None
            }
        };
        Ok(ConvCache {
            x4,
            a_prev: a_prev.clone(),
            w: w.clone(),
            b: b.clone(),
            plan,
        })
    }

    /// The convolution backward pass: from `dZ` `(m, n_H, n_W, n_C)` and the forward cache,
    /// `dA_prev` (shaped like `A_prev`), `dW` (like `W`) and `db` `(1, 1, 1, n_C)`:
    /// `dA_pad[i, h*s+dh, w*s+dw, k] += W[dh, dw, k, c] * dZ[i, h, w, c]` (padding cut off),
    /// `dW[dh, dw, k, c] += A_pad[i, h*s+dh, w*s+dw, k] * dZ[i, h, w, c]`,
    /// `db[c] = sum dZ[..., c]`. Every thread gathers the terms of the one element it writes:
    /// no atomics, the same bits on every run.
    ///
    /// ```no_run
    /// use ndarray::{Array1, Array4};
    /// use wgpu_cnn::{ConvParams, Gpu};
    /// let gpu = Gpu::new()?;
    /// let x = gpu.upload(&Array4::<f32>::ones((2, 5, 5, 3)))?;
    /// let w = gpu.upload(&Array4::<f32>::ones((3, 3, 3, 4)))?;
    /// let b = gpu.upload(&Array1::<f32>::zeros(4))?;
    /// let (z, cache) = gpu.conv_forward(&x, &w, &b, ConvParams::new(1, 1))?;
    /// let grads = gpu.conv_backward(&z, &cache)?;
    /// assert_eq!(grads.dw.shape(), &[3, 3, 3, 4]);
    /// assert_eq!(grads.db.shape(), &[1, 1, 1, 4]);
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] when `dz` is not the forward output's shape,
    /// [`crate::Error::ForeignTensor`], [`crate::Error::TooLarge`].
    pub fn conv_backward(&self, dz: &Tensor, cache: &ConvCache) -> Result<ConvGrads> {
        let g = cache.plan.geometry;
        let mut grads = ConvGrads {
            da_prev: self.alloc("conv_backward dA_prev", &g.input_shape(), false)?,
            dw: self.alloc("conv_backward dW", &g.weight_shape(), false)?,
            db: self.alloc("conv_backward db", &[1, 1, 1, g.c_out], false)?,
        };
        self.conv_backward_into(dz, cache, &mut grads)?;
        Ok(grads)
    }

    /// [`Gpu::conv_backward`] into existing gradient tensors (shaped like `A_prev`, `W` and
    /// `(1, 1, 1, n_C)`).
    ///
    /// # Errors
    /// As [`Gpu::conv_backward`], and [`crate::Error::ShapeMismatch`] when a gradient tensor has
    /// the wrong shape.
    pub fn conv_backward_into(
        &self,
        dz: &Tensor,
        cache: &ConvCache,
        grads: &mut ConvGrads,
    ) -> Result<()> {
        let ConvGrads { da_prev, dw, db } = grads;
        for t in [dz, &cache.a_prev, &cache.w, &*da_prev, &*dw, &*db] {
            self.check_owner(t)?;
        }
        let plan = &cache.plan;
        let g = plan.geometry;
        dz.expect_shape(
            "conv_backward dZ must have the forward output's shape",
            &g.output_shape(),
        )?;
        da_prev.expect_shape("conv_backward dA_prev", &g.input_shape())?;
        dw.expect_shape("conv_backward dW", &g.weight_shape())?;
        db.expect_shape("conv_backward db", &[1, 1, 1, g.c_out])?;
        self.conv_backward_kernels(dz, cache, Some(da_prev), Some((dw, db)))
    }

    /// The filter and bias gradients alone, `(dW, db)` as in [`Gpu::conv_backward`], without
    /// `dA_prev`: what the first layer of a network needs (its input has no gradient), at the
    /// cost of the filter gradient only.
    ///
    /// # Errors
    /// As [`Gpu::conv_backward`].
    pub fn conv_backward_filter(&self, dz: &Tensor, cache: &ConvCache) -> Result<(Tensor, Tensor)> {
        let g = self.check_dz(dz, cache, &cache.a_prev)?;
        let mut dw = self.alloc("conv_backward dW", &g.weight_shape(), false)?;
        let mut db = self.alloc("conv_backward db", &[1, 1, 1, g.c_out], false)?;
        self.conv_backward_kernels(dz, cache, None, Some((&mut dw, &mut db)))?;
        Ok((dw, db))
    }

    /// The input gradient alone, `dA_prev` as in [`Gpu::conv_backward`], without `dW` and
    /// `db`: for a layer whose filter gradient comes another way
    /// ([`Gpu::conv_relu_pool_backward_filter`]).
    ///
    /// # Errors
    /// As [`Gpu::conv_backward`].
    pub fn conv_backward_data(&self, dz: &Tensor, cache: &ConvCache) -> Result<Tensor> {
        let g = self.check_dz(dz, cache, &cache.w)?;
        let mut da_prev = self.alloc("conv_backward dA_prev", &g.input_shape(), false)?;
        self.conv_backward_kernels(dz, cache, Some(&mut da_prev), None)?;
        Ok(da_prev)
    }

    /// Checks that `dz` and the cache tensor the pass reads (`read`) are this device's and `dz`
    /// is the forward output's shape; the geometry.
    fn check_dz(&self, dz: &Tensor, cache: &ConvCache, read: &Tensor) -> Result<ConvGeometry> {
        let g = cache.plan.geometry;
        self.check_owner(dz)?;
        self.check_owner(read)?;
        dz.expect_shape(
            "conv_backward dZ must have the forward output's shape",
            &g.output_shape(),
        )?;
        Ok(g)
    }

    /// Records the backward kernels: `dA_prev` when asked for, then `dW` and `db` when asked for.
    /// Both gradients, and each stride phase of the data gradient, read dZ (none writes it, nor
    /// A_prev): in one texture-sharing scope, one texture copy of it serves them all.
    fn conv_backward_kernels(
        &self,
        dz: &Tensor,
        cache: &ConvCache,
        da_prev: Option<&mut Tensor>,
        filter: Option<(&mut Tensor, &mut Tensor)>,
    ) -> Result<()> {
        self.sharing_textures(|| self.conv_backward_passes(dz, cache, da_prev, filter))
    }

    /// The passes of [`Gpu::conv_backward_kernels`].
    fn conv_backward_passes(
        &self,
        dz: &Tensor,
        cache: &ConvCache,
        da_prev: Option<&mut Tensor>,
        filter: Option<(&mut Tensor, &mut Tensor)>,
    ) -> Result<()> {
        let plan = &cache.plan;
        // Pad channels (copies) only for the fast paths that read them.
        let data_gemm = da_prev.is_some() && matches!(plan.backward_data, Path::Gemm { .. });
        let filter_windowed =
            filter.is_some() && matches!(plan.backward_filter, FilterPath::Windowed(_));
        let needs_dz4 = data_gemm || filter_windowed;
        let dz4 = if needs_dz4 {
            Some(self.pad_channels(dz)?)
        } else {
            None
        };
        if let Some(da_prev) = da_prev {
            match (&dz4, &plan.backward_data) {
                (Some(dz4), Path::Gemm { products, fill }) => {
                    if *fill {
                        self.clear(da_prev);
                    }
                    let x = Padded::new(dz, Some(dz4));
                    for (s, win) in products {
                        self.gemm_conv(s, win, &x, &cache.w, Epilogue::default(), da_prev)?;
                    }
                }
                _ => self.direct_backward_data(&plan.kernel, &cache.w, dz, da_prev)?,
            }
        }
        let Some((dw, db)) = filter else {
            return Ok(());
        };
        match (&dz4, plan.backward_filter) {
            (Some(dz4), FilterPath::Windowed(pixels)) => {
                let x = Padded::new(&cache.a_prev, cache.x4.as_ref());
                self.gemm_filter(&plan.kernel, pixels, &x, dz4, dw, db)?;
            }
            _ => self.direct_backward_filter(&plan.kernel, &cache.a_prev, dz, dw, db)?,
        }
        Ok(())
    }
}

/// What `conv_relu_forward` keeps for `conv_relu_backward`: the convolution's cache and the
/// activation `A = max(0, Z)` (where `A > 0` exactly where `Z > 0`, the ReLU's mask).
#[derive(Debug, Clone)]
pub struct ConvReluCache {
    conv: ConvCache,
    a: Tensor,
}

impl ConvReluCache {
    /// The convolution's cache.
    pub fn conv(&self) -> &ConvCache {
        &self.conv
    }
}

impl Gpu {
    /// The convolution, its bias and a ReLU fused: `A = max(0, conv(A_prev, W) + b)`, computed
    /// in the convolution's last step, so `Z` is never written or read back. Bitwise what
    /// [`Gpu::conv_forward`] then [`Gpu::relu_forward`] give.
    ///
    /// ```no_run
    /// use ndarray::{Array1, Array4};
    /// use wgpu_cnn::{ConvParams, Gpu};
    /// let gpu = Gpu::new()?;
    /// let x = gpu.upload(&Array4::<f32>::ones((1, 4, 4, 3)))?;
    /// let w = gpu.upload(&Array4::<f32>::from_elem((2, 2, 3, 2), -1.0))?;
    /// let b = gpu.upload(&Array1::<f32>::from_vec(vec![0.0, 20.0]))?;
    /// let (a, cache) = gpu.conv_relu_forward(&x, &w, &b, ConvParams::new(1, 0))?;
    /// let a: Array4<f32> = gpu.download(&a)?;
    /// assert!(a.iter().step_by(2).all(|&v| v == 0.0) && a.iter().skip(1).step_by(2).all(|&v| v == 8.0));
    /// let _grads = gpu.conv_relu_backward(&gpu.upload(&Array4::<f32>::ones((1, 3, 3, 2)))?, &cache)?;
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Gpu::conv_forward`].
    pub fn conv_relu_forward(
        &self,
        a_prev: &Tensor,
        w: &Tensor,
        b: &Tensor,
        params: ConvParams,
    ) -> Result<(Tensor, ConvReluCache)> {
        let g = forward_geometry(a_prev, w, params)?;
        let mut a = self.alloc("conv_relu_forward output", &g.output_shape(), false)?;
        let conv = self.conv_into(a_prev, w, b, params, true, &mut a)?;
        Ok((a.clone(), ConvReluCache { conv, a }))
    }

    /// The backward pass of [`Gpu::conv_relu_forward`]: `dZ = dA * (A > 0)`, then
    /// [`Gpu::conv_backward`].
    ///
    /// # Errors
    /// As [`Gpu::conv_backward`].
    pub fn conv_relu_backward(&self, da: &Tensor, cache: &ConvReluCache) -> Result<ConvGrads> {
        // A > 0 exactly where Z > 0: A serves as the ReLU's input.
        let dz = self.relu_backward(da, &super::relu::ReluCache::of(cache.a.clone()))?;
        self.conv_backward(&dz, &cache.conv)
    }

    /// [`Gpu::conv_backward_filter`] after the fused ReLU: `(dW, db)` without `dA_prev`.
    ///
    /// # Errors
    /// As [`Gpu::conv_backward`].
    pub fn conv_relu_backward_filter(
        &self,
        da: &Tensor,
        cache: &ConvReluCache,
    ) -> Result<(Tensor, Tensor)> {
        let dz = self.relu_backward(da, &super::relu::ReluCache::of(cache.a.clone()))?;
        self.conv_backward_filter(&dz, &cache.conv)
    }
}

/// Every specialisation of the convolution kernels the ops can ask for.
#[cfg(test)]
pub(crate) fn specializations() -> Vec<(super::kernels::Kernel, Vec<(&'static str, u32)>)> {
    let mut out = vec![
        (direct::FORWARD, vec![]),
        (direct::BACKWARD_DATA, vec![]),
        (direct::BACKWARD_FILTER, vec![]),
    ];
    out.extend(gemm::specializations());
    out.extend(filter::specializations());
    out.extend(pack::specializations());
    out.extend(pool_filter::specializations());
    out
}
