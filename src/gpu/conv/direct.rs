//! The direct convolution kernels, for what the fast paths do not cover (any stride for `dA`,
//! filters or batches too large for the uniform windows); kernels: `shaders/conv_forward.wgsl`,
//! `shaders/conv_backward.wgsl`. Every thread gathers the terms of the one element it writes.

use super::super::kernels::{simple, uniform, Kernel};
use super::super::launch::{count, WG};
use super::super::{Arg, Gpu, Tensor};
use super::plan::KernelGeometry;
use crate::error::Result;

uniform! {
    /// The uniform block of `conv_forward.wgsl`.
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
}

uniform! {
    /// The uniform block of `conv_backward.wgsl`.
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
}

pub(crate) const FORWARD: Kernel = Kernel::new::<ForwardParams>(
    "conv_forward.wgsl",
    include_str!("../../../shaders/conv_forward.wgsl"),
    "conv_forward",
    simple(3, 1),
);

pub(crate) const BACKWARD_DATA: Kernel = Kernel::new::<BackwardParams>(
    "conv_backward.wgsl",
    include_str!("../../../shaders/conv_backward.wgsl"),
    "backward_data",
    simple(2, 1),
);

pub(crate) const BACKWARD_FILTER: Kernel = BACKWARD_DATA.entry("backward_filter", simple(2, 1));

pub(crate) const BACKWARD_BIAS: Kernel = BACKWARD_DATA.entry("backward_bias", simple(2, 1));

impl BackwardParams {
    fn new(k: &KernelGeometry) -> Self {
        Self {
            in_h: k.in_h,
            in_w: k.in_w,
            c_in: k.c_in,
            out_h: k.out_h,
            out_w: k.out_w,
            c_out: k.c_out,
            f_h: k.f_h,
            f_w: k.f_w,
            s_h: k.s_h,
            s_w: k.s_w,
            top: k.top,
            left: k.left,
            ..Self::default()
        }
    }
}

impl Gpu {
    /// `Z` by the direct gather kernel.
    pub(crate) fn direct_forward(
        &self,
        k: &KernelGeometry,
        a_prev: &Tensor,
        w: &Tensor,
        b: &Tensor,
        z: &Tensor,
    ) -> Result<()> {
        let per_image = k.per_image_out();
        let base = ForwardParams {
            in_h: k.in_h,
            in_w: k.in_w,
            c_in: k.c_in,
            out_h: k.out_h,
            out_w: k.out_w,
            c_out: k.c_out,
            f_h: k.f_h,
            f_w: k.f_w,
            s_h: k.s_h,
            s_w: k.s_w,
            top: k.top,
            left: k.left,
            ..ForwardParams::default()
        };
        self.launch(
            &FORWARD,
            &[],
            k.m,
            &[
                Arg::Batched(a_prev),
                Arg::Whole(w),
                Arg::Whole(b),
                Arg::Batched(z),
            ],
            |chunk| {
                let p = ForwardParams {
                    total: count(chunk.images * per_image)?,
                    a_off: chunk.offset(0),
                    z_off: chunk.offset(3),
                    ..base
                };
                Ok((p, u64::from(p.total).div_ceil(WG)))
            },
        )
    }

    /// `dA_prev` by the direct gather kernel (any stride).
    pub(crate) fn direct_backward_data(
        &self,
        k: &KernelGeometry,
        w: &Tensor,
        dz: &Tensor,
        da_prev: &Tensor,
    ) -> Result<()> {
        let per_image = k.per_image_in();
        let base = BackwardParams::new(k);
        self.launch(
            &BACKWARD_DATA,
            &[],
            k.m,
            &[Arg::Whole(w), Arg::Batched(dz), Arg::Batched(da_prev)],
            |chunk| {
                let p = BackwardParams {
                    total: count(chunk.images * per_image)?,
                    images: count(chunk.images)?,
                    dz_off: chunk.offset(1),
                    a_off: chunk.offset(2),
                    ..base
                };
                Ok((p, u64::from(p.total).div_ceil(WG)))
            },
        )
    }

    /// `dW` and `db` by the direct kernels (one thread per element, chunks accumulated in order).
    pub(crate) fn direct_backward_filter(
        &self,
        k: &KernelGeometry,
        a_prev: &Tensor,
        dz: &Tensor,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<()> {
        let base = BackwardParams::new(k);
        let dw_len = dw.len();
        self.launch(
            &BACKWARD_FILTER,
            &[],
            k.m,
            &[Arg::Batched(a_prev), Arg::Batched(dz), Arg::Whole(dw)],
            |chunk| {
                let p = BackwardParams {
                    total: count(dw_len)?,
                    images: count(chunk.images)?,
                    a_off: chunk.offset(0),
                    dz_off: chunk.offset(1),
                    accumulate: u32::from(chunk.first > 0),
                    ..base
                };
                Ok((p, u64::from(p.total).div_ceil(WG)))
            },
        )?;
        self.launch(
            &BACKWARD_BIAS,
            &[],
            k.m,
            &[Arg::Batched(dz), Arg::Batched(dz), Arg::Whole(db)],
            |chunk| {
                let p = BackwardParams {
                    total: base.c_out,
                    images: count(chunk.images)?,
                    dz_off: chunk.offset(0),
                    accumulate: u32::from(chunk.first > 0),
                    ..base
                };
                Ok((p, u64::from(p.total).div_ceil(WG)))
            },
        )
    }
}
