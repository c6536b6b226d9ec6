//! Networks stacked from the layers: a [`Sequential`] description, its parameters as
//! [`Weights`], and two executors that train it the same way, [`GpuNet`] (every step recorded
//! on the GPU) and [`CpuNet`] (the CPU reference, to check it).
//!
//! A network is a list of [`Layer`]s applied to images `(m, H, W, C)`; the last layer gives the
//! class scores that softmax cross-entropy turns into a loss. Parameters are named as in the
//! exercises: the `k`-th convolution or fully connected layer has `Wk` and `bk`; a norm layer
//! after it has `gammak` and `betak` (and a batch norm its running statistics,
//! `running_meank` and `running_vark`, which are saved but not trained).
//!
//! ```
//! use wgpu_cnn::nn::{Pad, Sequential};
//!
//! let net = Sequential::new("mine", (32, 32, 3))
//!     .conv((3, 3), 16, 1, Pad::Same)
//!     .relu()
//!     .max_pool((2, 2), 2, Pad::Valid)
//!     .affine(10);
//! let weights = net.init(1)?; // W1 (3, 3, 3, 16), b1 (16,), W2 (4096, 10), b2 (10,)
//! assert_eq!(weights.params[2].1.shape(), &[16 * 16 * 16, 10]);
//! # Ok::<(), wgpu_cnn::Error>(())
//! ```
//!
//! The two networks of the exercises are [`Sequential::signs`] and [`Sequential::three_layer`].

mod cpu;
mod gpu;
mod train;

pub use cpu::CpuNet;
pub use gpu::GpuNet;
pub use train::{accuracy, shuffled, Epoch, Progress, TrainConfig};

use ndarray::ArrayD;

use crate::error::{Error, Result};
use crate::layers::{BatchNorm, GroupNorm};
use crate::params::{ConvParams, Padding, PoolMode, PoolParams, Ties};
use crate::rng::Rng;
use crate::weights::Weights;

/// Padding of a convolution or pooling layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pad {
    /// TensorFlow's `SAME`: `ceil(n / stride)` outputs (padding never wins a max and is not
    /// counted in an average).
    Same,
    /// No padding.
    Valid,
    /// This many zeros on every side (pooling: must be smaller than the window).
    Zeros(usize),
}

/// How a weight tensor starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Glorot (Xavier) uniform, `U(-l, l)`, `l = sqrt(6 / (fan_in + fan_out))` (seed 001).
    Glorot,
    /// `N(0, scale^2)` (cs231n's `weight_scale * randn`).
    Normal(f64),
}

/// One layer of a [`Sequential`] network.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// Convolution with `channels` filters of size `filter`, a stride on both axes, weights
    /// `(f_h, f_w, C_in, channels)` and, if `bias`, a bias `(channels,)`.
    Conv {
        /// `(f_h, f_w)`.
        filter: (usize, usize),
        /// Output channels.
        channels: usize,
        /// Stride on both axes.
        stride: usize,
        /// Padding.
        pad: Pad,
        /// Whether the layer has a bias.
        bias: bool,
        /// Weight initialisation.
        init: Init,
    },
    /// `max(x, 0)`; fused into the convolution before it, if any.
    Relu,
    /// Max or average pooling.
    Pool {
        /// `(f_h, f_w)`.
        window: (usize, usize),
        /// Stride on both axes.
        stride: usize,
        /// Max or average.
        mode: PoolMode,
        /// Padding.
        pad: Pad,
        /// Where a max pool's backward sends the gradient of a tied maximum.
        ties: Ties,
    },
    /// Spatial batch norm over `(N, H, W)` per channel, with `gamma` and `beta`.
    BatchNorm(BatchNorm),
    /// Spatial group norm.
    GroupNorm(GroupNorm),
    /// Fully connected: the input `(m, ...)` read as `(m, D)`, times `W (D, out)`, plus `b`.
    Affine {
        /// Output features.
        out: usize,
        /// Whether the layer has a bias.
        bias: bool,
        /// Weight initialisation.
        init: Init,
    },
}

impl Layer {
    fn kind(&self) -> &'static str {
        match self {
            Layer::Conv { .. } => "conv",
            Layer::Relu => "relu",
            Layer::Pool {
                mode: PoolMode::Max,
                ..
            } => "max pool",
            Layer::Pool { .. } => "average pool",
            Layer::BatchNorm(_) => "batch norm",
            Layer::GroupNorm(_) => "group norm",
            Layer::Affine { .. } => "affine",
        }
    }
}

