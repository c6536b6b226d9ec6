//! Spatial batch norm and group norm on the GPU; kernels: `shaders/norm.wgsl` for the
//! element-wise and per-statistic steps, `shaders/reduce.wgsl` for every sum (deterministic).
//! Formulas: `crate::layers`.
//!
//! Forward: the statistics in one pass over `x` (sums of `x - shift` and its square, the shift of
//! each statistic one of its own values) -> `finish_stats`: mean, variance, `inv_std` (and the
//! running statistics, batch norm in train mode) -> `y` in one element-wise pass. A constant
//! channel has variance exactly 0. `xhat` is not kept: the cache holds `x` (shared, not copied)
//! and the statistics, and the backward pass recomputes `xhat = (x - mean) * inv_std` where it
//! reads it, in the same operations as the forward pass (so the same bits), which saves a
//! tensor's write and its memory. Backward: per-channel sums of `dout` and `dout * xhat` in one
//! pass -> `finish_grads`: `dbeta`, `dgamma`, and the sums per statistic weighted by `gamma`
//! -> `dx` element by element.
//!
//! On CPU adapters the norms run image by image (`shaders/norm_images.wgsl`, a thread per image
//! and vec4 of channels, no barrier). Group norm, where each vec4 of channels holds whole
//! groups (1, 2 or 4 channels a group), is one dispatch each way: each thread sums its pixels,
//! computes its groups' statistics as `finish_stats` does, then runs the element-wise pass over
//! the same pixels (the backward pass also writes its per-image channel sums, which
//! `channel_sums` adds over the images). Elsewhere the per-image sums take the reduction's
//! place, as the partial rows that `finish_stats` and `finish_grads` fold.
//!
//! On CPU adapters the reduction leaves a few rows of partial sums per channel (its last pass
//! is a serial fold, see `Gpu::partial_sums`); `finish_stats` and `finish_grads` add them in
//! the fold's order themselves, so each norm pass is three dispatches where it was six to
//! ten (the fold, the group combination and the finishing steps each had their own). Where a
//! thread's serial loop would pass llvmpipe's loop budget, the partial sums are folded first
//! (and group norm's per-channel sums over very many images take the reduction).

use super::kernels::{uniform, Access, Kernel};
use super::launch::{count, WG};
use super::reduce::{Partials, Terms};
use super::{Arg, Gpu, Tensor};
use crate::error::{Error, Result};
use crate::layers::{BatchNorm, GroupNorm, NormMode};

uniform! {
    /// The uniform block of `norm.wgsl`.
    struct NormParams {
        total: u32,
        c: u32,
        per_image: u32,
        groups: u32,
        cg: u32,
        n: f32,
        eps: f32,
        momentum: f32,
        update: u32,
        train: u32,
        rows: u32,
    }
}

const R: Access = Access::Read;
const W: Access = Access::Write;

pub(crate) const INV_STD_OF: Kernel = Kernel::new::<NormParams>(
    "norm.wgsl",
    concat!(
        include_str!("../../shaders/norm.wgsl"),
        include_str!("../../shaders/stream.wgsl")
    ),
    "inv_std_of",
    &[(1, R), (3, W)],
)
.streamed();
/// The bindings of `finish_stats`: t1, t2; mean, inv_std, running mean, running var; x.
pub(crate) const FINISH_STATS: Kernel = INV_STD_OF.entry(
    "finish_stats",
    &[(1, R), (2, R), (3, W), (4, W), (5, W), (13, W), (8, R)],
);
/// The bindings of `finish_grads`: t1, t2; dbeta, dgamma, sd, sdx; gamma.
pub(crate) const FINISH_GRADS: Kernel = INV_STD_OF.entry(
    "finish_grads",
    &[(1, R), (2, R), (3, W), (4, W), (5, W), (13, W), (6, R)],
);
/// The bindings of `apply` and `apply4`: x, inv_std; y; gamma, beta, mean.
const APPLY_BINDINGS: &[(u32, Access)] = &[(1, R), (2, R), (3, W), (6, R), (7, R), (8, R)];
/// The bindings of `norm_dx` and `norm_dx4`: dout; dx; gamma, sd, sdx, inv_std, x, mean.
const DX_BINDINGS: &[(u32, Access)] = &[
    (1, R),
    (3, W),
    (6, R),
    (8, R),
    (9, R),
    (10, R),
    (11, R),
    (12, R),
];
pub(crate) const APPLY: Kernel = INV_STD_OF.entry("apply", APPLY_BINDINGS);
pub(crate) const APPLY4: Kernel = Kernel::new::<NormParams>(
    "norm_vec4.wgsl",
    concat!(
        include_str!("../../shaders/norm_vec4.wgsl"),
        include_str!("../../shaders/stream.wgsl")
    ),
    "apply4",
    APPLY_BINDINGS,
);
pub(crate) const NORM_DX4: Kernel = APPLY4.entry("norm_dx4", DX_BINDINGS);
pub(crate) const NORM_DX: Kernel = INV_STD_OF.entry("norm_dx", DX_BINDINGS);
/// The bindings of `channel_sums`: t1, t2 (per image and channel); dbeta, dgamma.
pub(crate) const CHANNEL_SUMS: Kernel =
    INV_STD_OF.entry("channel_sums", &[(1, R), (2, R), (3, W), (4, W)]);
