//! # wgpu-cnn
//!
//! The building blocks of a convolutional network (zero padding, convolution, pooling and their
//! backward passes) as WGSL compute kernels on [`wgpu`], with a CPU reference path ([`cpu`]) on
//! `ndarray` that computes the same thing and checks every GPU result.
//!
//! Layout is the seeds' NHWC: activations `(m, n_H, n_W, n_C)`, weights `(f_h, f_w, n_C_prev, n_C)`,
//! bias `(1, 1, 1, n_C)` or `(n_C,)`.
#![warn(missing_docs)]

pub mod bench;
pub mod cpu;
mod error;
mod params;

pub use error::{Error, Result};
pub use params::{
    check_bias, ConvGeometry, ConvParams, Padding, PoolGeometry, PoolMode, PoolParams, Ties,
};
mod gpu;

pub use gpu::{median, ConvCache, ConvGrads, Gpu, GpuOptions, OpTiming, PoolCache, Probe, Tensor};
