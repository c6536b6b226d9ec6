//! The implicit-GEMM convolution (`shaders/conv_gemm.wgsl`): the forward pass, and the backward
//! data pass as forward convolutions over `dZ` with the flipped filter (one per stride phase).

use super::super::device::WINDOW_BYTES;
use super::super::kernels::{replacing, uniform, Access, Kernel};
use super::super::launch::{count, WG};
use super::super::texture::InputTexture;
use super::super::tune::{offer_lanes, TuneKey, TunedOp};
use super::super::{Arg, Gpu, Tensor};
use super::pack::Padded;
use super::plan::KernelGeometry;
use crate::error::Result;
use crate::params::{ConvGeometry, PoolGeometry};

uniform! {
    /// The uniform block of `conv_gemm.wgsl`.
    struct GemmParams {
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
        relu: u32,
        o_h: u32,
        o_w: u32,
        o_sh: u32,
        o_sw: u32,
        o_rh: u32,
        o_rw: u32,
        pool_sh: u32,
        pool_sw: u32,
        tpw: u32,
        win0: u32,
    }
}

/// The bindings of the GEMM kernels: X, the bias, Z, the filter's window.
const GEMM_BINDINGS: [(u32, Access); 4] = [
    (1, Access::Read),
    (2, Access::Read),
    (3, Access::Write),
    (4, Access::Window),
];

pub(crate) const GEMM: Kernel = Kernel::new::<GemmParams>(
    "conv_gemm.wgsl",
    concat!(
        include_str!("../../../shaders/conv_gemm.wgsl"),
        include_str!("../../../shaders/conv_gemm_io.wgsl")
    ),
    "conv_gemm",
    &GEMM_BINDINGS,
);

/// The bindings of the kernels that read X through a texture (`TEX`; see `texture.rs`).
const TEX_BINDINGS: [(u32, Access); 4] = replacing(GEMM_BINDINGS, 0, (8, Access::Texture));

/// `conv_gemm` reading X through a texture.
pub(crate) const GEMM_TEX: Kernel = GEMM.entry("conv_gemm", &TEX_BINDINGS);

/// `conv_gemm` reading X and the packed filter through textures (`WTEX`).
pub(crate) const GEMM_TEX2: Kernel = GEMM.entry(
    "conv_gemm",
    &[
        (8, Access::Texture),
        (9, Access::Texture),
        (2, Access::Read),
        (3, Access::Write),
    ],
);

/// `conv_gemm_rows`: the same product, a row segment of pixels per thread (stride 1 along the
/// width, one window of taps).
pub(crate) const GEMM_ROWS: Kernel = GEMM.entry("conv_gemm_rows", &GEMM_BINDINGS);

/// `conv_gemm_rows` reading X through a texture.
pub(crate) const GEMM_ROWS_TEX: Kernel = GEMM.entry("conv_gemm_rows", &TEX_BINDINGS);

/// `conv_gemm_tiled`: the same product tiled through workgroup memory (64 pixels x all the
/// window's channels per workgroup; the GPU-shaped variant).
pub(crate) const GEMM_TILED: Kernel = GEMM.entry("conv_gemm_tiled", &GEMM_BINDINGS);

/// Pixels per workgroup of `conv_gemm_tiled`.
const TILED_PIXELS: usize = 64;

/// `conv_lanes`: the same product with lanes on output channels and the shared activations
/// loaded once per subgroup (stride 1 along the width, one window of taps, up to two input
/// vec4s).
/// Its own module, since it needs subgroup operations.
pub(crate) const LANES: Kernel = Kernel::new::<GemmParams>(
    "conv_lanes.wgsl",
    concat!(
        include_str!("../../../shaders/conv_lanes.wgsl"),
        include_str!("../../../shaders/conv_gemm_io.wgsl")
    ),
    "conv_lanes",
    &LANES_BINDINGS,
);

/// The bindings of `conv_lanes`: X's floats, the bias, Z, the filter's window, Z again (`zf`,
/// the pooled output with `POOL`), X's vec4s.
const LANES_BINDINGS: [(u32, Access); 6] = [
    (5, Access::Read),
    (2, Access::Read),
    (3, Access::Write),
    (4, Access::Window),
    (6, Access::Write),
    (7, Access::Read),
];

/// The same, X's vec4s from its texture.
const LANES_TEX_BINDINGS: [(u32, Access); 6] = replacing(LANES_BINDINGS, 5, (8, Access::Texture));

/// `conv_lanes` reading its input rows through X's texture (`TEX`; see `texture.rs`).
pub(crate) const LANES_TEX: Kernel = LANES.entry("conv_lanes", &LANES_TEX_BINDINGS);

/// Output channel vec4s per thread (at most).
pub(crate) const GEMM_CB4: usize = 8;
/// Accumulators per thread (pixels x channel vec4s) that the default pixel count aims at: each
/// weight read from the window feeds that many pixels. Measured on lavapipe (cifar, deep, stem):
/// 4 pixels x 8 vec4 is slower than 8 x 8, and 16 x 8 spills; 16 x 2 is best for 8 channels.
const GEMM_ACC: usize = 64;
/// Most pixels per thread.
const GEMM_PX_MAX: usize = 16;

/// A convolution in the GEMM kernel's terms: `X (m, in_h, in_w, k_real)` with channels read as
/// vec4s, `f_h x f_w` taps at stride `(s_h, s_w)` shifted by `(top, left)`, giving
/// `(m, out_h, out_w, c_out)`, written where `base`'s output map says (the identity, or one
/// stride phase of a larger output); the filter's taps come from the weights as `taps` says.
/// All sizes fit the kernel's `u32` / `i32` params.
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
    pub taps: TapMap,
    /// The params every dispatch shares.
    pub base: GemmParams,
}

