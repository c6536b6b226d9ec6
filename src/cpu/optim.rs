//! The update rules of cs231n's `optim.py`, in place: SGD, SGD with momentum, Adam, each with
//! an optional L2 weight decay.

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn, Zip};

use super::{filled, real_from_f64, Real};
use crate::error::{Error, Result};
use crate::layers::{AdamConfig, MomentumConfig, SgdConfig};

/// `b` (a gradient or an optimizer's state) must have the shape of the weights `w`.
fn check_shape(what: &'static str, w: &[usize], b: &[usize]) -> Result<()> {
    if w != b {
        return Err(Error::ShapeMismatch {
            what,
            expected: w.to_vec(),
            got: b.to_vec(),
        });
    }
    Ok(())
}

/// Plain SGD, in place: `w -= lr * g` with `g = dw + weight_decay * w`.
///
/// `w` and `dw` have any shape, the same.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `dw` is not shaped like `w`, [`Error::Setting`] for a
/// setting out of range ([`SgdConfig::validate`]); then `w` is unchanged. Never panics.
///
/// # Example
/// ```
/// use ndarray::arr1;
/// use wgpu_cnn::cpu::sgd;
/// use wgpu_cnn::SgdConfig;
///
/// let mut w = arr1(&[1.0_f64, -2.0]).into_dyn();
/// let dw = arr1(&[0.5, 0.5]).into_dyn();
/// sgd(w.view_mut(), dw.view(), &SgdConfig::new(0.1))?;
/// assert_eq!(w, arr1(&[0.95, -2.05]).into_dyn());
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn sgd<A: Real>(w: ArrayViewMutD<A>, dw: ArrayViewD<A>, cfg: &SgdConfig) -> Result<()> {
    cfg.validate()?;
    check_shape("sgd: dw must have the shape of w", w.shape(), dw.shape())?;
    let lr: A = real_from_f64(cfg.lr);
    let wd: A = real_from_f64(cfg.weight_decay);
    Zip::from(w).and(&dw).for_each(|w, &dw| {
        let g = dw + wd * *w;
        *w = *w - lr * g;
    });
    Ok(())
}

/// SGD with momentum, in place: `v = momentum * v - lr * g; w += v`, with
/// `g = dw + weight_decay * w` (cs231n's `sgd_momentum`; `v` starts at zeros).
///
/// `w`, `dw` and the velocity `v` have any shape, the same.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `dw` or `v` is not shaped like `w`, [`Error::Setting`] for a
/// setting out of range ([`MomentumConfig::validate`]); then nothing changes. Never panics.
///
/// # Example
/// ```
/// use ndarray::{arr1, Array1};
/// use wgpu_cnn::cpu::sgd_momentum;
/// use wgpu_cnn::MomentumConfig;
///
/// let mut w = arr1(&[1.0_f64]).into_dyn();
/// let mut v = Array1::<f64>::zeros(1).into_dyn();
/// let dw = arr1(&[1.0]).into_dyn();
/// let cfg = MomentumConfig::new(0.5);
/// sgd_momentum(w.view_mut(), dw.view(), v.view_mut(), &cfg)?; // v = -0.5
/// sgd_momentum(w.view_mut(), dw.view(), v.view_mut(), &cfg)?; // v = 0.9 * -0.5 - 0.5
/// assert!((v[0] + 0.95).abs() < 1e-12);
/// assert!((w[0] - (1.0 - 0.5 - 0.95)).abs() < 1e-12);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn sgd_momentum<A: Real>(
    w: ArrayViewMutD<A>,
    dw: ArrayViewD<A>,
    v: ArrayViewMutD<A>,
    cfg: &MomentumConfig,
) -> Result<()> {
    cfg.validate()?;
    check_shape(
        "sgd_momentum: dw must have the shape of w",
        w.shape(),
        dw.shape(),
    )?;
    check_shape(
        "sgd_momentum: the velocity v must have the shape of w",
        w.shape(),
        v.shape(),
    )?;
    let lr: A = real_from_f64(cfg.lr);
    let momentum: A = real_from_f64(cfg.momentum);
    let wd: A = real_from_f64(cfg.weight_decay);
    Zip::from(w).and(&dw).and(v).for_each(|w, &dw, v| {
        let g = dw + wd * *w;
        *v = momentum * *v - lr * g;
        *w = *w + *v;
    });
    Ok(())
}

