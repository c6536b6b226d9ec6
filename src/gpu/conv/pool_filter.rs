//! Convolution -> ReLU -> max pool as one layer: the forward pass in one kernel where the
//! channel-lane convolution takes it (`conv_lanes` with `POOL`: the ReLU's output is never
//! stored), and the filter gradient straight from the pool's output gradient where the pool
//! keeps its windows' first maxima (`shaders/conv_filter_pool.wgsl`): one term per window and
//! channel instead of one per pixel.

use super::super::kernels::{replacing, uniform, Access, Kernel};
use super::super::launch::to_u32;
use super::super::pool::{keeps_first_maxima, PoolCache};
use super::super::{Arg, Gpu, Tensor};
use super::plan::Path;
use super::{forward_geometry, ConvCache, ConvGrads, ConvReluCache};
use crate::error::{Error, Result};
use crate::params::{check_bias, ConvGeometry, ConvParams, PoolGeometry, PoolParams};

uniform! {
    /// The uniform block of `conv_filter_pool.wgsl`.
    struct PoolFilterParams {
        windows: u32,
        per_part: u32,
        threads: u32,
        pool_sh: u32,
        pool_sw: u32,
        conv_oh: u32,
        conv_ow: u32,
        in_h: u32,
        in_w: u32,
        s_h: u32,
        s_w: u32,
        top: u32,
        left: u32,
    }
}

/// The bindings of `filter_from_pool`: x, the first maxima, the pool's output gradient, the
/// activation (or the pool's output), the partial sums, the partial bias sums, x's rows as
/// vec4s.
const POOL_FILTER_BINDINGS: [(u32, Access); 7] = [
    (1, Access::Read),
    (2, Access::Read),
    (3, Access::Read),
    (4, Access::Read),
    (5, Access::Write),
    (6, Access::Write),
    (7, Access::Read),
];

pub(crate) const FILTER_FROM_POOL: Kernel = Kernel::new::<PoolFilterParams>(
    "conv_filter_pool.wgsl",
    include_str!("../../../shaders/conv_filter_pool.wgsl"),
    "filter_from_pool",
    &POOL_FILTER_BINDINGS,
);

/// The same bindings, x's rows from the texture its vec4s were copied into.
const POOL_FILTER_TEX_BINDINGS: [(u32, Access); 7] =
    replacing(POOL_FILTER_BINDINGS, 6, (8, Access::Texture));

/// `filter_from_pool` reading x's rows through the texture that its vec4s were copied into.
pub(crate) const FILTER_FROM_POOL_TEX: Kernel =
    FILTER_FROM_POOL.entry("filter_from_pool", &POOL_FILTER_TEX_BINDINGS);

/// Most filter taps times input channels a thread keeps in registers (`FH * FW * K`).
const MAX_TERMS: usize = 64;

/// Windows each thread adds (its part), before the parts are added in order.
const PER_PART: usize = 32;

