//! The filter gradient by windows of `dZ` rows (`shaders/conv_filter.wgsl`): `dW` and `db` in
//! one pass over `dZ`, window after window, accumulated in order.

use super::super::device::WINDOW_BYTES;
use super::super::kernels::{replacing, uniform, Access, Kernel};
use super::super::launch::count;
use super::super::tune::{offer_lanes, TuneKey, TunedOp};
use super::super::{Arg, Gpu, Tensor};
use super::gemm::{row_shift, row_vec4s, Input, LANES_K_MAX, LANES_LINES_MAX, LANES_TAPS_MAX};
use super::pack::Padded;
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
    concat!(
        include_str!("../../../shaders/conv_filter.wgsl"),
        include_str!("../../../shaders/conv_filter_io.wgsl")
    ),
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

/// `conv_filter_tiled`: the windowed sums tiled through workgroup memory (the GPU-shaped
/// variant), `dZ` read from storage.
pub(crate) const FILTER_TILED: Kernel = FILTER.entry(
    "conv_filter_tiled",
    &[
        (1, Access::Read),
        (3, Access::Write),
        (6, Access::Read),
        (5, Access::Write),
    ],
);

/// `conv_filter_split_tiled`: the split sums tiled through workgroup memory.
pub(crate) const FILTER_SPLIT_TILED: Kernel = FILTER.entry(
    "conv_filter_split_tiled",
    &[(1, Access::Read), (6, Access::Read), (7, Access::Write)],
);

/// `filter_sum`: the slices of `conv_filter_split` added in order into dW and db.
pub(crate) const FILTER_SUM: Kernel = FILTER.entry(
    "filter_sum",
    &[(7, Access::Write), (3, Access::Write), (5, Access::Write)],
);

/// `conv_filter_lanes`: the split kernel's sums with lanes on output channels and the shared
/// activations loaded once per subgroup. Its own module, since it needs subgroup operations.
pub(crate) const FILTER_LANES: Kernel = Kernel::new::<FilterParams>(
    "conv_filter_lanes.wgsl",
    concat!(
        include_str!("../../../shaders/conv_filter_lanes.wgsl"),
        include_str!("../../../shaders/conv_filter_io.wgsl")
    ),
    "conv_filter_lanes",
    &FILTER_LANES_BINDINGS,
);

/// The bindings of `conv_filter_lanes`: A_prev's floats, dZ4's floats (dZ, channels padded to
/// 4), the partial sums, A_prev's vec4s, dZ4's vec4s.
const FILTER_LANES_BINDINGS: [(u32, Access); 5] = [
    (2, Access::Read),
    (8, Access::Read),
    (7, Access::Write),
    (9, Access::Read),
    (6, Access::Read),
];

/// The same, the last two from their textures.
const FILTER_LANES_TEX_BINDINGS: [(u32, Access); 5] = replacing(
    replacing(FILTER_LANES_BINDINGS, 3, (10, Access::Texture)),
    4,
    (11, Access::Texture),
);

/// `conv_filter_lanes` reading A_prev's rows and dZ through textures (`TEX`; `texture.rs`).
pub(crate) const FILTER_LANES_TEX: Kernel =
    FILTER_LANES.entry("conv_filter_lanes", &FILTER_LANES_TEX_BINDINGS);

/// Pixels of a row that `conv_filter_lanes` takes at once.
const LANES_PIXELS: usize = 8;

/// A variant of the split filter gradient: `Tiled((taps per lane, workgroup size, channel
/// vec4s per lane))`, `conv_filter_split`; `Lanes(pixels at once, subgroup size,
/// output channels per lane, input)`, `conv_filter_lanes` reading A_prev and dZ from their
/// buffers (`Input::Buffer`) or through textures (`Input::Textures`); `Shared`,
/// `conv_filter_split_tiled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SplitVariant {
    Tiled((usize, usize, usize)),
    Lanes(usize, u32, u32, Input),
    Shared,
}

/// A variant of the windowed filter gradient: `Lanes((taps per lane, workgroup size, channel
/// vec4s per lane))`, `conv_filter`; `Shared`, `conv_filter_tiled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowVariant {
    Lanes((usize, usize, usize)),
    Shared,
}

