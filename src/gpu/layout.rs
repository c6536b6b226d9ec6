//! Layout conversions for arrays shaped the cs231n way; kernel: `shaders/layout.wgsl`.

use super::kernels::{simple, uniform, Access, Kernel};
use super::launch::count;
use super::{Arg, Gpu, Tensor};
use crate::error::Result;

uniform! {
    /// The uniform block of `layout.wgsl`.
    struct PermuteParams {
        total: u32,
        d1: u32,
        d2: u32,
        d3: u32,
        s0: u32,
        s1: u32,
        s2: u32,
        s3: u32,
    }
}

pub(crate) const PERMUTE: Kernel = Kernel::new::<PermuteParams>(
    "layout.wgsl",
    concat!(
        include_str!("../../shaders/layout.wgsl"),
        include_str!("../../shaders/stream.wgsl")
    ),
    "permute4",
    simple(1, 1),
)
.streamed();

uniform! {
    /// The uniform block of `transpose.wgsl`.
    struct TransposeParams {
        s: [u32; 4],
        t: [u32; 4],
        total: u32,
        pad0: u32,
        pad1: u32,
        pad2: u32,
    }
}

pub(crate) const TRANSPOSE: Kernel = Kernel::new::<TransposeParams>(
    "transpose.wgsl",
    concat!(
        include_str!("../../shaders/transpose.wgsl"),
        include_str!("../../shaders/stream.wgsl")
    ),
    "transpose4x4",
    simple(1, 1),
)
.streamed();

/// Four output elements per thread, when the last output axis is a multiple of 4.
pub(crate) const PERMUTE_VEC4: Kernel =
    PERMUTE.entry("permute4_vec4", &[(1, Access::Read), (3, Access::Write)]);

impl Gpu {
    /// `y[..] = x` with its axes in the order `axes` (`y.shape[k] = x.shape[axes[k]]`).
    fn permute4(&self, x: &Tensor, axes: [usize; 4], what: &'static str) -> Result<Tensor> {
        self.check_owner(x)?;
        let d = x.dims4(what)?;
        let strides = [d[1] * d[2] * d[3], d[2] * d[3], d[3], 1];
        let out = axes.map(|a| d[a]);
        let y = self.alloc(what, &out, false)?;
        // The output axis that is the input's last: a 4 x 4 tile transpose when it moves and
        // both last axes come in fours (every other stride is then a multiple of 4 too).
        if let Some(ax) = (0..3).find(|&k| axes[k] == 3) {
            if out[3] % 4 == 0 && out[ax] % 4 == 0 {
                let t = [out[1] * out[2] * out[3], out[2] * out[3], out[3], 1];
                let u = |v: usize| count(v);
                let p = TransposeParams {
                    s: [
                        u(strides[axes[0]])?,
                        u(strides[axes[1]])?,
                        u(strides[axes[2]])?,
                        u(strides[axes[3]])?,
                    ],
                    t: [u(t[0])?, u(t[1])?, u(t[2])?, u(t[3])?],
                    total: u(x.len() / 16)?,
                    ..TransposeParams::default()
                };
                // Tile extents along output axes 1..3 (axis ax and the last one in fours).
                let tile = |k: usize| u(out[k] / if k == 3 || k == ax { 4 } else { 1 });
                let consts = [
                    ("E1", tile(1)?),
                    ("E2", tile(2)?),
                    ("E3", tile(3)?),
                    ("AX", ax as u32),
                ];
                self.launch(
                    &TRANSPOSE,
                    &consts,
                    1,
                    &[Arg::Whole(x), Arg::Whole(&y)],
                    |_| Ok((p, self.stream_workgroups(u64::from(p.total), 0))),
                )?;
                return Ok(y);
            }
        }
        let four = out[3] % 4 == 0;
        let p = PermuteParams {
            total: count(if four { x.len() / 4 } else { x.len() })?,
            d1: count(out[1])?,
            d2: count(out[2])?,
            d3: count(out[3])?,
            s0: count(strides[axes[0]])?,
            s1: count(strides[axes[1]])?,
            s2: count(strides[axes[2]])?,
            s3: count(strides[axes[3]])?,
        };
        let kernel = if four { &PERMUTE_VEC4 } else { &PERMUTE };
        self.launch(kernel, &[], 1, &[Arg::Whole(x), Arg::Whole(&y)], |_| {
            Ok((p, self.stream_workgroups(u64::from(p.total), 0)))
        })?;
        Ok(y)
    }

    /// `(N, C, H, W)` (cs231n's activations) to `(N, H, W, C)`.
    ///
    /// # Errors
    /// [`crate::Error::Rank`], [`crate::Error::ForeignTensor`], [`crate::Error::TooLarge`]
    /// (the tensor is bound whole).
    pub fn nchw_to_nhwc(&self, x: &Tensor) -> Result<Tensor> {
        self.permute4(x, [0, 2, 3, 1], "nchw_to_nhwc input")
    }

    /// `(N, H, W, C)` to `(N, C, H, W)`.
    ///
    /// # Errors
    /// As [`Gpu::nchw_to_nhwc`].
    pub fn nhwc_to_nchw(&self, x: &Tensor) -> Result<Tensor> {
        self.permute4(x, [0, 3, 1, 2], "nhwc_to_nchw input")
    }

    /// cs231n's conv weights `(F, C, HH, WW)` to ours `(HH, WW, C, F)`.
    ///
    /// # Errors
    /// As [`Gpu::nchw_to_nhwc`].
    pub fn oihw_to_hwio(&self, w: &Tensor) -> Result<Tensor> {
        self.permute4(w, [2, 3, 1, 0], "oihw_to_hwio weights")
    }

    /// Our conv weights `(HH, WW, C, F)` to cs231n's `(F, C, HH, WW)`.
    ///
    /// # Errors
    /// As [`Gpu::nchw_to_nhwc`].
    pub fn hwio_to_oihw(&self, w: &Tensor) -> Result<Tensor> {
        self.permute4(w, [3, 2, 0, 1], "hwio_to_oihw weights")
    }
}
