//! Seed 001's network, `signs`, trained on the GPU, with a CPU twin that trains the same way:
//!
//! `CONV2D 4x4x3->8, stride 1, SAME -> RELU -> MAXPOOL 8x8 stride 8 SAME -> CONV2D 2x2x8->16,
//! stride 1, SAME -> RELU -> MAXPOOL 4x4 stride 4 SAME -> FLATTEN -> FULLY CONNECTED -> classes`,
//! softmax cross-entropy, Adam. The convolutions have weights `W1`, `W2` and no bias; the fully
//! connected layer has `W3` and `b3`. Weights start Glorot uniform, `U(-l, l)` with
//! `l = sqrt(6 / (fan_in + fan_out))`, biases zero.
//!
//! A GPU step records forward, loss, backward and the Adam updates without reading anything
//! back; the loss stays on the device until the caller downloads it.

use ndarray::{Array1, Array2, Array4, ArrayD, Ix2, Ix4};

use crate::error::{Error, Result};
use crate::gpu::{Adam, Gpu, Tensor};
use crate::layers::{AdamConfig, Labels};
use crate::params::{ConvParams, Padding, PoolMode, PoolParams};
use crate::weights::Weights;

/// The sizes of a `signs` network for images `(h, w, c)` and `classes` classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signs {
    /// Image height, width and channels.
    pub image: (usize, usize, usize),
    /// Number of classes.
    pub classes: usize,
}

impl Signs {
    fn conv1(&self) -> ConvParams {
        let (h, w, _) = self.image;
        ConvParams::new(1, 0).with_padding(Padding::same((h, w), (4, 4), (1, 1)))
    }

    fn pool1(&self) -> PoolParams {
        let (h, w, _) = self.image;
        PoolParams::new(8, 8, PoolMode::Max).with_padding(Padding::same((h, w), (8, 8), (8, 8)))
    }

    fn after_pool1(&self) -> (usize, usize) {
        let (h, w, _) = self.image;
        (h.div_ceil(8), w.div_ceil(8))
    }

    fn conv2(&self) -> ConvParams {
        let (h, w) = self.after_pool1();
        ConvParams::new(1, 0).with_padding(Padding::same((h, w), (2, 2), (1, 1)))
    }

    fn pool2(&self) -> PoolParams {
        let (h, w) = self.after_pool1();
        PoolParams::new(4, 4, PoolMode::Max).with_padding(Padding::same((h, w), (4, 4), (4, 4)))
    }

    /// Features into the fully connected layer.
    pub fn features(&self) -> usize {
        let (h, w) = self.after_pool1();
        h.div_ceil(4) * w.div_ceil(4) * 16
    }

    /// Glorot-uniform weights (`W1`, `W2`, `W3`, `b3`) from `seed`, deterministic.
    pub fn init(&self, seed: u64) -> Weights {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        let mut uniform = move |limit: f64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            ((2.0 * u - 1.0) * limit) as f32
        };
        let c = self.image.2;
        let mut glorot = |shape: &[usize], fan_in: usize, fan_out: usize| {
            let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
            ArrayD::from_shape_simple_fn(shape, || uniform(limit))
        };
        let d = self.features();
        let w1 = glorot(&[4, 4, c, 8], 16 * c, 16 * 8);
        let w2 = glorot(&[2, 2, 8, 16], 4 * 8, 4 * 16);
        let w3 = glorot(&[d, self.classes], d, self.classes);
        let b3 = ArrayD::zeros(vec![self.classes]);
        Weights {
            model: "signs".into(),
            hyper: vec![("classes".into(), self.classes as f64)],
            params: vec![
                ("W1".into(), w1),
                ("W2".into(), w2),
                ("W3".into(), w3),
                ("b3".into(), b3),
            ],
        }
    }
}

/// The four parameters of `w`, or [`Error::DatasetMissing`] naming the one that is absent.
fn four(w: &Weights) -> Result<[&ArrayD<f32>; 4]> {
    let get = |n: &str| {
        w.get(n).ok_or_else(|| Error::DatasetMissing {
            path: "weights".into(),
            name: n.into(),
        })
    };
    Ok([get("W1")?, get("W2")?, get("W3")?, get("b3")?])
}

/// A `signs` network on the GPU: its parameters, Adam's state and the input tensor a
/// minibatch is written into.
#[derive(Debug)]
pub struct SignsGpu {
    gpu: Gpu,
    net: Signs,
    params: [Tensor; 4],
    zeros: [Tensor; 2],
    adam: Adam,
    x: Option<Tensor>,
}

