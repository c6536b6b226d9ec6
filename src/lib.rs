//! # wgpu-cnn
//!
//! The layers of a convolutional network (zero padding, convolution, pooling, ReLU, fully
//! connected, softmax loss, batch and group norm, optimizers, forward and backward) as WGSL
//! compute kernels on [`wgpu`], with a CPU reference path ([`cpu`]) on `ndarray` that computes
//! the same thing and checks every GPU result.
//!
//! It follows the numpy exercises it grew from (the "Convolutional Neural Networks: Step by
//! Step" course exercise and cs231n's convnet assignment, "the seeds" in these docs), with their
//! names, and without their defects (listed in [`cpu`]). Layout is NHWC: activations
//! `(m, n_H, n_W, n_C)`, weights `(f_h, f_w, n_C_prev, n_C)`, bias `(1, 1, 1, n_C)` or `(n_C,)`.
//!
//! ```
//! use ndarray::{Array1, Array4};
//! use wgpu_cnn::{cpu, ConvParams, Gpu, PoolMode, PoolParams};
//!
//! let a_prev = Array4::<f32>::ones((10, 4, 4, 3)); // (m, n_H, n_W, n_C)
//! let weights = Array4::<f32>::ones((2, 2, 3, 8)); // (f_h, f_w, n_C_prev, n_C)
//! let bias = Array1::<f32>::zeros(8); // (n_C,) or (1, 1, 1, n_C)
//!
//! let gpu = Gpu::new()?; // first adapter; WGPU_BACKEND / WGPU_ADAPTER_NAME choose
//! let (x, w, b) = (gpu.upload(&a_prev)?, gpu.upload(&weights)?, gpu.upload(&bias)?);
//! let (z, cache) = gpu.conv_forward(&x, &w, &b, ConvParams::new(2, 2))?; // stride 2, pad 2
//! let grads = gpu.conv_backward(&z, &cache)?; // .da_prev, .dw, .db
//! let (a, pool_cache) = gpu.pool_forward(&z, PoolParams::new(2, 2, PoolMode::Max))?;
//! let da_prev = gpu.pool_backward(&a, &pool_cache)?;
//! let z_host: Array4<f32> = gpu.download(&z)?; // only downloads wait for the device
//!
//! // The CPU reference, with the seeds' names (f32 or f64):
//! let (z_ref, _) = cpu::conv_forward(a_prev.view(), weights.view(), bias.view(), ConvParams::new(2, 2))?;
//! assert!(z_host.iter().zip(&z_ref).all(|(g, c)| (g - c).abs() < 1e-4));
//! # let _ = (grads, da_prev);
//! # Ok::<(), wgpu_cnn::Error>(())
//! ```
//!
//! The layers of a whole network, with a CPU twin each in [`cpu`] (see the README for the list):
//!
//! ```
//! use ndarray::{Array1, Array2, Array4};
//! use wgpu_cnn::{Adam, BatchNorm, BatchNormState, Gpu, GroupNorm, Labels};
//!
//! let gpu = Gpu::new()?;
//! let z = gpu.upload(&Array4::<f32>::from_shape_fn((2, 3, 3, 4), |(i, h, w, c)| (i + h * w + c) as f32 - 3.0))?;
//! let (gamma, beta) = (gpu.upload(&Array1::<f32>::ones(4))?, gpu.zeros(&[4])?);
//! let mut w = gpu.upload(&Array2::<f32>::from_elem((36, 5), 0.01))?;
//! let b = gpu.zeros(&[5])?;
//!
//! let (a, _relu_cache) = gpu.relu_forward(&z)?;
//! let mut bn_state = BatchNormState::new();
//! let (h, _bn_cache) = gpu.spatial_batchnorm_forward(&a, &gamma, &beta, &mut bn_state, BatchNorm::train())?;
//! let (g, _gn_cache) = gpu.spatial_groupnorm_forward(&h, &gamma, &beta, GroupNorm::new(2))?;
//! let (scores, aff_cache) = gpu.affine_forward(&g, &w, &b)?; // (N, ...) read as (N, D) @ (D, M) + b
//! let (loss, dscores) = gpu.softmax_loss(&scores, &Labels::Indices(vec![3, 1]))?;
//! let aff_grads = gpu.affine_backward(&dscores, &aff_cache)?; // .dx .dw .db
//! let mut adam = Adam::new(1e-3);
//! adam.step(&gpu, &mut w, &aff_grads.dw)?; // in place
//! let loss: Array1<f32> = gpu.download(&loss)?;
//! assert!((loss[0] - 5f32.ln()).abs() < 0.1); // near-uniform scores over 5 classes
//! # Ok::<(), wgpu_cnn::Error>(())
//! ```
#![warn(missing_docs)]

#[cfg(feature = "bench")]
pub mod bench;
pub mod cpu;
pub mod data;
mod error;
mod gpu;
mod layers;
pub mod nn;
mod params;
mod rng;
pub mod weights;

pub use error::{Error, Result};
pub use layers::{AdamConfig, BatchNorm, GroupNorm, Labels, MomentumConfig, NormMode, SgdConfig};
pub use params::{
    check_bias, ConvGeometry, ConvParams, Padding, PoolGeometry, PoolMode, PoolParams, Ties,
};

pub use gpu::{
    Adam, AffineCache, AffineGrads, BatchNormState, ConvCache, ConvGrads, ConvReluCache,
    ConvReluPoolCache, Gpu, GpuOptions, MemoryStats, NormCache, NormGrads, PoolCache, ReluCache,
    Sgd, SgdMomentum, Tensor, TuningCache,
};
