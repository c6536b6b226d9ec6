//! A [`Sequential`] network on the CPU reference: the same ops as [`super::GpuNet`], step for
//! step, to check GPU training against.

use ndarray::{Array1, Array2, Array4, ArrayD, ArrayView1, ArrayView2, ArrayView4};

use super::gpu::argmax_rows;
use super::{Op, Plan, Sequential};
use crate::cpu;
use crate::error::{Error, Result};
use crate::layers::{AdamConfig, BatchNorm, Labels, NormMode};
use crate::weights::Weights;

enum Cache {
    Conv(cpu::ConvCache<f32>, Option<cpu::ReluCache<f32>>),
    Relu(cpu::ReluCache<f32>),
    Pool(cpu::PoolCache<f32>),
    BatchNorm(cpu::BatchNormCache<f32>),
    GroupNorm(cpu::GroupNormCache<f32>),
    Affine(cpu::AffineCache<f32>),
}

/// A [`Sequential`] network trained on the CPU reference (f32), the twin of
/// [`super::GpuNet`]: the same ops, the same Adam, the same loss.
#[derive(Debug, Clone)]
pub struct CpuNet {
    net: Sequential,
    plan: Plan,
    params: Vec<ArrayD<f32>>,
    adam: Vec<cpu::AdamState<f32>>,
    config: AdamConfig,
}

/// `a` as an array of `D`'s rank, or [`Error::Rank`] naming `what`.
fn view<'a, D: ndarray::Dimension>(
    a: &'a ArrayD<f32>,
    what: &'static str,
) -> Result<ndarray::ArrayView<'a, f32, D>> {
    a.view()
        .into_dimensionality::<D>()
        .map_err(|_| Error::Rank {
            what,
            expected: D::NDIM.unwrap_or(0),
            shape: a.shape().to_vec(),
        })
}

fn view4(a: &ArrayD<f32>) -> Result<ArrayView4<'_, f32>> {
    view(a, "network activation or weights (4-D)")
}

fn view2(a: &ArrayD<f32>) -> Result<ArrayView2<'_, f32>> {
    view(a, "fully connected weights (D, M)")
}

fn view1(a: &ArrayD<f32>) -> Result<ArrayView1<'_, f32>> {
    view(a, "bias or norm parameter (C,)")
}

impl CpuNet {
    /// `net` with `weights` and Adam with `adam` (weight decay `reg` on weights, as
    /// [`super::GpuNet::new`]).
    ///
    /// # Errors
    /// As [`super::GpuNet::new`].
    pub fn new(net: &Sequential, weights: &Weights, adam: AdamConfig) -> Result<Self> {
        let plan = net.plan()?;
        net.check_training(&adam)?;
        let params: Vec<ArrayD<f32>> = net.checked(&plan, weights)?.into_iter().cloned().collect();
        let adam_states = params
            .iter()
            .map(|p| cpu::AdamState::zeros(p.shape()))
            .collect::<Result<_>>()?;
        Ok(Self {
            net: net.clone(),
            plan,
            params,
            adam: adam_states,
            config: adam,
        })
    }