/// Group norm in one dispatch each way (CPU adapters, see [`Gpu::group_norm_fused`]); the
/// bindings of `group_norm_forward`: x, gamma, beta; y, mean, inv_std.
pub(crate) const GROUP_NORM_FORWARD: Kernel = Kernel::new::<NormParams>(
    "norm_images.wgsl",
    include_str!("../../shaders/norm_images.wgsl"),
    "group_norm_forward",
    &[(1, R), (6, R), (7, R), (3, W), (4, W), (5, W)],
);
/// The per-image sums of `norm_images.wgsl` (see [`Gpu::image_partials`]); bindings: x; t1, t2.
pub(crate) const IMAGE_SUMS_SHIFTED: Kernel =
    GROUP_NORM_FORWARD.entry("image_sums_shifted", &[(1, R), (4, W), (5, W)]);
/// Bindings: dout, x, mean, inv_std; t1, t2.
pub(crate) const IMAGE_SUMS_NORMALISED: Kernel = GROUP_NORM_FORWARD.entry(
    "image_sums_normalised",
    &[(1, R), (11, R), (12, R), (10, R), (4, W), (5, W)],
);
/// Threads in a workgroup of the `norm_images.wgsl` kernels: one SIMD group of lavapipe, so that the few
/// threads (images times vec4s of channels: 128 for seed 001's first activations) make enough
/// workgroups for every core (16 there, against 2 of 64 threads; no faster on a 2-core
/// machine, 2.3-2.5 against 2.3-2.4 ms forward in alternated runs).
const IMAGE_WG: u64 = 8;
/// The bindings of `group_norm_backward`: dout, x, mean, inv_std, gamma; dx, t1, t2 (the sums
/// of dout and dout * xhat per image and channel).
pub(crate) const GROUP_NORM_BACKWARD: Kernel = GROUP_NORM_FORWARD.entry(
    "group_norm_backward",
    &[
        (1, R),
        (11, R),
        (12, R),
        (10, R),
        (6, R),
        (3, W),
        (4, W),
        (5, W),
    ],
);

/// The running statistics of a batch norm layer, on the GPU: `None` until the first
/// train-mode pass, which starts them at zeros (as cs231n does).
#[derive(Debug, Clone, Default)]
pub struct BatchNormState {
    /// Running mean `(C,)`.
    pub running_mean: Option<Tensor>,
    /// Running (biased) variance `(C,)`.
    pub running_var: Option<Tensor>,
}

impl BatchNormState {
    /// No statistics yet.
    pub fn new() -> Self {
        Self::default()
    }
}

/// What the norm forward passes keep for their backward passes: the input `x` (a clone of the
/// tensor: its buffer is shared, as numpy arrays are, so overwriting `x` in place before the
/// backward pass changes what it computes, as with the convolution's cache) and the statistics.
/// `xhat = (x - mean) * inv_std` is recomputed where the backward pass needs it.
#[derive(Debug, Clone)]
pub struct NormCache {
    x: Tensor,
    mean: Tensor,
    inv_std: Tensor,
    gamma: Tensor,
    /// 0 for batch norm, else the number of groups.
    groups: usize,
    train: bool,
}

impl NormCache {
    /// The input `x` `(N, H, W, C)` of the forward pass.
    pub fn x(&self) -> &Tensor {
        &self.x
    }

