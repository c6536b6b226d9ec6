//! Settings of the network layers beyond convolution and pooling (normalisation, loss labels,
//! optimizers), shared by the CPU reference ([`crate::cpu`]) and the GPU ([`crate::Gpu`]).
//!
//! The formulas (cs231n's layers, in NHWC; statistics over the axes named, biased variance):
//! - batch norm, train mode, per channel over `(N, H, W)`: `mu`, `var`,
//!   `xhat = (x - mu) / sqrt(var + eps)`, `out = gamma * xhat + beta`;
//!   `running_mean = momentum * running_mean + (1 - momentum) * mu` (likewise `running_var`);
//!   test mode uses the running statistics. Backward:
//!   `dx = (1/n) * inv_std * (n * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))`, `n = N*H*W`,
//!   `dxhat = dout * gamma`, `dgamma = sum dout * xhat`, `dbeta = sum dout`.
//! - group norm: channels split into `G` groups of `C/G` consecutive channels, statistics per
//!   `(sample, group)` over `(H, W, C/G)`, the same backward formula per `(sample, group)` with
//!   `n = H*W*C/G` (the cs231n write-up this follows has `sum(dxhat) * xhat` where the formula
//!   needs `xhat * sum(dxhat * xhat)`; its `dx` is wrong and is not copied).
//! - softmax loss: `loss = mean_N(-sum_k y[n,k] * log softmax(scores)[n,k])` (for class
//!   indices, `y` is one-hot), computed stably; `dscores = (softmax(scores) - y) / N`.
//! - optimizers: `sgd`: `w -= lr * dw`; `sgd_momentum`: `v = momentum * v - lr * dw; w += v`;
//!   `adam`: `t += 1; m = b1*m + (1-b1)*dw; v = b2*v + (1-b2)*dw^2;
//!   w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`. With a weight decay `wd`, each
//!   uses `dw + wd * w` in place of `dw` (L2 regularisation `0.5 * wd * sum(w^2)`).

use crate::error::{Error, Result};

/// Batch norm's mode: normalise with the batch's statistics (and update the running ones), or
/// with the running statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormMode {
    /// Batch statistics; running statistics updated with momentum.
    Train,
    /// Running statistics (an error if there are none yet).
    Test,
}

/// Spatial batch norm settings: mode, `eps` (1e-5) and `momentum` (0.9), as cs231n's `bn_param`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNorm {
    /// Train or test.
    pub mode: NormMode,
    /// Added to the variance.
    pub eps: f64,
    /// Weight of the old running statistics.
    pub momentum: f64,
}

impl BatchNorm {
    /// Train mode, `eps = 1e-5`, `momentum = 0.9`.
    pub const fn train() -> Self {
        Self {
            mode: NormMode::Train,
            eps: 1e-5,
            momentum: 0.9,
        }
    }

    /// Test mode, `eps = 1e-5`, `momentum = 0.9`.
    pub const fn test() -> Self {
        Self {
            mode: NormMode::Test,
            ..Self::train()
        }
    }

    /// The same with another `eps`.
    pub const fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// The same with another `momentum`.
    pub const fn with_momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// `Ok` when `eps` is finite and at least 0 and `momentum` is in `[0, 1]`.
    ///
    /// # Errors
    /// [`Error::Setting`] naming the first setting out of range.
    pub fn validate(&self) -> Result<()> {
        setting("batch norm: eps", self.eps, Range::NonNegative)?;
        setting("batch norm: momentum", self.momentum, Range::Unit)
    }
}

/// Spatial group norm settings: the number of groups (which must divide the channels) and
/// `eps` (1e-5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupNorm {
    /// Number of groups of consecutive channels.
    pub groups: usize,
    /// Added to the variance.
    pub eps: f64,
}

impl GroupNorm {
    /// `groups` groups, `eps = 1e-5`.
    pub const fn new(groups: usize) -> Self {
        Self { groups, eps: 1e-5 }
    }

    /// The same with another `eps`.
    pub const fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// `Ok` when `eps` is finite and at least 0.
    ///
    /// # Errors
    /// [`Error::Setting`] otherwise.
    pub fn validate(&self) -> Result<()> {
        setting("group norm: eps", self.eps, Range::NonNegative)
    }

    /// Channels per group for `channels`, or [`Error::Groups`].
    pub fn group_size(&self, channels: usize) -> Result<usize> {
        if self.groups == 0 || !channels.is_multiple_of(self.groups) {
            return Err(Error::Groups {
                groups: self.groups,
                channels,
            });
        }
        Ok(channels / self.groups)
    }
}

/// Labels for the softmax loss of `N` rows: class indices in `0..K`, or one-hot (or any
/// probability) rows `(N, K)`.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// One class index per row.
    Indices(Vec<usize>),
    /// One row of `K` target probabilities per example, row-major `(N, K)`.
    OneHot(ndarray::Array2<f32>),
}

