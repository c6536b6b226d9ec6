//! Spatial batch norm and spatial group norm, forward and backward (cs231n's
//! `spatial_batchnorm_*` and `spatial_groupnorm_*`, in NHWC).

use ndarray::{
    s, Array1, Array2, Array4, ArrayView, ArrayView1, ArrayView4, ArrayViewMut4, Dim, Dimension,
    Zip,
};

use super::{filled, real_from_f64, real_from_usize, shape4, try_array, try_map, zeros4, Real};
use crate::error::{Error, Result};
use crate::layers::{BatchNorm, GroupNorm, NormMode};

/// Batch norm's running statistics, one value per channel, carried from call to call (cs231n's
/// `bn_param['running_mean']` and `['running_var']`). Both start as `None`; the first train-mode
/// call starts them at zeros (as cs231n does) and updates them with momentum.
///
/// # Example
/// ```
/// use ndarray::{Array1, Array4};
/// use wgpu_cnn::cpu::{spatial_batchnorm_forward, BatchNormState};
/// use wgpu_cnn::BatchNorm;
///
/// let mut state = BatchNormState::<f64>::new();
/// assert!(state.running_mean.is_none());
/// let x = Array4::<f64>::from_elem((2, 2, 2, 3), 5.0);
/// let (gamma, beta) = (Array1::ones(3), Array1::zeros(3));
/// spatial_batchnorm_forward(x.view(), gamma.view(), beta.view(), &mut state, BatchNorm::train())?;
/// // 0.9 * 0 + 0.1 * 5
/// assert!((state.running_mean.unwrap()[0] - 0.5).abs() < 1e-12);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchNormState<A> {
    /// Running mean per channel, `(C,)`, or `None` before the first train-mode call.
    pub running_mean: Option<Array1<A>>,
    /// Running (biased) variance per channel, `(C,)`, or `None` before the first train-mode
    /// call.
    pub running_var: Option<Array1<A>>,
}

impl<A> BatchNormState<A> {
    /// No running statistics yet.
    pub const fn new() -> Self {
        Self {
            running_mean: None,
            running_var: None,
        }
    }
}

/// What [`spatial_batchnorm_backward`] needs from [`spatial_batchnorm_forward`].
///
/// Shapes: `xhat` `(N, H, W, C)`, `gamma` and `inv_std` `(C,)`. In train mode `xhat` and
/// `inv_std = 1 / sqrt(var + eps)` come from the batch's statistics, in test mode from the
/// running ones.
///
/// # Example
/// ```
/// use ndarray::{Array1, Array4};
/// use wgpu_cnn::cpu::{spatial_batchnorm_forward, BatchNormState};
/// use wgpu_cnn::{BatchNorm, NormMode};
///
/// let x = Array4::<f64>::zeros((2, 3, 3, 4));
/// let (gamma, beta) = (Array1::ones(4), Array1::zeros(4));
/// let mut state = BatchNormState::new();
/// let (_, cache) =
///     spatial_batchnorm_forward(x.view(), gamma.view(), beta.view(), &mut state, BatchNorm::train())?;
/// assert_eq!(cache.xhat.shape(), &[2, 3, 3, 4]);
/// assert_eq!(cache.inv_std.len(), 4);
/// assert_eq!(cache.mode, NormMode::Train);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct BatchNormCache<A> {
    /// The normalised input `(x - mean) * inv_std`, `(N, H, W, C)`.
    pub xhat: Array4<A>,
    /// The scale, `(C,)`.
    pub gamma: Array1<A>,
    /// `1 / sqrt(var + eps)` per channel, `(C,)`.
    pub inv_std: Array1<A>,
    /// The mode the forward pass ran in: it decides the backward formula.
    pub mode: NormMode,
}