/// Adam's state: the first and second moments, shaped like the weights, and the step count
/// `t` (cs231n's `config['m']`, `['v']`, `['t']`).
///
/// # Example
/// ```
/// use wgpu_cnn::cpu::AdamState;
///
/// let state = AdamState::<f32>::zeros(&[3, 4])?;
/// assert_eq!(state.m.shape(), &[3, 4]);
/// assert_eq!(state.t, 0);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState<A> {
    /// First moment, shaped like the weights.
    pub m: ArrayD<A>,
    /// Second moment, shaped like the weights.
    pub v: ArrayD<A>,
    /// Steps taken so far.
    pub t: u64,
}

impl<A: Real> AdamState<A> {
    /// Zero moments of `shape`, `t = 0`.
    ///
    /// # Errors
    /// [`Error::TooLarge`] or [`Error::HostOutOfMemory`] when the moments cannot be allocated
    /// (see [`MAX_HOST_BYTES`](super::MAX_HOST_BYTES)). Never panics.
    ///
    /// # Example
    /// ```
    /// use wgpu_cnn::cpu::AdamState;
    ///
    /// let state = AdamState::<f64>::zeros(&[2, 2, 3, 8])?;
    /// assert!(state.v.iter().all(|&v| v == 0.0));
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    pub fn zeros(shape: &[usize]) -> Result<Self> {
        Ok(Self {
            m: filled("adam m", IxDyn(shape), A::zero())?,
            v: filled("adam v", IxDyn(shape), A::zero())?,
            t: 0,
        })
    }
}

/// Adam, in place: `t += 1; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
/// w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`, with
/// `g = dw + weight_decay * w`.
///
/// `w`, `dw`, `state.m` and `state.v` have any shape, the same. The bias corrections
/// `1 - b^t` are computed in `f64`; `t` saturates at `u64::MAX` (where they are 1).
///
/// # Errors
/// [`Error::ShapeMismatch`] when `dw`, `state.m` or `state.v` is not shaped like `w`,
/// [`Error::Setting`] for a setting out of range ([`AdamConfig::validate`]); then nothing
/// changes, `t` included. Never panics.
///
/// # Example
/// ```
/// use ndarray::arr1;
/// use wgpu_cnn::cpu::{adam, AdamState};
/// use wgpu_cnn::AdamConfig;
///
/// let mut w = arr1(&[1.0_f64]).into_dyn();
/// let mut state = AdamState::zeros(w.shape())?;
/// let dw = arr1(&[0.5]).into_dyn();
/// adam(w.view_mut(), dw.view(), &mut state, &AdamConfig::new(0.1))?;
/// // Step 1: the bias-corrected moments are g and g^2, so the step is lr * g / (|g| + eps).
/// assert_eq!(state.t, 1);
/// assert!((w[0] - (1.0 - 0.1 * 0.5 / (0.5 + 1e-8))).abs() < 1e-15);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn adam<A: Real>(
    w: ArrayViewMutD<A>,
    dw: ArrayViewD<A>,
    state: &mut AdamState<A>,
    cfg: &AdamConfig,
) -> Result<()> {
    cfg.validate()?;
    check_shape("adam: dw must have the shape of w", w.shape(), dw.shape())?;
    check_shape(
        "adam: the first moment state.m must have the shape of w",
        w.shape(),
        state.m.shape(),
    )?;
    check_shape(
        "adam: the second moment state.v must have the shape of w",
        w.shape(),
        state.v.shape(),
    )?;
    state.t = state.t.saturating_add(1);
    // t as f64 is exact up to 2^53 and a close float beyond: b^t is 0 long before.
    let t = state.t as f64;
    let bias1: A = real_from_f64(1.0 - cfg.beta1.powf(t));
    let bias2: A = real_from_f64(1.0 - cfg.beta2.powf(t));
    let lr: A = real_from_f64(cfg.lr);
    let beta1: A = real_from_f64(cfg.beta1);
    let beta2: A = real_from_f64(cfg.beta2);
    let eps: A = real_from_f64(cfg.eps);
    let wd: A = real_from_f64(cfg.weight_decay);
    let one = A::one();
    Zip::from(w)
        .and(&dw)
        .and(&mut state.m)
        .and(&mut state.v)
        .for_each(|w, &dw, m, v| {
            let g = dw + wd * *w;
            *m = beta1 * *m + (one - beta1) * g;
            *v = beta2 * *v + (one - beta2) * g * g;
            let m_hat = *m / bias1;
            let v_hat = *v / bias2;
            *w = *w - lr * m_hat / (v_hat.sqrt() + eps);
        });
    Ok(())
}
