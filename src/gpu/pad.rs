//! `zero_pad` on the GPU; kernel: `shaders/zero_pad.wgsl`.

use super::kernels::{simple, uniform, Kernel};
use super::launch::{count, to_u32, WG};
use super::{Arg, Gpu, Tensor};
#[cfg(doc)]
use crate::error::Error;
use crate::error::Result;
use crate::params::{padded_extent, Padding};

uniform! {
    /// The uniform block of `zero_pad.wgsl`.
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
}

pub(crate) const ZERO_PAD: Kernel = Kernel::new::<Params>(
    "zero_pad.wgsl",
    include_str!("../../shaders/zero_pad.wgsl"),
    "zero_pad",
    simple(1, 1),
);

/// The padded shape of `input`, or [`Error::SizeOverflow`] naming the sizes.
fn padded_shape(input: [usize; 4], pad: Padding) -> Result<[usize; 4]> {
    let [m, in_h, in_w, c] = input;
    let h = "padded height n_H + top + bottom";
    let w = "padded width n_W + left + right";
    Ok([
        m,
        padded_extent(h, in_h, pad.top, pad.bottom, &input)?,
        padded_extent(w, in_w, pad.left, pad.right, &input)?,
        c,
    ])
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
    /// [`Error::Rank`] unless `x` has 4 axes, [`Error::ForeignTensor`], [`Error::SizeOverflow`]
    /// when a padded size overflows `usize`, [`Error::TooLarge`] when the result exceeds the
    /// device's limits.
    pub fn zero_pad(&self, x: &Tensor, pad: impl Into<Padding>) -> Result<Tensor> {
        let pad = pad.into();
        let shape = padded_shape(x.dims4("zero_pad input")?, pad)?;
        let mut y = self.alloc("zero_pad output", &shape, false)?;
        self.zero_pad_into(x, pad, &mut y)?;
        Ok(y)
    }

    /// [`Gpu::zero_pad`] into an existing tensor `y` of the padded shape.
    ///
    /// # Errors
    /// As [`Gpu::zero_pad`], and [`Error::ShapeMismatch`] when `y` is not the padded shape.
    pub fn zero_pad_into(&self, x: &Tensor, pad: impl Into<Padding>, y: &mut Tensor) -> Result<()> {
        let pad = pad.into();
        self.check_owner(x)?;
        self.check_owner(y)?;
        let input = x.dims4("zero_pad input")?;
        let shape = padded_shape(input, pad)?;
        y.expect_shape("zero_pad output", &shape)?;
        let [m, in_h, in_w, c] = input;
        let [_, out_h, out_w, _] = shape;
        let u = |what, v| to_u32(what, v, &input, &shape);
        let base = Params {
            in_h: u("input height", in_h)?,
            in_w: u("input width", in_w)?,
            c: u("channels", c)?,
            out_h: u("padded height", out_h)?,
            out_w: u("padded width", out_w)?,
            top: u("top padding", pad.top)?,
            left: u("left padding", pad.left)?,
            ..Params::default()
        };
        let per_image = out_h * out_w * c;
        self.launch(
            &ZERO_PAD,
            &[],
            m,
            &[Arg::Batched(x), Arg::Batched(y)],
            |chunk| {
                let p = Params {
                    total: count(chunk.images * per_image)?,
                    x_off: chunk.offset(0),
                    y_off: chunk.offset(1),
                    ..base
                };
                Ok((p, u64::from(p.total).div_ceil(WG)))
            },
        )
    }
}