/// The gradients of a normalisation layer: [`spatial_batchnorm_backward`] and
/// [`spatial_groupnorm_backward`].
///
/// Shapes: `dx` `(N, H, W, C)`, `dgamma` and `dbeta` `(C,)`.
///
/// # Example
/// ```
/// use ndarray::{Array1, Array4};
/// use wgpu_cnn::cpu::{spatial_groupnorm_backward, spatial_groupnorm_forward};
/// use wgpu_cnn::GroupNorm;
///
/// let x = Array4::<f64>::zeros((2, 3, 3, 4));
/// let (gamma, beta) = (Array1::ones(4), Array1::zeros(4));
/// let (out, cache) = spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), GroupNorm::new(2))?;
/// let grads = spatial_groupnorm_backward(Array4::ones(out.raw_dim()).view(), &cache)?;
/// assert_eq!(grads.dx.shape(), &[2, 3, 3, 4]);
/// assert_eq!(grads.dgamma.len(), 4);
/// assert_eq!(grads.dbeta[0], 18.0);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct NormGrads<A> {
    /// Gradient with respect to the input, `(N, H, W, C)`.
    pub dx: Array4<A>,
    /// Gradient with respect to the scale, `(C,)`.
    pub dgamma: Array1<A>,
    /// Gradient with respect to the shift, `(C,)`.
    pub dbeta: Array1<A>,
}

/// `gamma` and `beta` must hold one value per channel.
fn check_affine_params<A>(
    what: &'static str,
    gamma: &ArrayView1<A>,
    beta: &ArrayView1<A>,
    channels: usize,
) -> Result<()> {
    for p in [gamma, beta] {
        if p.len() != channels {
            return Err(Error::ShapeMismatch {
                what,
                expected: vec![channels],
                got: p.shape().to_vec(),
            });
        }
    }
    Ok(())
}

/// The normalisation layers need every axis non-empty: their statistics are means.
fn check_not_empty<A>(what: &'static str, x: &ArrayView4<A>) -> Result<()> {
    if x.is_empty() {
        return Err(Error::EmptyTensor {
            what,
            shape: x.shape().to_vec(),
        });
    }
    Ok(())
}

/// Mean and biased variance of the elements of `x` (two passes).
fn mean_var<A: Real, D: Dimension>(x: ArrayView<A, D>) -> (A, A) {
    let n: A = real_from_usize(x.len());
    let mean = x.sum() / n;
    let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<A>() / n;
    (mean, var)
}

/// A per-channel vector must have `channels` values.
fn check_len<A>(stat: &Array1<A>, channels: usize, what: &'static str) -> Result<()> {
    if stat.len() != channels {
        return Err(Error::ShapeMismatch {
            what,
            expected: vec![channels],
            got: stat.shape().to_vec(),
        });
    }
    Ok(())
}

