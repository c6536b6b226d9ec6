//! `pool_forward` and `pool_backward` on the GPU; kernel: `shaders/pool.wgsl`.

use super::launch::{simple, to_u32, Access, WG};
use super::{Arg, Chunk, Gpu, Kernel, Tensor};
use crate::error::{Error, Result};
use crate::params::{PoolGeometry, PoolMode, PoolParams, Ties};

/// The general kernels (any channel count, overlapping windows).
const FORWARD: Kernel = Kernel {
    name: "pool.wgsl",
    source: include_str!("../../shaders/pool.wgsl"),
    entry: "pool_forward",
    bindings: simple(2, 1),
};

const BACKWARD: Kernel = Kernel {
    entry: "pool_backward",
    ..FORWARD
};

const FORWARD_VEC4: Kernel = Kernel {
    name: "pool_vec4.wgsl",
    source: include_str!("../../shaders/pool_vec4.wgsl"),
    entry: "pool_forward",
    bindings: &[(1, Access::Read), (3, Access::Write)],
};

const BACKWARD_VEC4: Kernel = Kernel {
    entry: "pool_backward",
    bindings: simple(2, 1),
    ..FORWARD_VEC4
};

/// The uniform block of `pool_vec4.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Vec4Params {
    total: u32,
    x_off: u32,
    g_off: u32,
    d_off: u32,
}

/// The shape constants `pool_vec4.wgsl` is specialised on.
fn vec4_spec(g: &PoolGeometry, params: &PoolParams) -> [(&'static str, u32); 11] {
    let u = |v: usize| v as u32;
    [
        ("IN_H", u(g.in_h)),
        ("IN_W", u(g.in_w)),
        ("C4", u(g.c / 4)),
        ("OUT_H", u(g.out_h)),
        ("OUT_W", u(g.out_w)),
        ("FH", u(g.f_h)),
        ("FW", u(g.f_w)),
        ("SH", u(g.s_h)),
        ("SW", u(g.s_w)),
        ("MAX_MODE", u32::from(params.mode == PoolMode::Max)),
        ("TIES", u32::from(params.ties == Ties::FirstMax)),
    ]
}

/// Whether the vec4 kernels apply: channels in fours, and sizes the shader can hold as constants.
fn vec4_fits(g: &PoolGeometry) -> bool {
    g.c.is_multiple_of(4)
        && g.f_h * g.f_w <= 64
        && [g.in_h, g.in_w, g.c].iter().all(|&v| v < 1 << 24)
}

/// What `pool_forward` keeps for `pool_backward` (the seeds' `(A_prev, hparameters)`).
#[derive(Debug, Clone)]
pub struct PoolCache {
    /// The input `(m, n_H_prev, n_W_prev, n_C)`.
    pub a_prev: Tensor,
    /// Window, stride, mode and tie rule.
    pub params: PoolParams,
    /// All sizes.
    pub geometry: PoolGeometry,
}

/// The uniform block of `pool.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    in_h: u32,
    in_w: u32,
    c: u32,
    out_h: u32,
    out_w: u32,
    f_h: u32,
    f_w: u32,
    s_h: u32,
    s_w: u32,
    mode: u32,
    ties: u32,
    in_off: u32,
    out_off: u32,
    dst_off: u32,
}

impl Params {
    fn new(g: &PoolGeometry, params: &PoolParams, total: usize) -> Result<Self> {
        Ok(Self {
            total: to_u32(total)?,
            in_h: to_u32(g.in_h)?,
            in_w: to_u32(g.in_w)?,
            c: to_u32(g.c)?,
            out_h: to_u32(g.out_h)?,
            out_w: to_u32(g.out_w)?,
            f_h: to_u32(g.f_h)?,
            f_w: to_u32(g.f_w)?,
            s_h: to_u32(g.s_h)?,
            s_w: to_u32(g.s_w)?,
            mode: match params.mode {
                PoolMode::Max => 0,
                PoolMode::Average => 1,
            },
            ties: match params.ties {
                Ties::EveryMax => 0,
                Ties::FirstMax => 1,
            },
            in_off: 0,
            out_off: 0,
            dst_off: 0,
        })
    }

    fn dispatch(self) -> (Self, u64) {
        (self, u64::from(self.total).div_ceil(WG))
    }
}

fn chunk_total(chunk: &Chunk, per_image: usize) -> usize {
    chunk.images * per_image
}

