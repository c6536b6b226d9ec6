//! The filter gradient by windows of `dZ` rows (`shaders/conv_filter.wgsl`): `dW` and `db` in
//! one pass over `dZ`, window after window, accumulated in order.

use super::super::device::WINDOW_BYTES;
use super::super::kernels::{uniform, Access, Kernel};
use super::super::launch::count;
use super::super::tune::{TuneKey, TunedOp};
use super::super::{Arg, Gpu, Tensor};
use super::plan::KernelGeometry;
use crate::error::Result;

uniform! {
    /// The uniform block of `conv_filter.wgsl`.
    struct FilterParams {
        total: u32,
        in_h: u32,
        in_w: u32,
        c4_in: u32,
        out_h: u32,
        out_w: u32,
        c_out: u32,
        f_w: u32,
        s_h: u32,
        s_w: u32,
        top: i32,
        left: i32,
        k_real: u32,
        taps: u32,
        n_cb: u32,
        pixels: u32,
        first_pixel: u32,
        accumulate: u32,
    }
}

pub(crate) const FILTER: Kernel = Kernel::new::<FilterParams>(
    "conv_filter.wgsl",
    include_str!("../../../shaders/conv_filter.wgsl"),
    "conv_filter",
    &[
        (1, Access::Read),
        (3, Access::Write),
        (4, Access::Window),
        (5, Access::Write),
    ],
);

/// Consecutive taps per lane: each `dZ` row read from the window feeds this many.
const FILTER_TAPS: usize = 3;

/// `(taps per lane, workgroup size, output channel vec4s per lane)` to try, default first.
fn variants(taps: usize, c4_out: usize) -> Vec<(usize, usize, usize)> {
    let mut variants = Vec::new();
    for cb4 in [4, 8] {
        for rt in [1, FILTER_TAPS] {
            for wgf in [64, 8] {
                let v = (rt, wgf, cb4.min(c4_out));
                if rt <= taps && !variants.contains(&v) {
                    variants.push(v);
                }
            }
        }
    }
    variants
}

impl Gpu {
    /// `dW` and `db` from `x4` (`A_prev`, channels padded to 4) and `dz4` (`dZ`, channels padded
    /// to 4), `window_pixels` rows of `dZ` per window.
    pub(crate) fn gemm_filter(
        &self,
        k: &KernelGeometry,
        window_pixels: usize,
        x4: &Tensor,
        dz4: &Tensor,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<()> {
        let c4_out = (k.c_out as usize).div_ceil(4);
        let taps = (k.f_h * k.f_w) as usize;
        let c4_in = (k.c_in as usize).div_ceil(4);
        let pixels = k.m * k.out_h as usize * k.out_w as usize;
        let row_bytes = (c4_out * 16) as u64;
        debug_assert!(window_pixels as u64 * row_bytes <= WINDOW_BYTES);
        let base = FilterParams {
            in_h: k.in_h,
            in_w: k.in_w,
            c4_in: c4_in as u32,
            out_h: k.out_h,
            out_w: k.out_w,
            c_out: k.c_out,
            f_w: k.f_w,
            s_h: k.s_h,
            s_w: k.s_w,
            top: k.top as i32,
            left: k.left as i32,
            k_real: k.c_in,
            taps: taps as u32,
            ..FilterParams::default()
        };
        let key = TuneKey {
            op: TunedOp::ConvFilter,
            image: [
                k.in_h, k.in_w, k.c_in, k.out_h, k.out_w, k.c_out, k.f_h, k.f_w, k.s_h, k.s_w,
                k.top, k.left,
            ]
            .map(i64::from),
        };
        let run = |(rt, wgf, cb4): (usize, usize, usize)| {
            let n_cb = c4_out.div_ceil(cb4);
            let lanes = n_cb * (taps.div_ceil(rt) * c4_in).next_multiple_of(wgf);
            let consts = [("CB4", cb4 as u32), ("RT", rt as u32), ("WGF", wgf as u32)];
            let mut first = 0;
            while first < pixels {
                let n = window_pixels.min(pixels - first);
                let p = FilterParams {
                    total: count(lanes)?,
                    n_cb: count(n_cb)?,
                    pixels: count(n)?,
                    first_pixel: count(first)?,
                    accumulate: u32::from(first > 0),
                    ..base
                };
                self.launch(
                    &FILTER,
                    &consts,
                    1,
                    &[
                        Arg::Whole(x4),
                        Arg::Whole(dw),
                        Arg::Window(dz4, first as u64 * row_bytes),
                        Arg::Whole(db),
                    ],
                    |_| Ok((p, (lanes as u64).div_ceil(wgf as u64))),
                )?;
                first += n;
            }
            Ok(())
        };
        let macs = (pixels * k.c_out as usize * taps * k.c_in as usize) as f64;
        let variant = self.pick(key, macs, &variants(taps, c4_out), run)?;
        run(variant)
    }
}

/// Every specialisation of `conv_filter.wgsl` the ops can ask for.
#[cfg(test)]
pub(crate) fn specializations() -> Vec<(Kernel, Vec<(&'static str, u32)>)> {
    let mut out = Vec::new();
    for c4_out in 1..=8 {
        for (rt, wgf, cb4) in variants(9, c4_out) {
            let consts = vec![("CB4", cb4 as u32), ("RT", rt as u32), ("WGF", wgf as u32)];
            if !out.iter().any(|(_, c): &(Kernel, Vec<_>)| *c == consts) {
                out.push((FILTER, consts));
            }
        }
    }
    out
}
