//! The GPU path at and beyond the device's limits: the same bits on every run, batches split
//! across bindings, dispatch grids smaller than the work, tensors larger than one grid, and
//! several threads sharing one `Gpu`. Every result is checked against the CPU reference (in
//! `f64` on the same `f32` inputs, within `f32` rounding: see `common::check_sum_rounding`).

mod common;

use std::sync::OnceLock;

use common::numpy_rng::NumpyRng;
use common::{
    compare_conv, compare_pool, compare_zero_pad, gpu, ok, randn_f32, small_integers, to_f64,
};
use ndarray::{Array4, ArrayD, Ix4};
use wgpu_cnn::{cpu, ConvParams, Gpu, GpuOptions, Padding, PoolMode, PoolParams, Tensor, Ties};

/// A 4-d shape as an array.
fn dims4(shape: &[usize]) -> [usize; 4] {
    shape.try_into().expect("4 axes")
}

fn download(g: &Gpu, t: &Tensor) -> Array4<f32> {
    g.download::<Ix4>(t).expect("download")
}

/// Bitwise equality, so that `-0.0 != 0.0` and NaNs compare by payload.
#[track_caller]
fn assert_same_bits(what: &str, first: &Array4<f32>, second: &Array4<f32>) {
    assert_eq!(first.shape(), second.shape(), "{what}: shapes differ");
    for ((idx, a), b) in first.indexed_iter().zip(second.iter()) {
        assert_eq!(
            a.to_bits(),
            b.to_bits(),
            "{what}: at {idx:?} first run {a:e}, second run {b:e}"
        );
    }
}

/// The pooling configurations every limit is checked with: both modes, both tie rules,
/// rectangular windows, strides below and above the window.
fn pool_params() -> Vec<PoolParams> {
    let mut all = Vec::new();
    for (f_h, f_w, s_h, s_w) in [(2, 3, 1, 2), (3, 2, 4, 3)] {
        for mode in [PoolMode::Max, PoolMode::Average] {
            for ties in [Ties::EveryMax, Ties::FirstMax] {
                all.push(
                    PoolParams::new(1, 1, mode)
                        .with_kernel(f_h, f_w)
                        .with_stride(s_h, s_w)
                        .with_ties(ties),
                );
            }
        }
    }
    all
}

/// zero_pad, conv forward/backward and pool forward/backward (both modes, both tie rules, with
/// random values and with ties) on `g`, on a batch of `m` images `h x w x c`, against the CPU.
fn every_op_matches_cpu(g: &Gpu, [m, h, w, c]: [usize; 4], seed: u32) {
    let mut rng = NumpyRng::seed(seed);
    let x = randn_f32(&mut rng, [m, h, w, c]);
    ok(compare_zero_pad(g, &x, Padding::explicit(1, 2, 0, 3)));

    for (kernel, stride, pad, c_out) in [
        ((3, 2), (2, 1), Padding::explicit(1, 0, 2, 1), 5),
        ((1, 1), (3, 2), Padding::uniform(0), 2),
        ((2, 3), (1, 1), Padding::uniform(3), 3),
    ] {
        let params = ConvParams::new(1, 0)
            .with_stride(stride.0, stride.1)
            .with_padding(pad);
        let wt = randn_f32(&mut rng, [kernel.0, kernel.1, c, c_out]);
        let b: ArrayD<f32> = randn_f32(&mut rng, [1, 1, 1, c_out]).into_dyn();
        let geometry =
            wgpu_cnn::ConvGeometry::new([m, h, w, c], [kernel.0, kernel.1, c, c_out], params)
                .expect("valid conv");
        let dz = randn_f32(&mut rng, geometry.output_shape());
        ok(compare_conv(g, &x, &wt, &b, params, &dz));
    }

    let ties = small_integers(&mut rng, [m, h, w, c], -2, 2);
    for params in pool_params() {
        let out = wgpu_cnn::PoolGeometry::new([m, h, w, c], params)
            .expect("valid pool")
            .output_shape();
        let da = randn_f32(&mut rng, out);
        ok(compare_pool(g, &x, params, &da));
        let da_int = small_integers(&mut rng, out, -4, 4);
        ok(compare_pool(g, &ties, params, &da_int));
    }
}