/// A network: a name, the image size it takes `(H, W, C)`, its layers, and hyper-parameters
/// that are saved with its weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequential {
    /// The model's name (saved with the weights; loading checks it).
    pub name: String,
    /// The images it takes, `(H, W, C)`.
    pub input: (usize, usize, usize),
    /// The layers, in order.
    pub layers: Vec<Layer>,
    /// Hyper-parameters saved with the weights (`reg` is the L2 weight decay of every `W`).
    pub hyper: Vec<(String, f64)>,
}

/// Settings of seed 002's three-layer convnet (cs231n's `ThreeLayerConvNet`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThreeLayer {
    /// Filters of the convolution (32).
    pub num_filters: usize,
    /// Filter size, odd (7); padding `(filter_size - 1) / 2` keeps the image size.
    pub filter_size: usize,
    /// Width of the hidden fully connected layer (100).
    pub hidden_dim: usize,
    /// Standard deviation of the initial weights (1e-3).
    pub weight_scale: f64,
    /// L2 regularisation strength (0.0).
    pub reg: f64,
    /// A norm layer after the convolution (none).
    pub norm: Option<Norm>,
}

/// Which norm [`ThreeLayer`] puts after its convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Norm {
    /// Spatial batch norm.
    Batch,
    /// Spatial group norm with this many groups.
    Group(usize),
}

impl Norm {
    /// The `norm` hyper-parameter saved with three-layer weights (hyper-parameters are floats):
    /// 0 for none, 1 for batch norm, `1 + g` for group norm with `g` groups.
    pub fn code(norm: Option<Norm>) -> f64 {
        match norm {
            None => 0.0,
            Some(Norm::Batch) => 1.0,
            Some(Norm::Group(g)) => 1.0 + g as f64,
        }
    }

    /// The norm that [`Norm::code`] gave `code`.
    ///
    /// ```
    /// use wgpu_cnn::nn::Norm;
    /// for norm in [None, Some(Norm::Batch), Some(Norm::Group(1)), Some(Norm::Group(8))] {
    ///     assert_eq!(Norm::from_code(Norm::code(norm)), norm);
    /// }
    /// ```
    pub fn from_code(code: f64) -> Option<Norm> {
        match code {
            c if c < 0.5 => None,
            c if c < 1.5 => Some(Norm::Batch),
            c => Some(Norm::Group((c - 1.0).round() as usize)),
        }
    }
}

impl Default for ThreeLayer {
    fn default() -> Self {
        Self {
            num_filters: 32,
            filter_size: 7,
            hidden_dim: 100,
            weight_scale: 1e-3,
            reg: 0.0,
            norm: None,
        }
    }
}

impl Sequential {
    /// An empty network for images `(H, W, C)`.
    pub fn new(name: &str, input: (usize, usize, usize)) -> Self {
        Self {
            name: name.to_string(),
            input,
            layers: Vec::new(),
            hyper: Vec::new(),
        }
    }

    /// Seed 001's network for images `image` and `classes` classes: conv 4x4 -> 8 SAME (no
    /// bias), ReLU, max pool 8x8 stride 8 SAME, conv 2x2 -> 16 SAME (no bias), ReLU, max pool 4x4
    /// stride 4 SAME, fully connected -> classes; Glorot uniform weights. Parameters `W1`, `W2`,
    /// `W3`, `b3`. The seed trains it with TensorFlow, so its max pools send a tied maximum's
    /// gradient to one element ([`Ties::FirstMax`]), as TensorFlow and JAX do.
    pub fn signs(image: (usize, usize, usize), classes: usize) -> Self {
        Self::new("signs", image)
            .conv((4, 4), 8, 1, Pad::Same)
            .without_bias()
            .relu()
            .max_pool((8, 8), 8, Pad::Same)
            .ties(Ties::FirstMax)
            .conv((2, 2), 16, 1, Pad::Same)
            .without_bias()
            .relu()
            .max_pool((4, 4), 4, Pad::Same)
            .ties(Ties::FirstMax)
            .affine(classes)
            .hyper("classes", classes as f64)
    }