/// `(tap, k4)` rows, output vec4s and pixels per step of a `conv_filter_tiled` tile (the
/// shader's FT_ROWS, FT_COLS, FT_PIX).
const SHARED_TILE: (usize, usize, usize) = (16, 4, 16);

/// Tiles of `conv_filter_tiled` for `taps * c4_in` rows and `c4_out` output vec4s.
fn shared_tiles(rows: usize, c4_out: usize) -> usize {
    rows.div_ceil(SHARED_TILE.0) * c4_out.div_ceil(SHARED_TILE.1)
}

/// Loop iterations of one `conv_filter_tiled` tile over `pixels` pixels: per step, the four
/// input loads, the pixels and the loop itself.
fn shared_iterations(pixels: usize) -> u64 {
    (pixels.div_ceil(SHARED_TILE.2) * (SHARED_TILE.2 + 6)) as u64
}

/// Loop iterations (at most) of one slice of `run` pixels in `conv_filter_lanes` with `r` pixels
/// at once: per row the row loop, its chunks and its one-by-one pixels.
fn lanes_slice_iterations(k: &KernelGeometry, run: usize, r: usize) -> u64 {
    let out_w = k.out_w as usize;
    let rows = run / out_w + 2;
    (rows * (1 + out_w / r + r)) as u64
}

impl Gpu {
    /// Workgroups of `conv_filter_lanes` over `slices` slices of `run` pixels, `r` at once,
    /// and the loop iterations each of its invocations runs.
    fn lanes_workgroups(
        &self,
        k: &KernelGeometry,
        (slices, run): (usize, usize),
        r: usize,
    ) -> (u64, u64) {
        let per_slice = lanes_slice_iterations(k, run, r);
        let wgs = self.window_workgroups(slices as u64, per_slice);
        (wgs, (slices as u64).div_ceil(wgs) * (1 + per_slice))
    }
}

/// Lanes the split kernel aims at (slices x lanes per slice): enough for every core's SIMD
/// lanes on a CPU adapter and a few workgroups per multiprocessor on a GPU.
const SPLIT_LANES: usize = 4096;
/// Most pixels one lane sums (within the llvmpipe loop budget with room to spare).
const SPLIT_RUN_MAX: usize = 32768;

const FILTER_TAPS: usize = 3;

