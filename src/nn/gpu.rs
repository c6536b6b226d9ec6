//! A [`Sequential`] network on the GPU: forward, backward and Adam recorded step after step,
//! with nothing read back until the caller downloads the loss.

use ndarray::{Array2, Array4, IxDyn};

use super::{Op, Plan, Sequential};
use crate::error::{Error, Result};
use crate::gpu::{Adam, BatchNormState, Gpu, Tensor};
use crate::layers::{AdamConfig, BatchNorm, Labels, NormMode};
use crate::weights::Weights;
use crate::{
    AffineCache, ConvCache, ConvReluCache, ConvReluPoolCache, NormCache, PoolCache, ReluCache,
};

/// What an op keeps for its backward pass.
enum Cache {
    Conv(ConvCache),
    ConvRelu(ConvReluCache),
    /// A conv + ReLU and the pool after it, run as one layer (`conv_relu_pool_forward`).
    ConvReluPool(ConvReluPoolCache),
    /// The pool of a [`Cache::ConvReluPool`] (the op before it keeps the cache).
    Pooled,
    Relu(ReluCache),
    Pool(PoolCache),
    BatchNorm(NormCache),
    GroupNorm(NormCache),
    Affine(AffineCache),
}

/// A [`Sequential`] network on the GPU with its parameters and Adam's state.
///
/// Convolutions followed by a ReLU run fused (bias and ReLU in the convolution's epilogue), and
/// with the pool after them as one layer (`Gpu::conv_relu_pool_forward`: one kernel where the
/// adapter's convolution kernel takes the pool, and the filter gradient from the pool's output
/// gradient).
/// Minibatches are written into input tensors kept by shape, so that after the first step of
/// each minibatch size a step creates no buffer, bind group or pipeline.
///
/// ```
/// use ndarray::Array4;
/// use wgpu_cnn::nn::{GpuNet, Pad, Sequential};
/// use wgpu_cnn::{AdamConfig, Gpu};
///
/// let gpu = Gpu::new()?;
/// let net = Sequential::new("tiny", (8, 8, 3)).conv((3, 3), 4, 1, Pad::Same).relu().affine(2);
/// let mut model = GpuNet::new(&gpu, &net, &net.init(1)?, AdamConfig::new(1e-2))?;
/// let x = Array4::<f32>::from_shape_fn((4, 8, 8, 3), |(i, h, w, c)| ((i + h * w + c) % 5) as f32 / 5.0);
/// let first = model.step(&x, &[0, 1, 0, 1])?; // a (1,) tensor on the device
/// for _ in 0..20 {
///     model.step(&x, &[0, 1, 0, 1])?;
/// }
/// let last = model.step(&x, &[0, 1, 0, 1])?;
/// let (first, last) = (gpu.download::<ndarray::Ix1>(&first)?[0], gpu.download::<ndarray::Ix1>(&last)?[0]);
/// assert!(last < first);
/// assert_eq!(model.predict(&x)?, vec![0, 1, 0, 1]);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Debug)]
pub struct GpuNet {
    gpu: Gpu,
    net: Sequential,
    plan: Plan,
    params: Vec<Tensor>,
    /// A zero bias for each convolution or fully connected layer without one (the kernels
    /// take a bias).
    zero_bias: Vec<Option<Tensor>>,
    /// Adam for the weights (with the L2 weight decay `reg`) and for everything else.
    decayed: Adam,
    plain: Adam,
    inputs: Vec<Tensor>,
}

