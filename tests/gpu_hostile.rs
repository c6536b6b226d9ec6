//! Inputs a hostile user tries: NaN in pooling windows, sizes that overflow, parameters beyond
//! the kernels' 32-bit indices, temporaries that would not fit, an invalid op between valid ones.
//! Each answer is the CPU reference's, or a typed error that names the shapes and the limit.

mod common;

use common::gpu;
use ndarray::{Array1, Array4, Ix4};
use wgpu_cnn::{cpu, ConvParams, Error, Gpu, GpuOptions, Padding, PoolMode, PoolParams, Ties};

/// Equal, with NaN equal to NaN.
fn same_or_both_nan(a: &Array4<f32>, b: &Array4<f32>) -> bool {
    a.shape() == b.shape()
        && a.iter()
            .zip(b.iter())
            .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
}

#[test]
fn max_pool_propagates_nan_forward_and_routes_backward_as_the_cpu_reference() {
    let gpu = gpu();
    // Channels 4 (vec4 kernels) and 3 (general kernels); windows that overlap (general
    // backward) and that do not; NaN first in a window, in the middle, and twice.
    for c in [4, 3] {
        for (f, s) in [(2, 2), (3, 1), (2, 1)] {
            for ties in [Ties::EveryMax, Ties::FirstMax] {
                let mut x = Array4::<f32>::from_shape_fn((2, 6, 6, c), |(i, h, w, k)| {
                    ((i * 7 + h * 5 + w * 3 + k) % 11) as f32 - 5.0
                });
                x[[0, 0, 0, 0]] = f32::NAN; // first element of a window
                x[[0, 3, 2, 1 % c]] = f32::NAN; // inside a window
                x[[1, 4, 4, 2 % c]] = f32::NAN;
                x[[1, 4, 5, 2 % c]] = f32::NAN; // two NaN in one window
                let params = PoolParams::new(f, s, PoolMode::Max).with_ties(ties);
                let what = format!("c {c}, f {f}, stride {s}, {ties:?}");
                let t = gpu.upload(&x).unwrap();
                let (a, cache) = gpu.pool_forward(&t, params).unwrap();
                let (a_ref, cpu_cache) = cpu::pool_forward(x.view(), params).unwrap();
                let a_gpu = gpu.download::<Ix4>(&a).unwrap();
                assert!(a_gpu.iter().any(|v| v.is_nan()), "{what}: no NaN came out");
                assert!(same_or_both_nan(&a_gpu, &a_ref), "{what}: forward differs");
                let da = Array4::<f32>::from_shape_fn(a_ref.raw_dim(), |(i, h, w, k)| {
                    1.0 + (i + h + w + k) as f32
                });
                let dx = gpu
                    .download::<Ix4>(
                        &gpu.pool_backward(&gpu.upload(&da).unwrap(), &cache)
                            .unwrap(),
                    )
                    .unwrap();
                let dx_ref = cpu::pool_backward(da.view(), &cpu_cache).unwrap();
                assert!(same_or_both_nan(&dx, &dx_ref), "{what}: backward differs");
            }
        }
    }
}

#[test]
fn zero_pad_with_padding_that_overflows_is_an_error() {
    let gpu = gpu();
    let x = gpu.upload(&Array4::<f32>::zeros((1, 4, 4, 3))).unwrap();
    let e = gpu
        .zero_pad(&x, Padding::explicit(0, usize::MAX - 3, 0, 0))
        .unwrap_err();
    assert!(matches!(e, Error::SizeOverflow { .. }), "{e}");
    assert!(e.to_string().contains("[1, 4, 4, 3]"), "{e}");
    // Large but representable: the device's buffer limit.
    let e = gpu.zero_pad(&x, 1 << 20).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
}

#[test]
fn a_huge_stride_with_a_single_output_is_computed() {
    let gpu = gpu();
    let x = Array4::from_shape_fn((2, 5, 6, 3), |(i, h, w, c)| (i + h * w + c) as f32 * 0.25);
    let w = Array4::from_shape_fn((3, 2, 3, 4), |(a, b, c, d)| {
        (a + 2 * b) as f32 - (c * d) as f32
    });
    let b = Array1::from_vec(vec![0.5f32, -1.0, 2.0, 0.0]);
    let params = ConvParams::new(1, 0).with_stride(1 << 33, 1 << 40);
    let (z, _) = gpu
        .conv_forward(
            &gpu.upload(&x).unwrap(),
            &gpu.upload(&w).unwrap(),
            &gpu.upload(&b).unwrap(),
            params,
        )
        .unwrap();
    let (z_ref, _) = cpu::conv_forward(x.view(), w.view(), b.view(), params).unwrap();
    assert_eq!(z.shape(), &[2, 1, 1, 4]);
    common::assert_close(
        "huge stride",
        &gpu.download::<Ix4>(&z).unwrap(),
        &z_ref,
        1e-5,
    );
}