/// Spatial batch norm, forward: per channel `c`, statistics over `(N, H, W)`,
/// `xhat = (x - mu) / sqrt(var + eps)`, `out = gamma[c] * xhat + beta[c]`.
///
/// `x` is `(N, H, W, C)`, `gamma` and `beta` `(C,)`, `out` `(N, H, W, C)`.
///
/// - [`NormMode::Train`]: `mu` and the biased `var` are the batch's; the running statistics
///   (zeros when `None`) become `momentum * running + (1 - momentum) * batch`.
/// - [`NormMode::Test`]: `mu` and `var` are the running statistics, which are left unchanged.
///
/// A constant channel (variance 0) gives `xhat = 0`, `out = beta` (with `eps > 0`; with
/// `eps = 0` it is `0 / 0`, NaN, as in numpy). On an error `state` is unchanged.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `gamma`, `beta` or a running statistic does not hold `C`
/// values; [`Error::EmptyTensor`] when `x` has an empty axis; [`Error::NoRunningStats`] in test
/// mode when a running statistic is `None`; [`Error::Setting`] for an `eps` or `momentum` out
/// of range ([`BatchNorm::validate`]); [`Error::TooLarge`] or [`Error::HostOutOfMemory`] when an
/// output cannot be allocated. Never panics.
///
/// # Example
/// ```
/// use ndarray::{arr1, Array4};
/// use wgpu_cnn::cpu::{spatial_batchnorm_forward, BatchNormState};
/// use wgpu_cnn::{BatchNorm, Error};
///
/// // One channel holding 1 and 3: mean 2, variance 1.
/// let x = Array4::from_shape_vec((2, 1, 1, 1), vec![1.0_f64, 3.0]).unwrap();
/// let (gamma, beta) = (arr1(&[2.0]), arr1(&[0.5]));
/// let mut state = BatchNormState::new();
/// let bn = BatchNorm::train().with_eps(0.0);
/// let (out, _) = spatial_batchnorm_forward(x.view(), gamma.view(), beta.view(), &mut state, bn)?;
/// assert_eq!(out.into_raw_vec_and_offset().0, vec![-1.5, 2.5]);
///
/// // Test mode needs running statistics.
/// let mut fresh = BatchNormState::new();
/// let err = spatial_batchnorm_forward(x.view(), gamma.view(), beta.view(), &mut fresh, BatchNorm::test());
/// assert!(matches!(err, Err(Error::NoRunningStats { channels: 1 })));
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn spatial_batchnorm_forward<A: Real>(
    x: ArrayView4<A>,
    gamma: ArrayView1<A>,
    beta: ArrayView1<A>,
    state: &mut BatchNormState<A>,
    bn: BatchNorm,
) -> Result<(Array4<A>, BatchNormCache<A>)> {
    bn.validate()?;
    let [n, h, w, c] = shape4(&x);
    check_affine_params(
        "spatial_batchnorm_forward: gamma and beta must hold one value per channel of x (N, H, W, C)",
        &gamma,
        &beta,
        c,
    )?;
    for stat in [&state.running_mean, &state.running_var]
        .into_iter()
        .flatten()
    {
        check_len(
            stat,
            c,
            "spatial_batchnorm_forward: running statistics must hold one value per channel of x",
        )?;
    }
    check_not_empty("spatial_batchnorm_forward x (N, H, W, C)", &x)?;
    let eps: A = real_from_f64(bn.eps);

    // The mean and variance used per channel: the batch's or the running ones.
    let (mean, var) = match bn.mode {
        NormMode::Train => {
            let mut mean = filled("batchnorm batch mean", Dim([c]), A::zero())?;
            let mut var = filled("batchnorm batch var", Dim([c]), A::zero())?;
            for k in 0..c {
                let xc = x.slice(s![.., .., .., k]);
                (mean[k], var[k]) = mean_var(xc);
            }
            (mean, var)
        }
        NormMode::Test => match (&state.running_mean, &state.running_var) {
            (Some(rm), Some(rv)) => (
                try_map("batchnorm running mean", rm.view(), |&v| v)?,
                try_map("batchnorm running var", rv.view(), |&v| v)?,
            ),
            _ => return Err(Error::NoRunningStats { channels: c }),
        },
    };
    let inv_std = try_map("batchnorm inv_std", var.view(), |&v| {
        A::one() / (v + eps).sqrt()
    })?;
    let mut xhat = zeros4("batchnorm xhat", [n, h, w, c])?;
    let mut out = zeros4("batchnorm out", [n, h, w, c])?;
    for k in 0..c {
        Zip::from(xhat.slice_mut(s![.., .., .., k]))
            .and(out.slice_mut(s![.., .., .., k]))
            .and(x.slice(s![.., .., .., k]))
            .for_each(|xh, o, &v| {
                *xh = (v - mean[k]) * inv_std[k];
                *o = gamma[k] * *xh + beta[k];
            });
    }

    if bn.mode == NormMode::Train {
        let momentum: A = real_from_f64(bn.momentum);
        let update = |running: &Option<Array1<A>>, batch: &Array1<A>, what| {
            let old = running.as_ref();
            try_array(
                what,
                Dim([c]),
                (0..c).map(|k| {
                    let r = old.map_or(A::zero(), |r| r[k]);
                    momentum * r + (A::one() - momentum) * batch[k]
                }),
            )
        };
        let running_mean = update(&state.running_mean, &mean, "batchnorm running mean")?;
        let running_var = update(&state.running_var, &var, "batchnorm running var")?;
        state.running_mean = Some(running_mean);
        state.running_var = Some(running_var);
    }

    let cache = BatchNormCache {
        xhat,
        gamma: try_map("batchnorm cache gamma", gamma, |&v| v)?,
        inv_std,
        mode: bn.mode,
    };
    Ok((out, cache))
}

