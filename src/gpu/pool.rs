//! `pool_forward` and `pool_backward` on the GPU; kernels: `shaders/pool_vec4.wgsl` (channels in
//! fours, every size an override constant) and `shaders/pool.wgsl` (the general gather kernels).

use super::kernels::{simple, uniform, Access, Kernel};
use super::launch::{count, to_u32, Chunk};
use super::{Arg, Gpu, Tensor};
use crate::error::{Error, Result};
use crate::params::{PoolGeometry, PoolMode, PoolParams, Ties};

uniform! {
    /// The uniform block of `pool.wgsl`.
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
        top: u32,
        left: u32,
        in_off: u32,
        out_off: u32,
        dst_off: u32,
    }
}

uniform! {
    /// The uniform block of `pool_vec4.wgsl` (the sizes are override constants).
    struct Vec4Params {
        total: u32,
        x_off: u32,
        g_off: u32,
        d_off: u32,
    }
}

/// The general kernels (any channel count, overlapping windows).
pub(crate) const FORWARD: Kernel = Kernel::new::<Params>(
    "pool.wgsl",
    concat!(
        include_str!("../../shaders/pool.wgsl"),
        include_str!("../../shaders/stream.wgsl")
    ),
    "pool_forward",
    simple(2, 1),
)
.streamed();

pub(crate) const BACKWARD: Kernel = FORWARD.entry("pool_backward", simple(2, 1));

pub(crate) const FORWARD_VEC4: Kernel = Kernel::new::<Vec4Params>(
    "pool_vec4.wgsl",
    concat!(
        include_str!("../../shaders/pool_vec4.wgsl"),
        include_str!("../../shaders/stream.wgsl")
    ),
    "pool_forward",
    &[(1, Access::Read), (3, Access::Write), (4, Access::Write)],
)
.streamed();

pub(crate) const BACKWARD_VEC4: Kernel = FORWARD_VEC4.entry("pool_backward", simple(2, 1));

/// The max pool backward from the forward's first maxima (`FIRST`): writes one element per window.
pub(crate) const SCATTER_VEC4: Kernel = FORWARD_VEC4.entry(
    "pool_scatter",
    &[
        (1, Access::Read),
        (2, Access::Read),
        (3, Access::Write),
        (5, Access::Read),
    ],
);

/// Largest window the vec4 kernels unroll.
const VEC4_MAX_TAPS: usize = 64;

/// The override constants of `pool_vec4.wgsl`, if the vec4 kernels apply: channels in fours, a
/// window of at most [`VEC4_MAX_TAPS`], and sizes that fit `u32` index arithmetic.
fn vec4_consts(g: &PoolGeometry, params: &PoolParams) -> Option<Vec<(&'static str, u32)>> {
    let unpadded = g.pad == crate::Padding::uniform(0);
    if !unpadded || !g.c.is_multiple_of(4) || g.f_h * g.f_w > VEC4_MAX_TAPS {
        return None;
    }
    let u = |v: usize| u32::try_from(v).ok().filter(|&v| v < 1 << 24);
    Some(vec![
        ("IN_H", u(g.in_h)?),
        ("IN_W", u(g.in_w)?),
        ("C4", u(g.c / 4)?),
        ("OUT_H", u(g.out_h)?),
        ("OUT_W", u(g.out_w)?),
        ("FH", u(g.f_h)?),
        ("FW", u(g.f_w)?),
        ("SH", u(g.s_h)?),
        ("SW", u(g.s_w)?),
        ("MAX_MODE", u32::from(params.mode == PoolMode::Max)),
        ("TIES", u32::from(params.ties == Ties::FirstMax)),
    ])
}

/// Whether a pool of `g` with `params` keeps its windows' first maxima (the forward writes
/// them, the backward writes one element per window): a max pool with the first-maximum rule
/// whose windows do not overlap and that the vec4 kernels take.
pub(crate) fn keeps_first_maxima(g: &PoolGeometry, params: &PoolParams) -> bool {
    params.mode == PoolMode::Max
        && params.ties == Ties::FirstMax
        && vec4_backward(g, params).is_some()
}