    /// Seed 002's convnet: conv (stride 1, padding `(filter_size - 1) / 2`), \[norm\], ReLU, 2x2
    /// max pool stride 2, affine -> hidden, ReLU, affine -> classes; weights
    /// `N(0, weight_scale^2)`, biases zero, L2 `reg` on every `W`. Parameters `W1`, `b1`,
    /// [`gamma1`, `beta1`], `W2`, `b2`, `W3`, `b3`.
    pub fn three_layer(image: (usize, usize, usize), classes: usize, s: ThreeLayer) -> Self {
        let init = Init::Normal(s.weight_scale);
        let mut net = Self::new("three-layer", image)
            .conv(
                (s.filter_size, s.filter_size),
                s.num_filters,
                1,
                Pad::Zeros(s.filter_size.saturating_sub(1) / 2),
            )
            .initialised(init);
        net = match s.norm {
            Some(Norm::Batch) => net.batch_norm(BatchNorm::train()),
            Some(Norm::Group(g)) => net.group_norm(GroupNorm::new(g)),
            None => net,
        };
        net.relu()
            .max_pool((2, 2), 2, Pad::Valid)
            .affine(s.hidden_dim)
            .initialised(init)
            .relu()
            .affine(classes)
            .initialised(init)
            .hyper("classes", classes as f64)
            .hyper("num_filters", s.num_filters as f64)
            .hyper("filter_size", s.filter_size as f64)
            .hyper("hidden_dim", s.hidden_dim as f64)
            .hyper("weight_scale", s.weight_scale)
            .hyper("reg", s.reg)
            .hyper("norm", Norm::code(s.norm))
    }

    /// Appends a convolution with a bias, Glorot weights.
    pub fn conv(
        mut self,
        filter: (usize, usize),
        channels: usize,
        stride: usize,
        pad: Pad,
    ) -> Self {
        self.layers.push(Layer::Conv {
            filter,
            channels,
            stride,
            pad,
            bias: true,
            init: Init::Glorot,
        });
        self
    }

    /// Appends a ReLU.
    pub fn relu(mut self) -> Self {
        self.layers.push(Layer::Relu);
        self
    }

    /// Appends a max pool.
    pub fn max_pool(self, window: (usize, usize), stride: usize, pad: Pad) -> Self {
        self.pool(window, stride, PoolMode::Max, pad)
    }

    /// Appends an average pool.
    pub fn avg_pool(self, window: (usize, usize), stride: usize, pad: Pad) -> Self {
        self.pool(window, stride, PoolMode::Average, pad)
    }

    fn pool(mut self, window: (usize, usize), stride: usize, mode: PoolMode, pad: Pad) -> Self {
        self.layers.push(Layer::Pool {
            window,
            stride,
            mode,
            pad,
            ties: Ties::EveryMax,
        });
        self
    }

    /// Sets the tie rule of the last max pool's backward: [`Ties::EveryMax`] (the default, the
    /// numpy exercises' mask) or [`Ties::FirstMax`] (TensorFlow, JAX and PyTorch: one
    /// maximum per window receives the gradient, which matters where an image has flat regions,
    /// such as saturated pixels, whose activations tie exactly).
    pub fn ties(mut self, rule: Ties) -> Self {
        if let Some(Layer::Pool { ties, .. }) = self.layers.last_mut() {
            *ties = rule;
        }
        self
    }

    /// Appends a spatial batch norm (`gamma` ones, `beta` zeros).
    pub fn batch_norm(mut self, bn: BatchNorm) -> Self {
        self.layers.push(Layer::BatchNorm(bn));
        self
    }

    /// Appends a spatial group norm (`gamma` ones, `beta` zeros).
    pub fn group_norm(mut self, gn: GroupNorm) -> Self {
        self.layers.push(Layer::GroupNorm(gn));
        self
    }

    /// Appends a fully connected layer with a bias, Glorot weights.
    pub fn affine(mut self, out: usize) -> Self {
        self.layers.push(Layer::Affine {
            out,
            bias: true,
            init: Init::Glorot,
        });
        self
    }

    /// Drops the bias of the last convolution or fully connected layer.
    pub fn without_bias(mut self) -> Self {
        if let Some(Layer::Conv { bias, .. } | Layer::Affine { bias, .. }) = self.layers.last_mut()
        {
            *bias = false;
        }
        self
    }

    /// Sets the initialisation of the last convolution or fully connected layer.
    pub fn initialised(mut self, how: Init) -> Self {
        if let Some(Layer::Conv { init, .. } | Layer::Affine { init, .. }) = self.layers.last_mut()
        {
            *init = how;
        }
        self
    }