/// Where the packed filter's taps come from (`shaders/conv_pack.wgsl`): tap `(a, b)` of the
/// product is tap `(dh0 + a * dh_step, dw0 + b * dw_step)` of the weights `(f_h, f_w, c_in,
/// c_out)`, read with input and output channels swapped when `transpose` (the data gradient).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TapMap {
    pub dh0: i32,
    pub dh_step: i32,
    pub dw0: i32,
    pub dw_step: i32,
    pub transpose: bool,
}

impl TapMap {
    /// Every tap as it is (the forward pass).
    const AS_IS: Self = Self {
        dh0: 0,
        dh_step: 1,
        dw0: 0,
        dw_step: 1,
        transpose: false,
    };
}

/// One stride phase along one axis of the data gradient: the outputs `r, r + s, ...` (`len`
/// of them), reached by the `taps` filter taps `first, first + s, ...`; `shift` is the
/// product's padding (`top` or `left`; negative shifts the other way).
#[derive(Debug, Clone, Copy)]
struct AxisPhase {
    r: u32,
    first: u32,
    taps: u32,
    shift: i64,
    len: u32,
}

/// The stride phases along an axis of `len` outputs of the data gradient of a convolution with
/// stride `s`, `f` taps and padding `pad` before: `dA[h]` for `h = r + s*h'` sums
/// `W[first + j*s] * dZ[q + h' - j]` over `j < taps`, `q = (r + pad - first) / s`, which is a
/// stride-1 product over `dZ` with the sub-filter flipped and padding `taps - 1 - q`.
fn axis_phases(len: u32, s: u32, f: u32, pad: u32) -> impl Iterator<Item = AxisPhase> {
    (0..s.min(len)).map(move |r| {
        let shifted = u64::from(r) + u64::from(pad);
        let first = (shifted % u64::from(s)) as u32;
        let taps = if first < f {
            (f - first).div_ceil(s)
        } else {
            0
        };
        let q = (shifted - u64::from(first)) / u64::from(s);
        AxisPhase {
            r,
            first,
            taps,
            shift: i64::from(taps) - 1 - q as i64,
            len: (len - r).div_ceil(s),
        }
    })
}

/// The output map of a product that writes its `(out_h, out_w)` grid as it is.
fn identity_out(out_h: u32, out_w: u32) -> GemmParams {
    GemmParams {
        o_h: out_h,
        o_w: out_w,
        o_sh: 1,
        o_sw: 1,
        ..GemmParams::default()
    }
}

impl GemmShape {
    /// A product over `input` `(in_h, in_w, k_real)` giving `output` `(out_h, out_w, c_out)`
    /// with filter `(f_h, f_w)`; `out_map`: the output-map fields of the params.
    #[allow(clippy::too_many_arguments)]
    fn new(
        m: usize,
        (in_h, in_w, k_real): (u32, u32, u32),
        (out_h, out_w, c_out): (u32, u32, u32),
        (f_h, f_w): (u32, u32),
        (s_h, s_w): (u32, u32),
        (top, left): (i64, i64),
        taps: TapMap,
        out_map: GemmParams,
    ) -> Option<Self> {
        let base = GemmParams {
            in_h,
            in_w,
            c4_in: k_real.div_ceil(4),
            out_h,
            out_w,
            c_out,
            f_w,
            s_h,
            s_w,
            top: i32::try_from(top).ok()?,
            left: i32::try_from(left).ok()?,
            ..out_map
        };
        let u = |v: u32| v as usize;
        Some(Self {
            m,
            in_h: u(in_h),
            in_w: u(in_w),
            k_real: u(k_real),
            out_h: u(out_h),
            out_w: u(out_w),
            c_out: u(c_out),
            f_h: u(f_h),
            f_w: u(f_w),
            s_h: u(s_h),
            s_w: u(s_w),
            top,
            left,
            taps,
            base,
        })
    }

    /// The forward pass of `g`.
    pub fn forward(g: &ConvGeometry, k: &KernelGeometry) -> Option<Self> {
        Self::new(
            g.m,
            (k.in_h, k.in_w, k.c_in),
            (k.out_h, k.out_w, k.c_out),
            (k.f_h, k.f_w),
            (k.s_h, k.s_w),
            (i64::from(k.top), i64::from(k.left)),
            TapMap::AS_IS,
            identity_out(k.out_h, k.out_w),
        )
    }

    /// `dA_prev` of `g` as stride-1 forward convolutions over `dZ` with the filter flipped: one
    /// at stride 1, else one per stride phase (`axis_phases`) that some tap reaches, each
    /// writing every `s_h`-th row and `s_w`-th column of `dA_prev`. Also whether some phase is
    /// reached by no tap (its outputs are zero, and no product writes them).
    pub fn backward_data(g: &ConvGeometry, k: &KernelGeometry) -> Option<(Vec<Self>, bool)> {
        let rows: Vec<AxisPhase> = axis_phases(k.in_h, k.s_h, k.f_h, k.top).collect();
        let cols: Vec<AxisPhase> = axis_phases(k.in_w, k.s_w, k.f_w, k.left).collect();
        let mut products = Vec::new();
        let mut unreached = false;
        for ph in &rows {
            for pw in &cols {
                if ph.taps == 0 || pw.taps == 0 {
                    unreached = true;
                    continue;
                }
                let i = |v: u32| i32::try_from(v).ok();
                let taps = TapMap {
                    dh0: i(ph.first + (ph.taps - 1) * k.s_h)?,
                    dh_step: -i(k.s_h)?,
                    dw0: i(pw.first + (pw.taps - 1) * k.s_w)?,
                    dw_step: -i(k.s_w)?,
                    transpose: true,
                };
                let out_map = GemmParams {
                    o_h: k.in_h,
                    o_w: k.in_w,
                    o_sh: k.s_h,
                    o_sw: k.s_w,
                    o_rh: ph.r,
                    o_rw: pw.r,
                    ..GemmParams::default()
                };
                products.push(Self::new(
                    g.m,
                    (k.out_h, k.out_w, k.c_out),
                    (ph.len, pw.len, k.c_in),
                    (ph.taps, pw.taps),
                    (1, 1),
                    (ph.shift, pw.shift),
                    taps,
                    out_map,
                )?);
            }
        }
        Some((products, unreached))
    }