/// The vec4 backward's constants, if it applies: windows that do not overlap.
fn vec4_backward(g: &PoolGeometry, params: &PoolParams) -> Option<Vec<(&'static str, u32)>> {
    (g.s_h >= g.f_h && g.s_w >= g.f_w)
        .then(|| vec4_consts(g, params))
        .flatten()
}

/// Every specialisation of `pool_vec4.wgsl` the ops can ask for, up to the sizes (which are
/// overrides, so one set stands for all): windows 1..=8 x 1..=8, both modes and tie rules.
#[cfg(test)]
pub(crate) fn vec4_specializations() -> Vec<(Kernel, Vec<(&'static str, u32)>)> {
    let mut out = Vec::new();
    for f_h in 1..=8 {
        for f_w in 1..=8 {
            for (mode, ties) in [
                (PoolMode::Max, Ties::EveryMax),
                (PoolMode::Max, Ties::FirstMax),
                (PoolMode::Average, Ties::EveryMax),
            ] {
                let params = PoolParams::new(1, 1, mode)
                    .with_kernel(f_h, f_w)
                    .with_stride(f_h, f_w)
                    .with_ties(ties);
                let g = PoolGeometry::new([1, 2 * f_h, 2 * f_w, 4], params).expect("valid");
                let consts = vec4_consts(&g, &params).expect("vec4 applies");
                for first in [0, 1] {
                    let mut consts = consts.clone();
                    consts.push(("FIRST", first));
                    out.push((FORWARD_VEC4, consts));
                }
                for relu in [0, 1] {
                    let mut consts = consts.clone();
                    consts.push(("RELU", relu));
                    out.push((BACKWARD_VEC4, consts.clone()));
                    for pooled in [0, 1] {
                        let mut consts = consts.clone();
                        consts.push(("POOLED", pooled));
                        out.push((SCATTER_VEC4, consts));
                    }
                }
            }
        }
    }
    out
}

/// What `pool_forward` keeps for `pool_backward` (the seeds' `(A_prev, hparameters)`). Its
/// parts can be read, not changed, so it always matches the forward pass that made it:
///
/// ```compile_fail
/// fn edit(cache: &mut wgpu_cnn::PoolCache, other: wgpu_cnn::PoolGeometry) {
///     cache.geometry = other; // private: a cache cannot disagree with its tensors
/// }
/// ```
#[derive(Debug, Clone)]
pub struct PoolCache {
    a_prev: Tensor,
    params: PoolParams,
    geometry: PoolGeometry,
    /// Max pools with the first-maximum rule and windows that do not overlap (channels in
    /// fours): each window's first maximum, its tap's row-major index in the window (as `f32`),
    /// shaped like the output. The backward then writes one element per window.
    first: Option<Tensor>,
}

impl PoolCache {
    /// The input `(m, n_H_prev, n_W_prev, n_C)`.
    pub fn a_prev(&self) -> &Tensor {
        &self.a_prev
    }

    /// Window, stride, mode and tie rule.
    pub fn params(&self) -> PoolParams {
        self.params
    }

    /// All sizes.
    pub fn geometry(&self) -> PoolGeometry {
        self.geometry
    }

    /// Whether the forward pass kept each window's first maximum (a max pool with
    /// [`Ties::FirstMax`] whose windows do not overlap, channels in fours): the backward then
    /// writes one element per window.
    pub fn keeps_first_maxima(&self) -> bool {
        self.first.is_some()
    }

    /// The windows' first maxima (their taps' row-major indices, as `f32`), shaped like the
    /// output, when kept.
    pub(crate) fn first_maxima(&self) -> Option<&Tensor> {
        self.first.as_ref()
    }
}

/// Whether the windows cover the input exactly (no element is in no window).
fn covered(g: &PoolGeometry) -> bool {
    g.s_h == g.f_h && g.s_w == g.f_w && g.out_h * g.s_h == g.in_h && g.out_w * g.s_w == g.in_w
}

/// Loop iterations of one scan of a window in `pool.wgsl`.
fn window_loops(g: &PoolGeometry) -> u64 {
    1 + g.f_h as u64 * (1 + g.f_w as u64)
}

impl Params {
    fn new(g: &PoolGeometry, params: &PoolParams) -> Result<Self> {
        let (input, output) = (g.input_shape(), g.output_shape());
        let u = |what, v| to_u32(what, v, &input, &output);
        Ok(Self {
            in_h: u("input height", g.in_h)?,
            in_w: u("input width", g.in_w)?,
            c: u("channels", g.c)?,
            out_h: u("output height", g.out_h)?,
            out_w: u("output width", g.out_w)?,
            f_h: u("window height", g.f_h)?,
            f_w: u("window width", g.f_w)?,
            s_h: u("stride", if g.out_h == 1 { 1 } else { g.s_h })?,
            s_w: u("stride", if g.out_w == 1 { 1 } else { g.s_w })?,
            top: u("top padding", g.pad.top)?,
            left: u("left padding", g.pad.left)?,
            mode: match params.mode {
                PoolMode::Max => 0,
                PoolMode::Average => 1,
            },
            ties: match params.ties {
                Ties::EveryMax => 0,
                Ties::FirstMax => 1,
            },
            ..Self::default()
        })
    }
}

impl Gpu {
    /// Max or average pooling, optionally padded (`PoolParams::with_padding`; padding never wins
    /// a maximum and is not counted in an average): `(m, n_H_prev, n_W_prev, n_C)` ->
    /// `(m, n_H, n_W, n_C)` with `n_H = (n_H_prev + top + bottom - f_h) / stride_h + 1` (likewise
    /// `n_W`).
    /// A window holding NaN gives NaN (max) as the CPU reference does. A max pool with
    /// [`Ties::FirstMax`] whose windows do not overlap (channels in fours) also keeps each
    /// window's first maximum in its cache (an output-sized tensor), from which its backward
    /// writes one element per window ([`PoolCache::keeps_first_maxima`]).
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
        let g = PoolGeometry::new(a_prev.dims4("pool_forward input")?, params)?;
        let mut a = self.alloc("pool_forward output", &g.output_shape(), false)?;
        let cache = self.pool_forward_into(a_prev, params, &mut a)?;
        Ok((a, cache))
    }

    /// [`Gpu::pool_forward`] into an existing tensor `a` of the output shape.
    ///
    /// # Errors
    /// As [`Gpu::pool_forward`], and [`Error::ShapeMismatch`] when `a` is not the output shape.
    pub fn pool_forward_into(
        &self,
        a_prev: &Tensor,
        params: PoolParams,
        a: &mut Tensor,
    ) -> Result<PoolCache> {
        self.check_owner(a_prev)?;
        self.check_owner(a)?;
        let g = PoolGeometry::new(a_prev.dims4("pool_forward input")?, params)?;
        a.expect_shape("pool_forward output", &g.output_shape())?;
        let scatter = keeps_first_maxima(&g, &params);
        let first = if scatter {
            Some(self.alloc("pool_forward first maxima", &g.output_shape(), false)?)
        } else {
            None
        };
        let cache = PoolCache {
            a_prev: a_prev.clone(),
            params,
            geometry: g,
            first,
        };
        if let Some(mut consts) = vec4_consts(&g, &params) {
            consts.push(("FIRST", u32::from(scatter)));
            let windows = g.out_h * g.out_w * g.c / 4;
            self.launch(
                &FORWARD_VEC4,
                &consts,
                g.m,
                &[
                    Arg::Batched(a_prev),
                    Arg::Batched(a),
                    Arg::Batched(cache.first.as_ref().unwrap_or(a)),
                ],
                |chunk| {
                    let p = Vec4Params {
                        total: count(chunk.images * windows)?,
                        x_off: chunk.offset(0) / 4,
                        g_off: 0,
                        d_off: chunk.offset(1) / 4,
                    };
                    Ok((p, self.stream_workgroups(u64::from(p.total), 0)))
                },
            )?;
            return Ok(cache);
        }
        let base = Params::new(&g, &params)?;
        let per_image = g.out_h * g.out_w * g.c;
        self.check_loops(
            "pool_forward (general kernel)",
            (g.m * per_image) as u64,
            window_loops(&g),
            &[a_prev.shape()],
        )?;
        self.launch(
            &FORWARD,
            &[],
            g.m,
            &[Arg::Batched(a_prev), Arg::Batched(a_prev), Arg::Batched(a)],
            |chunk| {
                let p = Params {
                    total: count(chunk.images * per_image)?,
                    in_off: chunk.offset(0),
                    dst_off: chunk.offset(2),
                    ..base
                };
                Ok((
                    p,
                    self.stream_workgroups(u64::from(p.total), window_loops(&g)),
                ))
            },
        )?;
        Ok(cache)
    }

    /// Pooling backward: each output gradient `dA[i, h, w, c]` flows back into its own window
    /// (max: to the window's maximum, by the cache's tie rule; average: spread evenly).
    /// `da` is `(m, n_H, n_W, n_C)`; the result is shaped like `A_prev`. A window holding NaN
    /// routes nothing under [`Ties::EveryMax`] (NaN equals nothing) and routes to its first NaN
    /// under [`Ties::FirstMax`], as the CPU reference does.
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
        self.pool_backward_masked(da, cache, false)
    }

    /// The backward pass of a ReLU followed by this pooling, in one pass: where the pool's input
    /// `A_prev` is the ReLU's output, `dZ = pool_backward(dA) * (A_prev > 0)`, bitwise what
    /// [`Gpu::pool_backward`] then [`Gpu::relu_backward`] give, without writing and reading back
    /// the intermediate gradient (the pool backward reads `A_prev` anyway). `da` is
    /// `(m, n_H, n_W, n_C)`; the result is shaped like `A_prev`.
    ///
    /// ```no_run
    /// use wgpu_cnn::{Gpu, PoolMode, PoolParams};
    /// let gpu = Gpu::new()?;
    /// let z = gpu.upload(&ndarray::Array4::<f32>::from_shape_vec((1, 2, 2, 1), vec![-1.0, 2.0, 0.0, 1.0]).unwrap())?;
    /// let (a, _) = gpu.relu_forward(&z)?;
    /// let (p, cache) = gpu.pool_forward(&a, PoolParams::new(2, 2, PoolMode::Average))?;
    /// let dz: ndarray::Array4<f32> = gpu.download(&gpu.pool_relu_backward(&p, &cache)?)?;
    /// assert_eq!(dz.iter().filter(|&&v| v != 0.0).count(), 2); // only where A_prev > 0
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Gpu::pool_backward`].
    pub fn pool_relu_backward(&self, da: &Tensor, cache: &PoolCache) -> Result<Tensor> {
        self.pool_backward_masked(da, cache, true)
    }

    fn pool_backward_masked(&self, da: &Tensor, cache: &PoolCache, relu: bool) -> Result<Tensor> {
        let g = cache.geometry;
        // The vec4 kernels write every window, so only elements in no window need zeros; the
        // scatter from the first maxima writes one element per window.
        let zeroed =
            vec4_backward(&g, &cache.params).is_some() && (!covered(&g) || cache.first.is_some());
        let mut da_prev = self.alloc("pool_backward dA_prev", &g.input_shape(), zeroed)?;
        self.backward_into(da, cache, &mut da_prev, zeroed, relu)?;
        Ok(da_prev)
    }

    /// [`Gpu::pool_backward`] into an existing tensor `da_prev` shaped like `A_prev`.
    ///
    /// # Errors
    /// As [`Gpu::pool_backward`], and [`Error::ShapeMismatch`] when `da_prev` is not shaped like
    /// `A_prev`.
    pub fn pool_backward_into(
        &self,
        da: &Tensor,
        cache: &PoolCache,
        da_prev: &mut Tensor,
    ) -> Result<()> {
        self.backward_into(da, cache, da_prev, false, false)
    }

    /// The params and workgroups of a `pool_vec4.wgsl` pass over the windows of `chunk`
    /// (bindings 1, 2, 3: the pool's input or output, the gradient, the destination).
    fn vec4_work(&self, g: &PoolGeometry, chunk: &Chunk) -> Result<(Vec4Params, u64)> {
        let windows = g.out_h * g.out_w * g.c / 4;
        let p = Vec4Params {
            total: count(chunk.images * windows)?,
            x_off: chunk.offset(0) / 4,
            g_off: chunk.offset(1) / 4,
            d_off: chunk.offset(2) / 4,
        };
        Ok((p, self.stream_workgroups(u64::from(p.total), 0)))
    }

    /// A max pool's backward from its windows' first maxima `first` (shaped like `da`, as the
    /// forward keeps them): `da` at each window's first maximum of `da_prev` (shaped like the
    /// pool's input; cleared first unless `zeroed`), with `relu` only where the ReLU before the
    /// pool let it through: `mask.0 > 0` there, `mask.0` the pool's input, or with `mask.1` its
    /// output (which holds the input at each first maximum).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn scatter_first_maxima(
        &self,
        da: &Tensor,
        first: &Tensor,
        (mask, pooled): (&Tensor, bool),
        g: &PoolGeometry,
        params: &PoolParams,
        relu: bool,
        da_prev: &Tensor,
        zeroed: bool,
    ) -> Result<()> {
        let mut consts = vec4_backward(g, params).ok_or_else(|| {
            Error::Kernel("first maxima of a pool the vec4 kernels do not take".into())
        })?;
        consts.push(("RELU", u32::from(relu)));
        consts.push(("POOLED", u32::from(pooled)));
        // Only the windows' first maxima are written: everything else must be zero.
        if !zeroed {
            self.clear(da_prev);
        }
        let args = [
            Arg::Batched(mask),
            Arg::Batched(da),
            Arg::Batched(da_prev),
            Arg::Batched(first),
        ];
        self.launch(&SCATTER_VEC4, &consts, g.m, &args, |chunk| {
            self.vec4_work(g, chunk)
        })
    }

    fn backward_into(
        &self,
        da: &Tensor,
        cache: &PoolCache,
        da_prev: &mut Tensor,
        zeroed: bool,
        relu: bool,
    ) -> Result<()> {
        let relu_const = ("RELU", u32::from(relu));
        self.check_owner(da)?;
        self.check_owner(da_prev)?;
        self.check_owner(&cache.a_prev)?;
        let g = cache.geometry;
        da.expect_shape(
            "pool_backward dA must have the forward output's shape",
            &g.output_shape(),
        )?;
        cache
            .a_prev
            .expect_shape("pool cache A_prev", &g.input_shape())?;
        da_prev.expect_shape("pool_backward dA_prev", &g.input_shape())?;
        if let Some(first) = &cache.first {
            let mask = (&cache.a_prev, false);
            return self.scatter_first_maxima(
                da,
                first,
                mask,
                &g,
                &cache.params,
                relu,
                da_prev,
                zeroed,
            );
        }
        if let Some(mut consts) = vec4_backward(&g, &cache.params) {
            consts.push(relu_const);
            // One thread per window writes its window; elements in no window must be zero.
            if !covered(&g) && !zeroed {
                self.clear(da_prev);
            }
            let args = [
                Arg::Batched(&cache.a_prev),
                Arg::Batched(da),
                Arg::Batched(da_prev),
            ];
            return self.launch(&BACKWARD_VEC4, &consts, g.m, &args, |chunk| {
                self.vec4_work(&g, chunk)
            });
        }
        let base = Params::new(&g, &cache.params)?;
        let per_image = g.in_h * g.in_w * g.c;
        // Each element visits the windows that cover it and, for max, scans each of them.
        let covers = |f: usize, s: usize, out: usize| f.div_ceil(s).min(out) as u64;
        let per_window = 1 + window_loops(&g);
        let per_item =
            1 + covers(g.f_h, g.s_h, g.out_h) * (1 + covers(g.f_w, g.s_w, g.out_w) * per_window);
        self.check_loops(
            "pool_backward (general kernel)",
            (g.m * per_image) as u64,
            per_item,
            &[da.shape(), cache.a_prev.shape()],
        )?;
        self.launch(
            &BACKWARD,
            &[relu_const],
            g.m,
            &[
                Arg::Batched(&cache.a_prev),
                Arg::Batched(da),
                Arg::Batched(da_prev),
            ],
            |chunk| {
                let p = Params {
                    total: count(chunk.images * per_image)?,
                    in_off: chunk.offset(0),
                    out_off: chunk.offset(1),
                    dst_off: chunk.offset(2),
                    ..base
                };
                Ok((p, self.stream_workgroups(u64::from(p.total), per_item)))
            },
        )
    }
}