impl GpuNet {
    /// `net` with `weights` (as [`Sequential::init`] makes them, or loaded) and Adam with
    /// `adam` (its weight decay is replaced by the network's `reg` for weights and 0 for the
    /// rest).
    ///
    /// # Errors
    /// As [`Sequential::plan`]; [`Error::WrongModel`], [`Error::DatasetMissing`] or
    /// [`Error::ShapeMismatch`] when `weights` are not this network's; [`Error::Setting`] for
    /// an Adam setting or an L2 `reg` out of range ([`AdamConfig::validate`]); device errors.
    pub fn new(gpu: &Gpu, net: &Sequential, weights: &Weights, adam: AdamConfig) -> Result<Self> {
        let plan = net.plan()?;
        net.check_training(&adam)?;
        let values = net.checked(&plan, weights)?;
        let params = values
            .into_iter()
            .map(|v| gpu.upload(v))
            .collect::<Result<Vec<_>>>()?;
        let zero_bias = plan
            .ops
            .iter()
            .map(|op| op.missing_bias().map(|n| gpu.zeros(&[n])).transpose())
            .collect::<Result<_>>()?;
        let mut decayed = Adam::with_config(adam.with_weight_decay(net.reg()));
        let mut plain = Adam::with_config(adam.with_weight_decay(0.0));
        for (spec, p) in plan.params.iter().zip(&params) {
            match (spec.trained, spec.decays) {
                (true, true) => decayed.prepare(gpu, p)?,
                (true, false) => plain.prepare(gpu, p)?,
                _ => {}
            }
        }
        Ok(Self {
            gpu: gpu.clone(),
            decayed,
            plain,
            net: net.clone(),
            plan,
            params,
            zero_bias,
            inputs: Vec::new(),
        })
    }

