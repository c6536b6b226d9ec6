//! `conv_forward` and `conv_backward` on the GPU; kernels: `shaders/conv_forward.wgsl`,
//! `shaders/conv_backward.wgsl`.

use super::conv_gemm::GemmShape;
use super::launch::{simple, to_u32, WG};
use super::{Arg, Chunk, Gpu, Kernel, Tensor};
use crate::error::{Error, Result};
use crate::params::{check_bias, ConvGeometry, ConvParams};

const FORWARD: Kernel = Kernel {
    name: "conv_forward.wgsl",
    source: include_str!("../../shaders/conv_forward.wgsl"),
    entry: "conv_forward",
    bindings: simple(3, 1),
};

const BACKWARD_SOURCE: &str = include_str!("../../shaders/conv_backward.wgsl");

const BACKWARD_DATA: Kernel = Kernel {
    name: "conv_backward.wgsl",
    source: BACKWARD_SOURCE,
    entry: "backward_data",
    bindings: simple(2, 1),
};

const BACKWARD_FILTER: Kernel = Kernel {
    entry: "backward_filter",
    ..BACKWARD_DATA
};

const BACKWARD_BIAS: Kernel = Kernel {
    entry: "backward_bias",
    ..BACKWARD_DATA
};

/// What `conv_forward` keeps for `conv_backward` (the seeds' `(A_prev, W, b, hparameters)`).
#[derive(Debug, Clone)]
pub struct ConvCache {
    /// The input `(m, n_H_prev, n_W_prev, n_C_prev)`.
    pub a_prev: Tensor,
    /// The weights `(f_h, f_w, n_C_prev, n_C)`.
    pub w: Tensor,
    /// The bias, as given.
    pub b: Tensor,
    /// All sizes.
    pub geometry: ConvGeometry,
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

/// The uniform block of `conv_forward.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ForwardParams {
    total: u32,
    in_h: u32,
    in_w: u32,
    c_in: u32,
    out_h: u32,
    out_w: u32,
    c_out: u32,
    f_h: u32,
    f_w: u32,
    s_h: u32,
    s_w: u32,
    top: u32,
    left: u32,
    a_off: u32,
    z_off: u32,
}

/// The uniform block of `conv_backward.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BackwardParams {
    total: u32,
    images: u32,
    in_h: u32,
    in_w: u32,
    c_in: u32,
    out_h: u32,
    out_w: u32,
    c_out: u32,
    f_h: u32,
    f_w: u32,
    s_h: u32,
    s_w: u32,
    top: u32,
    left: u32,
    a_off: u32,
    dz_off: u32,
    accumulate: u32,
}

impl BackwardParams {
    fn new(g: &ConvGeometry, chunk: &Chunk, total: usize) -> Result<Self> {
        Ok(Self {
            total: to_u32(total)?,
            images: to_u32(chunk.images)?,
            in_h: to_u32(g.in_h)?,
            in_w: to_u32(g.in_w)?,
            c_in: to_u32(g.c_in)?,
            out_h: to_u32(g.out_h)?,
            out_w: to_u32(g.out_w)?,
            c_out: to_u32(g.c_out)?,
            f_h: to_u32(g.f_h)?,
            f_w: to_u32(g.f_w)?,
            s_h: to_u32(g.s_h)?,
            s_w: to_u32(g.s_w)?,
            top: to_u32(g.pad.top)?,
            left: to_u32(g.pad.left)?,
            a_off: 0,
            dz_off: 0,
            accumulate: u32::from(chunk.first > 0),
        })
    }
}

impl Gpu {
    /// The convolution forward pass, `Z = conv(A_prev, W) + b` (SPEC.md), and the cache for
    /// [`Gpu::conv_backward`].
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
    /// [`Error::Rank`], [`Error::ZeroStride`], [`Error::ZeroKernel`], [`Error::EmptyTensor`],
    /// [`Error::ChannelMismatch`], [`Error::KernelTooLarge`], [`Error::BiasShape`],
    /// [`Error::ForeignTensor`], [`Error::TooLarge`] (one image or the weights exceed a binding).
    pub fn conv_forward(
        &self,
        a_prev: &Tensor,
        w: &Tensor,
        b: &Tensor,
        params: ConvParams,
    ) -> Result<(Tensor, ConvCache)> {
        for t in [a_prev, w, b] {
            self.check_owner(t)?;
        }
        let g = ConvGeometry::new(
            a_prev.dims4("conv_forward input")?,
            w.dims4("conv_forward weights")?,
            params,
        )?;
        check_bias(b.shape(), g.c_out)?;
        let z = self.empty("conv_forward output", &g.output_shape())?;
        let cache = ConvCache {
            a_prev: a_prev.clone(),
            w: w.clone(),
            b: b.clone(),
            geometry: g,
        };
        let s = GemmShape::forward(&g);
        if self.gemm_fits(&s) {
            let x4 = self.pad_channels(a_prev)?;
            self.gemm_conv(&x4, w, Some(b), &s, false, &z)?;
            return Ok((z, cache));
        }
        let per_image = g.out_h * g.out_w * g.c_out;
        self.launch(
            &FORWARD,
            g.m,
            &[
                Arg::Batched(a_prev),
                Arg::Whole(w),
                Arg::Whole(b),
                Arg::Batched(&z),
            ],
            |chunk| {
                let total = to_u32(chunk.images * per_image)?;
                let params = ForwardParams {
                    total,
                    in_h: to_u32(g.in_h)?,
                    in_w: to_u32(g.in_w)?,
                    c_in: to_u32(g.c_in)?,
                    out_h: to_u32(g.out_h)?,
                    out_w: to_u32(g.out_w)?,
                    c_out: to_u32(g.c_out)?,
                    f_h: to_u32(g.f_h)?,
                    f_w: to_u32(g.f_w)?,
                    s_h: to_u32(g.s_h)?,
                    s_w: to_u32(g.s_w)?,
                    top: to_u32(g.pad.top)?,
                    left: to_u32(g.pad.left)?,
                    a_off: chunk.offset(0),
                    z_off: chunk.offset(3),
                };
                Ok((params, u64::from(total).div_ceil(WG)))
            },
        )?;
        Ok((z, cache))
    }

