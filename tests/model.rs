//! Seed 001's `signs` network trained on the GPU against the same training on the CPU
//! reference; steps that allocate nothing after the first; bitwise repeatable training.

use ndarray::{Array4, Ix1};
use wgpu_cnn::data::Dataset;
use wgpu_cnn::model::{Signs, SignsCpu, SignsGpu};
use wgpu_cnn::{Gpu, GpuOptions};

fn own_gpu() -> Gpu {
    Gpu::with_options(GpuOptions::default()).expect("a wgpu adapter")
}

fn minibatch(d: &Dataset, i: usize, m: usize) -> (Array4<f32>, Vec<usize>) {
    let n = d.y.len();
    let idx: Vec<usize> = (0..m).map(|k| (i * m + k) % n).collect();
    let x = Array4::from_shape_fn(
        (m, d.x.dim().1, d.x.dim().2, d.x.dim().3),
        |(k, h, w, c)| d.x[[idx[k], h, w, c]],
    );
    (x, idx.iter().map(|&k| d.y[k]).collect())
}

#[test]
fn gpu_training_matches_cpu_training_for_the_first_five_steps() {
    let gpu = own_gpu();
    let data = Dataset::synthetic(48, 64, 3);
    let net = Signs {
        image: (64, 64, 3),
        classes: 6,
    };
    let w = net.init(1);
    let mut on_gpu = SignsGpu::new(&gpu, net, &w, 0.009).unwrap();
    let mut on_cpu = SignsCpu::new(net, &w, 0.009).unwrap();
    for step in 0..5 {
        let (x, y) = minibatch(&data, step, 16);
        let loss = on_gpu.step(&x, &y).unwrap();
        let gpu_loss = gpu.download::<Ix1>(&loss).unwrap()[0];
        let cpu_loss = on_cpu.step(&x, &y).unwrap();
        let rel = ((gpu_loss - cpu_loss) / cpu_loss).abs();
        println!("step {step}: GPU {gpu_loss} CPU {cpu_loss} (relative {rel:.1e})");
        assert!(rel < 1e-4, "step {step}: GPU {gpu_loss} vs CPU {cpu_loss}");
    }
}

#[test]
fn a_training_step_creates_nothing_after_the_first_and_repeats_bitwise() {
    let data = Dataset::synthetic(32, 64, 5);
    let net = Signs {
        image: (64, 64, 3),
        classes: 6,
    };
    let run = || {
        let gpu = own_gpu();
        let mut model = SignsGpu::new(&gpu, net, &net.init(7), 0.009).unwrap();
        let (x, y) = minibatch(&data, 0, 16);
        model.step(&x, &y).unwrap();
        gpu.synchronize().unwrap();
        let after_first = gpu.memory();
        for i in 1..6 {
            let (x, y) = minibatch(&data, i, 16);
            model.step(&x, &y).unwrap();
        }
        gpu.synchronize().unwrap();
        let later = gpu.memory();
        assert_eq!(
            (
                later.buffers_created,
                later.bind_groups_created,
                later.pipelines_created
            ),
            (
                after_first.buffers_created,
                after_first.bind_groups_created,
                after_first.pipelines_created
            ),
            "steps after the first created device objects"
        );
        model.weights().unwrap()
    };
    let a = run();
    let b = run();
    for ((n, x), (_, y)) in a.params.iter().zip(&b.params) {
        assert!(
            x.iter()
                .zip(y.iter())
                .all(|(p, q)| p.to_bits() == q.to_bits()),
            "{n} differs between two runs"
        );
    }
}
