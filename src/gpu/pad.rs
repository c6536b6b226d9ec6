//! `zero_pad` on the GPU; kernel: `shaders/zero_pad.wgsl`.

use super::launch::{simple, to_u32, WG};
use super::{Arg, Gpu, Kernel, Tensor};
use crate::error::Result;
use crate::params::Padding;

const ZERO_PAD: Kernel = Kernel {
    name: "zero_pad.wgsl",
    source: include_str!("../../shaders/zero_pad.wgsl"),
    entry: "zero_pad",
    bindings: simple(1, 1),
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    in_h: u32,
    in_w: u32,
    c: u32,
    out_h: u32,
    out_w: u32,
    top: u32,
    left: u32,
    x_off: u32,
    y_off: u32,
}

impl Gpu {
    /// Zeros around height and width: `(m, n_H, n_W, n_C)` ->
    /// `(m, n_H + top + bottom, n_W + left + right, n_C)`. `pad` is the seeds' integer (all four
    /// sides) or a [`Padding`].
    ///
    /// ```no_run
    /// use wgpu_cnn::{Gpu, Padding};
    /// let gpu = Gpu::new()?;
    /// let x = gpu.upload(&ndarray::Array4::<f32>::ones((4, 3, 3, 2)))?;
    /// assert_eq!(gpu.zero_pad(&x, 2)?.shape(), &[4, 7, 7, 2]);
    /// assert_eq!(gpu.zero_pad(&x, Padding::explicit(1, 2, 0, 0))?.shape(), &[4, 6, 3, 2]);
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::Rank`] unless `x` has 4 axes, [`crate::Error::ForeignTensor`],
    /// [`crate::Error::TooLarge`] when the result exceeds the device's limits.
    pub fn zero_pad(&self, x: &Tensor, pad: impl Into<Padding>) -> Result<Tensor> {
        let pad = pad.into();
        self.check_owner(x)?;
        let [m, in_h, in_w, c] = x.dims4("zero_pad input")?;
        let out_h = in_h + pad.top + pad.bottom;
        let out_w = in_w + pad.left + pad.right;
        let y = self.empty("zero_pad output", &[m, out_h, out_w, c])?;
        let per_image = out_h * out_w * c;
        self.launch(
            &ZERO_PAD,
            m,
            &[Arg::Batched(x), Arg::Batched(&y)],
            |chunk| {
                let total = to_u32(chunk.images * per_image)?;
                let params = Params {
                    total,
                    in_h: to_u32(in_h)?,
                    in_w: to_u32(in_w)?,
                    c: to_u32(c)?,
                    out_h: to_u32(out_h)?,
                    out_w: to_u32(out_w)?,
                    top: to_u32(pad.top)?,
                    left: to_u32(pad.left)?,
                    x_off: chunk.offset(0),
                    y_off: chunk.offset(1),
                };
                Ok((params, u64::from(total).div_ceil(WG)))
            },
        )?;
        Ok(y)
    }
}