impl SignsGpu {
    /// The network with `weights` (as [`Signs::init`] makes them) and Adam with learning rate
    /// `lr`.
    ///
    /// # Errors
    /// [`Error::DatasetMissing`] when a parameter is absent, device errors.
    pub fn new(gpu: &Gpu, net: Signs, weights: &Weights, lr: f64) -> Result<Self> {
        let [w1, w2, w3, b3] = four(weights)?;
        Ok(Self {
            params: [
                gpu.upload(w1)?,
                gpu.upload(w2)?,
                gpu.upload(w3)?,
                gpu.upload(b3)?,
            ],
            zeros: [gpu.zeros(&[8])?, gpu.zeros(&[16])?],
            adam: Adam::with_config(AdamConfig::new(lr)),
            x: None,
            gpu: gpu.clone(),
            net,
        })
    }

    /// The scores `(m, classes)` of images `x` `(m, h, w, c)`, and the caches for backward.
    #[allow(clippy::type_complexity)]
    fn forward(
        &self,
        x: &Tensor,
    ) -> Result<(
        Tensor,
        (
            crate::ConvReluCache,
            crate::PoolCache,
            crate::ConvReluCache,
            crate::PoolCache,
            crate::AffineCache,
        ),
    )> {
        let g = &self.gpu;
        let n = &self.net;
        let [w1, w2, w3, b3] = &self.params;
        let (a1, c1) = g.conv_relu_forward(x, w1, &self.zeros[0], n.conv1())?;
        let (p1, pc1) = g.pool_forward(&a1, n.pool1())?;
        let (a2, c2) = g.conv_relu_forward(&p1, w2, &self.zeros[1], n.conv2())?;
        let (p2, pc2) = g.pool_forward(&a2, n.pool2())?;
        let (scores, ac) = g.affine_forward(&p2, w3, b3)?;
        Ok((scores, (c1, pc1, c2, pc2, ac)))
    }

    /// One training step on the minibatch `x` `(m, h, w, c)` with `labels`: forward, loss,
    /// backward and the Adam updates, all recorded; returns the loss as a `(1,)` tensor on the
    /// device (nothing is read back).
    ///
    /// # Errors
    /// Shape errors for images the network cannot take, [`Error::LabelOutOfRange`].
    pub fn step(&mut self, x: &Array4<f32>, labels: &[usize]) -> Result<Tensor> {
        let g = self.gpu.clone();
        let reuse = self.x.as_ref().is_some_and(|t| t.shape() == x.shape());
        if !reuse {
            self.x = Some(g.upload(x)?);
        } else if let Some(t) = self.x.as_mut() {
            g.write(t, x)?;
        }
        let xt = self
            .x
            .clone()
            .ok_or_else(|| Error::Kernel("no input".into()))?;
        let (scores, (c1, pc1, c2, pc2, ac)) = self.forward(&xt)?;
        let (loss, dscores) = g.softmax_loss(&scores, &Labels::Indices(labels.to_vec()))?;
        let ga = g.affine_backward(&dscores, &ac)?;
        let dp2 = g.pool_backward(&ga.dx, &pc2)?;
        let g2 = g.conv_relu_backward(&dp2, &c2)?;
        let dp1 = g.pool_backward(&g2.da_prev, &pc1)?;
        let g1 = g.conv_relu_backward(&dp1, &c1)?;
        let grads = [&g1.dw, &g2.dw, &ga.dw, &ga.db];
        for (p, d) in self.params.iter_mut().zip(grads) {
            self.adam.step(&g, p, d)?;
        }
        Ok(loss)
    }

    /// Predicted classes of `x`.
    ///
    /// # Errors
    /// Shape errors, device errors.
    pub fn predict(&self, x: &Array4<f32>) -> Result<Vec<usize>> {
        let xt = self.gpu.upload(x)?;
        let (scores, _) = self.forward(&xt)?;
        let s: Array2<f32> = self.gpu.download(&scores)?;
        Ok(s.rows()
            .into_iter()
            .map(|r| {
                (0..r.len())
                    .max_by(|&a, &b| r[a].total_cmp(&r[b]))
                    .unwrap_or(0)
            })
            .collect())
    }