    pub fn c4_in(&self) -> usize {
        self.k_real.div_ceil(4)
    }

    pub fn taps(&self) -> usize {
        self.f_h * self.f_w
    }

    /// The tuning key: everything but the batch size.
    fn tune_key(&self) -> TuneKey {
        let v = [
            self.in_h,
            self.in_w,
            self.k_real,
            self.out_h,
            self.out_w,
            self.c_out,
            self.f_h,
            self.f_w,
            self.s_h,
            self.s_w,
        ];
        let mut image = [0i64; 12];
        for (slot, v) in image.iter_mut().zip(v) {
            *slot = v as i64;
        }
        image[10] = self.top;
        image[11] = self.left;
        TuneKey {
            op: TunedOp::Gemm,
            image,
        }
    }
}

/// What the convolution's last step adds: the bias, and the fused ReLU.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Epilogue<'a> {
    pub bias: Option<&'a Tensor>,
    pub relu: bool,
}

/// How the filter is cut into uniform windows for `conv_gemm`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windows {
    pub cb4: usize,
    pub taps_per_window: usize,
    pub n_cb: usize,
    pub n_tc: usize,
}

impl Windows {
    /// Whether the weights `(f_h, f_w, c_in, c_out)` of `s` are already its packed filter:
    /// their taps as they are, one window of taps and one block of channels, no channel padding
    /// (multiples of 4). The packed rows `(t * c_in + k) * CB4 + q` are then the weights' own
    /// HWIO order, and the kernels bind the weights as the window (every tensor carries a
    /// window's slack at its end, which they never read): no packing dispatch.
    pub fn holds_weights_as_they_are(&self, s: &GemmShape) -> bool {
        s.taps == TapMap::AS_IS
            && self.n_cb == 1
            && self.n_tc == 1
            && s.k_real.is_multiple_of(4)
            && self.cb4 * 4 == s.c_out
    }
}

/// vec4s in one uniform window.
pub(crate) const WINDOW_VEC4: usize = (WINDOW_BYTES / 16) as usize;

/// Widest filter `conv_gemm_rows` takes (its loads and FMAs are unrolled over the width).
const ROWS_FW_MAX: usize = 8;

/// Most input vec4s `conv_gemm_rows` takes (its loads and FMAs are unrolled over them): 2 covers
/// the data gradient of a first layer with up to 8 output channels.
const ROWS_C4_MAX: usize = 2;

/// Most taps the channel-lane kernels take (`conv_lanes`, `conv_filter_lanes`): they keep taps x
/// channels weights or sums per lane and unroll the taps.
pub(crate) const LANES_TAPS_MAX: usize = 25;

/// Most pixels in a segment of `conv_lanes` with `POOL` (the rows of one or two windows: one
/// accumulator per pixel): the widest window it takes, and two side by side up to this width.
pub(crate) const POOL_W_MAX: usize = 16;

/// Most weights per lane `conv_lanes` keeps in registers (taps x input channels, padded to 4):
/// 25 taps of 4 channels, or 12 of 8 (the data gradient of a layer with 8 output channels, the
/// second layer of seed 001's network).
const LANES_WEIGHTS_MAX: usize = 100;

/// Most input channels `conv_lanes` takes with 2 or 4 output channels per lane.
pub(crate) const LANES_K_MAX: usize = 32;

/// Most multiply-adds a segment of `conv_lanes` unrolls (taps x input channels x pixels x
/// output channels per lane): a bound on its code and compile time.
pub(crate) const LANES_LINES_MAX: usize = 4096;

/// A variant of the GEMM kernel: `Pixels(px, input)`, `conv_gemm` with `px` pixels per thread
/// spread over the grid; `Rows(r, input)`, `conv_gemm_rows` with `r` adjacent pixels of a row
/// per thread; `Lanes(r, sg, cpl, input)`, `conv_lanes` with `r` adjacent pixels of a row per
/// workgroup, subgroups of `sg` lanes and `cpl` output channels per lane, reading its rows from
/// X's buffer or texture; `Tiled`, `conv_gemm_tiled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GemmVariant {
    Pixels(usize, Input),
    Rows(usize, Input),
    Lanes(usize, u32, u32, Input),
    Tiled,
}

/// Where `conv_gemm` and `conv_gemm_rows` read X: its buffer, or the texture it is copied
/// into (`texture.rs`); `Textures`: `conv_gemm` reads the packed filter through a texture
/// too, all taps in one dispatch per block of output channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    Buffer,
    Texture,
    Textures,
}

impl Input {
    /// `conv_gemm` reading X (and the filter) from here.
    fn pixels_kernel(self) -> &'static Kernel {
        match self {
            Input::Buffer => &GEMM,
            Input::Texture => &GEMM_TEX,
            Input::Textures => &GEMM_TEX2,
        }
    }

    /// `conv_gemm_rows` reading X from here (never offered with the filter's texture: its taps
    /// take one window).
    fn rows_kernel(self) -> &'static Kernel {
        match self {
            Input::Buffer => &GEMM_ROWS,
            Input::Texture | Input::Textures => &GEMM_ROWS_TEX,
        }
    }

    /// `conv_lanes` reading its rows of X from here (X's buffer, or its texture).
    fn lanes_kernel(self) -> &'static Kernel {
        match self {
            Input::Buffer => &LANES,
            Input::Texture | Input::Textures => &LANES_TEX,
        }
    }
}