    /// The mean per statistic that normalised `x`: `(C,)` for batch norm (in test mode, a copy
    /// of the running mean as it was), `(N * G,)` for group norm.
    pub fn mean(&self) -> &Tensor {
        &self.mean
    }

    /// `1 / sqrt(var + eps)` per statistic, shaped like [`NormCache::mean`].
    pub fn inv_std(&self) -> &Tensor {
        &self.inv_std
    }
}

/// Gradients of a norm layer.
#[derive(Debug, Clone)]
pub struct NormGrads {
    /// Shaped like `x`.
    pub dx: Tensor,
    /// `(C,)`.
    pub dgamma: Tensor,
    /// `(C,)`.
    pub dbeta: Tensor,
}

/// How the statistics are laid out: `(m, pixels, c)`, groups (0 for batch norm), channels per
/// group, statistics, and elements per statistic.
#[derive(Debug, Clone, Copy)]
struct Layout {
    m: usize,
    pixels: usize,
    c: usize,
    groups: usize,
    cg: usize,
    stats: usize,
    n: usize,
}

impl Layout {
    /// Whether the element-wise passes may run four channels per thread (`norm_vec4.wgsl`):
    /// channels a multiple of 4, and every vec4 of channels given threads of its own (the
    /// launch gives at least C / 4 threads; C / 4 <= 2^16 keeps that within the grid cap).
    fn vec4(&self) -> bool {
        self.c.is_multiple_of(4) && self.c / 4 <= 1 << 16
    }

    /// The override constants of `norm_vec4.wgsl`.
    /// `STREAM` in pixel lanes: the adapter's lane groups (see `Quirks::stream_lanes`) hold
    /// `lanes / (C / 4)` pixel lanes of `C / 4` threads each.
    fn vec4_consts(&self, lanes: u32) -> [(&'static str, u32); 2] {
        let stream = if lanes == 0 {
            0
        } else {
            (lanes as usize / (self.c / 4)).max(1)
        };
        [
            ("GROUPED", u32::from(self.groups != 0)),
            ("STREAM", stream as u32),
        ]
    }

    fn params(&self, total: usize) -> Result<NormParams> {
        Ok(NormParams {
            total: count(total)?,
            c: count(self.c)?,
            per_image: count(self.pixels * self.c)?,
            groups: count(self.groups)?,
            cg: count(self.cg)?,
            n: self.n as f32,
            ..NormParams::default()
        })
    }
}

impl Gpu {
    /// One launch of a streamed `norm.wgsl` kernel over `total` items, tensors bound whole.
    fn norm_launch(&self, k: &Kernel, p: NormParams, args: &[&Tensor]) -> Result<()> {
        self.norm_launch_inner(k, p, 0, args)
    }

    /// [`Gpu::norm_launch`] of a kernel whose items each run `inner` loop iterations.
    fn norm_launch_inner(
        &self,
        k: &Kernel,
        p: NormParams,
        inner: usize,
        args: &[&Tensor],
    ) -> Result<()> {
        let workgroups = self.stream_workgroups(u64::from(p.total), inner as u64);
        self.norm_dispatch(k, &[], p, workgroups, args)
    }

    /// The partial sums `p` as the finish kernels take them: as they are where an item's
    /// serial loops (`inner(rows)` iterations for `rows` partial rows) stay within the loop
    /// budget, else folded first (one row).
    fn foldable(&self, p: Partials, inner: impl Fn(usize) -> usize) -> Result<Partials> {
        if self.within_loop_budget(inner(p.rows) as u64) {
            return Ok(p);
        }
        self.fold_partials(p, None)
    }

    /// One launch of a `norm_vec4.wgsl` kernel for layout `l` over `total` vec4s: `STREAM` in
    /// pixel lanes (see [`Layout::vec4_consts`]), and at least one thread per vec4 of channels.
    fn norm_launch4(&self, k: &Kernel, l: &Layout, p: NormParams, args: &[&Tensor]) -> Result<()> {
        let c4 = u64::from(p.c / 4);
        let workgroups = self
            .stream_workgroups(u64::from(p.total), 0)
            .max(c4.div_ceil(WG));
        let consts = l.vec4_consts(self.quirks().stream_lanes);
        self.norm_dispatch(k, &consts, p, workgroups, args)
    }

