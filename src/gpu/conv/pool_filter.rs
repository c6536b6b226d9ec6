//! The filter gradient of convolution -> ReLU -> max pool straight from the pool's output
//! gradient, where the pool keeps its windows' first maxima (`shaders/conv_filter_pool.wgsl`):
//! one term per window and channel instead of one per pixel.

use super::super::kernels::{uniform, Access, Kernel};
use super::super::launch::to_u32;
use super::super::pool::PoolCache;
use super::super::{Arg, Gpu, Tensor};
use super::ConvReluCache;
use crate::error::{Error, Result};

uniform! {
    /// The uniform block of `conv_filter_pool.wgsl`.
    struct PoolFilterParams {
        windows: u32,
        per_part: u32,
        threads: u32,
        c: u32,
        pool_oh: u32,
        pool_ow: u32,
        pool_fw: u32,
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

pub(crate) const FILTER_FROM_POOL: Kernel = Kernel::new::<PoolFilterParams>(
    "conv_filter_pool.wgsl",
    include_str!("../../../shaders/conv_filter_pool.wgsl"),
    "filter_from_pool",
    &[
        (1, Access::Read),
        (2, Access::Read),
        (3, Access::Read),
        (4, Access::Read),
        (5, Access::Write),
        (6, Access::Write),
    ],
);

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
        out.push((FILTER_FROM_POOL, vec![("FH", fh), ("FW", fw), ("K", k)]));
    }
    out
}

impl Gpu {
    /// `dW` and `db` of a convolution whose ReLU output `conv` feeds the max pool `pool`, from
    /// the pool's output gradient `da` `(m, n_H, n_W, n_C)`: what
    /// `conv_backward_filter(pool_relu_backward(da, pool), conv)` computes, without the dense
    /// `dZ`. When the pool keeps its windows' first maxima (first-maximum rule, windows that do
    /// not overlap, channels in fours; see [`PoolCache::keeps_first_maxima`]) and the filter
    /// has at most 64 taps times input channels, each window adds one term per channel (64
    /// times fewer than the dense sum for 8x8 windows), in a fixed order; the sums then differ
    /// from the dense path's only by rounding. Otherwise it takes the dense path. Zero terms are
    /// skipped: an Inf or NaN input where `dZ` is zero does not reach `dW` (the dense path gives
    /// NaN there, as `Inf * 0` is).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `da` is not the pool's output shape or the pool's input is
    /// not the ReLU's output tensor, [`Error::ForeignTensor`], [`Error::TooLarge`].
    pub fn conv_relu_pool_backward_filter(
        &self,
        da: &Tensor,
        pool: &PoolCache,
        conv: &ConvReluCache,
    ) -> Result<(Tensor, Tensor)> {
        self.check_owner(da)?;
        self.check_owner(&conv.a)?;
        let pg = pool.geometry();
        da.expect_shape("pool output gradient", &pg.output_shape())?;
        if !pool.a_prev().same_buffer(&conv.a) || pool.a_prev().shape() != conv.a.shape() {
            return Err(Error::ShapeMismatch {
                what: "conv_relu_pool_backward_filter: the pool's input must be the ReLU's output",
                expected: conv.a.shape().to_vec(),
                got: pool.a_prev().shape().to_vec(),
            });
        }
        let g = conv.conv.plan.geometry;
        let terms = g.f_h * g.f_w * g.c_in;
        let first = match pool.first_maxima() {
            Some(first) if terms <= MAX_TERMS => first,
            _ => {
                let dz = self.pool_relu_backward(da, pool)?;
                return self.conv_backward_filter(&dz, &conv.conv);
            }
        };
        let x = &conv.conv.a_prev;
        self.check_owner(x)?;
        let windows = pg.m * pg.out_h * pg.out_w;
        let parts = windows.div_ceil(PER_PART);
        let shapes = [x.shape(), da.shape()];
        let u = |what, v| to_u32(what, v, shapes[0], shapes[1]);
        let p = PoolFilterParams {
            windows: u("windows", windows)?,
            per_part: u("windows per part", PER_PART)?,
            threads: u("threads", parts * g.c_out)?,
            c: u("channels", g.c_out)?,
            pool_oh: u("pool output height", pg.out_h)?,
            pool_ow: u("pool output width", pg.out_w)?,
            pool_fw: u("pool window width", pg.f_w)?,
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
        let consts = [
            ("FH", g.f_h as u32),
            ("FW", g.f_w as u32),
            ("K", g.c_in as u32),
        ];
        let args = [
            Arg::Whole(x),
            Arg::Whole(first),
            Arg::Whole(da),
            Arg::Whole(pool.a_prev()),
            Arg::Whole(&partial),
            Arg::Whole(&partial_b),
        ];
        self.launch(&FILTER_FROM_POOL, &consts, 1, &args, |_| {
            Ok((p, u64::from(p.threads).div_ceil(64)))
        })?;
        let dw = self.alloc("conv_backward dW", &g.weight_shape(), false)?;
        let db = self.alloc("conv_backward db", &[1, 1, 1, g.c_out], false)?;
        self.row_sums(
            &partial,
            None,
            (1, parts, terms * g.c_out),
            false,
            Some(&dw),
        )?;
        self.row_sums(&partial_b, None, (1, parts, g.c_out), false, Some(&db))?;
        Ok((dw, db))
    }
}
