//! Optimizers that update parameters in place on the GPU; kernel: `shaders/optim.wgsl`. The
//! formulas are cs231n's (`crate::layers` has them); the state (velocity, moments, step count)
//! lives on the device, one set per parameter tensor, made on its first step.

use super::kernels::{uniform, Access, Kernel};
use super::launch::count;
use super::{Arg, Gpu, Tensor};
use crate::error::Result;
use crate::layers::{AdamConfig, MomentumConfig, SgdConfig};

uniform! {
    /// The uniform block of `optim.wgsl`.
    struct OptimParams {
        total: u32,
        lr: f32,
        weight_decay: f32,
        momentum: f32,
        beta2: f32,
        eps: f32,
        c1: f32,
        c2: f32,
    }
}

const RW: Access = Access::Write;

pub(crate) const SGD: Kernel = Kernel::new::<OptimParams>(
    "optim.wgsl",
    concat!(
        include_str!("../../shaders/optim.wgsl"),
        include_str!("../../shaders/stream.wgsl")
    ),
    "sgd",
    &[(1, Access::Read), (2, RW)],
)
.streamed();

pub(crate) const MOMENTUM: Kernel =
    SGD.entry("sgd_momentum", &[(1, Access::Read), (2, RW), (3, RW)]);

pub(crate) const ADAM: Kernel = SGD.entry("adam", &[(1, Access::Read), (2, RW), (3, RW), (4, RW)]);

/// Four parameters at a time (when the count is a multiple of 4).
pub(crate) const SGD4: Kernel = SGD.entry("sgd4", &[(5, Access::Read), (6, RW)]);
pub(crate) const MOMENTUM4: Kernel =
    SGD.entry("sgd_momentum4", &[(5, Access::Read), (6, RW), (7, RW)]);
pub(crate) const ADAM4: Kernel =
    SGD.entry("adam4", &[(5, Access::Read), (6, RW), (7, RW), (8, RW)]);

/// The kernel (scalar or four at a time) and its item count for `n` parameters.
fn pick(
    n: usize,
    scalar: &'static Kernel,
    four: &'static Kernel,
) -> Result<(&'static Kernel, u32)> {
    if n.is_multiple_of(4) {
        Ok((four, count(n / 4)?))
    } else {
        Ok((scalar, count(n)?))
    }
}

/// Checks that `w` and `dw` live on `gpu` and have the same shape.
fn check(gpu: &Gpu, w: &Tensor, dw: &Tensor) -> Result<()> {
    gpu.check_owner(w)?;
    gpu.check_owner(dw)?;
    dw.expect_shape("the gradient must be shaped like its parameter", w.shape())
}

/// Plain SGD: `w -= lr * (dw + weight_decay * w)`.
#[derive(Debug, Clone, Copy)]
pub struct Sgd {
    /// Learning rate and weight decay.
    pub config: SgdConfig,
}

impl Sgd {
    /// SGD with learning rate `lr`.
    pub const fn new(lr: f64) -> Self {
        Self {
            config: SgdConfig::new(lr),
        }
    }

    /// One step on `w` from its gradient `dw` (recorded, in order with the ops around it).
    ///
    /// # Errors
    /// [`crate::Error::ShapeMismatch`] when `dw` is not shaped like `w`,
    /// [`crate::Error::ForeignTensor`], [`crate::Error::Setting`] for a setting out of range
    /// ([`SgdConfig::validate`] and its twins).
    pub fn step(&self, gpu: &Gpu, w: &mut Tensor, dw: &Tensor) -> Result<()> {
        self.config.validate()?;
        check(gpu, w, dw)?;
        let (kernel, total) = pick(w.len(), &SGD, &SGD4)?;
        let p = OptimParams {
            total,
            lr: self.config.lr as f32,
            weight_decay: self.config.weight_decay as f32,
            ..OptimParams::default()
        };
        gpu.launch(kernel, &[], 1, &[Arg::Whole(dw), Arg::Whole(w)], |_| {
            Ok((p, gpu.stream_workgroups(u64::from(p.total), 0)))
        })
    }
}

/// Per-parameter state: the parameter it belongs to (held, so its buffer is never recycled
/// under us), the state tensors, and the step count.
#[derive(Debug)]
struct Slot {
    param: Tensor,
    first: Tensor,
    second: Option<Tensor>,
    t: u64,
}

/// The slot of `w` in `slots`, made (zeros) on first use.
fn slot<'s>(gpu: &Gpu, slots: &'s mut Vec<Slot>, w: &Tensor, second: bool) -> Result<&'s mut Slot> {
    let found = slots.iter().position(|s| s.param.same_buffer(w));
    let i = match found {
        Some(i) => i,
        None => {
            slots.push(Slot {
                param: w.clone(),
                first: gpu.zeros(w.shape())?,
                second: if second {
                    Some(gpu.zeros(w.shape())?)
                } else {
                    None
                },
                t: 0,
            });
            slots.len() - 1
        }
    };
    Ok(&mut slots[i])
}

