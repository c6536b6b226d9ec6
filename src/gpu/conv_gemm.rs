//! The fast convolution path: implicit GEMM with a uniform-window operand; kernels:
//! `shaders/conv_gemm.wgsl`. `conv.rs` chooses between this and the direct kernels.
//!
//! * forward: `Z = X (*) W` with `W` packed into uniform windows `[t][k][c4]`;
//! * backward data at stride 1: the same kernel over `dZ` with the flipped, transposed filter;
//! * backward filter: `dW[t, k, c] += X[p -> t, k] * dZ[p, c]` with windows of `dZ` rows, `db`
//!   summed alongside.

use super::launch::{to_i32, to_u32, Access, WG};
use super::{Arg, Gpu, Kernel, Tensor};
use crate::error::Result;
use crate::params::ConvGeometry;

const SOURCE: &str = include_str!("../../shaders/conv_gemm.wgsl");

const GEMM: Kernel = Kernel {
    name: "conv_gemm.wgsl",
    source: SOURCE,
    entry: "conv_gemm",
    bindings: &[
        (1, Access::Read),
        (2, Access::Read),
        (3, Access::Write),
        (4, Access::Window),
    ],
};

const FILTER: Kernel = Kernel {
    entry: "conv_filter",
    bindings: &[
        (1, Access::Read),
        (3, Access::Write),
        (4, Access::Window),
        (5, Access::Write),
    ],
    ..GEMM
};

const PACK: Kernel = Kernel {
    entry: "pack",
    bindings: &[(2, Access::Read), (3, Access::Write)],
    ..GEMM
};

const PAD_CHANNELS: Kernel = Kernel {
    entry: "pad_channels",
    bindings: &[(2, Access::Read), (3, Access::Write)],
    ..GEMM
};

/// Output channel vec4s per thread in `conv_gemm` (at most).
const GEMM_CB4: usize = 8;
/// Accumulators per thread in `conv_gemm` (pixels x channel vec4s) that the pixel count aims
/// at: each weight read from the window feeds that many pixels. Measured on lavapipe (cifar,
/// deep, stem): 4 pixels x 8 vec4 is slower than 8 x 8, and 16 x 8 spills; 16 x 2 is best for
/// stem's 8 channels.
const GEMM_ACC: usize = 64;
/// Most pixels per thread.
const GEMM_PX_MAX: usize = 16;

/// Consecutive taps per lane in `conv_filter`: each `dZ` row read from the window feeds this many.
const FILTER_TAPS: usize = 3;

/// The uniform block of `conv_gemm.wgsl` (one struct for all its entry points).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
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
    tap_begin: u32,
    tap_end: u32,
    c_begin: u32,
    accumulate: u32,
    has_bias: u32,
    x_off: u32,
    z_off: u32,
    pixels: u32,
    first_pixel: u32,
    n_cb: u32,
    k_real: u32,
    c_real: u32,
    k_stride: u32,
    c_stride: u32,
    tap_stride: u32,
    taps: u32,
    flip: u32,
    taps_per_window: u32,
    c_src: u32,
    pad_: u32,
}

/// A convolution in the kernels' terms: `X (m, in_h, in_w, k_real)` with channels read as
/// `c4_in` vec4s, `f_h x f_w` taps at stride `(s_h, s_w)` shifted by `(top, left)`, giving
/// `(m, out_h, out_w, c_out)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GemmShape {
    pub m: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub k_real: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub c_out: usize,
    pub f_h: usize,
    pub f_w: usize,
    pub s_h: usize,
    pub s_w: usize,
    pub top: i64,
    pub left: i64,
}

impl GemmShape {
    /// The forward pass of `g`.
    pub fn forward(g: &ConvGeometry) -> Self {
        Self {
            m: g.m,
            in_h: g.in_h,
            in_w: g.in_w,
            k_real: g.c_in,
            out_h: g.out_h,
            out_w: g.out_w,
            c_out: g.c_out,
            f_h: g.f_h,
            f_w: g.f_w,
            s_h: g.s_h,
            s_w: g.s_w,
            top: g.pad.top as i64,
            left: g.pad.left as i64,
        }
    }