    /// The convolution backward pass: from `dZ` `(m, n_H, n_W, n_C)` and the forward cache,
    /// `dA_prev` (shaped like `A_prev`), `dW` (like `W`) and `db` `(1, 1, 1, n_C)`. Every
    /// thread gathers the terms of the one element it writes: no atomics, the same bits on
    /// every run.
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
    /// [`Error::ShapeMismatch`] when `dz` is not the forward output's shape,
    /// [`Error::ForeignTensor`], [`Error::TooLarge`].
    pub fn conv_backward(&self, dz: &Tensor, cache: &ConvCache) -> Result<ConvGrads> {
        self.check_owner(dz)?;
        self.check_owner(&cache.a_prev)?;
        let g = cache.geometry;
        if dz.shape() != g.output_shape() {
            return Err(Error::ShapeMismatch {
                what: "conv_backward dZ must have the forward output's shape",
                expected: g.output_shape().to_vec(),
                got: dz.shape().to_vec(),
            });
        }
        let da_prev = self.empty("conv_backward dA_prev", &g.input_shape())?;
        let dw = self.empty("conv_backward dW", &g.weight_shape())?;
        let db = self.empty("conv_backward db", &[1, 1, 1, g.c_out])?;
        // Pad channels (copies) only for the fast paths that read them.
        let sd = GemmShape::backward_data(&g);
        let data_fast = g.s_h == 1 && g.s_w == 1 && self.gemm_fits(&sd);
        let filter_pixels = self.filter_window_pixels(&g);
        let dz4 = if data_fast || filter_pixels.is_some() {
            Some(self.pad_channels(dz)?)
        } else {
            None
        };
        match (&dz4, data_fast) {
            (Some(dz4), true) => self.gemm_conv(dz4, &cache.w, None, &sd, true, &da_prev)?,
            _ => self.direct_backward_data(dz, cache, &da_prev)?,
        }
        match (&dz4, filter_pixels) {
            (Some(dz4), Some(pixels)) => {
                let x4 = self.pad_channels(&cache.a_prev)?;
                self.gemm_filter(&x4, dz4, &g, pixels, &dw, &db)?;
            }
            _ => self.direct_backward_filter(dz, cache, &dw, &db)?,
        }
        Ok(ConvGrads { da_prev, dw, db })
    }

    /// `dA_prev` by the direct gather kernel (any stride).
    fn direct_backward_data(&self, dz: &Tensor, cache: &ConvCache, da_prev: &Tensor) -> Result<()> {
        let g = cache.geometry;
        let per_image = g.in_h * g.in_w * g.c_in;
        self.launch(
            &BACKWARD_DATA,
            g.m,
            &[
                Arg::Whole(&cache.w),
                Arg::Batched(dz),
                Arg::Batched(da_prev),
            ],
            |chunk| {
                let total = chunk.images * per_image;
                let mut p = BackwardParams::new(&g, chunk, total)?;
                p.dz_off = chunk.offset(1);
                p.a_off = chunk.offset(2);
                Ok((p, u64::from(p.total).div_ceil(WG)))
            },
        )
    }

    /// `dW` and `db` by the direct kernels (one thread per element, chunks accumulated).
    fn direct_backward_filter(
        &self,
        dz: &Tensor,
        cache: &ConvCache,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<()> {
        let g = cache.geometry;
        let dw_len = g.f_h * g.f_w * g.c_in * g.c_out;
        self.launch(
            &BACKWARD_FILTER,
            g.m,
            &[
                Arg::Batched(&cache.a_prev),
                Arg::Batched(dz),
                Arg::Whole(dw),
            ],
            |chunk| {
                let mut p = BackwardParams::new(&g, chunk, dw_len)?;
                p.a_off = chunk.offset(0);
                p.dz_off = chunk.offset(1);
                Ok((p, u64::from(p.total).div_ceil(WG)))
            },
        )?;

        self.launch(
            &BACKWARD_BIAS,
            g.m,
            &[Arg::Batched(dz), Arg::Batched(dz), Arg::Whole(db)],
            |chunk| {
                let mut p = BackwardParams::new(&g, chunk, g.c_out)?;
                p.dz_off = chunk.offset(0);
                Ok((p, u64::from(p.total).div_ceil(WG)))
            },
        )
    }
}