/// The override constants of `conv_filter.wgsl`: taps per lane, workgroup size, channel vec4s
/// per lane, and the subgroup size that spreads the `dZ` reads (`Quirks::spread_windows`).
fn filter_consts(
    (rt, wgf, cb4): (usize, usize, usize),
    spread: Option<u32>,
) -> [(&'static str, u32); 5] {
    let u = |v: usize| v as u32;
    [
        ("CB4", u(cb4)),
        ("RT", u(rt)),
        ("WGF", u(wgf)),
        ("SG", spread.unwrap_or(1)),
        ("SGON", u32::from(spread.is_some())),
    ]
}

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
    /// `dW` and `db` from `x` (`A_prev`, read with its channels padded to 4 except by the
    /// channel-lane kernel) and `dz4` (`dZ`, channels padded to 4), `window_pixels` rows of `dZ`
    /// per window.
    pub(crate) fn gemm_filter(
        &self,
        k: &KernelGeometry,
        window_pixels: usize,
        x: &Padded,
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
        let run = |variant: WindowVariant| {
            let x4 = x.x4(self)?;
            let (rt, wgf, cb4) = match variant {
                WindowVariant::Lanes(v) => v,
                WindowVariant::Shared => {
                    return self.shared_filter(k, &base, window_pixels, &x4, dz4, dw, db)
                }
            };
            let n_cb = c4_out.div_ceil(cb4);
            let lanes = n_cb * (taps.div_ceil(rt) * c4_in).next_multiple_of(wgf);
            let consts = filter_consts((rt, wgf, cb4), self.spread_filter(wgf));
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
                        Arg::Whole(&x4),
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
            let run = |v| self.split_filter(k, &base, split, v, x, dz4, dw, db);
            let mut candidates: Vec<SplitVariant> = variants(taps, c4_out)
                .into_iter()
                .map(SplitVariant::Tiled)
                .collect();
            let (one, wide) = self.filter_lanes_variants(k, split);
            let no_one = one.is_empty();
            offer_lanes(&mut candidates, one, self.lanes_first());
            // With 2 or 4 output channels a lane: the default where the one-channel kernel
            // does not apply (on CPU adapters; they won every timing there).
            offer_lanes(&mut candidates, wide, self.lanes_first() && no_one);
            if self.within_loop_budget(1 + shared_iterations(split.1)) {
                candidates.push(SplitVariant::Shared);
            }
            let variant = self.pick(key, macs, &candidates, run)?;
            return run(variant);
        }
        let mut candidates: Vec<WindowVariant> = variants(taps, c4_out)
            .into_iter()
            .map(WindowVariant::Lanes)
            .collect();
        if self.within_loop_budget(1 + shared_iterations(window_pixels)) {
            candidates.push(WindowVariant::Shared);
        }
        let variant = self.pick(key, macs, &candidates, run)?;
        run(variant)
    }

    /// The windowed filter gradient by `conv_filter_tiled`, `window_pixels` pixels per window.
    #[allow(clippy::too_many_arguments)]
    fn shared_filter(
        &self,
        k: &KernelGeometry,
        base: &FilterParams,
        window_pixels: usize,
        x4: &Tensor,
        dz4: &Tensor,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<()> {
        let pixels = k.m * k.out_h as usize * k.out_w as usize;
        let rows = (k.f_h * k.f_w) as usize * (k.c_in as usize).div_ceil(4);
        let tiles = shared_tiles(rows, (k.c_out as usize).div_ceil(4));
        let consts = filter_consts((1, 64, 1), None);
        let mut first = 0;
        while first < pixels {
            let n = window_pixels.min(pixels - first);
            let p = FilterParams {
                total: count(tiles)?,
                pixels: count(n)?,
                first_pixel: count(first)?,
                accumulate: u32::from(first > 0),
                ..*base
            };
            let wgs = self.window_workgroups(tiles as u64, shared_iterations(n));
            self.launch(
                &FILTER_TILED,
                &consts,
                1,
                &[
                    Arg::Whole(x4),
                    Arg::Whole(dw),
                    Arg::Whole(dz4),
                    Arg::Whole(db),
                ],
                |_| Ok((p, wgs)),
            )?;
            first += n;
        }
        Ok(())
    }

    /// The subgroup size that spreads the `dZ` reads of the filter kernels with workgroups of
    /// `wgf` (whole subgroups), if the adapter wants it (`Quirks::spread_windows`).
    fn spread_filter(&self, wgf: usize) -> Option<u32> {
        self.quirks()
            .spread_windows
            .filter(|&sg| wgf.is_multiple_of(sg as usize))
    }

    /// `(slices, pixels per slice)` when the filter has few enough lanes (`(tap, k4)` x channel
    /// blocks) that runs of pixels summed in parallel make at least two slices (`SPLIT_LANES` /
    /// 2 or more lanes fill the adapter window by window), and dZ and the partial sums fit a
    /// binding, in at most `Quirks::split_max` slices. Fixed by the shape and the kind of
    /// adapter alone, so that the summation order never depends on the tuning. The split kernel
    /// writes each output once per slice where the windowed one reads and writes it once per
    /// window: on lavapipe the filter gradient of `deep` (1152 lanes, 32 windows of 128 pixels,
    /// 3 slices) went from 60 to 37 ms.
    fn split_plan(&self, k: &KernelGeometry, dz4: &Tensor) -> Option<(usize, usize)> {
        let taps = (k.f_h * k.f_w) as usize;
        let c4_in = (k.c_in as usize).div_ceil(4);
        let c4_out = (k.c_out as usize).div_ceil(4);
        let lanes = c4_out.div_ceil(c4_out.min(8)) * taps * c4_in;
        if lanes >= SPLIT_LANES / 2 {
            return None;
        }
        let pixels = k.m * k.out_h as usize * k.out_w as usize;
        let most = self.quirks().split_max;
        let wanted = (SPLIT_LANES / lanes).clamp(1, most).min(pixels.max(1));
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

    /// The channel-lane variants of the split filter gradient, where they apply: an adapter
    /// with fixed-size subgroups, stride 1 along the width, all the output channels in whole
    /// subgroups of one workgroup of at most 32 lanes, slices within the loop budget. With one
    /// output channel a lane (at most 4 input channels and [`LANES_TAPS_MAX`] taps; first) and
    /// with 4 or 2 (at most [`LANES_K_MAX`] input channels and [`LANES_LINES_MAX`]
    /// multiply-adds a run, any number of taps: seed 002's 7x7 filter gradient, 3 -> 32
    /// channels over 64x64x64 images, 83-122 -> 33.5-35 ms on lavapipe; second).
    fn filter_lanes_variants(
        &self,
        k: &KernelGeometry,
        (slices, run): (usize, usize),
    ) -> (Vec<SplitVariant>, Vec<SplitVariant>) {
        let Some(sg) = self.quirks().subgroup else {
            return (Vec::new(), Vec::new());
        };
        let c_pad = (k.c_out as usize).div_ceil(4) * 4;
        let taps = (k.f_h * k.f_w) as usize;
        let fits = |r: usize, cpl: usize| {
            let wg = c_pad / cpl;
            let (_, iterations) = self.lanes_workgroups(k, (slices, run), r);
            k.s_w == 1
                && wg <= 32
                && wg >= sg as usize
                && wg.is_multiple_of(sg as usize)
                && self.within_loop_budget(iterations)
        };
        // Each variant reading A_prev's rows as vec4s also through textures, where A_prev and
        // dZ fit one, after its twin (the autotune takes it where it is clearly faster: seed
        // 001's first layer on lavapipe, 7.7 -> 6.5 ms in alternated calls, the copies
        // included; cifar's and seed 001's second layer's were no faster or slower).
        let pixels = k.m * (k.out_h * k.out_w) as usize;
        let x_vec4s = k.m * (k.in_h * k.in_w * k.c_in) as usize / 4;
        let textures =
            self.texture_rows(x_vec4s).is_some() && self.texture_rows(pixels * c_pad / 4).is_some();
        let with_textures = |(r, cpl): (usize, usize)| {
            let buffer = SplitVariant::Lanes(r, sg, cpl as u32, Input::Buffer);
            let texture = SplitVariant::Lanes(r, sg, cpl as u32, Input::Textures);
            if textures && lanes_s0(k, run, r).is_some() {
                vec![buffer, texture]
            } else {
                vec![buffer]
            }
        };
        let one = if k.c_in <= 4 && taps <= LANES_TAPS_MAX && fits(LANES_PIXELS, 1) {
            with_textures((LANES_PIXELS, 1))
        } else {
            Vec::new()
        };
        // (output channels a lane, pixels at once), as `gemm::variants` lists them.
        let wide = [(4, 4), (2, 4), (2, 8)]
            .into_iter()
            .filter(|&(cpl, r)| {
                k.c_in as usize <= LANES_K_MAX
                    && taps * k.c_in as usize * r * cpl <= LANES_LINES_MAX
                    && fits(r, cpl)
            })
            .flat_map(|(cpl, r)| with_textures((r, cpl)))
            .collect();
        (one, wide)
    }

    /// The split filter gradient: `conv_filter_split` (or `conv_filter_lanes`) then
    /// `filter_sum`.
    #[allow(clippy::too_many_arguments)]
    fn split_filter(
        &self,
        k: &KernelGeometry,
        base: &FilterParams,
        (slices, run): (usize, usize),
        variant: SplitVariant,
        x: &Padded,
        dz4: &Tensor,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<()> {
        let taps = (k.f_h * k.f_w) as usize;
        let c4_in = (k.c_in as usize).div_ceil(4);
        let c4_out = (k.c_out as usize).div_ceil(4);
        let outputs = taps * k.c_in as usize * k.c_out as usize + k.c_out as usize;
        let part = self.alloc("conv filter partial sums", &[slices, outputs], false)?;
        let pixels = k.m * k.out_h as usize * k.out_w as usize;
        let base = FilterParams {
            pixels: count(run)?,
            slices: count(slices)?,
            all_pixels: count(pixels)?,
            ..*base
        };
        // filter_sum's own workgroup size and constants.
        let (wgf, consts) = match variant {
            SplitVariant::Tiled((rt, wgf, cb4)) => {
                let n_cb = c4_out.div_ceil(cb4);
                let spread = self.spread_filter(wgf);
                // With spread reads, each block's lanes in whole subgroups.
                let per_cb =
                    (taps.div_ceil(rt) * c4_in).next_multiple_of(spread.unwrap_or(1) as usize);
                let lanes = slices * n_cb * per_cb;
                let p = FilterParams {
                    total: count(lanes)?,
                    n_cb: count(n_cb)?,
                    ..base
                };
                let consts = filter_consts((rt, wgf, cb4), spread);
                let x4 = x.x4(self)?;
                let args = [Arg::Whole(&x4), Arg::Whole(dz4), Arg::Whole(&part)];
                self.launch(&FILTER_SPLIT, &consts, 1, &args, |_| {
                    Ok((p, (lanes as u64).div_ceil(wgf as u64)))
                })?;
                (wgf, consts)
            }
            SplitVariant::Shared => {
                let tiles = slices * shared_tiles(taps * c4_in, c4_out);
                let p = FilterParams {
                    total: count(tiles)?,
                    ..base
                };
                let consts = filter_consts((1, 64, 1), None);
                let x4 = x.x4(self)?;
                let args = [Arg::Whole(&x4), Arg::Whole(dz4), Arg::Whole(&part)];
                let wgs = self.window_workgroups(tiles as u64, shared_iterations(run));
                self.launch(&FILTER_SPLIT_TILED, &consts, 1, &args, |_| Ok((p, wgs)))?;
                (64, consts)
            }
            SplitVariant::Lanes(r, sg, cpl, input) => {
                let s0 = lanes_s0(k, run, r);
                let filter = (k.f_h, k.f_w, k.c_in);
                let tex = input != Input::Buffer;
                let wg = (c4_out * 4) as u32 / cpl;
                let consts = lanes_consts(filter, wg, cpl, r as u32, sg, s0, tex);
                let (wgs, _) = self.lanes_workgroups(k, (slices, run), r);
                // The last two bindings: A_prev as vec4s and dZ4, from their buffers or textures.
                let launch = |kernel: &Kernel, rows: Arg, dz: Arg| {
                    let args = [
                        Arg::Whole(x.x),
                        Arg::Whole(dz4),
                        Arg::Whole(&part),
                        rows,
                        dz,
                    ];
                    self.launch(kernel, &consts, 1, &args, |_| Ok((base, wgs)))
                };
                if tex {
                    // dZ4 in slot 0, where the data gradient reads it: in `conv_backward`
                    // (a texture-sharing scope) this takes the copy that one made.
                    self.with_texture(dz4, 0, |td| {
                        self.with_texture(x.x, 1, |tx| {
                            let (rows, dz) = (Arg::Texture(x.x, tx), Arg::Texture(dz4, td));
                            launch(&FILTER_LANES_TEX, rows, dz)
                        })
                    })?;
                } else {
                    launch(&FILTER_LANES, Arg::Whole(x.x), Arg::Whole(dz4))?;
                }
                let wgf = 64;
                (wgf, filter_consts((1, wgf, 1), None))
            }
        };
        self.launch(
            &FILTER_SUM,
            &consts,
            1,
            &[Arg::Whole(&part), Arg::Whole(dw), Arg::Whole(db)],
            |_| Ok((base, (outputs as u64).div_ceil(wgf as u64))),
        )
    }
}

/// Every specialisation of `conv_filter.wgsl` the ops can ask for.
#[cfg(test)]
pub(crate) fn specializations() -> Vec<(Kernel, Vec<(&'static str, u32)>)> {
    let mut out = Vec::new();
    for c4_out in 1..=8 {
        for v in variants(9, c4_out) {
            for spread in [None, Some(4), Some(8)] {
                let consts = filter_consts(v, spread).to_vec();
                if !out.iter().any(|(_, c): &(Kernel, Vec<_>)| *c == consts) {
                    out.push((FILTER_SPLIT, consts.clone()));
                    out.push((FILTER_SUM, consts.clone()));
                    out.push((FILTER_TILED, consts.clone()));
                    out.push((FILTER_SPLIT_TILED, consts.clone()));
                    out.push((FILTER, consts));
                }
            }
        }
    }
    for (f_h, f_w, k) in [(4, 4, 3), (2, 2, 4), (3, 3, 1), (1, 7, 2)] {
        for (wg, sg) in [(8, 8), (16, 8), (32, 8), (16, 16), (32, 32), (4, 4)] {
            for s0 in [None, Some(0), Some(3)] {
                let consts = lanes_consts((f_h, f_w, k), wg, 1, LANES_PIXELS as u32, sg, s0, false);
                out.push((FILTER_LANES, consts.to_vec()));
                if s0.is_some() {
                    let consts =
                        lanes_consts((f_h, f_w, k), wg, 1, LANES_PIXELS as u32, sg, s0, true);
                    out.push((FILTER_LANES_TEX, consts.to_vec()));
                }
            }
        }
    }
    // 4 and 2 output channels a lane (cifar's layer: 16 input channels, 32 outputs; seed 002's
    // convnet's: 7x7 taps, 3 input channels, 32 outputs, rows starting 3 floats into a vec4).
    for (shape, s0s) in [((3, 3, 16), [0, 2]), ((7, 7, 3), [3, 3])] {
        for (wg, cpl, r, s0) in [
            (8, 4, 4, None),
            (16, 2, 4, Some(s0s[0])),
            (16, 2, 8, Some(s0s[1])),
        ] {
            for tex in [false, true]
                .into_iter()
                .take(1 + usize::from(s0.is_some()))
            {
                let consts = lanes_consts(shape, wg, cpl, r, 8, s0, tex);
                let kernel = if tex { FILTER_LANES_TEX } else { FILTER_LANES };
                out.push((kernel, consts.to_vec()));
            }
        }
    }
    out
}

/// Where `conv_filter_lanes` reads `k`'s rows as vec4s, taking `r` pixels at once in slices
/// of `run` pixels: every run of pixels starts at a multiple of 4 floats. The row's first
/// float's place in its vec4 (`S0`).
fn lanes_s0(k: &KernelGeometry, run: usize, r: usize) -> Option<u32> {
    ((k.in_w * k.c_in).is_multiple_of(4)
        && k.out_w.is_multiple_of(4)
        && run.is_multiple_of(4)
        && (r as u32 * k.c_in).is_multiple_of(4))
    .then(|| row_shift(i64::from(k.left), k.c_in as usize))
}

/// The override constants of `conv_filter_lanes.wgsl` for an `f_h x f_w` filter over `k` input
/// channels: workgroups of `wg` lanes, `cpl` output channels a lane, `r` pixels at once,
/// subgroups of `sg`; `s0`: the rows read as vec4s, each row's first float `s0` floats into its
/// vec4 (`V4`, `MV` as `conv_lanes.wgsl`'s); `tex`: those rows and dZ read through textures
/// (`TEX`, with `s0` only).
fn lanes_consts(
    (f_h, f_w, k): (u32, u32, u32),
    wg: u32,
    cpl: u32,
    r: u32,
    sg: u32,
    s0: Option<u32>,
    tex: bool,
) -> [(&'static str, u32); 11] {
    [
        ("WG", wg),
        ("CPL", cpl),
        ("R", r),
        ("FW", f_w),
        ("FH", f_h),
        ("K", k),
        ("SG", sg),
        ("V4", u32::from(s0.is_some())),
        ("S0", s0.unwrap_or(0)),
        ("MV", s0.map_or(0, |s0| row_vec4s(s0, (r, f_w, k), sg))),
        ("TEX", u32::from(tex && s0.is_some())),
    ]
}
