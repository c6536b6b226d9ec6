//! The direct convolution kernels, for what the fast paths do not cover (any stride for `dA`,
//! filters or batches too large for the uniform windows); kernels: `shaders/conv_forward.wgsl`,
//! `shaders/conv_backward.wgsl`. Every thread gathers the terms of the one element it writes.

use super::super::kernels::{simple, uniform, Kernel};
use super::super::launch::{count, WG};
use super::super::{Arg, Gpu, Tensor};
use super::plan::KernelGeometry;
use crate::error::{Error, Result};

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
        relu: u32,
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
        oh_begin: u32,
        oh_end: u32,
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
        relu: bool,
        z: &Tensor,
    ) -> Result<()> {
        let per_image = k.per_image_out();
        let per_thread =
            |c: u32| 1 + u64::from(k.f_h) * (1 + u64::from(k.f_w) * (1 + u64::from(c)));
        self.check_loops(
            "conv_forward (direct kernel)",
            (k.m * per_image) as u64,
            per_thread(k.c_in),
            &[a_prev.shape(), w.shape()],
        )?;
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
            relu: u32::from(relu),
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
        let per_thread = 1 + u64::from(k.f_h) * (1 + u64::from(k.f_w) * (1 + u64::from(k.c_out)));
        self.check_loops(
            "conv_backward dA_prev (direct kernel)",
            (k.m * per_image) as u64,
            per_thread,
            &[dz.shape(), w.shape()],
        )?;
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

    /// `dW` by the direct kernel: one thread per element reduces over the batch, in bands of
    /// output rows and chunks of images small enough for the adapter's loop budget, accumulated
    /// in order; `db` by the deterministic reduction (`reduce.rs`).
    pub(crate) fn direct_backward_filter(
        &self,
        k: &KernelGeometry,
        a_prev: &Tensor,
        dz: &Tensor,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<()> {
        let (rows, images) = self.filter_bands(k, dw.len(), &[a_prev.shape(), dz.shape()])?;
        let base = BackwardParams::new(k);
        let dw_len = dw.len();
        let mut oh_begin = 0;
        while oh_begin < k.out_h {
            let oh_end = (oh_begin + rows).min(k.out_h);
            let band = BackwardParams {
                oh_begin,
                oh_end,
                ..base
            };
            let first_band = oh_begin == 0;
            self.launch_capped(
                &BACKWARD_FILTER,
                &[],
                k.m,
                images,
                &[Arg::Batched(a_prev), Arg::Batched(dz), Arg::Whole(dw)],
                |chunk| {
                    let p = BackwardParams {
                        total: count(dw_len)?,
                        images: count(chunk.images)?,
                        a_off: chunk.offset(0),
                        dz_off: chunk.offset(1),
                        accumulate: u32::from(chunk.first > 0 || !first_band),
                        ..band
                    };
                    Ok((p, u64::from(p.total).div_ceil(WG)))
                },
            )?;
            oh_begin = oh_end;
        }
        let pixels = (k.out_h * k.out_w) as usize;
        self.row_sums(dz, None, (k.m, pixels, k.c_out as usize), false, Some(db))?;
        Ok(())
    }

    /// Output rows per band and images per chunk for the direct filter kernel, so
    /// that one thread's loops stay within the adapter's loop budget.
    fn filter_bands(
        &self,
        k: &KernelGeometry,
        outputs: usize,
        shapes: &[&[usize]],
    ) -> Result<(u32, usize)> {
        let Some(budget) = self.loop_budget() else {
            return Ok((k.out_h, usize::MAX));
        };
        // One thread: grid iterations x (1 + images x (1 + rows x (1 + out_w))), with slack.
        let per_thread = (budget - 64) / self.grid_iterations(outputs.max(k.c_out as usize) as u64);
        let row = 1 + u64::from(k.out_w);
        let image = 1 + u64::from(k.out_h) * row;
        if per_thread > image + 1 {
            return Ok((k.out_h, ((per_thread - 1) / image) as usize));
        }
        let rows = per_thread.saturating_sub(2) / row;
        if rows == 0 {
            return Err(Error::AdapterLimit {
                what: "conv_backward dW (direct kernel): one output row",
                iterations: row + 2,
                limit: budget,
                shapes: shapes.iter().map(|s| s.to_vec()).collect(),
            });
        }
        Ok((rows as u32, 1))
    }
}
