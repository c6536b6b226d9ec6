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
        slices: u32,
        all_pixels: u32,
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
/// `conv_filter_split`: runs of pixels summed by (slice, lane), dZ read from storage.
pub(crate) const FILTER_SPLIT: Kernel = FILTER.entry(
    "conv_filter_split",
    &[(1, Access::Read), (6, Access::Read), (7, Access::Write)],
);

/// `filter_sum`: the slices of `conv_filter_split` added in order into dW and db.
pub(crate) const FILTER_SUM: Kernel = FILTER.entry(
    "filter_sum",
    &[(7, Access::Write), (3, Access::Write), (5, Access::Write)],
);

/// Lanes the split kernel aims at (slices x lanes per slice): enough for every core's SIMD
/// lanes on a CPU adapter and a few workgroups per multiprocessor on a GPU.
const SPLIT_LANES: usize = 4096;
/// Most slices (each adds a row of partial sums that `filter_sum` walks).
const SPLIT_MAX: usize = 1024;
/// Most pixels one lane sums (within the llvmpipe loop budget with room to spare).
const SPLIT_RUN_MAX: usize = 32768;

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
            op: TunedOp::Filter,
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
        if let Some(split) = self.split_plan(k, dz4) {
            let key = TuneKey {
                op: TunedOp::FilterSplit,
                ..key
            };
            let run = |v| self.split_filter(k, &base, split, v, x4, dz4, dw, db);
            let variant = self.pick(key, macs, &variants(taps, c4_out), run)?;
            return run(variant);
        }
        let variant = self.pick(key, macs, &variants(taps, c4_out), run)?;
        run(variant)
    }

    /// `(slices, pixels per slice)` when the filter is small enough that the windowed kernel
    /// would leave most lanes idle (fewer lanes than one workgroup of 64), and dZ and the
    /// partial sums fit a binding. Fixed by the shape alone, so that the summation order never
    /// depends on the tuning.
    fn split_plan(&self, k: &KernelGeometry, dz4: &Tensor) -> Option<(usize, usize)> {
        let taps = (k.f_h * k.f_w) as usize;
        let c4_in = (k.c_in as usize).div_ceil(4);
        let c4_out = (k.c_out as usize).div_ceil(4);
        let lanes = c4_out.div_ceil(c4_out.min(8)) * taps * c4_in;
        if lanes >= 64 {
            return None;
        }
        let pixels = k.m * k.out_h as usize * k.out_w as usize;
        let wanted = (SPLIT_LANES / lanes).clamp(1, SPLIT_MAX).min(pixels.max(1));
        let run = pixels.div_ceil(wanted).max(1);
        let slices = pixels.div_ceil(run);
        let outputs = taps * k.c_in as usize * k.c_out as usize + k.c_out as usize;
        let binding = self.limits().binding_bytes;
        let part_bytes = (slices * outputs * 4) as u64;
        (run <= SPLIT_RUN_MAX
            && dz4.byte_len() + 16 <= binding
            && part_bytes + 16 <= binding
            && self.temporary_fits([1, 1, slices, outputs]))
        .then_some((slices, run))
    }

    /// The split filter gradient: `conv_filter_split` then `filter_sum`.
    #[allow(clippy::too_many_arguments)]
    fn split_filter(
        &self,
        k: &KernelGeometry,
        base: &FilterParams,
        (slices, run): (usize, usize),
        (rt, wgf, cb4): (usize, usize, usize),
        x4: &Tensor,
        dz4: &Tensor,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<()> {
        let taps = (k.f_h * k.f_w) as usize;
        let c4_in = (k.c_in as usize).div_ceil(4);
        let c4_out = (k.c_out as usize).div_ceil(4);
        let n_cb = c4_out.div_ceil(cb4);
        let lanes = slices * n_cb * taps.div_ceil(rt) * c4_in;
        let outputs = taps * k.c_in as usize * k.c_out as usize + k.c_out as usize;
        let part = self.alloc("conv filter partial sums", &[slices, outputs], false)?;
        let pixels = k.m * k.out_h as usize * k.out_w as usize;
        let p = FilterParams {
            total: count(lanes)?,
            n_cb: count(n_cb)?,
            pixels: count(run)?,
            slices: count(slices)?,
            all_pixels: count(pixels)?,
            ..*base
        };
        let consts = [("CB4", cb4 as u32), ("RT", rt as u32), ("WGF", wgf as u32)];
        self.launch(
            &FILTER_SPLIT,
            &consts,
            1,
            &[Arg::Whole(x4), Arg::Whole(dz4), Arg::Whole(&part)],
            |_| Ok((p, (lanes as u64).div_ceil(wgf as u64))),
        )?;
        self.launch(
            &FILTER_SUM,
            &consts,
            1,
            &[Arg::Whole(&part), Arg::Whole(dw), Arg::Whole(db)],
            |_| Ok((p, (outputs as u64).div_ceil(wgf as u64))),
        )
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
                out.push((FILTER_SPLIT, consts.clone()));
                out.push((FILTER_SUM, consts.clone()));
                out.push((FILTER, consts));
            }
        }
    }
    out
}
