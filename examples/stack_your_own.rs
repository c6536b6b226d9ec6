//! Build a network by hand with `nn::Sequential`, train it on the GPU, and compare it with and
//! without batch norm: cs231n's three-layer convnet shape (conv - [batch norm] - relu - 2x2 max
//! pool - affine - relu - affine - softmax) on the built-in synthetic images at 32x32.
//!
//!     cargo run --release --example stack_your_own [epochs]

use std::time::Instant;

use wgpu_cnn::data::Dataset;
use wgpu_cnn::nn::{GpuNet, Init, Pad, Sequential, TrainConfig};
use wgpu_cnn::{AdamConfig, BatchNorm, Gpu};

fn network(batch_norm: bool) -> Sequential {
    let mut net = Sequential::new("my-convnet", (32, 32, 3))
        .conv((7, 7), 32, 1, Pad::Zeros(3))
        .initialised(Init::Normal(1e-3));
    if batch_norm {
        net = net.batch_norm(BatchNorm::train());
    }
    net.relu()
        .max_pool((2, 2), 2, Pad::Valid)
        .affine(100)
        .initialised(Init::Normal(1e-3))
        .relu()
        .affine(6)
        .initialised(Init::Normal(1e-3))
}

fn main() -> Result<(), wgpu_cnn::Error> {
    let epochs = std::env::args()
        .nth(1)
        .and_then(|e| e.parse().ok())
        .unwrap_or(5);
    let gpu = Gpu::new()?;
    println!("adapter: {}", gpu.adapter_info().name);
    let train = Dataset::synthetic(480, 32, 1);
    let test = Dataset::synthetic(120, 32, 2);
    for batch_norm in [false, true] {
        let net = network(batch_norm);
        println!(
            "\n{} ({})",
            if batch_norm {
                "with batch norm"
            } else {
                "without batch norm"
            },
            net.plan()?.names().join(" ")
        );
        let mut model = GpuNet::new(&gpu, &net, &net.init(1)?, AdamConfig::new(1e-3))?;
        let config = TrainConfig {
            epochs,
            batch: 50,
            seed: 1,
        };
        let start = Instant::now();
        let history = model.fit(&train, &config, |_| {})?;
        for e in &history {
            println!(
                "  epoch {}: cost {:.4} ({:.2} s)",
                e.epoch, e.cost, e.seconds
            );
        }
        println!(
            "  train accuracy {:.3}, test accuracy {:.3}, {:.1} s",
            model.accuracy(&train, 50)?,
            model.accuracy(&test, 50)?,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