    /// Records a hyper-parameter (replacing one of the same name).
    pub fn hyper(mut self, name: &str, value: f64) -> Self {
        self.hyper.retain(|(n, _)| n != name);
        self.hyper.push((name.to_string(), value));
        self
    }

    /// The L2 regularisation strength (`reg`, 0 when absent).
    pub fn reg(&self) -> f64 {
        self.hyper
            .iter()
            .find(|(n, _)| n == "reg")
            .map_or(0.0, |&(_, v)| v)
    }

    /// `Ok` when `reg` is at least 0 and finite and `adam` is valid
    /// ([`crate::AdamConfig::validate`]).
    pub(crate) fn check_training(&self, adam: &crate::layers::AdamConfig) -> Result<()> {
        crate::layers::setting(
            "network: reg",
            self.reg(),
            crate::layers::Range::NonNegative,
        )?;
        adam.validate()
    }

    /// The number of classes: the outputs of the last layer.
    ///
    /// # Errors
    /// As [`Sequential::plan`].
    pub fn classes(&self) -> Result<usize> {
        Ok(self.plan()?.classes)
    }

    /// Checks that the layers stack on the input and resolves every size: the concrete
    /// parameters of each op, the parameters' names and shapes, and the class count.
    ///
    /// # Errors
    /// [`Error::Network`] naming the layer and its input: a convolution, pool or norm after a
    /// fully connected layer, a window larger than its (padded) input, a zero size, a group
    /// count that does not divide the channels, pool padding not smaller than the window, a
    /// network that does not end in a fully connected layer.
    pub fn plan(&self) -> Result<Plan> {
        let mut shape = Shape::Image(self.input.0, self.input.1, self.input.2);
        let mut ops = Vec::new();
        let mut params: Vec<ParamSpec> = Vec::new();
        let mut index = 0;
        let mut i = 0;
        while i < self.layers.len() {
            let layer = &self.layers[i];
            let fail = |problem: String| Error::Network {
                network: self.name.clone(),
                layer: i,
                kind: layer.kind(),
                input: shape.to_string(),
                problem,
            };
            let image = |shape: Shape| match shape {
                Shape::Image(h, w, c) if h > 0 && w > 0 && c > 0 => Ok((h, w, c)),
                Shape::Image(..) => Err(fail("the input is empty".into())),
                Shape::Flat(_) => Err(fail("needs images (H, W, C), not flat features".into())),
            };
            let fused = matches!(self.layers.get(i + 1), Some(Layer::Relu));
            match *layer {
                Layer::Conv {
                    filter,
                    channels,
                    stride,
                    pad,
                    bias,
                    init,
                } => {
                    let (h, w, c) = image(shape)?;
                    if filter.0 == 0 || filter.1 == 0 || channels == 0 || stride == 0 {
                        return Err(fail(
                            "filter, channels and stride must be at least 1".into(),
                        ));
                    }
                    index += 1;
                    let padding = padding(pad, (h, w), filter, stride);
                    let conv = ConvParams::new(stride, 0).with_padding(padding);
                    let geometry = crate::params::ConvGeometry::new(
                        [1, h, w, c],
                        [filter.0, filter.1, c, channels],
                        conv,
                    )
                    .map_err(|e| fail(e.to_string()))?;
                    let w_id = params.len();
                    params.push(ParamSpec::weight(
                        index,
                        vec![filter.0, filter.1, c, channels],
                        init,
                        (filter.0 * filter.1 * c, filter.0 * filter.1 * channels),
                    ));
                    let b_id = bias.then(|| {
                        params.push(ParamSpec::filled(format!("b{index}"), channels, 0.0));
                        params.len() - 1
                    });
                    let [_, oh, ow, oc] = geometry.output_shape();
                    ops.push(Op::Conv {
                        params: conv,
                        w: w_id,
                        b: b_id,
                        channels,
                        relu: fused,
                    });
                    shape = Shape::Image(oh, ow, oc);
                    i += usize::from(fused);
                }
                Layer::Relu => ops.push(Op::Relu),
                Layer::Pool {
                    window,
                    stride,
                    mode,
                    pad,
                    ties,
                } => {
                    let (h, w, c) = image(shape)?;
                    if window.0 == 0 || window.1 == 0 || stride == 0 {
                        return Err(fail("window and stride must be at least 1".into()));
                    }
                    let p = PoolParams::new(window.0, stride, mode)
                        .with_kernel(window.0, window.1)
                        .with_padding(padding(pad, (h, w), window, stride))
                        .with_ties(ties);
                    let g = crate::params::PoolGeometry::new([1, h, w, c], p)
                        .map_err(|e| fail(e.to_string()))?;
                    let [_, oh, ow, oc] = g.output_shape();
                    ops.push(Op::Pool(p));
                    shape = Shape::Image(oh, ow, oc);
                }
                Layer::BatchNorm(bn) => {
                    let (_, _, c) = image(shape)?;
                    bn.validate().map_err(|e| fail(e.to_string()))?;
                    let gamma = norm_params(&mut params, index, c);
                    let n = index.max(1);
                    params.push(ParamSpec::state(format!("running_mean{n}"), c, 0.0));
                    params.push(ParamSpec::state(format!("running_var{n}"), c, 0.0));
                    ops.push(Op::BatchNorm { gamma, bn });
                }
                Layer::GroupNorm(gn) => {
                    let (_, _, c) = image(shape)?;
                    gn.group_size(c).map_err(|e| fail(e.to_string()))?;
                    gn.validate().map_err(|e| fail(e.to_string()))?;
                    let gamma = norm_params(&mut params, index, c);
                    ops.push(Op::GroupNorm { gamma, gn });
                }
                Layer::Affine { out, bias, init } => {
                    let d = shape.len();
                    if d == 0 || out == 0 {
                        return Err(fail("needs at least one input and one output".into()));
                    }
                    index += 1;
                    let w_id = params.len();
                    params.push(ParamSpec::weight(index, vec![d, out], init, (d, out)));
                    let b_id = bias.then(|| {
                        params.push(ParamSpec::filled(format!("b{index}"), out, 0.0));
                        params.len() - 1
                    });
                    ops.push(Op::Affine {
                        w: w_id,
                        b: b_id,
                        out,
                    });
                    shape = Shape::Flat(out);
                }
            }
            i += 1;
        }
        let classes = match (self.layers.last(), shape) {
            (Some(Layer::Affine { .. }), Shape::Flat(k)) => k,
            _ => {
                return Err(Error::Network {
                    network: self.name.clone(),
                    layer: self.layers.len(),
                    kind: "scores",
                    input: shape.to_string(),
                    problem: "a network must end in a fully connected layer (the class scores)"
                        .into(),
                })
            }
        };
        Ok(Plan {
            ops,
            params,
            classes,
        })
    }

