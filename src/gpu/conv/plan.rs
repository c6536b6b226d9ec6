//! The plan of one convolution: its sizes in the kernels' 32-bit terms, checked once, and which
//! path each of its three products takes. `conv_forward` makes the plan; the cache carries it to
//! `conv_backward`.
//!
//! Paths, fastest first:
//! * forward: the implicit GEMM (`gemm.rs`) when the filter slice of one tap fits a uniform
//!   window, the packed filter fits a binding, and the input's channel-padded copy (when
//!   channels are not a multiple of 4) fits the device; else the direct kernel (`direct.rs`).
//! * backward data: the implicit GEMM over `dZ` with the flipped filter, same conditions; at a
//!   stride above 1 one product per stride phase (the rows `r, r + s_h, ...` and likewise the
//!   columns of `dA_prev`, each a stride-1 product with every `s`-th tap); else the direct
//!   kernel.
//! * backward filter: windows of `dZ` rows (`filter.rs`) when the whole channel-padded input
//!   fits one binding; else the direct kernels. A small filter (fewer (tap, channel) lanes than
//!   one workgroup) is summed instead over runs of pixels in parallel, then the runs in order
//!   (`conv_filter_split`, `filter_sum`), when `dZ` and the partial sums fit a binding.
//!
//! A temporary of ours (a padded copy, a packed filter) never makes a valid input fail: when one
//! would not fit, the plan takes the direct path, which needs none.

use super::super::device::WINDOW_BYTES;
use super::super::launch::{to_u32, WG};
use super::super::Gpu;
use super::gemm::{GemmShape, Windows};
use crate::error::Result;
use crate::params::ConvGeometry;

/// The sizes of a convolution as the kernels take them. A stride is irrelevant (and set to 1)
/// along an axis with one output, so a huge stride with a small output is no error.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KernelGeometry {
    pub m: usize,
    pub in_h: u32,
    pub in_w: u32,
    pub c_in: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub c_out: u32,
    pub f_h: u32,
    pub f_w: u32,
    pub s_h: u32,
    pub s_w: u32,
    pub top: u32,
    pub left: u32,
}

impl KernelGeometry {
    /// # Errors
    /// [`crate::Error::IndexRange`] naming the size, its value, the limit and the op's shapes.
    pub fn new(g: &ConvGeometry) -> Result<Self> {
        let (input, output) = (g.input_shape(), g.output_shape());
        let u = |what, v| to_u32(what, v, &input, &output);
        Ok(Self {
            m: g.m,
            in_h: u("input height", g.in_h)?,
            in_w: u("input width", g.in_w)?,
            c_in: u("input channels", g.c_in)?,
            out_h: u("output height", g.out_h)?,
            out_w: u("output width", g.out_w)?,
            c_out: u("output channels", g.c_out)?,
            f_h: u("filter height", g.f_h)?,
            f_w: u("filter width", g.f_w)?,
            s_h: u("stride (height)", if g.out_h == 1 { 1 } else { g.s_h })?,
            s_w: u("stride (width)", if g.out_w == 1 { 1 } else { g.s_w })?,
            top: u("top padding", g.pad.top)?,
            left: u("left padding", g.pad.left)?,
        })
    }

    pub fn per_image_out(&self) -> usize {
        self.out_h as usize * self.out_w as usize * self.c_out as usize
    }

    pub fn per_image_in(&self) -> usize {
        self.in_h as usize * self.in_w as usize * self.c_in as usize
    }
}

/// How the forward pass or the backward data pass runs.
#[derive(Debug, Clone)]
pub(crate) enum Path {
    /// Implicit-GEMM products that together write the output: one, or one per stride phase
    /// of a strided data gradient; `fill`: some outputs no product writes (phases that no tap
    /// reaches, when the stride passes the filter), zeroed first.
    Gemm {
        products: Vec<(GemmShape, Windows)>,
        fill: bool,
    },
    Direct,
}

/// How the filter gradient runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FilterPath {
    /// Windows of this many `dZ` rows.
    Windowed(usize),
    Direct,
}

/// The plan of one convolution.
#[derive(Debug, Clone)]
pub(crate) struct ConvPlan {
    pub geometry: ConvGeometry,
    pub kernel: KernelGeometry,
    pub forward: Path,
    pub backward_data: Path,
    pub backward_filter: FilterPath,
}

impl Gpu {
    /// The plan of `g` on this device.
    pub(crate) fn conv_plan(&self, g: &ConvGeometry) -> Result<ConvPlan> {
        let kernel = KernelGeometry::new(g)?;
        let forward = self.gemm_path(GemmShape::forward(g, &kernel).map(|s| (vec![s], false)));
        let backward_data = self.gemm_path(GemmShape::backward_data(g, &kernel));
        Ok(ConvPlan {
            geometry: *g,
            kernel,
            forward,
            backward_data,
            backward_filter: self.filter_path(g),
        })
    }

    /// Whether a tensor of `shape` can be allocated and bound image by image.
    pub(super) fn temporary_fits(&self, shape: [usize; 4]) -> bool {
        let l = self.limits();
        // The same check `alloc` makes, then one image against the binding limit.
        self.check_buffer_size("temporary", &shape)
            .is_ok_and(|b| b / shape[0].max(1) as u64 + l.offset_alignment + 16 <= l.binding_bytes)
    }

    /// The implicit GEMM for the products `s` (and whether outputs need zeroing first), if it
    /// applies to every one of them (see the module docs).
    fn gemm_path(&self, s: Option<(Vec<GemmShape>, bool)>) -> Path {
        let Some((shapes, fill)) = s.filter(|_| self.quirks().uniform_windows) else {
            return Path::Direct;
        };
        let mut products = Vec::with_capacity(shapes.len());
        for s in shapes {
            let padded = [s.m, s.in_h, s.in_w, s.c4_in() * 4];
            match self.windows(&s) {
                Some(win) if s.k_real % 4 == 0 || self.temporary_fits(padded) => {
                    products.push((s, win));
                }
                _ => return Path::Direct,
            }
        }
        Path::Gemm { products, fill }
    }

    /// Windows of `dZ` rows for the filter gradient, if the whole batch of `A_prev` (channels
    /// padded to 4) fits one binding, `dZ`'s padded copy fits, and one aligned row fits a window.
    fn filter_path(&self, g: &ConvGeometry) -> FilterPath {
        let l = self.limits();
        let c4_out = g.c_out.div_ceil(4);
        let row_bytes = (c4_out * 16) as u64;
        let unit = (l.uniform_alignment / gcd(l.uniform_alignment, row_bytes)) as usize;
        let pixels = (WINDOW_BYTES / 16) as usize / c4_out / unit * unit;
        let x4 = [g.m, g.in_h, g.in_w, g.c_in.div_ceil(4) * 4];
        let x4_bytes = x4.iter().try_fold(4u64, |a, &d| a.checked_mul(d as u64));
        let fits = x4_bytes.is_some_and(|b| b + l.offset_alignment + 16 <= l.binding_bytes)
            && self.temporary_fits(x4)
            && self.temporary_fits([g.m, g.out_h, g.out_w, c4_out * 4]);
        let small_pads = [g.pad.top, g.pad.left]
            .iter()
            .all(|&p| p <= i32::MAX as usize);
        let lanes_fit =
            small_pads && (g.f_h * g.f_w * g.c_in.div_ceil(4) * c4_out) as u64 * WG < 1 << 31;
        if pixels > 0 && fits && lanes_fit && self.quirks().uniform_windows {
            FilterPath::Windowed(pixels)
        } else {
            FilterPath::Direct
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
