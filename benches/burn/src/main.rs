//! burn's wgpu backend (0.22, with autodiff) on the shapes of `wgpu-cnn bench`, for the README's
//! side-by-side table: convolution forward and forward + backward (dx, dW, db), max pool forward
//! and forward + backward, NCHW as burn takes them. Wall clock from the call to a scalar read
//! back (the sum of the output or gradient), median of 7 runs after two warm-up runs (burn
//! autotunes on the first). Every run uploads its input afresh from host data: an earlier version
//! that reused device tensors, or generated them on the device, measured a forward of 0.1 ms
//! (results reused or generators fused into the convolution). A small convolution is first
//! checked against loops on the host.
//!
//!     cargo run --release --manifest-path benches/burn/Cargo.toml
//!
//! signs1 and signs2 use symmetric padding 1 and 0 where wgpu-cnn's SAME pads 1/2 and 0/1 (63x63
//! and 7x7 outputs instead of 64x64 and 8x8): burn's `ConvOptions` pads symmetrically.
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use std::time::Instant;

/// A convolution: name, NCHW input, OIHW weights, padding (h, w) on both sides, stride (h, w).
type ConvCase = (&'static str, [usize; 4], [usize; 4], [usize; 2], [usize; 2]);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// A fresh device tensor from host data (tracking gradients when `grad`), uploaded and synced.
fn upload(data: &TensorData, dev: &Device, grad: bool) -> Tensor<4> {
    let x = Tensor::<4>::from_data(data.clone(), dev);
    let x = if grad { x.require_grad() } else { x };
    let _ = x.clone().into_data();
    x
}

/// `f`'s result and its wall-clock seconds.
fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed().as_secs_f64())
}

/// `run(i)` gives run i's (forward, forward + backward) seconds; `reps` runs after two warm-ups
/// (burn autotunes on the first). Returns the medians and the forward + backward runs.
fn medians(reps: usize, mut run: impl FnMut(usize) -> (f64, f64)) -> (f64, f64, Vec<f64>) {
    let (mut fwd, mut both) = (vec![], vec![]);
    for i in 0..reps + 2 {
        let (f, fb) = run(i);
        if i > 1 {
            fwd.push(f);
            both.push(fb);
        }
    }
    (median(fwd), median(both.clone()), both)
}