#[test]
fn a_stride_and_padding_beyond_the_kernels_indices_name_themselves_the_shapes_and_the_limit() {
    let gpu = gpu();
    let x = gpu.upload(&Array4::<f32>::zeros((1, 5, 5, 1))).unwrap();
    let w = gpu.upload(&Array4::<f32>::zeros((3, 3, 1, 1))).unwrap();
    let b = gpu.upload(&Array1::<f32>::zeros(1)).unwrap();
    let pad = 1usize << 32;
    let params = ConvParams::new(1, 0)
        .with_padding(Padding::explicit(pad, pad, 0, 0))
        .with_stride(1 << 33, 1);
    match gpu.conv_forward(&x, &w, &b, params).unwrap_err() {
        Error::IndexRange {
            what,
            value,
            limit,
            input,
            output,
        } => {
            // The stride (needed for a small output) is beyond 32 bits too, and checked first.
            assert_eq!(
                (what, value, limit),
                ("stride (height)", 1 << 33, u64::from(u32::MAX))
            );
            assert_eq!(input, [1, 5, 5, 1]);
            assert_eq!(output, [1, 2, 3, 1]);
        }
        e => panic!("expected IndexRange, got {e}"),
    }
}

#[test]
fn a_temporary_that_would_not_fit_never_rejects_a_valid_input() {
    // The fast convolution pads 1 channel to 4 (a copy 4x the input). With buffers capped at
    // 1 MiB, a 0.75 MiB input fits but its padded copy does not: the direct path must run.
    let small = Gpu::with_options(GpuOptions {
        max_buffer_bytes: Some(1 << 20),
        ..Default::default()
    })
    .unwrap();
    let x = Array4::from_shape_fn((3, 256, 256, 1), |(i, h, w, _)| {
        ((i + h + 2 * w) % 13) as f32
    });
    let w = Array4::from_shape_fn((3, 3, 1, 1), |(a, b, _, _)| (a * 3 + b) as f32 * 0.1);
    let b = Array1::from_vec(vec![-1.0f32]);
    let params = ConvParams::new(1, 1);
    let (tx, tw) = (small.upload(&x).unwrap(), small.upload(&w).unwrap());
    let (z, cache) = small
        .conv_forward(&tx, &tw, &small.upload(&b).unwrap(), params)
        .unwrap();
    let z_gpu = small.download::<Ix4>(&z).unwrap();
    // The reference in f64, on the GPU's own dZ (= Z): dW sums 196608 terms, which a serial
    // f32 sum (the direct kernel's) rounds to about 1e-3 relative.
    let (x64, w64) = (common::to_f64(&x), common::to_f64(&w));
    let b64 = b.mapv(f64::from);
    let (z_ref, cpu_cache) = cpu::conv_forward(x64.view(), w64.view(), b64.view(), params).unwrap();
    common::assert_close("forward", &z_gpu, &common::to_f32(&z_ref), 1e-5);
    let grads = small.conv_backward(&z, &cache).unwrap();
    let reference = cpu::conv_backward(common::to_f64(&z_gpu).view(), &cpu_cache).unwrap();
    let da = small.download::<Ix4>(&grads.da_prev).unwrap();
    common::assert_close("dA_prev", &da, &common::to_f32(&reference.da_prev), 1e-4);
    let dw = small.download::<Ix4>(&grads.dw).unwrap();
    common::assert_close("dW", &dw, &common::to_f32(&reference.dw), 2e-3);
    let db = small.download::<Ix4>(&grads.db).unwrap();
    common::assert_close("db", &db, &common::to_f32(&reference.db), 2e-3);
}

#[test]
fn an_op_that_fails_records_nothing_and_other_ops_are_unaffected() {
    let gpu = gpu();
    let x = gpu.upload(&Array4::<f32>::ones((1, 4, 4, 4))).unwrap();
    let (before, _) = gpu
        .pool_forward(&x, PoolParams::new(2, 2, PoolMode::Max))
        .unwrap();
    // Invalid: a padding the kernels cannot index; caught before anything is recorded.
    let w = gpu.upload(&Array4::<f32>::ones((3, 3, 4, 4))).unwrap();
    let b = gpu.upload(&Array1::<f32>::zeros(4)).unwrap();
    let huge = ConvParams::new(1, 0)
        .with_padding(Padding::explicit(1 << 32, 1 << 32, 0, 0))
        .with_stride(1 << 33, 1);
    assert!(gpu.conv_forward(&x, &w, &b, huge).is_err());
    let (after, _) = gpu
        .pool_forward(&x, PoolParams::new(2, 2, PoolMode::Average))
        .unwrap();
    assert!(gpu
        .download::<Ix4>(&before)
        .unwrap()
        .iter()
        .all(|&v| v == 1.0));
    assert!(gpu
        .download::<Ix4>(&after)
        .unwrap()
        .iter()
        .all(|&v| v == 1.0));
    gpu.synchronize().unwrap();
}