/// `dx` of one set of normalised values (a channel of batch norm, a `(sample, group)` of group
/// norm), written into `dx`:
/// `dx = (1/n) * inv_std * (n * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))`,
/// `dxhat = dout * gamma[c]`, with `gamma_of` giving the channel of each element.
fn norm_dx<A: Real>(
    mut dx: ArrayViewMut4<A>,
    dout: ArrayView4<A>,
    xhat: ArrayView4<A>,
    gamma_of: impl Fn(usize) -> A,
    inv_std: A,
) {
    let n: A = real_from_usize(dout.len());
    let mut sum_dxhat = A::zero();
    let mut sum_dxhat_xhat = A::zero();
    Zip::indexed(&dout)
        .and(&xhat)
        .for_each(|(_, _, _, k), &d, &xh| {
            let dxhat = d * gamma_of(k);
            sum_dxhat = sum_dxhat + dxhat;
            sum_dxhat_xhat = sum_dxhat_xhat + dxhat * xh;
        });
    Zip::indexed(&mut dx)
        .and(&dout)
        .and(&xhat)
        .for_each(|(_, _, _, k), dx, &d, &xh| {
            let dxhat = d * gamma_of(k);
            *dx = inv_std / n * (n * dxhat - sum_dxhat - xh * sum_dxhat_xhat);
        });
}

/// `dgamma = sum dout * xhat` and `dbeta = sum dout` per channel, over `(N, H, W)`.
fn affine_param_grads<A: Real>(
    dout: &ArrayView4<A>,
    xhat: &Array4<A>,
) -> Result<(Array1<A>, Array1<A>)> {
    let c = dout.shape()[3];
    let dgamma = try_array(
        "norm dgamma",
        Dim([c]),
        (0..c).map(|k| {
            Zip::from(dout.slice(s![.., .., .., k]))
                .and(xhat.slice(s![.., .., .., k]))
                .fold(A::zero(), |acc, &d, &xh| acc + d * xh)
        }),
    )?;
    let dbeta = try_array(
        "norm dbeta",
        Dim([c]),
        (0..c).map(|k| dout.slice(s![.., .., .., k]).sum()),
    )?;
    Ok((dgamma, dbeta))
}

