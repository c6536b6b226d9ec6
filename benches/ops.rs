//! Criterion benches of the suite's ops on the default adapter (`cargo bench`). The benchmark
//! binary (`wgpu-cnn bench`, `make bench`) is the main report; these give criterion's statistics
//! for the same ops and shapes. Each iteration records the op and waits for the device.

use criterion::{criterion_group, criterion_main, Criterion};
use wgpu_cnn::bench::{conv_cases, pool_cases, test_array};
use wgpu_cnn::{Gpu, PoolMode, PoolParams};

fn ops(c: &mut Criterion) {
    let gpu = match Gpu::new() {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("no adapter, nothing to bench: {e}");
            return;
        }
    };
    let mut group = c.benchmark_group(gpu.adapter_info().name.clone());
    group.sample_size(10);
    for case in conv_cases() {
        let x = gpu.upload(&test_array(case.input, 1)).expect("upload");
        let w = gpu.upload(&test_array(case.weights, 2)).expect("upload");
        let b = gpu
            .upload(&ndarray::Array1::<f32>::zeros(case.weights[3]))
            .expect("upload");
        let (z, cache) = gpu.conv_forward(&x, &w, &b, case.params).expect("forward");
        group.bench_function(format!("conv_forward/{}", case.name), |bench| {
            bench.iter(|| {
                gpu.conv_forward(&x, &w, &b, case.params).expect("forward");
                gpu.synchronize().expect("device");
            })
        });
        group.bench_function(format!("conv_backward/{}", case.name), |bench| {
            bench.iter(|| {
                gpu.conv_backward(&z, &cache).expect("backward");
                gpu.synchronize().expect("device");
            })
        });
    }
    for case in pool_cases() {
        let x = gpu.upload(&test_array(case.input, 5)).expect("upload");
        for (mode, name) in [(PoolMode::Max, "max"), (PoolMode::Average, "avg")] {
            let params = PoolParams::new(case.f, case.stride, mode);
            let (a, cache) = gpu.pool_forward(&x, params).expect("forward");
            group.bench_function(format!("pool_{name}_forward/{}", case.name), |bench| {
                bench.iter(|| {
                    gpu.pool_forward(&x, params).expect("forward");
                    gpu.synchronize().expect("device");
                })
            });
            group.bench_function(format!("pool_{name}_backward/{}", case.name), |bench| {
                bench.iter(|| {
                    gpu.pool_backward(&a, &cache).expect("backward");
                    gpu.synchronize().expect("device");
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, ops);
criterion_main!(benches);