    /// `dA_prev` of `g` as a forward convolution over `dZ` (stride 1 only).
    pub fn backward_data(g: &ConvGeometry) -> Self {
        Self {
            m: g.m,
            in_h: g.out_h,
            in_w: g.out_w,
            k_real: g.c_out,
            out_h: g.in_h,
            out_w: g.in_w,
            c_out: g.c_in,
            f_h: g.f_h,
            f_w: g.f_w,
            s_h: 1,
            s_w: 1,
            top: g.f_h as i64 - 1 - g.pad.top as i64,
            left: g.f_w as i64 - 1 - g.pad.left as i64,
        }
    }

    fn c4_in(&self) -> usize {
        self.k_real.div_ceil(4)
    }

    fn taps(&self) -> usize {
        self.f_h * self.f_w
    }

    fn base_params(&self) -> Result<Params> {
        Ok(Params {
            in_h: to_u32(self.in_h)?,
            in_w: to_u32(self.in_w)?,
            c4_in: to_u32(self.c4_in())?,
            out_h: to_u32(self.out_h)?,
            out_w: to_u32(self.out_w)?,
            c_out: to_u32(self.c_out)?,
            f_w: to_u32(self.f_w)?,
            s_h: to_u32(self.s_h)?,
            s_w: to_u32(self.s_w)?,
            top: to_i32(self.top)?,
            left: to_i32(self.left)?,
            k_real: to_u32(self.k_real)?,
            taps: to_u32(self.taps())?,
            ..Params::default()
        })
    }
}

/// How the filter is cut into uniform windows for `conv_gemm`.
#[derive(Debug, Clone, Copy)]
struct Windows {
    cb4: usize,
    taps_per_window: usize,
    n_cb: usize,
    n_tc: usize,
}

impl Gpu {
    fn window_vec4(&self) -> usize {
        (self.window_bytes() / 16) as usize
    }

