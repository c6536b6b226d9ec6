//! Packing for the fast paths: the filter into uniform windows (`shaders/conv_pack.wgsl`), and
//! activations into whole vec4s of channels (`shaders/pad_channels.wgsl`). Both write pooled
//! temporaries that are given back as soon as the op is recorded.

use super::super::kernels::{simple, uniform, Access, Kernel};
use super::super::launch::{count, WG};
use super::super::{Arg, Gpu, Tensor};
use super::gemm::{GemmShape, Windows, WINDOW_VEC4};
use crate::error::Result;

uniform! {
    /// The uniform block of `conv_pack.wgsl`.
    struct PackParams {
        total: u32,
        rows: u32,
        c4_in: u32,
        k_real: u32,
        c_real: u32,
        k_stride: u32,
        c_stride: u32,
        tap_stride: u32,
        taps: u32,
        taps_per_window: u32,
        windows_per_cb: u32,
        sub_fw: u32,
        f_w_src: u32,
        dh0: i32,
        dh_step: i32,
        dw0: i32,
        dw_step: i32,
    }
}

uniform! {
    /// The uniform block of `pad_channels.wgsl`.
    struct PadParams {
        total: u32,
        c4: u32,
        c_src: u32,
        x_off: u32,
        y_off: u32,
    }
}

pub(crate) const PACK: Kernel = Kernel::new::<PackParams>(
    "conv_pack.wgsl",
    include_str!("../../../shaders/conv_pack.wgsl"),
    "pack",
    &[(2, Access::Read), (3, Access::Write)],
);

pub(crate) const PAD_CHANNELS: Kernel = Kernel::new::<PadParams>(
    "pad_channels.wgsl",
    concat!(
        include_str!("../../../shaders/pad_channels.wgsl"),
        include_str!("../../../shaders/stream.wgsl")
    ),
    "pad_channels",
    simple(1, 1),
)
.streamed();

/// A tensor and its copy with channels padded to 4, made on first use: the kernels that read
/// vec4s of channels ask for the copy, the channel-lane kernels read the tensor itself.
pub(crate) struct Padded<'a> {
    pub x: &'a Tensor,
    x4: std::cell::RefCell<Option<Tensor>>,
}

impl<'a> Padded<'a> {
    /// `x`, with its padded copy if the caller has it already.
    pub fn new(x: &'a Tensor, x4: Option<&Tensor>) -> Self {
        Self {
            x,
            x4: std::cell::RefCell::new(x4.cloned()),
        }
    }

    /// The padded copy, made now if it was not.
    pub fn x4(&self, gpu: &Gpu) -> Result<Tensor> {
        if let Some(x4) = &*self.x4.borrow() {
            return Ok(x4.clone());
        }
        let x4 = gpu.pad_channels(self.x)?;
        *self.x4.borrow_mut() = Some(x4.clone());
        Ok(x4)
    }

    /// The padded copy, if one was made or given.
    pub fn into_x4(self) -> Option<Tensor> {
        self.x4.into_inner()
    }
}

impl Gpu {
    /// `x` with its channels (last axis) padded with zeros to a multiple of 4 (a pooled
    /// temporary), or `x` itself.
    pub(crate) fn pad_channels(&self, x: &Tensor) -> Result<Tensor> {
        let [m, h, w, c] = x.dims4("pad_channels input")?;
        if c % 4 == 0 {
            return Ok(x.clone());
        }
        let c4 = c.div_ceil(4);
        let y = self.alloc("channels padded to 4", &[m, h, w, c4 * 4], false)?;
        let per_image = h * w;
        self.launch(
            &PAD_CHANNELS,
            &[],
            m,
            &[Arg::Batched(x), Arg::Batched(&y)],
            |chunk| {
                let p = PadParams {
                    total: count(chunk.images * per_image)?,
                    c4: count(c4)?,
                    c_src: count(c)?,
                    x_off: chunk.offset(0),
                    y_off: chunk.offset(1),
                };
                Ok((p, self.stream_workgroups(u64::from(p.total), 5 * c4 as u64)))
            },
        )?;
        Ok(y)
    }

    /// Packs `w` `(f_h, f_w, c_in, c_out)` into uniform windows for `s` (a pooled temporary),
    /// its taps taken as `s.taps` says (as they are, flipped and transposed for the data
    /// gradient, or one stride phase of those); `w` itself where it already is the packed
    /// filter ([`Windows::holds_weights_as_they_are`]: no dispatch).
    pub(crate) fn pack_filter(&self, w: &Tensor, s: &GemmShape, win: &Windows) -> Result<Tensor> {
        if win.holds_weights_as_they_are(s) {
            return Ok(w.clone());
        }
        let [_, f_w_src, c_in, c_out] = w.dims4("weights")?;
        let windows = win.n_cb * win.n_tc;
        let packed = self.alloc("packed weights", &[windows * WINDOW_VEC4 * 4], false)?;
        // The rows (4 * cb4 floats each) of a window the kernels read: its taps' (every
        // window's, the last one's missing taps as zeros); the rest of the 64 KiB stays
        // unwritten.
        let rows = win.taps_per_window.min(s.taps()) * s.c4_in() * 4;
        let map = s.taps;
        let (k_stride, c_stride) = if map.transpose {
            (1, c_out)
        } else {
            (c_out, 1)
        };
        let p = PackParams {
            total: count(windows * rows)?,
            rows: count(rows)?,
            c4_in: count(s.c4_in())?,
            k_real: count(s.k_real)?,
            c_real: count(s.c_out)?,
            k_stride: count(k_stride)?,
            c_stride: count(c_stride)?,
            tap_stride: count(c_in * c_out)?,
            taps: count(s.taps())?,
            taps_per_window: count(win.taps_per_window)?,
            windows_per_cb: count(win.n_tc)?,
            sub_fw: count(s.f_w)?,
            f_w_src: count(f_w_src)?,
            dh0: map.dh0,
            dh_step: map.dh_step,
            dw0: map.dw0,
            dw_step: map.dw_step,
        };
        self.launch(
            &PACK,
            &[("CB4", win.cb4 as u32)],
            1,
            &[Arg::Whole(w), Arg::Whole(&packed)],
            |_| Ok((p, u64::from(p.total).div_ceil(WG))),
        )?;
        Ok(packed)
    }
}

/// Every specialisation of the packing kernels the ops can ask for.
#[cfg(test)]
pub(crate) fn specializations() -> Vec<(Kernel, Vec<(&'static str, u32)>)> {
    let mut out = vec![(PAD_CHANNELS, vec![])];
    for cb4 in 1..=super::gemm::GEMM_CB4 {
        out.push((PACK, vec![("CB4", cb4 as u32)]));
    }
    out
}
