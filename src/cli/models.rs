//! The models the command line knows, built from their names and hyper-parameters (also when
//! read back from a weights file).

use clap::{Args, ValueEnum};
use wgpu_cnn::nn::{Norm, Sequential, ThreeLayer};
use wgpu_cnn::weights::Weights;

/// `--model`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModelName {
    /// Seed 001's network (conv 4x4 -> 8, pool 8, conv 2x2 -> 16, pool 4, fully connected).
    Signs,
    /// Seed 002's three-layer convnet (conv 7x7 -> 32, pool 2, affine 100, affine).
    ThreeLayer,
}

impl ModelName {
    /// Adam's learning rate when `--lr` is not given: seed 001's 0.009 for `signs`, and for
    /// the three-layer convnet cs231n's 1e-3 (at 0.009 it does not learn the built-in set in 10
    /// epochs: its cost stays at ln 6 and its accuracy at chance; at 1e-3, 0.62 train / 0.58
    /// test).
    pub fn default_lr(self) -> f64 {
        match self {
            ModelName::Signs => 0.009,
            ModelName::ThreeLayer => 1e-3,
        }
    }
}

/// `--norm` of the three-layer convnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NormName {
    /// No norm layer.
    None,
    /// Spatial batch norm after the convolution.
    Batch,
    /// Spatial group norm after the convolution (`--groups`).
    Group,
}

/// The three-layer convnet's settings (cs231n's defaults).
#[derive(Debug, Clone, Args)]
pub struct ThreeLayerArgs {
    /// three-layer: filters of the convolution.
    #[arg(long, default_value_t = 32)]
    pub num_filters: usize,
    /// three-layer: filter size (odd).
    #[arg(long, default_value_t = 7)]
    pub filter_size: usize,
    /// three-layer: width of the hidden layer.
    #[arg(long, default_value_t = 100)]
    pub hidden_dim: usize,
    /// three-layer: standard deviation of the initial weights.
    #[arg(long, default_value_t = 1e-3)]
    pub weight_scale: f64,
    /// three-layer: L2 regularisation strength on the weights.
    #[arg(long, default_value_t = 0.0)]
    pub reg: f64,
    /// three-layer: a norm layer after the convolution.
    #[arg(long, value_enum, default_value_t = NormName::None)]
    pub norm: NormName,
    /// three-layer: groups of the group norm.
    #[arg(long, default_value_t = 4)]
    pub groups: usize,
}

impl ThreeLayerArgs {
    fn settings(&self) -> ThreeLayer {
        ThreeLayer {
            num_filters: self.num_filters,
            filter_size: self.filter_size,
            hidden_dim: self.hidden_dim,
            weight_scale: self.weight_scale,
            reg: self.reg,
            norm: match self.norm {
                NormName::None => None,
                NormName::Batch => Some(Norm::Batch),
                NormName::Group => Some(Norm::Group(self.groups)),
            },
        }
    }
}

/// The network `name` for images `image` and `classes` classes.
pub fn build(
    name: ModelName,
    image: (usize, usize, usize),
    classes: usize,
    three: &ThreeLayerArgs,
) -> Sequential {
    match name {
        ModelName::Signs => Sequential::signs(image, classes),
        ModelName::ThreeLayer => Sequential::three_layer(image, classes, three.settings()),
    }
}

/// The network that `weights` were saved from, for images `image`.
pub fn from_weights(weights: &Weights, image: (usize, usize, usize)) -> Result<Sequential, String> {
    let hyper = |name: &str| {
        weights
            .hyper
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, v)| v)
            .ok_or_else(|| format!("the weights lack the hyper-parameter {name}"))
    };
    let classes = hyper("classes")? as usize;
    match weights.model.as_str() {
        "signs" => Ok(Sequential::signs(image, classes)),
        "three-layer" => {
            let settings = ThreeLayer {
                num_filters: hyper("num_filters")? as usize,
                filter_size: hyper("filter_size")? as usize,
                hidden_dim: hyper("hidden_dim")? as usize,
                weight_scale: hyper("weight_scale")?,
                reg: hyper("reg")?,
                norm: Norm::from_code(hyper("norm")?),
            };
            Ok(Sequential::three_layer(image, classes, settings))
        }
        other => Err(format!(
            "the weights are of model {other:?}; this tool knows signs and three-layer"
        )),
    }
}