    fn spec(&self, cb4: usize) -> [(&'static str, u32); 6] {
        self.full_spec(cb4, 1, 1, WG as usize)
    }

    fn full_spec(&self, cb4: usize, px: usize, rt: usize, wgf: usize) -> [(&'static str, u32); 6] {
        [
            ("CB4", cb4 as u32),
            ("RT", rt as u32),
            ("WGF", wgf as u32),
            ("PX", px as u32),
            ("ACC", 4 * cb4 as u32),
            ("UBO_VEC4", self.window_vec4() as u32),
        ]
    }

    /// Pixels per thread to try in `conv_gemm` for `cb4` channel vec4s, default first.
    fn pixel_variants(cb4: usize) -> Vec<usize> {
        let default = (GEMM_ACC / cb4.max(1)).clamp(1, GEMM_PX_MAX);
        let mut v = vec![default];
        v.extend(
            [4, 8, 16]
                .into_iter()
                .filter(|&px| px != default && px * cb4 <= GEMM_ACC),
        );
        v
    }

    fn windows(&self, s: &GemmShape) -> Option<Windows> {
        let per_k = s.c4_in() * 4;
        let cb4 = GEMM_CB4
            .min(s.c_out.div_ceil(4))
            .min(self.window_vec4() / per_k);
        if cb4 == 0 {
            return None;
        }
        let taps_per_window = self.window_vec4() / (per_k * cb4);
        let win = Windows {
            cb4,
            taps_per_window,
            n_cb: s.c_out.div_ceil(4 * cb4),
            n_tc: s.taps().div_ceil(taps_per_window),
        };
        // The pack kernel writes all windows through one storage binding.
        let packed_bytes = (win.n_cb * win.n_tc) as u64 * self.window_bytes();
        (packed_bytes <= self.limits().binding_bytes).then_some(win)
    }

    /// Whether `conv_gemm` can run `s`: the filter slice of one tap fits a window and the packed
    /// filter fits a storage binding.
    pub(crate) fn gemm_fits(&self, s: &GemmShape) -> bool {
        self.windows(s).is_some()
    }

    /// `x` with its channels (last axis) padded with zeros to a multiple of 4, or `x` itself.
    pub(crate) fn pad_channels(&self, x: &Tensor) -> Result<Tensor> {
        let [m, h, w, c] = x.dims4("pad_channels input")?;
        if c % 4 == 0 {
            return Ok(x.clone());
        }
        let c4 = c.div_ceil(4);
        let y = self.empty("channels padded to 4", &[m, h, w, c4 * 4])?;
        let per_image = h * w * c4 * 4;
        self.launch_with(
            &PAD_CHANNELS,
            &self.spec(1),
            m,
            &[Arg::Batched(x), Arg::Batched(&y)],
            |chunk| {
                let p = Params {
                    total: to_u32(chunk.images * per_image)?,
                    c4_in: to_u32(c4)?,
                    c_src: to_u32(c)?,
                    x_off: chunk.offset(0),
                    z_off: chunk.offset(1),
                    ..Params::default()
                };
                Ok((p, u64::from(p.total).div_ceil(WG)))
            },
        )?;
        Ok(y)
    }

    /// Packs `w` `(f_h, f_w, c_in, c_out)` into uniform windows for `s`; `flip` packs the
    /// flipped, transposed filter of the backward data pass.
    fn pack(&self, w: &Tensor, s: &GemmShape, win: &Windows, flip: bool) -> Result<Tensor> {
        let [_, _, c_in, c_out] = w.dims4("weights")?;
        let n_windows = win.n_cb * win.n_tc;
        let floats = n_windows * self.window_vec4() * 4;
        let packed = self.empty("packed weights", &[floats])?;
        let (k_stride, c_stride) = if flip { (1, c_out) } else { (c_out, 1) };
        let mut p = s.base_params()?;
        p.total = to_u32(floats)?;
        p.pixels = to_u32(win.n_tc)?;
        p.c_real = to_u32(s.c_out)?;
        p.k_stride = to_u32(k_stride)?;
        p.c_stride = to_u32(c_stride)?;
        p.tap_stride = to_u32(c_in * c_out)?;
        p.flip = u32::from(flip);
        p.taps_per_window = to_u32(win.taps_per_window)?;
        self.launch_with(
            &PACK,
            &self.spec(win.cb4),
            1,
            &[Arg::Whole(w), Arg::Whole(&packed)],
            |_| Ok((p, u64::from(p.total).div_ceil(WG))),
        )?;
        Ok(packed)
    }

    /// `out = conv(x, w) (+ bias)` for the shape `s` (see [`GemmShape`]); `x` must have its
    /// channels padded to a multiple of 4. `flip` selects the backward-data filter layout.
    pub(crate) fn gemm_conv(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        s: &GemmShape,
        flip: bool,
        out: &Tensor,
    ) -> Result<()> {
        let Some(win) = self.windows(s) else {
            return Err(crate::Error::TooLarge {
                what: "filter slice of one tap",
                shape: w.shape().to_vec(),
                bytes: (s.c4_in() * 16) as u64,
                limit: self.window_bytes(),
            });
        };
        let packed = self.pack(w, s, &win, flip)?;
        let aux = bias.unwrap_or(&packed);
        let key = (
            "conv_gemm",
            [
                s.m, s.in_h, s.in_w, s.k_real, s.out_h, s.out_w, s.c_out, s.f_h, s.f_w, s.s_h,
                s.s_w,
            ]
            .iter()
            .map(|&v| v as i64)
            .chain([s.top, s.left])
            .collect(),
        );
        let run = |px: usize| self.gemm_launches(x, aux, bias.is_some(), &packed, s, &win, px, out);
        let macs = (s.m * s.out_h * s.out_w * s.c_out * s.taps() * s.k_real) as f64;
        let px = self.pick(key, macs, &Self::pixel_variants(win.cb4), run)?;
        run(px)
    }

    /// The `conv_gemm` dispatches of one convolution with `px` pixels per thread.
    #[allow(clippy::too_many_arguments)]
    fn gemm_launches(
        &self,
        x: &Tensor,
        aux: &Tensor,
        has_bias: bool,
        packed: &Tensor,
        s: &GemmShape,
        win: &Windows,
        px: usize,
        out: &Tensor,
    ) -> Result<()> {
        let per_image = s.out_h * s.out_w;
        let base = s.base_params()?;
        let spec = self.full_spec(win.cb4, px, 1, WG as usize);
        for cb in 0..win.n_cb {
            for tc in 0..win.n_tc {
                let tap_begin = tc * win.taps_per_window;
                let tap_end = (tap_begin + win.taps_per_window).min(s.taps());
                let offset = ((cb * win.n_tc + tc) as u64) * self.window_bytes();
                self.launch_with(
                    &GEMM,
                    &spec,
                    s.m,
                    &[
                        Arg::Batched(x),
                        Arg::Whole(aux),
                        Arg::Batched(out),
                        Arg::Window(packed, offset),
                    ],
                    |chunk| {
                        let p = Params {
                            total: to_u32(chunk.images * per_image)?,
                            tap_begin: to_u32(tap_begin)?,
                            tap_end: to_u32(tap_end)?,
                            c_begin: to_u32(cb * win.cb4 * 4)?,
                            accumulate: u32::from(tc > 0),
                            has_bias: u32::from(has_bias),
                            x_off: chunk.offset(0),
                            z_off: chunk.offset(2),
                            ..base
                        };
                        Ok((p, u64::from(p.total).div_ceil(WG * px as u64)))
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Pixels per `dZ` window in `conv_filter`, if the whole batch of `A_prev` (channels padded
    /// to 4) fits one binding and at least one aligned pixel row fits a window.
    pub(crate) fn filter_window_pixels(&self, g: &ConvGeometry) -> Option<usize> {
        let x4_bytes = (g.m * g.in_h * g.in_w * g.c_in.div_ceil(4) * 16) as u64;
        let c4_out = g.c_out.div_ceil(4);
        let row_bytes = (c4_out * 16) as u64;
        let align = self.uniform_alignment();
        let unit = (align / gcd(align, row_bytes)) as usize;
        let pixels = self.window_vec4() / c4_out / unit * unit;
        let fits = x4_bytes + self.limits().offset_alignment <= self.limits().binding_bytes;
        (pixels > 0 && fits).then_some(pixels)
    }

    /// `dW` and `db` of `g` from `x4` (`A_prev`, channels padded to 4) and `dz4` (`dZ`,
    /// channels padded to 4), window by window, into `dw` and `db`.
    pub(crate) fn gemm_filter(
        &self,
        x4: &Tensor,
        dz4: &Tensor,
        g: &ConvGeometry,
        window_pixels: usize,
        dw: &Tensor,
        db: &Tensor,
    ) -> Result<()> {
        let s = GemmShape::forward(g);
        let c4_out = g.c_out.div_ceil(4);
        let pixels = g.m * g.out_h * g.out_w;
        let base = s.base_params()?;
        let row_bytes = (c4_out * 16) as u64;
        let key = (
            "conv_filter",
            [
                g.m, g.in_h, g.in_w, g.c_in, g.out_h, g.out_w, g.c_out, g.f_h, g.f_w, g.s_h, g.s_w,
                g.pad.top, g.pad.left,
            ]
            .iter()
            .map(|&v| v as i64)
            .collect(),
        );
        // (taps per lane, workgroup size, output channel vec4s per lane), default first.
        let mut variants = Vec::new();
        for cb4 in [4, 8] {
            for rt in [1, FILTER_TAPS] {
                for wgf in [64, 8] {
                    let cb4 = cb4.min(c4_out);
                    if rt <= s.taps() && !variants.contains(&(rt, wgf, cb4)) {
                        variants.push((rt, wgf, cb4));
                    }
                }
            }
        }
        let run = |(rt, wgf, cb4): (usize, usize, usize)| {
            let n_cb = c4_out.div_ceil(cb4);
            let lanes = n_cb * (s.taps().div_ceil(rt) * s.c4_in()).next_multiple_of(wgf);
            let spec = self.full_spec(cb4, 1, rt, wgf);
            let mut first = 0;
            while first < pixels {
                let n = window_pixels.min(pixels - first);
                self.launch_with(
                    &FILTER,
                    &spec,
                    1,
                    &[
                        Arg::Whole(x4),
                        Arg::Whole(dw),
                        Arg::Window(dz4, first as u64 * row_bytes),
                        Arg::Whole(db),
                    ],
                    |_| {
                        let p = Params {
                            total: to_u32(lanes)?,
                            pixels: to_u32(n)?,
                            first_pixel: to_u32(first)?,
                            n_cb: to_u32(n_cb)?,
                            accumulate: u32::from(first > 0),
                            ..base
                        };
                        Ok((p, (lanes as u64).div_ceil(wgf as u64)))
                    },
                )?;
                first += n;
            }
            Ok(())
        };
        let macs = (pixels * g.c_out * s.taps() * g.c_in) as f64;
        let variant = self.pick(key, macs, &variants, run)?;
        run(variant)
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