    /// Fresh parameters from `seed` (deterministic): weights as each layer's [`Init`] says,
    /// biases, `beta` and the running statistics zero (as cs231n), `gamma` one.
    ///
    /// # Errors
    /// As [`Sequential::plan`].
    pub fn init(&self, seed: u64) -> Result<Weights> {
        let plan = self.plan()?;
        let mut rng = Rng::new(seed);
        let params = plan
            .params
            .iter()
            .map(|p| {
                let values = match p.fill {
                    Fill::Constant(v) => ArrayD::from_elem(p.shape.clone(), v),
                    Fill::Random(Init::Glorot, (fan_in, fan_out)) => {
                        let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
                        ArrayD::from_shape_simple_fn(p.shape.clone(), || {
                            ((2.0 * rng.uniform() - 1.0) * limit) as f32
                        })
                    }
                    Fill::Random(Init::Normal(scale), _) => {
                        ArrayD::from_shape_simple_fn(p.shape.clone(), || {
                            (rng.normal() * scale) as f32
                        })
                    }
                };
                (p.name.clone(), values)
            })
            .collect();
        Ok(Weights {
            model: self.name.clone(),
            hyper: self.hyper.clone(),
            params,
        })
    }

    /// The parameters of `weights` in this network's order, checked against its shapes.
    ///
    /// # Errors
    /// [`Error::WrongModel`] for another model's weights, [`Error::DatasetMissing`] for a
    /// missing parameter, [`Error::ShapeMismatch`] for one of the wrong shape.
    pub(crate) fn checked<'w>(
        &self,
        plan: &Plan,
        weights: &'w Weights,
    ) -> Result<Vec<&'w ArrayD<f32>>> {
        if weights.model != self.name {
            return Err(Error::WrongModel {
                path: "weights".into(),
                expected: self.name.clone(),
                found: weights.model.clone(),
            });
        }
        plan.params
            .iter()
            .map(|p| {
                let v = weights.get(&p.name).ok_or_else(|| Error::DatasetMissing {
                    path: "weights".into(),
                    name: p.name.clone(),
                })?;
                if v.shape() != p.shape.as_slice() {
                    return Err(Error::ShapeMismatch {
                        what: "a parameter of the network",
                        expected: p.shape.clone(),
                        got: v.shape().to_vec(),
                    });
                }
                Ok(v)
            })
            .collect()
    }

    /// Checks that images `(m, H, W, C)` are what the network takes.
    pub(crate) fn check_images(&self, shape: &[usize]) -> Result<()> {
        let (h, w, c) = self.input;
        match shape {
            [m, sh, sw, sc] if *m > 0 && (*sh, *sw, *sc) == (h, w, c) => Ok(()),
            _ => Err(Error::ShapeMismatch {
                what: "images (m, H, W, C) for this network",
                expected: vec![shape.first().copied().unwrap_or(0).max(1), h, w, c],
                got: shape.to_vec(),
            }),
        }
    }
}