// ---------------------------------------------------------------------------------------------
// (a) Determinism
// ---------------------------------------------------------------------------------------------

/// Conv forward and backward on `g`: `Z`, `dA_prev`, `dW`, `db`.
fn conv_outputs(g: &Gpu, inputs: &[Array4<f32>; 4], params: ConvParams) -> [Array4<f32>; 4] {
    let [a, wt, b, dz] = inputs.each_ref().map(|x| g.upload(x).expect("upload"));
    let (z, cache) = g.conv_forward(&a, &wt, &b, params).expect("forward");
    let grads = g.conv_backward(&dz, &cache).expect("backward");
    [z, grads.da_prev, grads.dw, grads.db].map(|t| download(g, &t))
}

/// Stride 1 and stride (2, 1) (the backward-data pass has a separate path for each), run four
/// times on one `Gpu`, then on a fresh `Gpu` that skips the autotune: a program run twice must
/// give the same bits whichever kernel variant the timing picked.
#[test]
fn conv_forward_and_backward_give_the_same_bits_on_every_run() {
    let untuned = Gpu::with_options(GpuOptions {
        no_autotune: true,
        ..Default::default()
    })
    .expect("a Gpu without autotune");
    for (seed, params) in [
        (7, ConvParams::new(1, 1)),
        (
            8,
            ConvParams::new(1, 0)
                .with_stride(2, 1)
                .with_padding(Padding::explicit(1, 2, 0, 1)),
        ),
    ] {
        let mut rng = NumpyRng::seed(seed);
        let shape = [6, 15, 13, 9];
        let w_shape = [3, 4, 9, 11];
        let out = wgpu_cnn::ConvGeometry::new(shape, w_shape, params)
            .expect("valid conv")
            .output_shape();
        let inputs = [
            randn_f32(&mut rng, shape),
            randn_f32(&mut rng, w_shape),
            randn_f32(&mut rng, [1, 1, 1, 11]),
            randn_f32(&mut rng, out),
        ];
        let first = conv_outputs(gpu(), &inputs, params);
        let runs = (0..3)
            .map(|_| ("the same Gpu", conv_outputs(gpu(), &inputs, params)))
            .chain([(
                "a Gpu without autotune",
                conv_outputs(&untuned, &inputs, params),
            )]);
        for (which, again) in runs {
            for (what, (x, y)) in ["Z", "dA_prev", "dW", "db"]
                .iter()
                .zip(first.iter().zip(&again))
            {
                assert_same_bits(&format!("{what} ({params:?}, {which})"), x, y);
            }
        }
    }
}