/// Spatial batch norm, backward, from `dout` `(N, H, W, C)`; the result is a [`NormGrads`].
///
/// - Cache from train mode (the batch's statistics depend on `x`): per channel, over
///   `(N, H, W)`, `n = N*H*W`, `dxhat = dout * gamma`,
///   `dx = (1/n) * inv_std * (n * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))`.
/// - Cache from test mode (the running statistics are constants): `dx = dout * gamma * inv_std`
///   with `inv_std = 1 / sqrt(running_var + eps)`.
///
/// In both, `dgamma = sum_{N,H,W} dout * xhat` and `dbeta = sum_{N,H,W} dout`.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `dout` is not the shape of `cache.xhat`, or when a hand-built
/// cache's `gamma` or `inv_std` does not hold `C` values; [`Error::TooLarge`] or
/// [`Error::HostOutOfMemory`] when a gradient cannot be allocated. Never panics.
///
/// # Example
/// ```
/// use ndarray::{Array1, Array4};
/// use wgpu_cnn::cpu::{spatial_batchnorm_backward, spatial_batchnorm_forward, BatchNormState};
/// use wgpu_cnn::BatchNorm;
///
/// let x = Array4::from_shape_fn((2, 2, 2, 3), |(i, h, w, c)| (i + 2 * h + 3 * w + c) as f64);
/// let (gamma, beta) = (Array1::from_elem(3, 2.0), Array1::zeros(3));
/// let mut state = BatchNormState::new();
/// let (_, cache) =
///     spatial_batchnorm_forward(x.view(), gamma.view(), beta.view(), &mut state, BatchNorm::train())?;
/// // A gradient that is the same everywhere does not change the normalised output.
/// let grads = spatial_batchnorm_backward(Array4::ones((2, 2, 2, 3)).view(), &cache)?;
/// assert!(grads.dx.iter().all(|g| g.abs() < 1e-12));
/// assert_eq!(grads.dbeta[0], 8.0);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn spatial_batchnorm_backward<A: Real>(
    dout: ArrayView4<A>,
    cache: &BatchNormCache<A>,
) -> Result<NormGrads<A>> {
    let shape = shape4(&cache.xhat);
    if shape4(&dout) != shape {
        return Err(Error::ShapeMismatch {
            what: "spatial_batchnorm_backward: dout must have the shape of the forward input",
            expected: shape.to_vec(),
            got: dout.shape().to_vec(),
        });
    }
    let c = shape[3];
    for p in [&cache.gamma, &cache.inv_std] {
        check_len(
            p,
            c,
            "spatial_batchnorm_backward: cache.gamma and cache.inv_std must hold one value per channel",
        )?;
    }
    let (gamma, inv_std) = (&cache.gamma, &cache.inv_std);
    let mut dx = zeros4("batchnorm dx", shape)?;
    match cache.mode {
        NormMode::Train => {
            for k in 0..c {
                norm_dx(
                    dx.slice_mut(s![.., .., .., k..k + 1]),
                    dout.slice(s![.., .., .., k..k + 1]),
                    cache.xhat.slice(s![.., .., .., k..k + 1]),
                    |_| gamma[k],
                    inv_std[k],
                );
            }
        }
        NormMode::Test => {
            Zip::indexed(&mut dx)
                .and(&dout)
                .for_each(|(_, _, _, k), dx, &d| *dx = d * gamma[k] * inv_std[k]);
        }
    }
    let (dgamma, dbeta) = affine_param_grads(&dout, &cache.xhat)?;
    Ok(NormGrads { dx, dgamma, dbeta })
}

/// What [`spatial_groupnorm_backward`] needs from [`spatial_groupnorm_forward`].
///
/// Shapes: `xhat` `(N, H, W, C)`, `gamma` `(C,)`, `inv_std` `(N, G)`; `groups` is `G`.
///
/// # Example
/// ```
/// use ndarray::{Array1, Array4};
/// use wgpu_cnn::cpu::spatial_groupnorm_forward;
/// use wgpu_cnn::GroupNorm;
///
/// let x = Array4::<f32>::zeros((2, 3, 3, 6));
/// let (gamma, beta) = (Array1::ones(6), Array1::zeros(6));
/// let (_, cache) = spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), GroupNorm::new(3))?;
/// assert_eq!(cache.inv_std.dim(), (2, 3));
/// assert_eq!(cache.groups, 3);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct GroupNormCache<A> {
    /// The normalised input, `(N, H, W, C)`.
    pub xhat: Array4<A>,
    /// The scale, `(C,)`.
    pub gamma: Array1<A>,
    /// `1 / sqrt(var + eps)` per sample and group, `(N, G)`.
    pub inv_std: Array2<A>,
    /// The number of groups `G`.
    pub groups: usize,
}