impl Gpu {
    /// Max or average pooling, no padding: `(m, n_H_prev, n_W_prev, n_C)` ->
    /// `(m, n_H, n_W, n_C)` with `n_H = (n_H_prev - f_h) / stride_h + 1` (likewise `n_W`).
    ///
    /// ```no_run
    /// use wgpu_cnn::{Gpu, PoolMode, PoolParams};
    /// let gpu = Gpu::new()?;
    /// let x = gpu.upload(&ndarray::Array4::<f32>::ones((2, 4, 4, 3)))?;
    /// let (a, _cache) = gpu.pool_forward(&x, PoolParams::new(3, 2, PoolMode::Max))?;
    /// assert_eq!(a.shape(), &[2, 1, 1, 3]);
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Rank`], [`Error::ZeroStride`], [`Error::ZeroKernel`], [`Error::EmptyTensor`],
    /// [`Error::KernelTooLarge`], [`Error::ForeignTensor`], [`Error::TooLarge`].
    pub fn pool_forward(&self, a_prev: &Tensor, params: PoolParams) -> Result<(Tensor, PoolCache)> {
        self.check_owner(a_prev)?;
        let g = PoolGeometry::new(a_prev.dims4("pool_forward input")?, params)?;
        let a = self.empty("pool_forward output", &g.output_shape())?;
        let cache = PoolCache {
            a_prev: a_prev.clone(),
            params,
            geometry: g,
        };
        if vec4_fits(&g) {
            let windows = g.out_h * g.out_w * g.c / 4;
            self.launch_with(
                &FORWARD_VEC4,
                &vec4_spec(&g, &params),
                g.m,
                &[Arg::Batched(a_prev), Arg::Batched(&a)],
                |chunk| {
                    let p = Vec4Params {
                        total: to_u32(chunk.images * windows)?,
                        x_off: chunk.offset(0) / 4,
                        g_off: 0,
                        d_off: chunk.offset(1) / 4,
                    };
                    Ok((p, u64::from(p.total).div_ceil(WG)))
                },
            )?;
            return Ok((a, cache));
        }
        let per_image = g.out_h * g.out_w * g.c;
        self.launch(
            &FORWARD,
            g.m,
            &[Arg::Batched(a_prev), Arg::Batched(a_prev), Arg::Batched(&a)],
            |chunk| {
                let mut p = Params::new(&g, &params, chunk_total(chunk, per_image))?;
                p.in_off = chunk.offset(0);
                p.dst_off = chunk.offset(2);
                Ok(p.dispatch())
            },
        )?;
        Ok((a, cache))
    }

    /// Pooling backward: each output gradient `dA[i, h, w, c]` flows back into its own window
    /// (max: to the window's maximum, by the cache's tie rule; average: spread evenly).
    /// `da` is `(m, n_H, n_W, n_C)`; the result is shaped like `A_prev`.
    ///
    /// ```no_run
    /// use wgpu_cnn::{Gpu, PoolMode, PoolParams, Ties};
    /// let gpu = Gpu::new()?;
    /// let x = gpu.upload(&ndarray::Array4::<f32>::ones((1, 2, 2, 1)))?;
    /// let params = PoolParams::new(2, 2, PoolMode::Max).with_ties(Ties::FirstMax);
    /// let (a, cache) = gpu.pool_forward(&x, params)?;
    /// let dx: ndarray::Array4<f32> = gpu.download(&gpu.pool_backward(&a, &cache)?)?;
    /// assert_eq!(dx.sum(), 1.0); // all four tie; only the first receives the gradient
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `da` is not the forward output's shape,
    /// [`Error::ForeignTensor`], [`Error::TooLarge`].
    pub fn pool_backward(&self, da: &Tensor, cache: &PoolCache) -> Result<Tensor> {
        self.check_owner(da)?;
        let g = cache.geometry;
        if da.shape() != g.output_shape() {
            return Err(Error::ShapeMismatch {
                what: "pool_backward dA must have the forward output's shape",
                expected: g.output_shape().to_vec(),
                got: da.shape().to_vec(),
            });
        }
        let da_prev = self.empty("pool_backward dA_prev", &g.input_shape())?;
        if vec4_fits(&g) && g.s_h >= g.f_h && g.s_w >= g.f_w {
            let windows = g.out_h * g.out_w * g.c / 4;
            self.launch_with(
                &BACKWARD_VEC4,
                &vec4_spec(&g, &cache.params),
                g.m,
                &[
                    Arg::Batched(&cache.a_prev),
                    Arg::Batched(da),
                    Arg::Batched(&da_prev),
                ],
                |chunk| {
                    let p = Vec4Params {
                        total: to_u32(chunk.images * windows)?,
                        x_off: chunk.offset(0) / 4,
                        g_off: chunk.offset(1) / 4,
                        d_off: chunk.offset(2) / 4,
                    };
                    Ok((p, u64::from(p.total).div_ceil(WG)))
                },
            )?;
            return Ok(da_prev);
        }
        let per_image = g.in_h * g.in_w * g.c;
        self.launch(
            &BACKWARD,
            g.m,
            &[
                Arg::Batched(&cache.a_prev),
                Arg::Batched(da),
                Arg::Batched(&da_prev),
            ],
            |chunk| {
                let mut p = Params::new(&g, &cache.params, chunk_total(chunk, per_image))?;
                p.in_off = chunk.offset(0);
                p.out_off = chunk.offset(1);
                p.dst_off = chunk.offset(2);
                Ok(p.dispatch())
            },
        )?;
        Ok(da_prev)
    }
}