#[test]
fn long_reductions_are_split_within_the_adapters_loop_budget() {
    // The direct filter-gradient kernel reduces over every output pixel in one thread; llvmpipe
    // silently ends loops after 65535 iterations, which cut dW and db short (a partial sum,
    // no error) before the reduction was split into bands. 2 x 300 x 300 pixels: 180000.
    let g = Gpu::with_options(GpuOptions {
        max_binding_bytes: Some(1 << 20), // the channel-padded input cannot be bound whole
        ..Default::default()
    })
    .unwrap();
    let x = Array4::from_shape_fn((2, 300, 300, 1), |(i, h, w, _)| {
        ((i + h + 2 * w) % 7) as f32
    });
    let w = Array4::from_elem((3, 3, 1, 1), 0.5f32);
    let b = Array1::from_vec(vec![0.0f32]);
    let params = ConvParams::new(1, 1);
    let (z, cache) = g
        .conv_forward(
            &g.upload(&x).unwrap(),
            &g.upload(&w).unwrap(),
            &g.upload(&b).unwrap(),
            params,
        )
        .unwrap();
    let ones = g.upload(&Array4::<f32>::ones((2, 300, 300, 1))).unwrap();
    let grads = g.conv_backward(&ones, &cache).unwrap();
    // With dZ = 1: db = number of pixels, exactly; dW[1,1] = sum of x (integers, exact in f32
    // up to 2^24).
    let db = g.download::<Ix4>(&grads.db).unwrap();
    assert_eq!(db[[0, 0, 0, 0]], 180000.0);
    let dw = g.download::<Ix4>(&grads.dw).unwrap();
    assert_eq!(
        f64::from(dw[[1, 1, 0, 0]]),
        x.iter().map(|&v| f64::from(v)).sum::<f64>()
    );
    drop(z);
}

#[test]
fn conv_db_is_bitwise_the_same_whatever_the_batch_chunking() {
    // 5 output channels (the scalar reduction) and 8 (four columns at a time).
    check_db_chunking(5);
    check_db_chunking(8);
}

fn check_db_chunking(c_out: usize) {
    // Both adapters take the direct filter path (the padded input exceeds a binding); they
    // split the batch into chunks of different sizes. db comes from the fixed-order tree
    // reduction, so the bits agree; and they agree with an f64 sum to f32 rounding.
    let mut rng = common::numpy_rng::NumpyRng::seed(5);
    let x = common::randn_f32(&mut rng, [6, 40, 40, 3]);
    let dz = common::randn_f32(&mut rng, [6, 40, 40, c_out]);
    let w = common::randn_f32(&mut rng, [3, 3, 3, c_out]);
    let b = Array1::<f32>::zeros(c_out);
    let mut results = Vec::new();
    for binding in [64 << 10, 100 << 10, 140_000] {
        let g = Gpu::with_options(GpuOptions {
            max_binding_bytes: Some(binding),
            ..Default::default()
        })
        .unwrap();
        let (_, cache) = g
            .conv_forward(
                &g.upload(&x).unwrap(),
                &g.upload(&w).unwrap(),
                &g.upload(&b).unwrap(),
                ConvParams::new(1, 1),
            )
            .unwrap();
        let grads = g.conv_backward(&g.upload(&dz).unwrap(), &cache).unwrap();
        results.push(g.download::<Ix4>(&grads.db).unwrap());
    }
    assert_eq!(results[0], results[1], "db differs between chunkings");
    assert_eq!(results[0], results[2], "db differs between chunkings");
    for c in 0..c_out {
        let exact: f64 = dz
            .iter()
            .skip(c)
            .step_by(c_out)
            .map(|&v| f64::from(v))
            .sum();
        let got = f64::from(results[0][[0, 0, 0, c]]);
        assert!(
            (got - exact).abs() < 1e-3,
            "db[{c}] = {got}, f64 sum {exact}"
        );
    }
}

/// A [136, 1024, 1024, 1] input (544 MiB: each image fits a binding, the batch is chunked) whose
/// 4-channel padded copy (2.1 GiB) would not fit a buffer: the direct path computes it. Heavy (uploads and downloads 1 GiB), so ignored by
/// default: `cargo test --release --test gpu_hostile -- --ignored`.
#[test]
#[ignore]
fn a_544_mib_single_channel_input_is_convolved() {
    let g = gpu();
    let (m, hw) = (136usize, 1024usize);
    let x = Array4::from_shape_fn((m, hw, hw, 1), |(i, h, w, _)| ((i + h + w) % 5) as f32);
    let w = Array4::from_elem((1, 1, 1, 1), 2.0f32);
    let b = Array1::from_vec(vec![1.0f32]);
    let (z, _) = g
        .conv_forward(
            &g.upload(&x).unwrap(),
            &g.upload(&w).unwrap(),
            &g.upload(&b).unwrap(),
            ConvParams::new(1, 0),
        )
        .unwrap();
    let z = g.download::<Ix4>(&z).unwrap();
    assert!(z.iter().zip(x.iter()).all(|(z, x)| *z == 2.0 * x + 1.0));
}