/// Spatial group norm, forward: the `C` channels split into `G = gn.groups` groups of `C/G`
/// consecutive channels (group `g` is channels `g*C/G .. (g+1)*C/G`); per sample `i` and group
/// `g`, `mu` and the biased `var` over `(H, W, C/G)`, `xhat = (x - mu) / sqrt(var + eps)`,
/// `out = gamma[c] * xhat + beta[c]` (the scale and shift are per channel).
///
/// `x` is `(N, H, W, C)`, `gamma` and `beta` `(C,)`, `out` `(N, H, W, C)`. `G = 1` is layer
/// norm, `G = C` instance norm. A constant group gives `xhat = 0` (with `eps > 0`).
///
/// # Errors
/// [`Error::ShapeMismatch`] when `gamma` or `beta` does not hold `C` values; [`Error::Groups`]
/// when `G` is 0 or does not divide `C`; [`Error::EmptyTensor`] when `x` has an empty axis;
/// [`Error::Setting`] for an `eps` out of range ([`GroupNorm::validate`]); [`Error::TooLarge`]
/// or [`Error::HostOutOfMemory`] when an output cannot be allocated. Never panics.
///
/// # Example
/// ```
/// use ndarray::{Array1, Array4};
/// use wgpu_cnn::cpu::spatial_groupnorm_forward;
/// use wgpu_cnn::{Error, GroupNorm};
///
/// // One pixel, channels [1, 3 | 10, 30]: two groups normalised separately.
/// let x = Array4::from_shape_vec((1, 1, 1, 4), vec![1.0_f64, 3.0, 10.0, 30.0]).unwrap();
/// let (gamma, beta) = (Array1::ones(4), Array1::zeros(4));
/// let gn = GroupNorm::new(2).with_eps(0.0);
/// let (out, _) = spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), gn)?;
/// assert_eq!(out.into_raw_vec_and_offset().0, vec![-1.0, 1.0, -1.0, 1.0]);
///
/// // 3 groups do not divide 4 channels.
/// let err = spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), GroupNorm::new(3));
/// assert!(matches!(err, Err(Error::Groups { groups: 3, channels: 4 })));
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn spatial_groupnorm_forward<A: Real>(
    x: ArrayView4<A>,
    gamma: ArrayView1<A>,
    beta: ArrayView1<A>,
    gn: GroupNorm,
) -> Result<(Array4<A>, GroupNormCache<A>)> {
    gn.validate()?;
    let [n, h, w, c] = shape4(&x);
    check_affine_params(
        "spatial_groupnorm_forward: gamma and beta must hold one value per channel of x (N, H, W, C)",
        &gamma,
        &beta,
        c,
    )?;
    let group_size = gn.group_size(c)?;
    check_not_empty("spatial_groupnorm_forward x (N, H, W, C)", &x)?;
    let groups = gn.groups;
    let eps: A = real_from_f64(gn.eps);

    let mut inv_std = filled("groupnorm inv_std", Dim([n, groups]), A::zero())?;
    let mut xhat = zeros4("groupnorm xhat", [n, h, w, c])?;
    let mut out = zeros4("groupnorm out", [n, h, w, c])?;
    for i in 0..n {
        for g in 0..groups {
            let channels = g * group_size..(g + 1) * group_size;
            let xg = x.slice(s![i, .., .., channels.clone()]);
            let (mean, var) = mean_var(xg.view());
            let istd = A::one() / (var + eps).sqrt();
            inv_std[[i, g]] = istd;
            Zip::indexed(xhat.slice_mut(s![i, .., .., channels.clone()]))
                .and(out.slice_mut(s![i, .., .., channels.clone()]))
                .and(&xg)
                .for_each(|(_, _, k), xh, o, &v| {
                    let ch = g * group_size + k;
                    *xh = (v - mean) * istd;
                    *o = gamma[ch] * *xh + beta[ch];
                });
        }
    }
    let cache = GroupNormCache {
        xhat,
        gamma: try_map("groupnorm cache gamma", gamma, |&v| v)?,
        inv_std,
        groups,
    };
    Ok((out, cache))
}