fn main() {
    let dev = Device::default().autodiff();
    println!("{dev:?}");
    let reps = 7;
    let convs: [ConvCase; 6] = [
        ("cifar", [64, 16, 32, 32], [32, 16, 3, 3], [1, 1], [1, 1]),
        ("deep", [16, 128, 16, 16], [128, 128, 3, 3], [1, 1], [1, 1]),
        ("stem", [16, 3, 64, 64], [8, 3, 4, 4], [2, 2], [1, 1]),
        ("down", [64, 32, 32, 32], [64, 32, 3, 3], [1, 1], [2, 2]),
        ("signs1", [64, 3, 64, 64], [8, 3, 4, 4], [1, 1], [1, 1]), // symmetric 1 (SAME pads 1/2): close
        ("signs2", [64, 8, 8, 8], [16, 8, 2, 2], [0, 0], [1, 1]),
    ];
    // Validate one conv against naive loops on the host (the previous run's 0.1 ms looked wrong).
    {
        let (xs, ws) = ([2usize, 16, 12, 12], [32usize, 16, 3, 3]);
        let x = Tensor::<4>::random(xs, Distribution::Normal(0.0, 1.0), &dev);
        let w = Tensor::<4>::random(ws, Distribution::Normal(0.0, 1.0), &dev);
        let z = conv2d(
            x.clone(),
            w.clone(),
            None,
            ConvOptions::new([1, 1], [1, 1], [1, 1], 1),
        );
        let zv: Vec<f32> = z.into_data().try_to_vec::<f32>().unwrap();
        let xv: Vec<f32> = x.into_data().try_to_vec::<f32>().unwrap();
        let wv: Vec<f32> = w.into_data().try_to_vec::<f32>().unwrap();
        let mut maxd = 0f32;
        let mut maxz = 0f32;
        for n in 0..2 {
            for o in 0..32 {
                for h in 0..12i64 {
                    for ww in 0..12i64 {
                        let mut acc = 0f32;
                        for c in 0..16 {
                            for dh in 0..3i64 {
                                for dw in 0..3i64 {
                                    let (ih, iw) = (h + dh - 1, ww + dw - 1);
                                    if ih < 0 || iw < 0 || ih >= 12 || iw >= 12 {
                                        continue;
                                    }
                                    acc += xv[((n * 16 + c) * 12 + ih as usize) * 12 + iw as usize]
                                        * wv[((o * 16 + c) * 3 + dh as usize) * 3 + dw as usize];
                                }
                            }
                        }
                        let got = zv[((n * 32 + o) * 12 + h as usize) * 12 + ww as usize];
                        maxd = maxd.max((got - acc).abs());
                        maxz = maxz.max(acc.abs());
                    }
                }
            }
        }
        println!("validation conv 2x16x12x12 * 32x16x3x3: max |burn - naive| = {maxd:e} (max |z| {maxz})");
    }
    for (name, xs, ws, pad, stride) in convs {
        // Host data uploaded afresh for every run, so that no run can reuse another's result
        // and no generator is fused into the convolution.
        let xd = Tensor::<4>::random(xs, Distribution::Normal(0.0, 1.0), &dev).into_data();
        let w = Tensor::<4>::random(ws, Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let b = Tensor::<1>::random([ws[0]], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let _ = w.clone().into_data();
        let _ = b.clone().into_data();
        let opts = ConvOptions::new(stride, pad, [1, 1], 1);
        let (fwd, both, runs) = medians(reps, |i| {
            let x = upload(&xd, &dev, false);
            let (zs, f) = timed(|| -> f32 {
                conv2d(x, w.clone(), Some(b.clone()), opts.clone())
                    .sum()
                    .into_scalar()
            });
            let x = upload(&xd, &dev, true);
            let ((gx, gw), fb) = timed(|| -> (f32, f32) {
                let z = conv2d(x.clone(), w.clone(), Some(b.clone()), opts.clone());
                let g = z.sum().backward();
                (
                    x.grad(&g).unwrap().sum().into_scalar(),
                    w.grad(&g).unwrap().sum().into_scalar(),
                )
            });
            if i == 0 {
                println!("  ({name}: sums z {zs}, dx {gx}, dw {gw})");
            }
            (f, fb)
        });
        println!(
            "conv/{name}: forward {:.1} ms, forward+backward {:.1} ms  (runs: {:?})",
            1e3 * fwd,
            1e3 * both,
            runs.iter()
                .map(|v| (v * 1e4).round() / 10.0)
                .collect::<Vec<_>>()
        );
    }
    let pools: [(&str, [usize; 4], usize); 3] = [
        ("pool", [64, 32, 32, 32], 2),
        ("signs1", [64, 8, 64, 64], 8),
        ("signs2", [64, 16, 8, 8], 4),
    ];
    for (name, xs, win) in pools {
        let xd = Tensor::<4>::random(xs, Distribution::Normal(0.0, 1.0), &dev).into_data();
        let (fwd, both, _) = medians(reps, |_| {
            let x = upload(&xd, &dev, false);
            let (_, f) = timed(|| -> f32 {
                max_pool2d(x, MaxPoolOptions::new([win, win]))
                    .sum()
                    .into_scalar()
            });
            let x = upload(&xd, &dev, true);
            let (_, fb) = timed(|| -> f32 {
                let g = max_pool2d(x.clone(), MaxPoolOptions::new([win, win]))
                    .sum()
                    .backward();
                x.grad(&g).unwrap().sum().into_scalar()
            });
            (f, fb)
        });
        println!(
            "max_pool/{name}: forward {:.1} ms, forward+backward {:.1} ms",
            1e3 * fwd,
            1e3 * both
        );
    }
}
