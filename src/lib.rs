//! # wgpu-cnn
//!
//! The building blocks of a convolutional network (zero padding, convolution, pooling and their
//! backward passes) as WGSL compute kernels on [`wgpu`], with a CPU reference path ([`cpu`]) on
//! `ndarray` that computes the same thing and checks every GPU result.
//!
//! Layout is the seeds' NHWC: activations `(m, n_H, n_W, n_C)`, weights `(f_h, f_w, n_C_prev, n_C)`,
//! bias `(1, 1, 1, n_C)` or `(n_C,)`.
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
#![warn(missing_docs)]

#[cfg(feature = "bench")]
pub mod bench;
pub mod cpu;
mod error;
mod gpu;
mod layers;
mod params;

pub use error::{Error, Result};
pub use layers::{AdamConfig, BatchNorm, GroupNorm, Labels, MomentumConfig, NormMode, SgdConfig};
pub use params::{
    check_bias, ConvGeometry, ConvParams, Padding, PoolGeometry, PoolMode, PoolParams, Ties,
};

pub use gpu::{
    Adam, AffineCache, AffineGrads, BatchNormState, ConvCache, ConvGrads, Gpu, GpuOptions,
    MemoryStats, NormCache, NormGrads, PoolCache, ReluCache, Sgd, SgdMomentum, Tensor,
};