    /// The bias parameter `b`, or `zero` (the op's [`Op::missing_bias`]) when there is none.
    fn bias<'a>(
        &'a self,
        b: Option<usize>,
        zero: Option<&'a Array1<f32>>,
    ) -> Result<ArrayView1<'a, f32>> {
        match (b, zero) {
            (Some(b), _) => view1(&self.params[b]),
            (None, Some(z)) => Ok(z.view()),
            (None, None) => Err(Error::Kernel(
                "network: a layer without bias or zero bias".into(),
            )),
        }
    }

    fn forward(&mut self, x: ArrayD<f32>, train: bool) -> Result<(Array2<f32>, Vec<Cache>)> {
        let mut a = x;
        let mut caches = Vec::new();
        for op in &self.plan.ops {
            let (out, cache) = match *op {
                Op::Conv {
                    params, w, b, relu, ..
                } => {
                    let zero = op.missing_bias().map(Array1::zeros);
                    let (z, c) = cpu::conv_forward(
                        view4(&a)?,
                        view4(&self.params[w])?,
                        self.bias(b, zero.as_ref())?,
                        params,
                    )?;
                    if relu {
                        let (y, r) = cpu::relu_forward(z.view().into_dyn())?;
                        (y, Cache::Conv(c, Some(r)))
                    } else {
                        (z.into_dyn(), Cache::Conv(c, None))
                    }
                }
                Op::Relu => {
                    let (y, c) = cpu::relu_forward(a.view())?;
                    (y, Cache::Relu(c))
                }
                Op::Pool(p) => {
                    let (y, c) = cpu::pool_forward(view4(&a)?, p)?;
                    (y.into_dyn(), Cache::Pool(c))
                }
                Op::BatchNorm { gamma, bn } => {
                    let mut state = cpu::BatchNormState {
                        running_mean: Some(view1(&self.params[gamma + 2])?.to_owned()),
                        running_var: Some(view1(&self.params[gamma + 3])?.to_owned()),
                    };
                    let mode = if train {
                        NormMode::Train
                    } else {
                        NormMode::Test
                    };
                    let (y, c) = cpu::spatial_batchnorm_forward(
                        view4(&a)?,
                        view1(&self.params[gamma])?,
                        view1(&self.params[gamma + 1])?,
                        &mut state,
                        BatchNorm { mode, ..bn },
                    )?;
                    if let (Some(m), Some(v)) = (state.running_mean, state.running_var) {
                        self.params[gamma + 2] = m.into_dyn();
                        self.params[gamma + 3] = v.into_dyn();
                    }
                    (y.into_dyn(), Cache::BatchNorm(c))
                }
                Op::GroupNorm { gamma, gn } => {
                    let (y, c) = cpu::spatial_groupnorm_forward(
                        view4(&a)?,
                        view1(&self.params[gamma])?,
                        view1(&self.params[gamma + 1])?,
                        gn,
                    )?;
                    (y.into_dyn(), Cache::GroupNorm(c))
                }
                Op::Affine { w, b, .. } => {
                    let zero = op.missing_bias().map(Array1::zeros);
                    let (y, c) = cpu::affine_forward(
                        a.view(),
                        view2(&self.params[w])?,
                        self.bias(b, zero.as_ref())?,
                    )?;
                    (y.into_dyn(), Cache::Affine(c))
                }
            };
            a = out;
            caches.push(cache);
        }
        let scores = a
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| Error::Kernel("network: scores are not (m, classes)".into()))?;
        Ok((scores, caches))
    }

    fn backward(
        &self,
        dscores: Array2<f32>,
        caches: Vec<Cache>,
    ) -> Result<Vec<Option<ArrayD<f32>>>> {
        let mut grads: Vec<Option<ArrayD<f32>>> = vec![None; self.params.len()];
        let mut d = dscores.into_dyn();
        for (op, cache) in self.plan.ops.iter().zip(caches).rev() {
            d = match (*op, cache) {
                (Op::Conv { w, b, .. }, Cache::Conv(c, relu)) => {
                    let dz = match relu {
                        Some(r) => cpu::relu_backward(d.view(), &r)?,
                        None => d,
                    };
                    let r = cpu::conv_backward(view4(&dz)?, &c)?;
                    grads[w] = Some(r.dw.into_dyn());
                    if let Some(b) = b {
                        let len = r.db.len();
                        grads[b] =
                            Some(r.db.into_shape_with_order(vec![len]).map_err(|_| {
                                Error::Kernel("network: conv bias gradient".into())
                            })?);
                    }
                    r.da_prev.into_dyn()
                }
                (Op::Relu, Cache::Relu(c)) => cpu::relu_backward(d.view(), &c)?,
                (Op::Pool(_), Cache::Pool(c)) => cpu::pool_backward(view4(&d)?, &c)?.into_dyn(),
                (Op::BatchNorm { gamma, .. }, Cache::BatchNorm(c)) => {
                    let r = cpu::spatial_batchnorm_backward(view4(&d)?, &c)?;
                    grads[gamma] = Some(r.dgamma.into_dyn());
                    grads[gamma + 1] = Some(r.dbeta.into_dyn());
                    r.dx.into_dyn()
                }
                (Op::GroupNorm { gamma, .. }, Cache::GroupNorm(c)) => {
                    let r = cpu::spatial_groupnorm_backward(view4(&d)?, &c)?;
                    grads[gamma] = Some(r.dgamma.into_dyn());
                    grads[gamma + 1] = Some(r.dbeta.into_dyn());
                    r.dx.into_dyn()
                }
                (Op::Affine { w, b, .. }, Cache::Affine(c)) => {
                    let r = cpu::affine_backward(
                        d.view().into_dimensionality().map_err(|_| {
                            Error::Kernel("network: affine gradient is not (m, M)".into())
                        })?,
                        &c,
                    )?;
                    grads[w] = Some(r.dw.into_dyn());
                    if let Some(b) = b {
                        grads[b] = Some(r.db.into_dyn());
                    }
                    r.dx
                }
                _ => return Err(Error::Kernel("network: an op and its cache differ".into())),
            };
        }
        Ok(grads)
    }

    /// One training step, as [`super::GpuNet::step`]; returns the mean data loss.
    ///
    /// # Errors
    /// As [`super::GpuNet::step`].
    pub fn step(&mut self, x: &Array4<f32>, labels: &[usize]) -> Result<f32> {
        self.net.check_images(x.shape())?;
        let (scores, caches) = self.forward(x.clone().into_dyn(), true)?;
        let (loss, dscores) = cpu::softmax_loss(scores.view(), &Labels::Indices(labels.to_vec()))?;
        let grads = self.backward(dscores, caches)?;
        let reg = self.net.reg();
        for (i, d) in grads.iter().enumerate() {
            let (spec, Some(d)) = (&self.plan.params[i], d) else {
                continue;
            };
            if !spec.trained {
                continue;
            }
            let decay = if spec.decays { reg } else { 0.0 };
            let config = self.config.with_weight_decay(decay);
            cpu::adam(
                self.params[i].view_mut(),
                d.view(),
                &mut self.adam[i],
                &config,
            )?;
        }
        Ok(loss)
    }

    /// The predicted class of each image (batch norm in test mode).
    ///
    /// # Errors
    /// As [`CpuNet::step`].
    pub fn predict(&mut self, x: &Array4<f32>) -> Result<Vec<usize>> {
        self.net.check_images(x.shape())?;
        let (scores, _) = self.forward(x.clone().into_dyn(), false)?;
        Ok(argmax_rows(&scores))
    }

    /// The current parameters.
    pub fn weights(&self) -> Weights {
        Weights {
            model: self.net.name.clone(),
            hyper: self.net.hyper.clone(),
            params: self
                .plan
                .params
                .iter()
                .zip(&self.params)
                .map(|(p, v)| (p.name.clone(), v.clone()))
                .collect(),
        }
    }
}