/// Pixels per thread to try for `cb4` channel vec4s, default first.
pub(crate) fn pixel_variants(cb4: usize) -> Vec<usize> {
    let default = (GEMM_ACC / cb4.max(1)).clamp(1, GEMM_PX_MAX);
    let mut v = vec![default];
    v.extend(
        [4, 8, 16]
            .into_iter()
            .filter(|&px| px != default && px * cb4 <= GEMM_ACC),
    );
    v
}

/// Whether `conv_gemm_rows` sums `s` in vec3s: one output vec4 (`win.cb4 == 1`) of 3 channels,
/// as an RGB input's data gradient has.
fn rows_v3(s: &GemmShape, win: &Windows) -> bool {
    win.cb4 == 1 && s.c_out == 3
}

/// The override constants of `conv_gemm.wgsl`: channel vec4s per thread, pixels per thread
/// (`conv_gemm`), row-segment pixels, filter width, input vec4s and whether the one output vec4
/// holds 3 channels (`conv_gemm_rows`; 1, 1, 1 and no for the other kernels, which do not read
/// them), and the subgroup size that spreads the window reads
/// of `conv_gemm` and `conv_gemm_rows` (`Quirks::spread_windows`); `input`: where those two
/// read X.
fn gemm_consts(
    cb4: u32,
    px: u32,
    (r, fw, c4_in, v3): (u32, u32, u32, bool),
    spread: Option<u32>,
    input: Input,
) -> [(&'static str, u32); 10] {
    [
        ("CB4", cb4),
        ("PX", px),
        ("R", r),
        ("FW", fw),
        ("C4IN", c4_in),
        ("V3", u32::from(v3)),
        ("SG", spread.unwrap_or(1)),
        ("SGON", u32::from(spread.is_some())),
        ("TEX", u32::from(input != Input::Buffer)),
        ("WTEX", u32::from(input == Input::Textures)),
    ]
}

/// The override constants of `conv_lanes.wgsl` for an `f_h x f_w` filter over `k` input
/// channels giving an `(out_h, out_w)` grid, `cb4` channel vec4s (`cpl` channels a lane), `r`
/// pixels per segment, subgroups of `sg`; `pool`: the max pool of `(h, w)` windows with an
/// output grid `(pool_oh, pool_ow)` (`POOL`, with `cpl` 1), `r / w` windows side by side; `s0`:
/// the input read as vec4s, each row's first float `s0` floats into its vec4 (`V4`; see
/// [`vec4_rows`]), through X's texture where `tex` (`TEX`, with `s0` only).
#[allow(clippy::too_many_arguments)]
fn lanes_consts(
    (f_h, f_w, k): (usize, usize, usize),
    (out_h, out_w): (usize, usize),
    cb4: u32,
    r: u32,
    sg: u32,
    pool: Option<[u32; 4]>,
    s0: Option<u32>,
    cpl: u32,
    tex: bool,
) -> [(&'static str, u32); 19] {
    let u = |v: usize| v as u32;
    let [ph, pw, poh, pow] = pool.unwrap_or([1, r, 1, 1]);
    let mv = s0.map_or(0, |s0| row_vec4s(s0, (r, u(f_w), u(k)), sg));
    [
        ("WG", 4 * cb4 / cpl),
        ("CB4", cb4),
        ("R", r),
        ("FW", u(f_w)),
        ("FH", u(f_h)),
        ("K", u(k)),
        ("SG", sg),
        ("POOL", u32::from(pool.is_some())),
        ("PH", ph),
        ("PW", pw),
        ("OH", u(out_h)),
        ("OW", u(out_w)),
        ("POH", poh),
        ("POW", pow),
        ("V4", u32::from(s0.is_some())),
        ("S0", s0.unwrap_or(0)),
        ("MV", mv),
        ("CPL", cpl),
        ("TEX", u32::from(tex && s0.is_some())),
    ]
}

/// Vec4s per lane and row of taps when the lanes of subgroups of `sg` read a row's `(r + f_w -
/// 1) * k` floats as vec4s, the first float `s0` floats into its vec4 (`MV` of `conv_lanes.wgsl`
/// and `conv_filter_lanes.wgsl`).
pub(crate) fn row_vec4s(s0: u32, (r, f_w, k): (u32, u32, u32), sg: u32) -> u32 {
    (s0 + (r + f_w - 1) * k).div_ceil(4).div_ceil(sg)
}

/// How many floats into its vec4 a row of taps' first float sits (`S0` of the channel-lane
/// kernels) when the rows start at multiples of 4 floats and each segment's first column does
/// too before the `left` columns of padding: `(-left * k) mod 4`.
pub(crate) fn row_shift(left: i64, k: usize) -> u32 {
    (-(left * k as i64)).rem_euclid(4) as u32
}

/// The widest segment of at most `2 * sg` pixels of `k` channels that is whole vec4s.
fn vec4_segment(k: usize, sg: u32) -> usize {
    (1..=2 * sg as usize)
        .rev()
        .find(|&r| (r * k).is_multiple_of(4))
        .unwrap_or(1)
}

/// Where `conv_lanes` can read its input rows as whole vec4s: the rows (`in_w * k` floats) and
/// the segments' first columns (multiples of `step`) start at multiples of 4 floats; then
/// every row's first float sits [`row_shift`] floats into its vec4 (returned).
fn vec4_rows(s: &GemmShape, step: usize) -> Option<u32> {
    let k = s.k_real;
    ((s.in_w * k).is_multiple_of(4) && (step * k).is_multiple_of(4)).then(|| row_shift(s.left, k))
}

/// Pixels per segment of `conv_lanes` for a filter `f_w` wide and subgroups of `sg`: the
/// segment's input columns (r + f_w - 1) fill two loads per lane.
fn lanes_pixels(f_w: usize, sg: u32) -> usize {
    (2 * sg as usize).saturating_sub(f_w - 1).max(1)
}

/// Pixels per row segment to try with `conv_gemm_rows`, for `cb4` channel vec4s.
fn row_variants(cb4: usize) -> impl Iterator<Item = usize> {
    [4, 8, 16]
        .into_iter()
        .filter(move |&r| r * cb4 <= GEMM_ACC / 2)
}

/// The variants to try for `s` cut into `win`, the default first; `subgroup`: the adapter's
/// fixed subgroup size, if it has subgroup operations; `lanes_first`: the channel-lane kernel
/// as the default where it applies (`Gpu::lanes_first`); `texture`: where X fits a texture,
/// whether `conv_gemm` reading it there comes before the same kernel reading the buffer (the
/// rows kernel reads it there too, after the buffer's), and whether the packed filter fits one
/// too.
fn variants(
    s: &GemmShape,
    win: &Windows,
    subgroup: Option<u32>,
    lanes_first: bool,
    texture: Option<(bool, bool)>,
) -> Vec<GemmVariant> {
    let pixels = pixel_variants(win.cb4);
    let mut v: Vec<GemmVariant> = pixels
        .iter()
        .map(|&px| GemmVariant::Pixels(px, Input::Buffer))
        .collect();
    // The default pixel count reading X through a texture, where X fits one, and where the
    // filter's taps take several windows, reading the filter through a texture too (all taps
    // in one dispatch): first where `texture` says so (`Quirks::texture_first`).
    if let Some((first, filter_fits)) = texture {
        let at = if first { 0 } else { v.len() };
        v.insert(at, GemmVariant::Pixels(pixels[0], Input::Texture));
        if win.n_tc > 1 && filter_fits {
            v.insert(at, GemmVariant::Pixels(pixels[0], Input::Textures));
        }
    }
    // Tiles through workgroup memory: thread groups of CB4 threads split the 64 pixels.
    if TILED_PIXELS.is_multiple_of(win.cb4) {
        v.push(GemmVariant::Tiled);
    }
    // Row segments of pixels, for every kernel below: stride 1 along the width, all taps in one
    // window, the filter's width unrolled. The rows kernel (few input vec4s) sums in conv_gemm's
    // order (bitwise the same result, so the tuned choice never changes a number). The
    // one-channel lanes take more input vec4s while the weights fit: seed 001's second layer's
    // data gradient (16 input channels, 8 outputs) took `conv_gemm` at 0.43-0.50 ms on
    // lavapipe, about twice its forward; the lanes take it at 0.22-0.29 ms, about the
    // forward's time (alternated runs).
    let segments = s.s_w == 1 && win.n_tc == 1 && s.f_w <= ROWS_FW_MAX;
    if segments && s.c4_in() <= ROWS_C4_MAX {
        v.extend(row_variants(win.cb4).map(|r| GemmVariant::Rows(r, Input::Buffer)));
        if texture.is_some() {
            v.extend(row_variants(win.cb4).map(|r| GemmVariant::Rows(r, Input::Texture)));
        }
    }
    if segments {
        // Channel lanes: a workgroup is whole subgroups, its filter slice fits the registers.
        if let Some(sg) = subgroup.filter(|&sg| (4 * win.cb4).is_multiple_of(sg as usize)) {
            let r = lanes_pixels(s.f_w, sg);
            if s.taps() <= LANES_TAPS_MAX
                && s.taps() * s.c4_in() * 4 <= LANES_WEIGHTS_MAX
                && s.taps() * s.k_real * r <= LANES_LINES_MAX
            {
                offer_lanes(
                    &mut v,
                    [GemmVariant::Lanes(r, sg, 1, Input::Buffer)],
                    lanes_first,
                );
                // Where the input rows are whole vec4s but r pixels of them are not: segments
                // that are, so that the rows load as vec4s (about half the cost of floats on
                // lavapipe; more pixels of the last segment may fall past the row).
                let r4 = vec4_segment(s.k_real, sg);
                if vec4_rows(s, r).is_none()
                    && vec4_rows(s, r4).is_some()
                    && s.taps() * s.k_real * r4 <= LANES_LINES_MAX
                {
                    let at = if lanes_first { 1 } else { v.len() };
                    v.insert(at, GemmVariant::Lanes(r4, sg, 1, Input::Buffer));
                }
            }
        }
    }
    // Channel lanes with 4 or 2 output channels per lane (more input channels, more outputs):
    // each broadcast input value feeds 4 or 2 FMAs, and fewer subgroups load the same rows.
    // The default on CPU adapters where the one-channel kernel does not apply (they won every
    // timing there: cifar's forward 21 -> 10 ms on lavapipe).
    if let Some(sg) = subgroup {
        if segments && s.k_real <= LANES_K_MAX {
            let wide: Vec<GemmVariant> = [(4, 4), (4, 8), (2, 4), (2, 8)]
                .into_iter()
                .filter(|&(cpl, r)| {
                    let wg = 4 * win.cb4 as u32 / cpl;
                    wg >= sg
                        && wg.is_multiple_of(sg)
                        && s.taps() * s.k_real * r * cpl as usize <= LANES_LINES_MAX
                })
                .map(|(cpl, r)| GemmVariant::Lanes(r, sg, cpl, Input::Buffer))
                .collect();
            let one = v.iter().any(|c| matches!(c, GemmVariant::Lanes(..)));
            offer_lanes(&mut v, wide, lanes_first && !one);
        }
    }
    // Each channel-lane variant whose rows are vec4s also reading them through X's texture,
    // where X fits one: ahead of its twin where `texture` says so.
    match texture {
        Some((first, _)) => v
            .into_iter()
            .flat_map(|c| match c {
                GemmVariant::Lanes(r, sg, cpl, _) if vec4_rows(s, r).is_some() => {
                    let t = GemmVariant::Lanes(r, sg, cpl, Input::Texture);
                    if first {
                        vec![t, c]
                    } else {
                        vec![c, t]
                    }
                }
                c => vec![c],
            })
            .collect(),
        None => v,
    }
}

impl Gpu {
    /// The windows of `s`, if the filter slice of one tap fits a window and the packed filter
    /// fits a storage binding.
    pub(crate) fn windows(&self, s: &GemmShape) -> Option<Windows> {
        let per_k = s.c4_in() * 4;
        let cb4 = GEMM_CB4.min(s.c_out.div_ceil(4)).min(WINDOW_VEC4 / per_k);
        if cb4 == 0 {
            return None;
        }
        let taps_per_window = WINDOW_VEC4 / (per_k * cb4);
        let win = Windows {
            cb4,
            taps_per_window,
            n_cb: s.c_out.div_ceil(4 * cb4),
            n_tc: s.taps().div_ceil(taps_per_window),
        };
        let packed_bytes = (win.n_cb * win.n_tc) as u64 * WINDOW_BYTES;
        (packed_bytes + 16 <= self.limits().binding_bytes).then_some(win)
    }

    /// `out = conv(x, w)` and the `epilogue` for `s`: `x.x` as it is (`k_real` channels) for
    /// the channel-lane kernel, its copy with channels padded to a multiple of 4 for the others
    /// (made on first use). Returns whether the variant that ran reads the padded copy.
    pub(crate) fn gemm_conv(
        &self,
        s: &GemmShape,
        win: &Windows,
        x: &Padded,
        w: &Tensor,
        epilogue: Epilogue,
        out: &Tensor,
    ) -> Result<bool> {
        let packed = self.pack_filter(w, s, win)?;
        let run = |v: GemmVariant| {
            let input = match v {
                GemmVariant::Lanes(..) => x.x.clone(),
                _ => x.x4(self)?,
            };
            self.gemm_launches(s, win, v, &input, epilogue, &packed, out)
        };
        let macs = (s.m * s.out_h * s.out_w * s.c_out * s.taps() * s.k_real) as f64;
        let filter_fits = self
            .texture_rows(win.n_cb * win.n_tc * WINDOW_VEC4)
            .is_some();
        let texture = self
            .texture_rows(s.m * s.in_h * s.in_w * s.c4_in())
            .map(|_| (self.quirks().texture_first, filter_fits));
        let candidates = variants(s, win, self.quirks().subgroup, self.lanes_first(), texture);
        let v = self.pick(s.tune_key(), macs, &candidates, run)?;
        run(v)?;
        Ok(!matches!(v, GemmVariant::Lanes(..)))
    }

    /// The subgroup size `conv_lanes` runs with for `s` cut into `win` when it also takes a
    /// max pool of windows `pool_w` wide (`POOL`): `None` where the channel-lane kernel does not
    /// apply to `s`, is not the adapter's default (`Gpu::lanes_first`), or the window is wider
    /// than [`POOL_W_MAX`].
    pub(crate) fn lanes_pool_subgroup(
        &self,
        s: &GemmShape,
        win: &Windows,
        pool_w: usize,
    ) -> Option<u32> {
        if !self.lanes_first() || pool_w > POOL_W_MAX {
            return None;
        }
        variants(s, win, self.quirks().subgroup, true, None)
            .into_iter()
            .find_map(|v| match v {
                GemmVariant::Lanes(_, sg, 1, _) => Some(sg),
                _ => None,
            })
    }

    /// `conv_lanes` with subgroups of `sg` (see [`Gpu::lanes_pool_subgroup`]) and the max pool
    /// `pool` (first maximum, windows that do not overlap and lie inside the output) of the
    /// ReLU'd outputs (`POOL`): the pooled values into `out` and each window's first maximum
    /// (its tap's row-major index in the window) into `first`, both `pool`'s output shape; the
    /// bias is added and the ReLU applied before the pool.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm_conv_pool(
        &self,
        s: &GemmShape,
        win: &Windows,
        sg: u32,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        pool: &PoolGeometry,
        out: &Tensor,
        first: &Tensor,
    ) -> Result<()> {
        let packed = self.pack_filter(w, s, win)?;
        // Two windows side by side per segment where they touch and pair up: fewer loads per
        // pixel (the segment's input columns overlap by the filter's width less one).
        let nw =
            if pool.s_w == pool.f_w && pool.out_w.is_multiple_of(2) && 2 * pool.f_w <= POOL_W_MAX {
                2
            } else {
                1
            };
        let filter = (s.f_h, s.f_w, s.k_real);
        let (ph, pw) = (pool.f_h as u32, pool.f_w as u32);
        let pool_grid = [ph, pw, count(pool.out_h)?, count(pool.out_w)?];
        let grid = (s.out_h, s.out_w);
        // Segments start at multiples of (r / pw) * pool_sw columns.
        let s0 = vec4_rows(s, nw as usize * pool.s_w);
        let r = nw * pw;
        // The rows through X's texture, where they are vec4s, on CPU adapters (not autotuned;
        // seed 001's first layer, alternated calls on lavapipe, the copy included: 4.15 ->
        // 3.44 ms).
        let tex = s0.is_some() && self.texture_untuned(x);
        let consts = lanes_consts(
            filter,
            grid,
            win.cb4 as u32,
            r,
            sg,
            Some(pool_grid),
            s0,
            1,
            tex,
        );
        let groups = pool.out_h * pool.out_w / nw as usize;
        for cb in 0..win.n_cb {
            let base = GemmParams {
                tap_begin: 0,
                tap_end: count(s.taps())?,
                c_begin: count(cb * win.cb4 * 4)?,
                accumulate: 0,
                has_bias: 1,
                relu: 1,
                pool_sh: count(pool.s_h)?,
                pool_sw: count(pool.s_w)?,
                ..s.base
            };
            let offset = (cb * win.n_tc) as u64 * WINDOW_BYTES;
            let launch = |texture: Option<&InputTexture>| {
                let args = [
                    Arg::Batched(x),
                    Arg::Whole(bias),
                    Arg::Batched(out),
                    Arg::Window(&packed, offset),
                    Arg::Batched(first),
                    match texture {
                        Some(t) => Arg::Texture(x, t),
                        None => Arg::Batched(x),
                    },
                ];
                let input = if texture.is_some() {
                    Input::Texture
                } else {
                    Input::Buffer
                };
                self.launch(input.lanes_kernel(), &consts, s.m, &args, |chunk| {
                    let x_off = match texture {
                        // The texture holds all of X: the chunk's first image's offset.
                        Some(_) => count(chunk.first * s.in_h * s.in_w * s.k_real)?,
                        None => chunk.offset(0),
                    };
                    let p = GemmParams {
                        total: count(chunk.images * groups)?,
                        x_off,
                        z_off: chunk.offset(2),
                        ..base
                    };
                    // A workgroup per group of windows; no inner loops (all unrolled).
                    Ok((p, self.window_workgroups(u64::from(p.total), 0)))
                })
            };
            if tex {
                self.with_texture(x, 0, |t| launch(Some(t)))?;
            } else {
                launch(None)?;
            }
        }
        Ok(())
    }

    /// The dispatches of one convolution with variant `variant`.
    #[allow(clippy::too_many_arguments)]
    fn gemm_launches(
        &self,
        s: &GemmShape,
        win: &Windows,
        variant: GemmVariant,
        x: &Tensor,
        epilogue: Epilogue,
        packed: &Tensor,
        out: &Tensor,
    ) -> Result<()> {
        // Both entry points are in one file, unrolled with every constant: the other entry's
        // get 1.
        let cb4 = win.cb4 as u32;
        let spread = self.quirks().spread_windows;
        let (kernel, consts) = match variant {
            GemmVariant::Pixels(px, input) => (
                input.pixels_kernel(),
                gemm_consts(cb4, px as u32, (1, 1, 1, false), spread, input).to_vec(),
            ),
            GemmVariant::Rows(r, input) => (
                input.rows_kernel(),
                gemm_consts(
                    cb4,
                    1,
                    (r as u32, s.f_w as u32, s.c4_in() as u32, rows_v3(s, win)),
                    spread,
                    input,
                )
                .to_vec(),
            ),
            GemmVariant::Lanes(r, sg, cpl, input) => {
                let filter = (s.f_h, s.f_w, s.k_real);
                (
                    input.lanes_kernel(),
                    lanes_consts(
                        filter,
                        (s.out_h, s.out_w),
                        cb4,
                        r as u32,
                        sg,
                        None,
                        vec4_rows(s, r),
                        cpl,
                        input != Input::Buffer,
                    )
                    .to_vec(),
                )
            }
            GemmVariant::Tiled => (
                &GEMM_TILED,
                gemm_consts(cb4, 1, (1, 1, 1, false), None, Input::Buffer).to_vec(),
            ),
        };
        let dispatches = |texture: Option<&InputTexture>, filter: Option<&InputTexture>| {
            self.gemm_dispatches(
                s,
                win,
                variant,
                (kernel, &consts),
                (x, texture),
                (packed, filter),
                epilogue,
                out,
            )
        };
        match variant {
            GemmVariant::Pixels(_, Input::Texture)
            | GemmVariant::Rows(_, Input::Texture)
            | GemmVariant::Lanes(.., Input::Texture) => {
                self.with_texture(x, 0, |t| dispatches(Some(t), None))
            }
            GemmVariant::Pixels(_, Input::Textures) => self.with_texture(x, 0, |t| {
                self.with_texture(packed, 1, |f| dispatches(Some(t), Some(f)))
            }),
            _ => dispatches(None, None),
        }
    }

    /// The dispatches of [`Gpu::gemm_launches`]: `kernel` with `consts`, reading X from
    /// `texture` and the packed filter from `filter` where given (then all taps in one
    /// dispatch per block of output channels).
    #[allow(clippy::too_many_arguments)]
    fn gemm_dispatches(
        &self,
        s: &GemmShape,
        win: &Windows,
        variant: GemmVariant,
        (kernel, consts): (&Kernel, &[(&'static str, u32)]),
        (x, texture): (&Tensor, Option<&InputTexture>),
        (packed, filter): (&Tensor, Option<&InputTexture>),
        epilogue: Epilogue,
        out: &Tensor,
    ) -> Result<()> {
        let per_image = s.out_h * s.out_w;
        let aux = epilogue.bias.unwrap_or(packed);
        // Through the filter's texture, all taps in one dispatch (one "window" of all taps).
        let (n_tc, per_window) = match filter {
            Some(_) => (1, s.taps()),
            None => (win.n_tc, win.taps_per_window),
        };
        for cb in 0..win.n_cb {
            for tc in 0..n_tc {
                let tap_begin = tc * per_window;
                let tap_end = (tap_begin + per_window).min(s.taps());
                let offset = ((cb * win.n_tc + tc) as u64) * WINDOW_BYTES;
                let base = GemmParams {
                    tap_begin: tap_begin as u32,
                    tap_end: tap_end as u32,
                    c_begin: (cb * win.cb4 * 4) as u32,
                    accumulate: u32::from(tc > 0),
                    has_bias: u32::from(epilogue.bias.is_some() && tc + 1 == n_tc),
                    relu: u32::from(epilogue.relu && tc + 1 == n_tc),
                    tpw: win.taps_per_window as u32,
                    win0: (cb * win.n_tc) as u32,
                    ..s.base
                };
                // The channel-lane kernel binds the texture last, after its float view of X.
                let lanes = matches!(variant, GemmVariant::Lanes(..));
                let x_arg = match texture {
                    Some(t) => Arg::Texture(x, t),
                    None => Arg::Batched(x),
                };
                let input = if lanes { Arg::Batched(x) } else { x_arg };
                let mut args = match filter {
                    Some(f) => vec![input, Arg::Texture(packed, f), Arg::Whole(aux)],
                    None => vec![input, Arg::Whole(aux)],
                };
                let z_arg = args.len();
                args.push(Arg::Batched(out));
                if filter.is_none() {
                    args.push(Arg::Window(packed, offset));
                }
                if lanes {
                    args.push(Arg::Batched(out)); // zf, unwritten without POOL
                    args.push(x_arg); // xs4, or X's texture
                }
                // Floats of X per pixel: the channel-lane kernel reads them unpadded.
                let per_pixel = if lanes { s.k_real } else { s.c4_in() * 4 };
                self.launch(kernel, consts, s.m, &args, |chunk| {
                    let x_off = match texture {
                        // The texture holds all of X: the chunk's first image's offset.
                        Some(_) => count(chunk.first * s.in_h * s.in_w * per_pixel)?,
                        None => chunk.offset(0),
                    };
                    let p = GemmParams {
                        total: count(chunk.images * per_image)?,
                        x_off,
                        z_off: chunk.offset(z_arg),
                        ..base
                    };
                    // (workgroups that cover the work, loop iterations per workgroup item)
                    let taps = (tap_end - tap_begin) as u64;
                    let c4_in = s.c4_in() as u64;
                    let segs = |r: usize| (chunk.images * s.out_h * s.out_w.div_ceil(r)) as u64;
                    let (needed, inner) = match variant {
                        GemmVariant::Pixels(px, _) => (
                            u64::from(p.total).div_ceil(px as u64).div_ceil(WG),
                            taps * (1 + c4_in),
                        ),
                        GemmVariant::Rows(r, _) => {
                            (segs(r).div_ceil(WG), s.f_h as u64 * (1 + c4_in))
                        }
                        // Per tile: each tap, each step of 4 input vec4s: 4 loads, up to
                        // 2 filter rows, up to 4 vec4s of FMAs.
                        GemmVariant::Tiled => (
                            u64::from(p.total).div_ceil(TILED_PIXELS as u64),
                            taps * (1 + 11 * c4_in.div_ceil(4)),
                        ),
                        // A workgroup per segment; no inner loops (all unrolled).
                        GemmVariant::Lanes(r, ..) => (segs(r), 0),
                    };
                    Ok((p, self.window_workgroups(needed, inner)))
                })?;
            }
        }
        Ok(())
    }
}

/// Every specialisation of `conv_gemm.wgsl` the ops can ask for.
#[cfg(test)]
pub(crate) fn specializations() -> Vec<(Kernel, Vec<(&'static str, u32)>)> {
    let mut out = Vec::new();
    for cb4 in 1..=GEMM_CB4 {
        for spread in [None, Some(4), Some(8), Some(32)] {
            for px in pixel_variants(cb4) {
                for input in [Input::Buffer, Input::Texture, Input::Textures] {
                    let consts =
                        gemm_consts(cb4 as u32, px as u32, (1, 1, 1, false), spread, input);
                    out.push((*input.pixels_kernel(), consts.to_vec()));
                }
            }
            for r in row_variants(cb4) {
                for fw in [1, 2, 3, 4, 7] {
                    for c4_in in 1..=ROWS_C4_MAX as u32 {
                        for input in [Input::Buffer, Input::Texture] {
                            for v3 in [false, true].into_iter().take(1 + usize::from(cb4 == 1)) {
                                let rows = (r as u32, fw, c4_in, v3);
                                let consts = gemm_consts(cb4 as u32, 1, rows, spread, input);
                                out.push((*input.rows_kernel(), consts.to_vec()));
                            }
                        }
                    }
                }
            }
        }
        if TILED_PIXELS.is_multiple_of(cb4) {
            out.push((
                GEMM_TILED,
                gemm_consts(cb4 as u32, 1, (1, 1, 1, false), None, Input::Buffer).to_vec(),
            ));
        }
        for filter in [
            (4, 4, 3),
            (3, 3, 1),
            (1, 1, 4),
            (5, 5, 2),
            (2, 7, 3),
            (2, 2, 8),
            (3, 3, 6),
            (3, 3, 16),
            (2, 2, 16),
        ] {
            for sg in [4, 8, 16, 32] {
                if (4 * cb4).is_multiple_of(sg as usize) {
                    let lanes = |r: u32, pool, s0, cpl: usize, tex: bool| {
                        let cpl = cpl as u32;
                        let consts =
                            lanes_consts(filter, (16, 16), cb4 as u32, r, sg, pool, s0, cpl, tex);
                        (if tex { LANES_TEX } else { LANES }, consts.to_vec())
                    };
                    let r = lanes_pixels(filter.1, sg) as u32;
                    out.push(lanes(r, None, None, 1, false));
                    // The vec4-row segments (the default's where its r pixels are whole
                    // vec4s, else the widest that are).
                    let r4 = vec4_segment(filter.2, sg) as u32;
                    for s0 in [0, 1, 2, 3] {
                        for r in [r, r4] {
                            out.push(lanes(r, None, Some(s0), 1, false));
                            out.push(lanes(r, None, Some(s0), 1, true));
                        }
                    }
                    // 2 and 4 output channels per lane.
                    for cpl in [2, 4] {
                        if (4 * cb4 / cpl).is_multiple_of(sg as usize)
                            && 4 * cb4 >= cpl * sg as usize
                        {
                            for s0 in [None, Some(2)] {
                                out.push(lanes(4, None, s0, cpl, false));
                                if s0.is_some() {
                                    out.push(lanes(4, None, s0, cpl, true));
                                }
                            }
                        }
                    }
                    for (ph, pw, nw) in [(8, 8, 2), (8, 8, 1), (4, 4, 2), (2, 2, 1), (3, 2, 2)] {
                        for s0 in [None, Some(0), Some(1), Some(3)] {
                            out.push(lanes(pw * nw, Some([ph, pw, 2, 2]), s0, 1, false));
                            if s0.is_some() {
                                out.push(lanes(pw * nw, Some([ph, pw, 2, 2]), s0, 1, true));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}