/// SGD with momentum: `v = momentum * v - lr * g; w += v` with `g = dw + weight_decay * w`; one
/// velocity per parameter, zeros at first.
#[derive(Debug)]
pub struct SgdMomentum {
    /// Learning rate, momentum and weight decay.
    pub config: MomentumConfig,
    slots: Vec<Slot>,
}

impl SgdMomentum {
    /// Learning rate `lr`, momentum 0.9.
    pub fn new(lr: f64) -> Self {
        Self::with_config(MomentumConfig::new(lr))
    }

    /// Any settings.
    pub fn with_config(config: MomentumConfig) -> Self {
        Self {
            config,
            slots: Vec::new(),
        }
    }

    /// One step on `w` from its gradient `dw`.
    ///
    /// # Errors
    /// As [`Sgd::step`].
    pub fn step(&mut self, gpu: &Gpu, w: &mut Tensor, dw: &Tensor) -> Result<()> {
        self.config.validate()?;
        check(gpu, w, dw)?;
        let s = slot(gpu, &mut self.slots, w, false)?;
        let (kernel, total) = pick(w.len(), &MOMENTUM, &MOMENTUM4)?;
        let p = OptimParams {
            total,
            lr: self.config.lr as f32,
            weight_decay: self.config.weight_decay as f32,
            momentum: self.config.momentum as f32,
            ..OptimParams::default()
        };
        gpu.launch(
            kernel,
            &[],
            1,
            &[Arg::Whole(dw), Arg::Whole(w), Arg::Whole(&s.first)],
            |_| Ok((p, gpu.stream_workgroups(u64::from(p.total), 0))),
        )
    }
}

/// Adam: moments `m`, `v` per parameter (zeros at first) and its step count `t`, with the bias
/// correction of step `t`.
///
/// ```no_run
/// use wgpu_cnn::{Adam, Gpu};
/// let gpu = Gpu::new()?;
/// let mut w = gpu.upload(&ndarray::arr1(&[1.0f32, -2.0]))?;
/// let dw = gpu.upload(&ndarray::arr1(&[0.5f32, 0.5]))?;
/// let mut adam = Adam::new(0.1);
/// adam.step(&gpu, &mut w, &dw)?; // the first step moves each weight by lr
/// let w: ndarray::Array1<f32> = gpu.download(&w)?;
/// assert!((w[0] - 0.9).abs() < 1e-6 && (w[1] + 2.1).abs() < 1e-6);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Debug)]
pub struct Adam {
    /// Learning rate, betas, eps and weight decay.
    pub config: AdamConfig,
    slots: Vec<Slot>,
}

impl Adam {
    /// Learning rate `lr` with cs231n's defaults.
    pub fn new(lr: f64) -> Self {
        Self::with_config(AdamConfig::new(lr))
    }

    /// Any settings.
    pub fn with_config(config: AdamConfig) -> Self {
        Self {
            config,
            slots: Vec::new(),
        }
    }

    /// Steps taken on `w` so far.
    pub fn steps(&self, w: &Tensor) -> u64 {
        self.slots
            .iter()
            .find(|s| s.param.same_buffer(w))
            .map_or(0, |s| s.t)
    }

    /// Makes the moments of `w` now (zeros) rather than at its first step, so that a training
    /// step's temporaries never land in buffers the optimizer keeps: with the state made up
    /// front, every step reuses the same buffers, the first included.
    ///
    /// # Errors
    /// [`crate::Error::ForeignTensor`] for a tensor of another `Gpu`; device errors.
    pub fn prepare(&mut self, gpu: &Gpu, w: &Tensor) -> Result<()> {
        gpu.check_owner(w)?;
        slot(gpu, &mut self.slots, w, true).map(|_| ())
    }

    /// One step on `w` from its gradient `dw`.
    ///
    /// # Errors
    /// As [`Sgd::step`].
    pub fn step(&mut self, gpu: &Gpu, w: &mut Tensor, dw: &Tensor) -> Result<()> {
        self.config.validate()?;
        check(gpu, w, dw)?;
        let c = self.config;
        let s = slot(gpu, &mut self.slots, w, true)?;
        let t = s.t + 1;
        let exponent = i32::try_from(t).unwrap_or(i32::MAX);
        let (kernel, total) = pick(w.len(), &ADAM, &ADAM4)?;
        let p = OptimParams {
            total,
            lr: c.lr as f32,
            weight_decay: c.weight_decay as f32,
            momentum: c.beta1 as f32,
            beta2: c.beta2 as f32,
            eps: c.eps as f32,
            c1: (1.0 / (1.0 - c.beta1.powi(exponent))) as f32,
            c2: (1.0 / (1.0 - c.beta2.powi(exponent))) as f32,
        };
        let second = s.second.as_ref().unwrap_or(&s.first);
        gpu.launch(
            kernel,
            &[],
            1,
            &[
                Arg::Whole(dw),
                Arg::Whole(w),
                Arg::Whole(&s.first),
                Arg::Whole(second),
            ],
            |_| Ok((p, gpu.stream_workgroups(u64::from(p.total), 0))),
        )?;
        s.t = t;
        Ok(())
    }
}