    /// The network.
    pub fn network(&self) -> &Sequential {
        &self.net
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The input tensor for images of `x`'s shape, with `x` written into it.
    fn input(&mut self, x: &Array4<f32>) -> Result<Tensor> {
        self.net.check_images(x.shape())?;
        if let Some(t) = self.inputs.iter_mut().find(|t| t.shape() == x.shape()) {
            self.gpu.write(t, x)?;
            return Ok(t.clone());
        }
        let t = self.gpu.upload(x)?;
        self.inputs.push(t.clone());
        Ok(t)
    }

    fn bias(&self, op: usize, b: Option<usize>) -> Result<&Tensor> {
        match b {
            Some(i) => Ok(&self.params[i]),
            None => self.zero_bias[op]
                .as_ref()
                .ok_or_else(|| Error::Kernel(format!("network op {op}: no bias tensor"))),
        }
    }

    /// Scores `(m, classes)` of `x`, and the caches for backward. `train` selects batch norm's
    /// mode (train mode updates the running statistics).
    fn forward(&self, x: &Tensor, train: bool) -> Result<(Tensor, Vec<Cache>)> {
        let g = &self.gpu;
        let mut a = x.clone();
        let mut caches = Vec::with_capacity(self.plan.ops.len());
        for (k, op) in self.plan.ops.iter().enumerate() {
            if matches!(op, Op::Pool(_)) && matches!(caches.last(), Some(Cache::ConvReluPool(_))) {
                caches.push(Cache::Pooled); // the conv before it ran it
                continue;
            }
            let (out, cache) = match *op {
                Op::Conv {
                    params, w, b, relu, ..
                } => {
                    let (w, b) = (&self.params[w], self.bias(k, b)?);
                    if let (true, Some(&Op::Pool(pool))) = (relu, self.plan.ops.get(k + 1)) {
                        let (p, c) = g.conv_relu_pool_forward(&a, w, b, params, pool)?;
                        (p, Cache::ConvReluPool(c))
                    } else if relu {
                        let (z, c) = g.conv_relu_forward(&a, w, b, params)?;
                        (z, Cache::ConvRelu(c))
                    } else {
                        let (z, c) = g.conv_forward(&a, w, b, params)?;
                        (z, Cache::Conv(c))
                    }
                }
                Op::Relu => {
                    let (y, c) = g.relu_forward(&a)?;
                    (y, Cache::Relu(c))
                }
                Op::Pool(p) => {
                    let (y, c) = g.pool_forward(&a, p)?;
                    (y, Cache::Pool(c))
                }
                Op::BatchNorm { gamma, bn } => {
                    let mut state = BatchNormState {
                        running_mean: Some(self.params[gamma + 2].clone()),
                        running_var: Some(self.params[gamma + 3].clone()),
                    };
                    let mode = if train {
                        NormMode::Train
                    } else {
                        NormMode::Test
                    };
                    let (y, c) = g.spatial_batchnorm_forward(
                        &a,
                        &self.params[gamma],
                        &self.params[gamma + 1],
                        &mut state,
                        BatchNorm { mode, ..bn },
                    )?;
                    (y, Cache::BatchNorm(c))
                }
                Op::GroupNorm { gamma, gn } => {
                    let (y, c) = g.spatial_groupnorm_forward(
                        &a,
                        &self.params[gamma],
                        &self.params[gamma + 1],
                        gn,
                    )?;
                    (y, Cache::GroupNorm(c))
                }
                Op::Affine { w, b, .. } => {
                    let (y, c) = g.affine_forward(&a, &self.params[w], self.bias(k, b)?)?;
                    (y, Cache::Affine(c))
                }
            };
            a = out;
            caches.push(cache);
        }
        Ok((a, caches))
    }

    /// The gradient of every parameter (`None` for running statistics and absent biases)
    /// from the gradient of the scores. Nothing is computed for the input images: the first
    /// convolution gives its filter gradient only, and the walk stops there.
    fn backward(&self, dscores: Tensor, caches: Vec<Cache>) -> Result<Vec<Option<Tensor>>> {
        let g = &self.gpu;
        let mut grads: Vec<Option<Tensor>> = vec![None; self.params.len()];
        let mut d = dscores;
        let mut caches: Vec<Option<Cache>> = caches.into_iter().map(Some).collect();
        // The gradient of the pool of a conv + ReLU + pool layer, which the conv below it takes.
        let mut pooled: Option<Tensor> = None;
        for (k, op) in self.plan.ops.iter().enumerate().rev() {
            if k == 0 && matches!(op, Op::Relu | Op::Pool(_)) {
                break; // no parameters, and the images need no gradient
            }
            let cache = caches
                .get_mut(k)
                .and_then(Option::take)
                .ok_or_else(|| Error::Kernel("network: an op without its cache".into()))?;
            d = match (*op, cache) {
                (Op::Pool(_), Cache::Pooled) => {
                    pooled = Some(d.clone());
                    continue;
                }
                (
                    Op::Conv { w, b, channels, .. },
                    cache @ (Cache::Conv(_) | Cache::ConvRelu(_) | Cache::ConvReluPool(_)),
                ) => {
                    // The first layer's input (the images) needs no gradient: only dW and db.
                    let first = k == 0;
                    // `db` is None where it was not computed (a layer without a bias).
                    let (dw, db, da_prev) = match cache {
                        Cache::ConvReluPool(c) => {
                            // From the gradient of its pool, the op walked just before.
                            let dp = pooled.take().ok_or_else(|| {
                                Error::Kernel("network: a pool without its gradient".into())
                            })?;
                            if first {
                                let (dw, db) = g.conv_relu_pool_filter(&dp, &c, b.is_some())?;
                                (dw, db, None)
                            } else {
                                let (da, dw, db) = g.conv_relu_pool_grads(&dp, &c, b.is_some())?;
                                (dw, db, Some(da))
                            }
                        }
                        Cache::ConvRelu(c) if first => {
                            let (dw, db) = g.conv_relu_backward_filter(&d, &c)?;
                            (dw, Some(db), None)
                        }
                        Cache::Conv(c) if first => {
                            let (dw, db) = g.conv_backward_filter(&d, &c)?;
                            (dw, Some(db), None)
                        }
                        Cache::ConvRelu(c) => {
                            let r = g.conv_relu_backward(&d, &c)?;
                            (r.dw, Some(r.db), Some(r.da_prev))
                        }
                        Cache::Conv(c) => {
                            let r = g.conv_backward(&d, &c)?;
                            (r.dw, Some(r.db), Some(r.da_prev))
                        }
                        _ => return Err(Error::Kernel("network: conv cache".into())),
                    };
                    grads[w] = Some(dw);
                    if let (Some(b), Some(db)) = (b, db) {
                        grads[b] = Some(db.reshape(&[channels])?);
                    }
                    match da_prev {
                        Some(da) => da,
                        None => break,
                    }
                }
                (Op::Relu, Cache::Relu(c)) => g.relu_backward(&d, &c)?,
                (Op::Pool(_), Cache::Pool(c)) => g.pool_backward(&d, &c)?,
                (Op::BatchNorm { gamma, .. }, Cache::BatchNorm(c)) => {
                    let r = g.spatial_batchnorm_backward(&d, &c)?;
                    grads[gamma] = Some(r.dgamma);
                    grads[gamma + 1] = Some(r.dbeta);
                    r.dx
                }
                (Op::GroupNorm { gamma, .. }, Cache::GroupNorm(c)) => {
                    let r = g.spatial_groupnorm_backward(&d, &c)?;
                    grads[gamma] = Some(r.dgamma);
                    grads[gamma + 1] = Some(r.dbeta);
                    r.dx
                }
                (Op::Affine { w, b, .. }, Cache::Affine(c)) => {
                    let r = g.affine_backward(&d, &c)?;
                    grads[w] = Some(r.dw);
                    if let Some(b) = b {
                        grads[b] = Some(r.db);
                    }
                    r.dx
                }
                _ => return Err(Error::Kernel("network: an op and its cache differ".into())),
            };
        }
        Ok(grads)
    }

    /// One training step on images `x` `(m, H, W, C)` with class `labels`: forward (batch norm
    /// in train mode), softmax cross-entropy, backward and Adam, all recorded without a
    /// round trip. Returns the mean data loss (without the L2 term) as a `(1,)` tensor that
    /// stays on the device.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for images the network does not take or a label count that
    /// is not `m`, [`Error::LabelOutOfRange`], device errors.
    pub fn step(&mut self, x: &Array4<f32>, labels: &[usize]) -> Result<Tensor> {
        if labels.len() != x.shape()[0] {
            return Err(Error::ShapeMismatch {
                what: "labels, one per image",
                expected: vec![x.shape()[0]],
                got: vec![labels.len()],
            });
        }
        let xt = self.input(x)?;
        // Forward and backward write no tensor that they read through a texture (the
        // parameters change after them): the filter gradient of seed 001's first layer reads
        // the images through the copy that its forward made.
        let gpu = self.gpu.clone();
        let (loss, grads) = gpu.sharing_textures(|| {
            let (scores, caches) = self.forward(&xt, true)?;
            let (loss, dscores) = self
                .gpu
                .softmax_loss(&scores, &Labels::Indices(labels.to_vec()))?;
            Ok((loss, self.backward(dscores, caches)?))
        })?;
        for (i, d) in grads.iter().enumerate() {
            let (spec, Some(d)) = (&self.plan.params[i], d) else {
                continue;
            };
            if !spec.trained {
                continue;
            }
            let adam = if spec.decays {
                &mut self.decayed
            } else {
                &mut self.plain
            };
            adam.step(&self.gpu, &mut self.params[i], d)?;
        }
        Ok(loss)
    }

    /// The class scores `(m, classes)` of images `x` (batch norm in test mode).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for images the network does not take, device errors.
    pub fn scores(&mut self, x: &Array4<f32>) -> Result<Array2<f32>> {
        let xt = self.input(x)?;
        let (scores, _) = self.forward(&xt, false)?;
        self.gpu.download(&scores)
    }

    /// The predicted class of each image of `x` (the highest score; the first on a tie).
    ///
    /// # Errors
    /// As [`GpuNet::scores`].
    pub fn predict(&mut self, x: &Array4<f32>) -> Result<Vec<usize>> {
        Ok(argmax_rows(&self.scores(x)?))
    }

    /// `sum(W^2)` over the parameters that take the L2 weight decay (the weights, by the same
    /// rule as the optimizer), downloaded.
    pub(super) fn decayed_square_sum(&self) -> Result<f64> {
        let mut sum = 0.0;
        for (spec, t) in self.plan.params.iter().zip(&self.params) {
            if spec.decays {
                let v = self.gpu.download::<IxDyn>(t)?;
                sum += v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>();
            }
        }
        Ok(sum)
    }

    /// The current parameters, downloaded, with the network's name and hyper-parameters.
    ///
    /// # Errors
    /// Device errors.
    pub fn weights(&self) -> Result<Weights> {
        let params = self
            .plan
            .params
            .iter()
            .zip(&self.params)
            .map(|(p, t)| Ok((p.name.clone(), self.gpu.download::<IxDyn>(t)?)))
            .collect::<Result<_>>()?;
        Ok(Weights {
            model: self.net.name.clone(),
            hyper: self.net.hyper.clone(),
            params,
        })
    }
}

/// The index of the largest value of each row (the first of equal ones; NaN never wins).
pub(crate) fn argmax_rows(scores: &Array2<f32>) -> Vec<usize> {
    scores
        .rows()
        .into_iter()
        .map(|r| {
            let mut best = 0;
            for (j, &v) in r.iter().enumerate() {
                if v > r[best] || r[best].is_nan() && !v.is_nan() {
                    best = j;
                }
            }
            best
        })
        .collect()
}