    /// The current weights, downloaded.
    ///
    /// # Errors
    /// Device errors.
    pub fn weights(&self) -> Result<Weights> {
        let names = ["W1", "W2", "W3", "b3"];
        let mut params = Vec::new();
        for (n, t) in names.iter().zip(&self.params) {
            params.push((n.to_string(), self.gpu.download::<ndarray::IxDyn>(t)?));
        }
        Ok(Weights {
            model: "signs".into(),
            hyper: vec![("classes".into(), self.net.classes as f64)],
            params,
        })
    }
}

/// The same network trained on the CPU reference, step for step as [`SignsGpu`].
#[derive(Debug, Clone)]
pub struct SignsCpu {
    net: Signs,
    params: [ArrayD<f32>; 4],
    adam: [crate::cpu::AdamState<f32>; 4],
    config: AdamConfig,
}

impl SignsCpu {
    /// The network with `weights` and Adam with learning rate `lr`.
    ///
    /// # Errors
    /// [`Error::DatasetMissing`] when a parameter is absent.
    pub fn new(net: Signs, weights: &Weights, lr: f64) -> Result<Self> {
        let [w1, w2, w3, b3] = four(weights)?;
        let state = |a: &ArrayD<f32>| crate::cpu::AdamState::zeros(a.shape());
        Ok(Self {
            adam: [state(w1)?, state(w2)?, state(w3)?, state(b3)?],
            params: [w1.clone(), w2.clone(), w3.clone(), b3.clone()],
            config: AdamConfig::new(lr),
            net,
        })
    }

    /// One training step; returns the loss.
    ///
    /// # Errors
    /// Shape errors, [`Error::LabelOutOfRange`].
    pub fn step(&mut self, x: &Array4<f32>, labels: &[usize]) -> Result<f32> {
        use crate::cpu;
        let n = self.net;
        let shape = |e: ndarray::ShapeError| Error::Kernel(format!("signs (CPU): {e}"));
        let w1 = self.params[0]
            .view()
            .into_dimensionality::<Ix4>()
            .map_err(shape)?;
        let w2 = self.params[1]
            .view()
            .into_dimensionality::<Ix4>()
            .map_err(shape)?;
        let w3 = self.params[2]
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(shape)?;
        let b3 = self.params[3]
            .view()
            .into_dimensionality::<ndarray::Ix1>()
            .map_err(shape)?;
        let (z1, c1) = cpu::conv_forward(x.view(), w1, Array1::<f32>::zeros(8).view(), n.conv1())?;
        let (a1, r1) = cpu::relu_forward(z1.view().into_dyn())?;
        let a1 = a1.into_dimensionality::<Ix4>().map_err(shape)?;
        let (p1, pc1) = cpu::pool_forward(a1.view(), n.pool1())?;
        let (z2, c2) =
            cpu::conv_forward(p1.view(), w2, Array1::<f32>::zeros(16).view(), n.conv2())?;
        let (a2, r2) = cpu::relu_forward(z2.view().into_dyn())?;
        let a2 = a2.into_dimensionality::<Ix4>().map_err(shape)?;
        let (p2, pc2) = cpu::pool_forward(a2.view(), n.pool2())?;
        let (scores, ac) = cpu::affine_forward(p2.view().into_dyn(), w3, b3)?;
        let (loss, dscores) = cpu::softmax_loss(scores.view(), &Labels::Indices(labels.to_vec()))?;
        let ga = cpu::affine_backward(dscores.view(), &ac)?;
        let dp2 = ga.dx.into_dimensionality::<Ix4>().map_err(shape)?;
        let da2 = cpu::pool_backward(dp2.view(), &pc2)?;
        let dz2 = cpu::relu_backward(da2.view().into_dyn(), &r2)?;
        let g2 = cpu::conv_backward(dz2.into_dimensionality::<Ix4>().map_err(shape)?.view(), &c2)?;
        let da1 = cpu::pool_backward(g2.da_prev.view(), &pc1)?;
        let dz1 = cpu::relu_backward(da1.view().into_dyn(), &r1)?;
        let g1 = cpu::conv_backward(dz1.into_dimensionality::<Ix4>().map_err(shape)?.view(), &c1)?;
        let grads = [
            g1.dw.into_dyn(),
            g2.dw.into_dyn(),
            ga.dw.into_dyn(),
            ga.db.into_dyn(),
        ];
        for ((p, d), st) in self.params.iter_mut().zip(&grads).zip(&mut self.adam) {
            cpu::adam(p.view_mut(), d.view(), st, &self.config)?;
        }
        Ok(loss)
    }
}