impl Labels {
    /// The `(N, K)` target rows for `n` examples of `k` classes.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when there are not `n` labels (or the rows are not `(n, k)`),
    /// [`Error::LabelOutOfRange`] when an index is not below `k`.
    pub fn targets(&self, n: usize, k: usize) -> Result<ndarray::Array2<f32>> {
        match self {
            Labels::Indices(idx) => {
                if idx.len() != n {
                    return Err(Error::ShapeMismatch {
                        what: "softmax_loss needs one label per row of scores",
                        expected: vec![n],
                        got: vec![idx.len()],
                    });
                }
                let mut y = ndarray::Array2::zeros((n, k));
                for (row, &c) in idx.iter().enumerate() {
                    if c >= k {
                        return Err(Error::LabelOutOfRange {
                            index: row,
                            label: c,
                            classes: k,
                        });
                    }
                    y[[row, c]] = 1.0;
                }
                Ok(y)
            }
            Labels::OneHot(y) => {
                if y.dim() != (n, k) {
                    return Err(Error::ShapeMismatch {
                        what: "softmax_loss one-hot labels must be shaped like the scores",
                        expected: vec![n, k],
                        got: y.shape().to_vec(),
                    });
                }
                Ok(y.clone())
            }
        }
    }
}

/// Plain SGD: `w -= lr * (dw + weight_decay * w)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
}

/// SGD with momentum: `v = momentum * v - lr * g; w += v`, `g = dw + weight_decay * w`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MomentumConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum (0.9 in cs231n).
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
}

/// Adam (cs231n's defaults: `beta1 = 0.9`, `beta2 = 0.999`, `eps = 1e-8`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
}

/// The range a setting must be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Range {
    /// At least 0 and finite as an `f32` (the GPU's type).
    NonNegative,
    /// `[0, 1]`.
    Unit,
    /// `[0, 1)` (Adam's betas: 1 would divide by zero in the bias correction).
    Beta,
}

impl Range {
    fn holds(self, value: f64) -> bool {
        match self {
            Self::NonNegative => value >= 0.0 && (value as f32).is_finite(),
            Self::Unit => (0.0..=1.0).contains(&value),
            Self::Beta => (0.0..1.0).contains(&value),
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::NonNegative => "at least 0 and finite (in f32 too)",
            Self::Unit => "in [0, 1]",
            Self::Beta => "in [0, 1)",
        }
    }
}

/// `Ok` when `value` is in `range`, else [`Error::Setting`] naming `what`.
pub(crate) fn setting(what: &'static str, value: f64, range: Range) -> Result<()> {
    if range.holds(value) {
        Ok(())
    } else {
        Err(Error::Setting {
            what,
            value: value.to_string(),
            expected: range.text(),
        })
    }
}

impl SgdConfig {
    /// Learning rate `lr`, no weight decay.
    pub const fn new(lr: f64) -> Self {
        Self {
            lr,
            weight_decay: 0.0,
        }
    }

    /// `Ok` when `lr` and `weight_decay` are finite and at least 0.
    ///
    /// # Errors
    /// [`Error::Setting`] naming the first setting out of range.
    pub fn validate(&self) -> Result<()> {
        setting("SGD: lr", self.lr, Range::NonNegative)?;
        setting("SGD: weight_decay", self.weight_decay, Range::NonNegative)
    }
}

impl MomentumConfig {
    /// Learning rate `lr`, momentum 0.9, no weight decay.
    pub const fn new(lr: f64) -> Self {
        Self {
            lr,
            momentum: 0.9,
            weight_decay: 0.0,
        }
    }

    /// `Ok` when `lr` and `weight_decay` are finite and at least 0 and `momentum` is in
    /// `[0, 1]`.
    ///
    /// # Errors
    /// [`Error::Setting`] naming the first setting out of range.
    pub fn validate(&self) -> Result<()> {
        setting("SGD momentum: lr", self.lr, Range::NonNegative)?;
        setting("SGD momentum: momentum", self.momentum, Range::Unit)?;
        setting(
            "SGD momentum: weight_decay",
            self.weight_decay,
            Range::NonNegative,
        )
    }
}

impl AdamConfig {
    /// Learning rate `lr` with cs231n's defaults, no weight decay.
    pub const fn new(lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// The same with an L2 weight decay.
    pub const fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// `Ok` when `lr`, `eps` and `weight_decay` are finite and at least 0 and the betas are in
    /// `[0, 1)`.
    ///
    /// # Errors
    /// [`Error::Setting`] naming the first setting out of range.
    pub fn validate(&self) -> Result<()> {
        setting("Adam: lr", self.lr, Range::NonNegative)?;
        setting("Adam: beta1", self.beta1, Range::Beta)?;
        setting("Adam: beta2", self.beta2, Range::Beta)?;
        setting("Adam: eps", self.eps, Range::NonNegative)?;
        setting("Adam: weight_decay", self.weight_decay, Range::NonNegative)
    }
}
