//! ReLU on the GPU; kernel: `shaders/relu.wgsl`.

use super::kernels::{simple, uniform, Access, Kernel};
use super::launch::count;
use super::{Arg, Gpu, Tensor};
use crate::error::Result;

uniform! {
    /// The uniform block of `relu.wgsl`.
    struct ReluParams {
        total: u32,
        x_off: u32,
        g_off: u32,
        y_off: u32,
    }
}

pub(crate) const FORWARD: Kernel = Kernel::new::<ReluParams>(
    "relu.wgsl",
    concat!(
        include_str!("../../shaders/relu.wgsl"),
        include_str!("../../shaders/stream.wgsl")
    ),
    "relu_forward",
    &[(1, Access::Read), (3, Access::Write)],
)
.streamed();

pub(crate) const BACKWARD: Kernel = FORWARD.entry("relu_backward", simple(2, 1));

const R: Access = Access::Read;
const W: Access = Access::Write;

/// Four elements at a time, when every image holds a multiple of 4 (vec4-aligned chunks).
pub(crate) const FORWARD4: Kernel = FORWARD.entry("relu_forward4", &[(4, R), (6, W)]);
pub(crate) const BACKWARD4: Kernel = FORWARD.entry("relu_backward4", &[(4, R), (5, R), (6, W)]);

/// What `relu_forward` keeps for `relu_backward`: the input.
#[derive(Debug, Clone)]
pub struct ReluCache {
    x: Tensor,
}

impl ReluCache {
    /// The cache of a ReLU whose input had the signs of `x`.
    pub(crate) fn of(x: Tensor) -> Self {
        Self { x }
    }

    /// The input of the forward pass.
    pub fn x(&self) -> &Tensor {
        &self.x
    }
}

/// The leading axis (the batch) and the elements per item, for chunked element-wise launches.
fn batch(t: &Tensor) -> (usize, usize) {
    let m = t.shape().first().copied().unwrap_or(1).max(1);
    (m, t.len() / m)
}

impl Gpu {
    /// `y = max(0, x)`, element by element, any shape (NaN stays NaN).
    ///
    /// ```no_run
    /// let gpu = wgpu_cnn::Gpu::new()?;
    /// let x = gpu.upload(&ndarray::arr1(&[-1.0f32, 0.0, 2.0]))?;
    /// let (y, _cache) = gpu.relu_forward(&x)?;
    /// assert_eq!(gpu.download::<ndarray::Ix1>(&y)?, ndarray::arr1(&[0.0, 0.0, 2.0]));
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`crate::Error::ForeignTensor`], [`crate::Error::TooLarge`].
    pub fn relu_forward(&self, x: &Tensor) -> Result<(Tensor, ReluCache)> {
        let mut y = self.alloc("relu output", x.shape(), false)?;
        let cache = self.relu_forward_into(x, &mut y)?;
        Ok((y, cache))
    }

    /// [`Gpu::relu_forward`] into `y` (shaped like `x`, another buffer).
    ///
    /// # Errors
    /// As [`Gpu::relu_forward`], [`crate::Error::ShapeMismatch`] when `y` is not shaped like `x`,
    /// [`crate::Error::Aliased`] when `y` is `x`.
    pub fn relu_forward_into(&self, x: &Tensor, y: &mut Tensor) -> Result<ReluCache> {
        self.check_owner(x)?;
        self.check_owner(y)?;
        y.expect_shape("relu output", x.shape())?;
        let (m, per) = batch(x);
        let lanes = if per % 4 == 0 { 4 } else { 1 };
        let kernel = if lanes == 4 { &FORWARD4 } else { &FORWARD };
        self.launch(
            kernel,
            &[],
            m,
            &[Arg::Batched(x), Arg::Batched(y)],
            |chunk| {
                let p = ReluParams {
                    total: count(chunk.images * per / lanes)?,
                    x_off: chunk.offset(0) / lanes as u32,
                    g_off: 0,
                    y_off: chunk.offset(1) / lanes as u32,
                };
                Ok((p, self.stream_workgroups(u64::from(p.total), 0)))
            },
        )?;
        Ok(ReluCache { x: x.clone() })
    }

    /// `dx = dout * (x > 0)`, shaped like `x`.
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] when `dout` is not shaped like the forward input,
    /// [`crate::Error::ForeignTensor`].
    pub fn relu_backward(&self, dout: &Tensor, cache: &ReluCache) -> Result<Tensor> {
        let mut dx = self.alloc("relu dx", cache.x.shape(), false)?;
        self.relu_backward_into(dout, cache, &mut dx)?;
        Ok(dx)
    }

    /// [`Gpu::relu_backward`] into `dx` (shaped like `x`, another buffer than `dout` and `x`).
    ///
    /// # Errors
    /// As [`Gpu::relu_backward`].
    pub fn relu_backward_into(
        &self,
        dout: &Tensor,
        cache: &ReluCache,
        dx: &mut Tensor,
    ) -> Result<()> {
        for t in [dout, &cache.x, &*dx] {
            self.check_owner(t)?;
        }
        dout.expect_shape("relu_backward dout must be shaped like x", cache.x.shape())?;
        dx.expect_shape("relu_backward dx", cache.x.shape())?;
        let (m, per) = batch(&cache.x);
        let lanes = if per % 4 == 0 { 4 } else { 1 };
        let kernel = if lanes == 4 { &BACKWARD4 } else { &BACKWARD };
        self.launch(
            kernel,
            &[],
            m,
            &[Arg::Batched(&cache.x), Arg::Batched(dout), Arg::Batched(dx)],
            |chunk| {
                let l = lanes as u32;
                let p = ReluParams {
                    total: count(chunk.images * per / lanes)?,
                    x_off: chunk.offset(0) / l,
                    g_off: chunk.offset(1) / l,
                    y_off: chunk.offset(2) / l,
                };
                Ok((p, self.stream_workgroups(u64::from(p.total), 0)))
            },
        )
    }
}