/// Appends `gamma` (ones) and `beta` (zeros) for a norm after layer `index`; returns gamma's
/// position.
fn norm_params(params: &mut Vec<ParamSpec>, index: usize, c: usize) -> usize {
    let n = index.max(1);
    params.push(ParamSpec::filled(format!("gamma{n}"), c, 1.0));
    params.push(ParamSpec::filled(format!("beta{n}"), c, 0.0));
    params.len() - 2
}

fn padding(pad: Pad, input: (usize, usize), window: (usize, usize), stride: usize) -> Padding {
    match pad {
        Pad::Same => Padding::same(input, window, (stride, stride)),
        Pad::Valid => Padding::uniform(0),
        Pad::Zeros(p) => Padding::uniform(p),
    }
}

/// A per-image shape inside a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Image(usize, usize, usize),
    Flat(usize),
}

impl Shape {
    fn len(self) -> usize {
        match self {
            Shape::Image(h, w, c) => h.saturating_mul(w).saturating_mul(c),
            Shape::Flat(d) => d,
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Image(h, w, c) => write!(f, "({h}, {w}, {c})"),
            Shape::Flat(d) => write!(f, "({d},)"),
        }
    }
}

/// A network with every size resolved ([`Sequential::plan`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub(crate) ops: Vec<Op>,
    pub(crate) params: Vec<ParamSpec>,
    /// The number of classes.
    pub classes: usize,
}

impl Plan {
    /// The parameters' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.params.iter().map(|p| p.name.as_str()).collect()
    }
}

/// One op of a plan; parameters are indices into the plan's parameter list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    Conv {
        params: ConvParams,
        w: usize,
        b: Option<usize>,
        channels: usize,
        relu: bool,
    },
    Relu,
    Pool(PoolParams),
    /// `gamma` at this index, `beta` after it, then the running mean and variance.
    BatchNorm {
        gamma: usize,
        bn: BatchNorm,
    },
    /// `gamma` at this index, `beta` after it.
    GroupNorm {
        gamma: usize,
        gn: GroupNorm,
    },
    Affine {
        w: usize,
        b: Option<usize>,
        out: usize,
    },
}

impl Op {
    /// The length of the zero bias a convolution or fully connected layer without a bias
    /// stands in for (the kernels and the CPU reference take one); `None` for every other op.
    pub(crate) fn missing_bias(&self) -> Option<usize> {
        match *self {
            Op::Conv {
                b: None, channels, ..
            } => Some(channels),
            Op::Affine { b: None, out, .. } => Some(out),
            _ => None,
        }
    }
}

/// How a parameter starts and whether it is trained.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParamSpec {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    fill: Fill,
    /// Updated by the optimizer (running statistics are not).
    pub(crate) trained: bool,
    /// Takes the L2 weight decay (weights `W`, not biases or norm parameters).
    pub(crate) decays: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fill {
    Constant(f32),
    Random(Init, (usize, usize)),
}

impl ParamSpec {
    fn weight(index: usize, shape: Vec<usize>, init: Init, fans: (usize, usize)) -> Self {
        Self {
            name: format!("W{index}"),
            shape,
            fill: Fill::Random(init, fans),
            trained: true,
            decays: true,
        }
    }

    fn filled(name: String, len: usize, value: f32) -> Self {
        Self {
            name,
            shape: vec![len],
            fill: Fill::Constant(value),
            trained: true,
            decays: false,
        }
    }

    fn state(name: String, len: usize, value: f32) -> Self {
        Self {
            trained: false,
            ..Self::filled(name, len, value)
        }
    }
}