/// Spatial group norm, backward, from `dout` `(N, H, W, C)`; the result is a [`NormGrads`].
///
/// Per sample and group, over `(H, W, C/G)`, `n = H*W*C/G`, `dxhat = dout * gamma[c]`:
/// `dx = (1/n) * inv_std * (n * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))`.
/// `dgamma = sum_{N,H,W} dout * xhat` and `dbeta = sum_{N,H,W} dout` per channel.
///
/// The cs231n write-up this layer follows has `sum(dxhat) * xhat` in place of
/// `xhat * sum(dxhat * xhat)`; that `dx` fails a finite-difference check and is not copied
/// (`tests/cpu_layers.rs` shows both).
///
/// # Errors
/// [`Error::ShapeMismatch`] when `dout` is not the shape of `cache.xhat`, or when a hand-built
/// cache disagrees with itself (`gamma` not `(C,)`, `inv_std` not `(N, G)`); [`Error::Groups`]
/// when its `groups` does not divide `C`; [`Error::TooLarge`] or [`Error::HostOutOfMemory`] when
/// a gradient cannot be allocated. Never panics.
///
/// # Example
/// ```
/// use ndarray::{Array1, Array4};
/// use wgpu_cnn::cpu::{spatial_groupnorm_backward, spatial_groupnorm_forward};
/// use wgpu_cnn::GroupNorm;
///
/// let x = Array4::from_shape_fn((2, 2, 2, 4), |(i, h, w, c)| (i + 2 * h + 3 * w + c * c) as f64);
/// let (gamma, beta) = (Array1::from_elem(4, 3.0), Array1::zeros(4));
/// let (_, cache) = spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), GroupNorm::new(2))?;
/// // A gradient that is the same everywhere does not change the normalised output.
/// let grads = spatial_groupnorm_backward(Array4::ones((2, 2, 2, 4)).view(), &cache)?;
/// assert!(grads.dx.iter().all(|g| g.abs() < 1e-12));
/// assert_eq!(grads.dbeta[3], 8.0);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
pub fn spatial_groupnorm_backward<A: Real>(
    dout: ArrayView4<A>,
    cache: &GroupNormCache<A>,
) -> Result<NormGrads<A>> {
    let shape = shape4(&cache.xhat);
    let [n, _, _, c] = shape;
    if shape4(&dout) != shape {
        return Err(Error::ShapeMismatch {
            what: "spatial_groupnorm_backward: dout must have the shape of the forward input",
            expected: shape.to_vec(),
            got: dout.shape().to_vec(),
        });
    }
    check_len(
        &cache.gamma,
        c,
        "spatial_groupnorm_backward: cache.gamma must hold one value per channel",
    )?;
    let groups = cache.groups;
    let group_size = GroupNorm::new(groups).group_size(c)?;
    if cache.inv_std.dim() != (n, groups) {
        return Err(Error::ShapeMismatch {
            what: "spatial_groupnorm_backward: cache.inv_std must be (N, G)",
            expected: vec![n, groups],
            got: cache.inv_std.shape().to_vec(),
        });
    }
    let gamma = &cache.gamma;
    let mut dx = zeros4("groupnorm dx", shape)?;
    for i in 0..n {
        for g in 0..groups {
            let channels = g * group_size..(g + 1) * group_size;
            norm_dx(
                dx.slice_mut(s![i..i + 1, .., .., channels.clone()]),
                dout.slice(s![i..i + 1, .., .., channels.clone()]),
                cache.xhat.slice(s![i..i + 1, .., .., channels]),
                |k| gamma[g * group_size + k],
                cache.inv_std[[i, g]],
            );
        }
    }
    let (dgamma, dbeta) = affine_param_grads(&dout, &cache.xhat)?;
    Ok(NormGrads { dx, dgamma, dbeta })
}
