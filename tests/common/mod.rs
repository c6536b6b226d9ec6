//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod numpy_rng;

use std::sync::OnceLock;

use ndarray::{Array, Dimension};
use wgpu_cnn::Gpu;

/// One adapter for the whole test binary (wgpu's environment conventions choose it).
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = Gpu::new().expect("a wgpu adapter (lavapipe or llvmpipe on CI)");
        eprintln!("tests run on {:?}", gpu.adapter_info());
        gpu
    })
}

/// Largest absolute difference between two arrays of the same shape.
pub fn max_abs_diff<D: Dimension>(a: &Array<f32, D>, b: &Array<f32, D>) -> f32 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Asserts `gpu` is within `atol + rtol * |cpu|` of `cpu`, element by element.
pub fn assert_close<D: Dimension>(what: &str, gpu: &Array<f32, D>, cpu: &Array<f32, D>, tol: f32) {
    assert_eq!(gpu.shape(), cpu.shape(), "{what}: shapes differ");
    for ((idx, g), c) in gpu.indexed_iter().zip(cpu.iter()) {
        let bound = tol * (1.0 + c.abs());
        assert!(
            (g - c).abs() <= bound,
            "{what}: at {idx:?} GPU {g} vs CPU {c} (tolerance {bound})"
        );
    }
}