    fn norm_dispatch(
        &self,
        k: &Kernel,
        consts: &[(&'static str, u32)],
        p: NormParams,
        workgroups: u64,
        args: &[&Tensor],
    ) -> Result<()> {
        let args: Vec<Arg> = args.iter().map(|t| Arg::Whole(t)).collect();
        self.launch(k, consts, 1, &args, |_| Ok((p, workgroups)))
    }

    /// Whether group norm of layout `l` runs in one dispatch each way (`norm_images.wgsl`, one
    /// thread per image and vec4 of channels): on adapters that want it
    /// (`Quirks::norm_images`), channels a multiple of 4 with 1, 2 or 4 per group (a
    /// vec4 holds whole groups), and every thread's loops within the loop budget. A choice by
    /// shape and adapter, never by timing: the two paths add in different orders, and a
    /// tensor's result may not depend on a tuning cache.
    fn group_norm_fused(&self, l: &Layout) -> bool {
        if !self.quirks().norm_images
            || l.groups == 0
            || !l.c.is_multiple_of(4)
            || !4usize.is_multiple_of(l.cg)
        {
            return false;
        }
        // Two passes over the image's pixels and a few short loops; channel_sums' images.
        self.image_loops_fit(l, 2 * l.pixels as u64 + 12) && self.within_loop_budget(l.m as u64 + 1)
    }

    /// Whether the sums of a norm of layout `l` are taken per image and vec4 of channels
    /// (`image_sums_*` of `norm_images.wgsl`, one thread each, no barrier) instead of by the
    /// reduction: on the adapters of [`Gpu::group_norm_fused`], channels a multiple of 4,
    /// threads enough for a few workgroups a core, and every thread's loop within the loop
    /// budget. By shape and adapter, never by timing (the two add in different orders).
    fn image_sums(&self, l: &Layout) -> bool {
        if !self.quirks().norm_images || !l.c.is_multiple_of(4) {
            return false;
        }
        let threads = (l.m * l.c / 4) as u64;
        threads >= 8 * IMAGE_WG && self.image_loops_fit(l, l.pixels as u64 + 6)
    }

    /// Whether a `norm_images.wgsl` kernel whose threads each run `per_image` loop iterations
    /// for an image stays within the loop budget (a thread takes several images when the grid
    /// is capped).
    fn image_loops_fit(&self, l: &Layout, per_image: u64) -> bool {
        let threads = (l.m * l.c / 4) as u64;
        let per_thread = threads.div_ceil(self.image_workgroups(l) * IMAGE_WG);
        self.within_loop_budget(per_thread * per_image)
    }

    /// The sums of the norm terms of `a` (`x` forward; `dout` backward, with the normalised
    /// input's `x`, mean and `inv_std`) per image and channel, as the partial sums that
    /// `finish_stats` and `finish_grads` fold: batch norm's `m` rows of one segment, group
    /// norm's `m` segments of one row.
    fn image_partials(
        &self,
        a: &Tensor,
        normalised: Option<[&Tensor; 3]>,
        l: &Layout,
    ) -> Result<Partials> {
        let t1 = self.alloc("norm sums per image", &[l.m, l.c], false)?;
        let t2 = self.alloc("norm sums per image (second)", &[l.m, l.c], false)?;
        let p = l.params(l.m * l.c / 4)?;
        match normalised {
            None => self.image_dispatch(&IMAGE_SUMS_SHIFTED, l, p, &[a, &t1, &t2])?,
            Some([x, mean, inv_std]) => {
                let args = [a, x, mean, inv_std, &t1, &t2];
                self.image_dispatch(&IMAGE_SUMS_NORMALISED, l, p, &args)?;
            }
        }
        let batch = l.groups == 0;
        Ok(Partials {
            first: t1,
            second: Some(t2),
            segments: if batch { 1 } else { l.m },
            rows: if batch { l.m } else { 1 },
            cols: l.c,
        })
    }

    /// Workgroups of the `norm_images.wgsl` kernels, [`IMAGE_WG`] threads each: a thread per
    /// image and vec4 of channels.
    fn image_workgroups(&self, l: &Layout) -> u64 {
        ((l.m * l.c / 4) as u64)
            .div_ceil(IMAGE_WG)
            .min(self.quirks().grid_cap)
    }

    /// One launch of a `norm_images.wgsl` kernel for layout `l` (`p.total`: its threads).
    fn image_dispatch(
        &self,
        k: &Kernel,
        l: &Layout,
        p: NormParams,
        args: &[&Tensor],
    ) -> Result<()> {
        let consts = [("WG", IMAGE_WG as u32)];
        self.norm_dispatch(k, &consts, p, self.image_workgroups(l), args)
    }

    /// Checks `x`, `gamma`, `beta` and returns the layout for `groups` (0: batch norm).
    fn norm_layout(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        groups: usize,
        what: &'static str,
    ) -> Result<Layout> {
        for t in [x, gamma, beta] {
            self.check_owner(t)?;
        }
        let [m, h, w, c] = x.dims4(what)?;
        if x.is_empty() {
            return Err(Error::EmptyTensor {
                what,
                shape: x.shape().to_vec(),
            });
        }
        gamma.expect_shape("norm gamma (C,)", &[c])?;
        beta.expect_shape("norm beta (C,)", &[c])?;
        let pixels = h * w;
        Ok(if groups == 0 {
            Layout {
                m,
                pixels,
                c,
                groups: 0,
                cg: 1,
                stats: c,
                n: m * pixels,
            }
        } else {
            let cg = GroupNorm::new(groups).group_size(c)?;
            Layout {
                m,
                pixels,
                c,
                groups,
                cg,
                stats: m * groups,
                n: pixels * cg,
            }
        })
    }

    /// Mean and `inv_std` of `x` by its own statistics, in one pass over `x`: the sums of
    /// `d = x - shift` and `d^2`, with the shift of each statistic one of its own values (its
    /// first element), so `S2 / n - (S1 / n)^2` suffers no cancellation beyond the data's own
    /// spread, and a constant channel has variance exactly 0. With `running`, the running
    /// statistics are updated (batch norm, train mode).
    fn normalise(
        &self,
        x: &Tensor,
        l: &Layout,
        eps: f64,
        running: Option<(&Tensor, &Tensor, f64)>,
    ) -> Result<(Tensor, Tensor)> {
        let shifted = Terms::Shifted {
            groups: l.groups,
            cg: l.cg,
        };
        let per_image = l.groups != 0;
        let part = if self.image_sums(l) {
            self.image_partials(x, None, l)?
        } else {
            self.partial_sums(x, shifted, (l.m, l.pixels, l.c), per_image, None)?
        };
        let part = self.foldable(part, |rows| l.cg * (rows + 1))?;
        let t2 = part.pair()?;
        let mean = self.alloc("norm mean", &[l.stats], false)?;
        let inv_std = self.alloc("norm inv_std", &[l.stats], false)?;
        let p = NormParams {
            eps: eps as f32,
            momentum: running.map_or(0.0, |r| r.2 as f32),
            update: u32::from(running.is_some()),
            rows: count(part.rows)?,
            ..l.params(l.stats)?
        };
        let (rm, rv) = running.map_or((&inv_std, &inv_std), |r| (r.0, r.1));
        // Without running statistics, dst3 / dst4 are bound to inv_std but never written.
        let args = [&part.first, t2, &mean, &inv_std, rm, rv, x];
        self.norm_launch_inner(&FINISH_STATS, p, l.cg * (part.rows + 1), &args)?;
        Ok((mean, inv_std))
    }

    /// `y = gamma * xhat + beta`, `xhat = (x - mean) * inv_std`.
    #[allow(clippy::too_many_arguments)]
    fn norm_apply(
        &self,
        x: &Tensor,
        mean: &Tensor,
        inv_std: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        l: &Layout,
        y: &Tensor,
    ) -> Result<()> {
        let args = [x, inv_std, y, gamma, beta, mean];
        if l.vec4() {
            self.norm_launch4(&APPLY4, l, l.params(x.len() / 4)?, &args)
        } else {
            self.norm_launch(&APPLY, l.params(x.len())?, &args)
        }
    }

    /// Spatial batch norm of `x` `(N, H, W, C)` with `gamma`, `beta` `(C,)`: statistics per
    /// channel over `(N, H, W)` in train mode (updating `state`'s running statistics in place,
    /// zeros at first), the running statistics in test mode. Returns `y` and the cache.
    ///
    /// ```no_run
    /// use wgpu_cnn::{BatchNorm, BatchNormState, Gpu};
    /// let gpu = Gpu::new()?;
    /// let x = gpu.upload(&ndarray::Array4::<f32>::from_shape_fn((2, 2, 2, 3), |(i, h, w, c)| (i + h + w + c) as f32))?;
    /// let (gamma, beta) = (gpu.upload(&ndarray::Array1::<f32>::ones(3))?, gpu.zeros(&[3])?);
    /// let mut state = BatchNormState::new();
    /// let (y, cache) = gpu.spatial_batchnorm_forward(&x, &gamma, &beta, &mut state, BatchNorm::train())?;
    /// let grads = gpu.spatial_batchnorm_backward(&y, &cache)?;
    /// assert!(state.running_mean.is_some());
    /// # let _ = grads;
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Rank`], [`Error::EmptyTensor`], [`Error::ShapeMismatch`] (gamma or beta not
    /// `(C,)`, running statistics not `(C,)`), [`Error::NoRunningStats`] in test mode before any
    /// train-mode pass, [`Error::ForeignTensor`], [`Error::Setting`] for an `eps` or `momentum`
    /// out of range ([`BatchNorm::validate`]).
    pub fn spatial_batchnorm_forward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        state: &mut BatchNormState,
        bn: BatchNorm,
    ) -> Result<(Tensor, NormCache)> {
        bn.validate()?;
        let l = self.norm_layout(x, gamma, beta, 0, "spatial_batchnorm_forward input")?;
        for t in state.running_mean.iter().chain(state.running_var.iter()) {
            self.check_owner(t)?;
            t.expect_shape("batch norm running statistics (C,)", &[l.c])?;
        }
        let y = self.alloc("batchnorm output", x.shape(), false)?;
        let train = bn.mode == NormMode::Train;
        let stats = if train {
            let rm = match &state.running_mean {
                Some(t) => t.clone(),
                None => self.zeros(&[l.c])?,
            };
            let rv = match &state.running_var {
                Some(t) => t.clone(),
                None => self.zeros(&[l.c])?,
            };
            let out = self.normalise(x, &l, bn.eps, Some((&rm, &rv, bn.momentum)))?;
            state.running_mean = Some(rm);
            state.running_var = Some(rv);
            out
        } else {
            let (Some(rm), Some(rv)) = (&state.running_mean, &state.running_var) else {
                return Err(Error::NoRunningStats { channels: l.c });
            };
            let inv_std = self.alloc("norm inv_std", &[l.c], false)?;
            let p = NormParams {
                eps: bn.eps as f32,
                ..l.params(l.c)?
            };
            self.norm_launch(&INV_STD_OF, p, &[rv, &inv_std])?;
            // A copy: a later train-mode pass updates the running mean in place.
            let mut mean = self.alloc("norm mean", &[l.c], false)?;
            self.copy(rm, &mut mean)?;
            (mean, inv_std)
        };
        let (mean, inv_std) = stats;
        self.norm_apply(x, &mean, &inv_std, gamma, beta, &l, &y)?;
        Ok((
            y,
            NormCache {
                x: x.clone(),
                mean,
                inv_std,
                gamma: gamma.clone(),
                groups: 0,
                train,
            },
        ))
    }

    /// Spatial group norm of `x` `(N, H, W, C)`: `C` split into `G` groups of `C/G` consecutive
    /// channels, statistics per (sample, group) over `(H, W, C/G)`, then `gamma`, `beta` per
    /// channel. Returns `y` and the cache.
    ///
    /// # Errors
    /// [`Error::Groups`] when `G` does not divide `C`, and as
    /// [`Gpu::spatial_batchnorm_forward`].
    pub fn spatial_groupnorm_forward(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        gn: GroupNorm,
    ) -> Result<(Tensor, NormCache)> {
        gn.validate()?;
        if gn.groups == 0 {
            return Err(Error::Groups {
                groups: 0,
                channels: x.shape().last().copied().unwrap_or(0),
            });
        }
        let l = self.norm_layout(x, gamma, beta, gn.groups, "spatial_groupnorm_forward input")?;
        let y = self.alloc("groupnorm output", x.shape(), false)?;
        let (mean, inv_std) = if self.group_norm_fused(&l) {
            let mean = self.alloc("norm mean", &[l.stats], false)?;
            let inv_std = self.alloc("norm inv_std", &[l.stats], false)?;
            let p = NormParams {
                eps: gn.eps as f32,
                ..l.params(l.m * l.c / 4)?
            };
            let args = [x, gamma, beta, &y, &mean, &inv_std];
            self.image_dispatch(&GROUP_NORM_FORWARD, &l, p, &args)?;
            (mean, inv_std)
        } else {
            let (mean, inv_std) = self.normalise(x, &l, gn.eps, None)?;
            self.norm_apply(x, &mean, &inv_std, gamma, beta, &l, &y)?;
            (mean, inv_std)
        };
        Ok((
            y,
            NormCache {
                x: x.clone(),
                mean,
                inv_std,
                gamma: gamma.clone(),
                groups: gn.groups,
                train: true,
            },
        ))
    }

    /// The backward pass of either norm: `dx`, `dgamma = sum dout * xhat`, `dbeta = sum dout`
    /// (sums over `(N, H, W)`). Train mode uses the formula of `crate::layers`; for a batch norm
    /// cache made in test mode, `dx = dout * gamma * inv_std` (the running statistics are
    /// constants).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `dout` is not shaped like `x`, [`Error::ForeignTensor`].
    pub fn spatial_batchnorm_backward(
        &self,
        dout: &Tensor,
        cache: &NormCache,
    ) -> Result<NormGrads> {
        self.norm_backward(dout, cache)
    }

    /// The backward pass of group norm (see [`Gpu::spatial_batchnorm_backward`]).
    ///
    /// # Errors
    /// As [`Gpu::spatial_batchnorm_backward`].
    pub fn spatial_groupnorm_backward(
        &self,
        dout: &Tensor,
        cache: &NormCache,
    ) -> Result<NormGrads> {
        self.norm_backward(dout, cache)
    }

    fn norm_backward(&self, dout: &Tensor, cache: &NormCache) -> Result<NormGrads> {
        self.check_owner(dout)?;
        dout.expect_shape("norm backward dout must be shaped like x", cache.x.shape())?;
        let x_like = &cache.x;
        // gamma stands in for beta (same shape): the backward needs only the layout.
        let gamma = &cache.gamma;
        let l = self.norm_layout(x_like, gamma, gamma, cache.groups, "norm backward")?;
        if self.group_norm_fused(&l) {
            return self.group_norm_fused_backward(dout, cache, &l);
        }
        // Per-channel sums of dout and dout * xhat: over everything (batch norm), per sample
        // (group norm).
        let per_image = cache.groups != 0;
        let normalised = Terms::Normalised {
            x: &cache.x,
            mean: &cache.mean,
            inv_std: &cache.inv_std,
            groups: l.groups,
            cg: l.cg,
        };
        let part = if self.image_sums(&l) {
            let stats = [&cache.x, &cache.mean, &cache.inv_std];
            self.image_partials(dout, Some(stats), &l)?
        } else {
            self.partial_sums(dout, normalised, (l.m, l.pixels, l.c), per_image, None)?
        };
        // Serial iterations of an item: a statistic's channels, or a channel's images.
        let inner = |rows: usize| (rows + 1) * l.cg.max(if per_image { l.m } else { 1 });
        let part = self.foldable(part, inner)?;
        let t2 = part.pair()?;
        let dbeta = self.alloc("norm dbeta", &[l.c], false)?;
        let dgamma = self.alloc("norm dgamma", &[l.c], false)?;
        let sd = self.alloc("norm sum dxhat", &[l.stats], false)?;
        let sdx = self.alloc("norm sum dxhat * xhat", &[l.stats], false)?;
        // Group norm's per-channel sums over the images (one item each) in the same kernel
        // while an item's loop stays within the loop budget, else by the reduction (batch
        // norm's are its statistics' own sums, which the kernel writes in any case).
        let channel_items = per_image && self.within_loop_budget(inner(part.rows) as u64);
        let p = NormParams {
            update: u32::from(channel_items),
            rows: count(part.rows)?,
            ..l.params(l.stats + if channel_items { l.c } else { 0 })?
        };
        let args = [&part.first, t2, &dbeta, &dgamma, &sd, &sdx, &cache.gamma];
        self.norm_launch_inner(&FINISH_GRADS, p, inner(part.rows), &args)?;
        if per_image && !channel_items {
            // `part` is folded (one row per image): sum it over the images.
            self.row_sums(&part.first, None, (1, l.m, l.c), false, Some(&dbeta))?;
            self.row_sums(t2, None, (1, l.m, l.c), false, Some(&dgamma))?;
        }
        let dx = self.alloc("norm dx", x_like.shape(), false)?;
        let vec4 = l.vec4();
        let p = NormParams {
            train: u32::from(cache.train),
            ..l.params(if vec4 { dx.len() / 4 } else { dx.len() })?
        };
        let (x, mean, gamma, inv_std) = (&cache.x, &cache.mean, &cache.gamma, &cache.inv_std);
        let args = [dout, &dx, gamma, &sd, &sdx, inv_std, x, mean];
        if vec4 {
            self.norm_launch4(&NORM_DX4, &l, p, &args)?;
        } else {
            self.norm_launch(&NORM_DX, p, &args)?;
        }
        Ok(NormGrads { dx, dgamma, dbeta })
    }

    /// Group norm's backward pass in one dispatch (a thread per image and vec4 of channels, see
    /// [`Gpu::group_norm_fused`]): the sums of `dout` and `dout * xhat` over the image's pixels,
    /// then its `dx`; the sums, written per image and channel, are added over the images into
    /// `dbeta` and `dgamma` by `channel_sums`.
    fn group_norm_fused_backward(
        &self,
        dout: &Tensor,
        cache: &NormCache,
        l: &Layout,
    ) -> Result<NormGrads> {
        let dx = self.alloc("norm dx", cache.x.shape(), false)?;
        let t1 = self.alloc("group norm sums of dout", &[l.m, l.c], false)?;
        let t2 = self.alloc("group norm sums of dout * xhat", &[l.m, l.c], false)?;
        let (x, mean, inv_std, gamma) = (&cache.x, &cache.mean, &cache.inv_std, &cache.gamma);
        let args = [dout, x, mean, inv_std, gamma, &dx, &t1, &t2];
        self.image_dispatch(&GROUP_NORM_BACKWARD, l, l.params(l.m * l.c / 4)?, &args)?;
        let dbeta = self.alloc("norm dbeta", &[l.c], false)?;
        let dgamma = self.alloc("norm dgamma", &[l.c], false)?;
        let p = NormParams {
            rows: count(l.m)?,
            ..l.params(l.c)?
        };
        self.norm_launch_inner(&CHANNEL_SUMS, p, l.m, &[&t1, &t2, &dbeta, &dgamma])?;
        Ok(NormGrads { dx, dgamma, dbeta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths that the GPU-against-CPU tests exercise on CPU adapters: group norm in one
    /// dispatch each way wherever a vec4 holds whole groups, the sums image by image for batch
    /// norm and larger groups where there are threads enough, the reduction elsewhere.
    #[test]
    fn the_norms_run_image_by_image_where_channels_are_vec4s() {
        let gpu = Gpu::new().expect("an adapter");
        if !gpu.quirks().norm_images {
            eprintln!("skipped: this adapter runs the norms as reduction, then element-wise");
            return;
        }
        // (one dispatch each way, sums image by image) for a shape and a group count.
        let paths = |shape: [usize; 4], groups: usize| {
            let x = gpu.zeros(&shape).unwrap();
            let gamma = gpu.zeros(&[shape[3]]).unwrap();
            let l = gpu.norm_layout(&x, &gamma, &gamma, groups, "test").unwrap();
            (gpu.group_norm_fused(&l), gpu.image_sums(&l))
        };
        // Seed 001's first activations in 2 groups; 4, 2 and 1 channels a group.
        assert!(paths([64, 64, 64, 8], 2).0);
        assert!(paths([2, 3, 3, 12], 3).0);
        assert!(paths([2, 3, 3, 12], 6).0);
        assert!(paths([2, 3, 3, 12], 12).0);
        // Groups across vec4s, channels not a multiple of 4, batch norm.
        assert!(!paths([2, 3, 3, 12], 1).0);
        assert!(!paths([2, 3, 3, 6], 3).0);
        assert!(!paths([2, 3, 3, 12], 0).0);
        // Sums image by image: seed 001's first activations, batch norm; group norm with 8
        // channels a group.
        assert_eq!(paths([64, 64, 64, 8], 0), (false, true));
        assert_eq!(paths([16, 8, 8, 16], 2), (false, true));
        // Too few threads (images times vec4s of channels), channels not vec4s.
        assert!(!paths([20, 64, 64, 8], 0).1);
        assert!(!paths([64, 3, 3, 6], 0).1);
        if gpu.loop_budget().is_some() {
            // The per-channel sums over 140000 images would outrun the loop budget.
            assert!(!paths([140_000, 1, 1, 8], 2).0);
        }
    }
}