/// The specialisations the op can ask for (test coverage), up to 4x4 filters of 4 channels.
#[cfg(test)]
pub(crate) fn specializations() -> Vec<(Kernel, Vec<(&'static str, u32)>)> {
    let mut out = Vec::new();
    for (fh, fw, k) in [
        (1, 1, 1),
        (2, 2, 8),
        (3, 3, 3),
        (4, 4, 3),
        (4, 4, 4),
        (1, 8, 8),
    ] {
        for (pooled, v4, tex) in [
            (0, 0, 0),
            (1, 0, 0),
            (0, 1, 0),
            (1, 1, 0),
            (0, 1, 1),
            (1, 1, 1),
        ] {
            let consts = vec![
                ("FH", fh),
                ("FW", fw),
                ("K", k),
                ("POOLED", pooled),
                ("C", 8),
                ("POH", 8),
                ("POW", 8),
                ("PFW", 8),
                ("V4", v4),
                ("TEX", tex),
            ];
            let kernel = if tex == 1 {
                FILTER_FROM_POOL_TEX
            } else {
                FILTER_FROM_POOL
            };
            out.push((kernel, consts));
        }
    }
    out
}

/// What [`Gpu::conv_relu_pool_forward`] keeps for its backward passes.
#[derive(Debug, Clone)]
pub struct ConvReluPoolCache {
    inner: Box<Parts>,
}

#[derive(Debug, Clone)]
enum Parts {
    /// One kernel: the pool's output (which holds the ReLU's output at each window's first
    /// maximum) and the first maxima; the ReLU's output was never stored.
    Fused {
        conv: ConvCache,
        pooled: Tensor,
        first: Tensor,
        pool: PoolGeometry,
        params: PoolParams,
    },
    /// [`Gpu::conv_relu_forward`] then [`Gpu::pool_forward`].
    Apart {
        conv: ConvReluCache,
        pool: PoolCache,
    },
}

impl ConvReluPoolCache {
    /// The cache of [`Gpu::conv_relu_forward`] and of the [`Gpu::pool_forward`] that read its
    /// output, as one layer (for [`Gpu::conv_relu_pool_backward`]).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the pool's input is not the ReLU's output tensor.
    pub fn of(conv: ConvReluCache, pool: PoolCache) -> Result<Self> {
        if !pool.a_prev().same_buffer(&conv.a) || pool.a_prev().shape() != conv.a.shape() {
            return Err(Error::ShapeMismatch {
                what: "conv + ReLU + pool: the pool's input must be the ReLU's output",
                expected: conv.a.shape().to_vec(),
                got: pool.a_prev().shape().to_vec(),
            });
        }
        Ok(Self {
            inner: Box::new(Parts::Apart { conv, pool }),
        })
    }

    /// The convolution's cache.
    pub fn conv(&self) -> &ConvCache {
        match &*self.inner {
            Parts::Fused { conv, .. } => conv,
            Parts::Apart { conv, .. } => &conv.conv,
        }
    }

    /// Whether one kernel ran the convolution, the ReLU and the pool (the ReLU's output was
    /// never stored).
    pub fn fused(&self) -> bool {
        matches!(*self.inner, Parts::Fused { .. })
    }

    /// The pool's sizes.
    fn pool_geometry(&self) -> PoolGeometry {
        match &*self.inner {
            Parts::Fused { pool, .. } => *pool,
            Parts::Apart { pool, .. } => pool.geometry(),
        }
    }

    /// What the filter gradient from the pool's windows reads, if it applies (the pool kept its
    /// first maxima, at most [`MAX_TERMS`] taps times input channels): the first maxima, the
    /// tensor that holds the ReLU's output at them, and whether that is the pool's output.
    fn sparse(&self) -> Option<(&Tensor, &Tensor, bool)> {
        let g = self.conv().plan.geometry;
        let parts = match &*self.inner {
            Parts::Fused { pooled, first, .. } => Some((first, pooled, true)),
            Parts::Apart { pool, conv } => pool.first_maxima().map(|f| (f, &conv.a, false)),
        };
        parts.filter(|_| g.f_h * g.f_w * g.c_in <= MAX_TERMS)
    }
}

/// The bias gradient of a backward pass asked for it (`bias = true`).
fn asked_db(db: Option<Tensor>) -> Result<Tensor> {
    db.ok_or_else(|| Error::Kernel("conv + ReLU + pool: no db".into()))
}

impl Gpu {
    /// A convolution, its bias, a ReLU and a max or average pool as one layer: `P =
    /// pool(max(0, conv(A_prev, W) + b))`, `P` `(m, n_H, n_W, n_C)` the pool's output. Where
    /// the pool takes each window's first maximum ([`crate::Ties::FirstMax`]), its windows do not
    /// overlap and lie inside the convolution's output, the channels come in fours, and the
    /// channel-lane convolution is the adapter's kernel for the layer (CPU adapters with
    /// subgroups, at most 8 input channels, stride 1 along the width), one kernel computes
    /// `P` and the windows' first maxima and the ReLU's output is never stored; otherwise
    /// [`Gpu::conv_relu_forward`] then [`Gpu::pool_forward`] run. Both give the same bits.
    ///
    /// ```no_run
    /// use ndarray::{Array1, Array4};
    /// use wgpu_cnn::{ConvParams, Gpu, PoolMode, PoolParams, Ties};
    /// let gpu = Gpu::new()?;
    /// let x = gpu.upload(&Array4::<f32>::ones((2, 8, 8, 3)))?;
    /// let w = gpu.upload(&Array4::<f32>::from_elem((3, 3, 3, 4), 0.1))?;
    /// let b = gpu.upload(&Array1::<f32>::zeros(4))?;
    /// let pool = PoolParams::new(4, 4, PoolMode::Max).with_ties(Ties::FirstMax);
    /// let (p, cache) = gpu.conv_relu_pool_forward(&x, &w, &b, ConvParams::new(1, 1), pool)?;
    /// assert_eq!(p.shape(), &[2, 2, 2, 4]);
    /// let grads = gpu.conv_relu_pool_backward(&p, &cache)?;
    /// assert_eq!(grads.dw.shape(), &[3, 3, 3, 4]);
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Gpu::conv_forward`] and [`Gpu::pool_forward`] (the pool's sizes are checked
    /// against the convolution's output).
    pub fn conv_relu_pool_forward(
        &self,
        a_prev: &Tensor,
        w: &Tensor,
        b: &Tensor,
        conv: ConvParams,
        pool: PoolParams,
    ) -> Result<(Tensor, ConvReluPoolCache)> {
        for t in [a_prev, w, b] {
            self.check_owner(t)?;
        }
        let g = forward_geometry(a_prev, w, conv)?;
        check_bias(b.shape(), g.c_out)?;
        let pg = PoolGeometry::new([g.m, g.out_h, g.out_w, g.c_out], pool)?;
        // The one kernel keeps the windows' first maxima as the pool's own forward would.
        if keeps_first_maxima(&pg, &pool) {
            if let Some(out) = self.one_kernel_layer(a_prev, w, b, &g, (pool, pg))? {
                return Ok(out);
            }
        }
        let (a, conv) = self.conv_relu_forward(a_prev, w, b, conv)?;
        let (p, pool) = self.pool_forward(&a, pool)?;
        Ok((p, ConvReluPoolCache::of(conv, pool)?))
    }

    /// [`Gpu::conv_relu_pool_forward`] in one kernel, if the channel-lane convolution takes
    /// the layer (one product, see [`Gpu::lanes_pool_subgroup`]); `None` (nothing recorded)
    /// otherwise.
    fn one_kernel_layer(
        &self,
        a_prev: &Tensor,
        w: &Tensor,
        b: &Tensor,
        g: &ConvGeometry,
        (params, pool): (PoolParams, PoolGeometry),
    ) -> Result<Option<(Tensor, ConvReluPoolCache)>> {
        let plan = self.conv_plan(g)?;
        let Path::Gemm { products, .. } = &plan.forward else {
            return Ok(None);
        };
        let [(s, win)] = products.as_slice() else {
            return Ok(None);
        };
        let Some(sg) = self.lanes_pool_subgroup(s, win, pool.f_w) else {
            return Ok(None);
        };
        let shape = pool.output_shape();
        let pooled = self.alloc("conv_relu_pool_forward output", &shape, false)?;
        let first = self.alloc("conv_relu_pool_forward first maxima", &shape, false)?;
        self.gemm_conv_pool(s, win, sg, a_prev, w, b, &pool, &pooled, &first)?;
        let conv = ConvCache {
            a_prev: a_prev.clone(),
            x4: None,
            w: w.clone(),
            b: b.clone(),
            plan,
        };
        let inner = Box::new(Parts::Fused {
            conv,
            pooled: pooled.clone(),
            first,
            pool,
            params,
        });
        Ok(Some((pooled, ConvReluPoolCache { inner })))
    }

    /// The backward pass of [`Gpu::conv_relu_pool_forward`] from the pool's output gradient
    /// `dp` `(m, n_H, n_W, n_C)`: `dA_prev`, `dW` and `db` of the convolution, as
    /// `conv_backward(pool_relu_backward(dp))` gives them (the filter gradient as in
    /// [`Gpu::conv_relu_pool_backward_filter`]).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `dp` is not the pool's output shape,
    /// [`Error::ForeignTensor`], [`Error::TooLarge`].
    pub fn conv_relu_pool_backward(
        &self,
        dp: &Tensor,
        cache: &ConvReluPoolCache,
    ) -> Result<ConvGrads> {
        let (da_prev, dw, db) = self.conv_relu_pool_grads(dp, cache, true)?;
        let db = asked_db(db)?;
        Ok(ConvGrads { da_prev, dw, db })
    }

    /// [`Gpu::conv_relu_pool_backward`]: `(dA_prev, dW, db)`, `db` only when `bias` (a layer
    /// without a bias, as seed 001's convolutions, skips its sums where the sparse path runs).
    pub(crate) fn conv_relu_pool_grads(
        &self,
        dp: &Tensor,
        cache: &ConvReluPoolCache,
        bias: bool,
    ) -> Result<(Tensor, Tensor, Option<Tensor>)> {
        let dz = self.pool_relu_dz(dp, cache)?;
        if cache.sparse().is_none() {
            let g = self.conv_backward(&dz, cache.conv())?;
            return Ok((g.da_prev, g.dw, Some(g.db)));
        }
        let (dw, db) = self.conv_relu_pool_filter(dp, cache, bias)?;
        let da_prev = self.conv_backward_data(&dz, cache.conv())?;
        Ok((da_prev, dw, db))
    }

    /// `dZ = pool_relu_backward(dp)`, shaped like the convolution's output.
    fn pool_relu_dz(&self, dp: &Tensor, cache: &ConvReluPoolCache) -> Result<Tensor> {
        self.check_owner(dp)?;
        let pg = cache.pool_geometry();
        dp.expect_shape("pool output gradient", &pg.output_shape())?;
        match &*cache.inner {
            Parts::Apart { pool, .. } => self.pool_relu_backward(dp, pool),
            Parts::Fused {
                pooled,
                first,
                params,
                ..
            } => {
                let dz = self.alloc("pool_backward dA_prev", &pg.input_shape(), true)?;
                let mask = (pooled, true);
                self.scatter_first_maxima(dp, first, mask, &pg, params, true, &dz, true)?;
                Ok(dz)
            }
        }
    }

    /// `dW` and `db` of the convolution of [`Gpu::conv_relu_pool_forward`] (or of
    /// [`ConvReluPoolCache::of`]) from the pool's output gradient `dp` `(m, n_H, n_W, n_C)`:
    /// what `conv_backward_filter(pool_relu_backward(dp))` computes, without the dense `dZ`
    /// where the pool keeps its windows' first maxima (first-maximum rule, windows that do not
    /// overlap, channels in fours; see [`PoolCache::keeps_first_maxima`]) and the filter has at
    /// most 64 taps times input channels: each window adds one term per channel (64 times fewer
    /// than the dense sum for 8x8 windows), in a fixed order; the sums then differ from the
    /// dense path's only by rounding. Otherwise it takes the dense path. Zero terms are
    /// skipped: an Inf or NaN input where `dZ` is zero does not reach `dW` (the dense path gives
    /// NaN there, as `Inf * 0` is).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `dp` is not the pool's output shape,
    /// [`Error::ForeignTensor`], [`Error::TooLarge`].
    pub fn conv_relu_pool_backward_filter(
        &self,
        dp: &Tensor,
        cache: &ConvReluPoolCache,
    ) -> Result<(Tensor, Tensor)> {
        let (dw, db) = self.conv_relu_pool_filter(dp, cache, true)?;
        Ok((dw, asked_db(db)?))
    }

    /// [`Gpu::conv_relu_pool_backward_filter`], `db` only when `bias` (see
    /// [`Gpu::conv_relu_pool_grads`]).
    pub(crate) fn conv_relu_pool_filter(
        &self,
        dp: &Tensor,
        cache: &ConvReluPoolCache,
        bias: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        self.check_owner(dp)?;
        let pg = cache.pool_geometry();
        dp.expect_shape("pool output gradient", &pg.output_shape())?;
        let conv = cache.conv();
        let g = conv.plan.geometry;
        let terms = g.f_h * g.f_w * g.c_in;
        let Some((first, act, pooled)) = cache.sparse() else {
            let dz = self.pool_relu_dz(dp, cache)?;
            let (dw, db) = self.conv_backward_filter(&dz, conv)?;
            return Ok((dw, Some(db)));
        };
        let x = &conv.a_prev;
        self.check_owner(x)?;
        let windows = pg.m * pg.out_h * pg.out_w;
        let parts = windows.div_ceil(PER_PART);
        let shapes = [x.shape(), dp.shape()];
        let u = |what, v| to_u32(what, v, shapes[0], shapes[1]);
        let p = PoolFilterParams {
            windows: u("windows", windows)?,
            per_part: u("windows per part", PER_PART)?,
            threads: u("threads", parts * g.c_out)?,
            pool_sh: u("pool stride", pg.s_h)?,
            pool_sw: u("pool stride", pg.s_w)?,
            conv_oh: u("conv output height", g.out_h)?,
            conv_ow: u("conv output width", g.out_w)?,
            in_h: u("input height", g.in_h)?,
            in_w: u("input width", g.in_w)?,
            s_h: u("stride", g.s_h)?,
            s_w: u("stride", g.s_w)?,
            top: u("top padding", g.pad.top)?,
            left: u("left padding", g.pad.left)?,
        };
        let partial = self.alloc("pool filter partial sums", &[parts, terms * g.c_out], false)?;
        let partial_b = self.alloc("pool filter partial bias", &[parts, g.c_out], false)?;
        let v4 = (g.in_w * g.c_in).is_multiple_of(4);
        // Rows through x's texture where they are vec4s, as the fused forward reads them; in a
        // texture-sharing scope (a training step) the copy that forward made.
        let tex = v4 && self.texture_untuned(x);
        let consts = [
            ("FH", g.f_h as u32),
            ("FW", g.f_w as u32),
            ("K", g.c_in as u32),
            ("POOLED", u32::from(pooled)),
            ("C", u("channels", g.c_out)?),
            ("POH", u("pool output height", pg.out_h)?),
            ("POW", u("pool output width", pg.out_w)?),
            ("PFW", u("pool window width", pg.f_w)?),
            ("V4", u32::from(v4)),
            ("TEX", u32::from(tex)),
        ];
        let launch = |kernel: &Kernel, rows: Arg| {
            let args = [
                Arg::Whole(x),
                Arg::Whole(first),
                Arg::Whole(dp),
                Arg::Whole(act),
                Arg::Whole(&partial),
                Arg::Whole(&partial_b),
                rows,
            ];
            self.launch(kernel, &consts, 1, &args, |_| {
                Ok((p, u64::from(p.threads).div_ceil(64)))
            })
        };
        if tex {
            self.with_texture(x, 0, |t| launch(&FILTER_FROM_POOL_TEX, Arg::Texture(x, t)))?;
        } else {
            launch(&FILTER_FROM_POOL, Arg::Whole(x))?;
        }
        let dw = self.alloc("conv_backward dW", &g.weight_shape(), false)?;
        self.row_sums(
            &partial,
            None,
            (1, parts, terms * g.c_out),
            false,
            Some(&dw),
        )?;
        if !bias {
            return Ok((dw, None));
        }
        let db = self.alloc("conv_backward db", &[1, 1, 1, g.c_out], false)?;
        self.row_sums(&partial_b, None, (1, parts, g.c_out), false, Some(&db))?;
        Ok((dw, Some(db)))
    }
}