#[test]
fn pool_backward_gives_the_same_bits_on_every_run() {
    let g = gpu();
    let mut rng = NumpyRng::seed(8);
    let shape = [5, 17, 16, 13];
    let inputs = [
        randn_f32(&mut rng, shape),
        small_integers(&mut rng, shape, -2, 2),
    ];
    for a in &inputs {
        let a = g.upload(a).expect("upload");
        for params in pool_params() {
            let (out, cache) = g.pool_forward(&a, params).expect("forward");
            let da = g
                .upload(&randn_f32(&mut rng, dims4(out.shape())))
                .expect("upload");
            let first = download(g, &g.pool_backward(&da, &cache).expect("backward"));
            for _ in 0..3 {
                let again = download(g, &g.pool_backward(&da, &cache).expect("backward"));
                assert_same_bits(&format!("dA_prev {params:?}"), &first, &again);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Batches split across bindings
// ---------------------------------------------------------------------------------------------

/// A `Gpu` whose storage bindings hold at most `bytes`.
fn gpu_with_binding_limit(bytes: u64) -> Gpu {
    let g = Gpu::with_options(GpuOptions {
        max_binding_bytes: Some(bytes),
        ..Default::default()
    })
    .expect("a Gpu with a small binding limit");
    assert_eq!(g.max_binding_bytes(), bytes);
    g
}

/// 21 images of 7 x 5 x 3 floats (420 bytes: an odd number of floats, so chunk boundaries land
/// on offsets that are not multiples of the device's offset alignment), under binding limits of
/// 4 KiB and 2.5 KB: every op runs in 3 to 11 chunks and must agree with the CPU.
#[test]
fn every_op_matches_cpu_reference_when_the_batch_is_split_across_bindings() {
    let shape = [21, 7, 5, 3];
    let image_bytes = (shape[1] * shape[2] * shape[3] * 4) as u64;
    for limit in [4096, 2500] {
        let g = gpu_with_binding_limit(limit);
        let align = u64::from(g.device().limits().min_storage_buffer_offset_alignment);
        eprintln!("binding limit {limit} bytes, offset alignment {align} bytes");
        // An alignment of one float makes every offset aligned; otherwise some chunk must start
        // inside an aligned block.
        assert!(
            align <= 4 || !image_bytes.is_multiple_of(align),
            "images of {image_bytes} bytes are aligned to {align}: chunk offsets would be too"
        );
        assert!(
            shape[0] as u64 * image_bytes > 2 * limit,
            "the input must need at least 3 chunks"
        );
        every_op_matches_cpu(&g, shape, 11);
    }
}

// ---------------------------------------------------------------------------------------------
// (c) Grids smaller than the work
// ---------------------------------------------------------------------------------------------

/// At most 2 x 2 workgroups of 64 threads per dispatch: every kernel loops over its virtual
/// workgroups, dozens of times for these sizes.
#[test]
fn every_op_matches_cpu_reference_with_two_workgroups_per_dimension() {
    let g = Gpu::with_options(GpuOptions {
        max_workgroups_per_dim: Some(2),
        ..Default::default()
    })
    .expect("a Gpu with 2 workgroups per dimension");
    every_op_matches_cpu(&g, [3, 17, 13, 7], 12);
}

/// More elements than one dispatch of 65535 workgroups of 64 threads covers (4,194,240).
const LARGE: [usize; 4] = [2, 1000, 1000, 3];

fn large_input() -> &'static Array4<f32> {
    static X: OnceLock<Array4<f32>> = OnceLock::new();
    X.get_or_init(|| randn_f32(&mut NumpyRng::seed(13), LARGE))
}

#[test]
fn zero_pad_of_a_tensor_larger_than_one_grid_matches_cpu_reference() {
    let x = large_input();
    assert!(x.len() > 65535 * 64);
    ok(compare_zero_pad(gpu(), x, Padding::explicit(1, 2, 0, 3)));
}

#[test]
fn pool_backward_of_a_tensor_larger_than_one_grid_matches_cpu_reference() {
    let g = gpu();
    let x = large_input();
    assert!(x.len() > 65535 * 64);
    let mut rng = NumpyRng::seed(14);
    for mode in [PoolMode::Max, PoolMode::Average] {
        let params = PoolParams::new(2, 2, mode)
            .with_kernel(2, 3)
            .with_stride(2, 3);
        let out = wgpu_cnn::PoolGeometry::new(LARGE, params)
            .expect("valid pool")
            .output_shape();
        let da = randn_f32(&mut rng, out);
        ok(compare_pool(g, x, params, &da));
    }
}

// ---------------------------------------------------------------------------------------------
// (d) Threads
// ---------------------------------------------------------------------------------------------

#[test]
fn gpu_and_tensor_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Gpu>();
    assert_send_sync::<Tensor>();
    assert_send_sync::<wgpu_cnn::ConvCache>();
    assert_send_sync::<wgpu_cnn::PoolCache>();
}

/// Runs `work(t)` for `t` in `0..n` on `n` threads at once; fails with the first error any
/// thread returns.
fn on_threads(n: usize, work: impl Fn(usize) -> Result<(), String> + Sync) {
    std::thread::scope(|scope| {
        let work = &work;
        let workers: Vec<_> = (0..n).map(|t| scope.spawn(move || work(t))).collect();
        for worker in workers {
            ok(worker.join().expect("no panic"));
        }
    });
}

/// Four threads share one `Gpu`, each running its own convolutions (forward and backward),
/// poolings and paddings and reading back its own results, at the same time. Each thread keeps
/// one shape per op, so after the first round nothing waits for the device but the downloads.
#[test]
fn ops_from_four_threads_on_one_gpu_match_cpu_reference() {
    let g = gpu();
    on_threads(4, |t| {
        let shape = [1 + t, 9 + t, 11, 3 + t];
        let c_out = 4 + 3 * t;
        let params = ConvParams::new(1 + t % 2, 1);
        let pool = PoolParams::new(2, 1 + t % 2, PoolMode::Max);
        for round in 0..18u32 {
            let mut rng = NumpyRng::seed(100 + 100 * t as u32 + round);
            let x = randn_f32(&mut rng, shape);
            let context = |e: String| format!("thread {t}, round {round}: {e}");
            match round % 3 {
                0 => {
                    let wt = randn_f32(&mut rng, [3, 2, shape[3], c_out]);
                    let b: ArrayD<f32> = randn_f32(&mut rng, [1, 1, 1, c_out]).into_dyn();
                    let (z_ref, _) = cpu::conv_forward(
                        to_f64(&x).view(),
                        to_f64(&wt).view(),
                        to_f64(&b).view(),
                        params,
                    )
                    .expect("CPU forward");
                    let dz = randn_f32(&mut rng, dims4(z_ref.shape()));
                    compare_conv(g, &x, &wt, &b, params, &dz).map_err(context)?;
                }
                1 => {
                    let out = wgpu_cnn::PoolGeometry::new(shape, pool)
                        .expect("valid pool")
                        .output_shape();
                    let da = randn_f32(&mut rng, out);
                    compare_pool(g, &x, pool, &da).map_err(context)?;
                }
                _ => {
                    compare_zero_pad(g, &x, Padding::explicit(t, 1, 2, t)).map_err(context)?;
                }
            }
        }
        Ok(())
    });
}

/// Four threads convolve inputs of one shape at the same time with the GEMM kernel that reads
/// its input through a texture (the default on CPU adapters for 40 input channels: too many
/// for the channel-lane kernels). One `Gpu` keeps one texture per size, so a thread's copy into
/// it and the dispatches that read that copy must not interleave with another thread's copy.
#[test]
fn four_threads_convolve_through_the_input_texture_of_one_size() {
    let g = gpu();
    on_threads(4, |t| {
        let params = ConvParams::new(1, 1);
        for round in 0..40u32 {
            let mut rng = NumpyRng::seed(5000 + 100 * t as u32 + round);
            let x = randn_f32(&mut rng, [2, 8, 8, 40]);
            let wt = randn_f32(&mut rng, [3, 3, 40, 8]);
            let b: ArrayD<f32> = randn_f32(&mut rng, [1, 1, 1, 8]).into_dyn();
            let dz = randn_f32(&mut rng, [2, 8, 8, 8]);
            compare_conv(g, &x, &wt, &b, params, &dz)
                .map_err(|e| format!("thread {t}, round {round}: {e}"))?;
        }
        Ok(())
    });
}

/// Eight threads on one `Gpu` whose small bindings split every op into many passes (so recorded
/// work is handed to the queue while other threads record and read back theirs): every thread
/// must read back its own results, never a buffer read before the work that fills it.
#[test]
fn ops_from_eight_threads_on_one_split_gpu_read_back_their_own_results() {
    let g = gpu_with_binding_limit(4096);
    let g = &g;
    on_threads(8, |t| {
        for round in 0..300u32 {
            let mut rng = NumpyRng::seed(1000 + 1000 * t as u32 + round);
            let m = if t % 2 == 0 { 60 } else { 1 + t % 3 };
            let x = randn_f32(&mut rng, [m, 7, 5, 3]);
            compare_zero_pad(g, &x, Padding::explicit(1, t % 3, 2, 0))
                .map_err(|e| format!("thread {t}, round {round}: {e}"))?;
        }
        Ok(())
    });
}
