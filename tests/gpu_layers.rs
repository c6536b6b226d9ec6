//! The network layers on the GPU against the CPU reference: ReLU, fully connected, softmax
//! loss, batch and group norm, the optimizers and the layout conversions; random shapes with
//! channel counts that are not multiples of 4, odd batches, every group count, adversarial
//! values; bitwise determinism of every kernel with a reduction; and cs231n's "overfit a small
//! dataset" check for a three-layer convnet assembled from these layers.

mod common;

use common::{assert_close, gpu, numpy_rng::NumpyRng, randn_f32};
use ndarray::{Array1, Array2, Array4, ArrayD, Ix1, Ix2, Ix4, IxDyn};
use proptest::prelude::*;
use wgpu_cnn::{
    cpu, Adam, AdamConfig, BatchNorm, BatchNormState, ConvParams, Error, GroupNorm, Labels,
    MomentumConfig, PoolMode, PoolParams, Sgd, SgdConfig, SgdMomentum, Tensor,
};

fn randn(rng: &mut NumpyRng, shape: &[usize]) -> ArrayD<f32> {
    rng.randn(shape).mapv(|v| v as f32)
}

fn up<D: ndarray::Dimension>(a: &ndarray::Array<f32, D>) -> Tensor {
    gpu().upload(a).expect("upload")
}

fn down(t: &Tensor) -> ArrayD<f32> {
    gpu().download::<IxDyn>(t).expect("download")
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn relu_matches_the_cpu_reference(n in 1usize..5, d in 1usize..40, seed in 0u32..1000) {
        let mut rng = NumpyRng::seed(seed);
        let x = randn(&mut rng, &[n, d]);
        let dout = randn(&mut rng, &[n, d]);
        let (y, cache) = gpu().relu_forward(&up(&x)).unwrap();
        let dx = gpu().relu_backward(&up(&dout), &cache).unwrap();
        let (y_ref, c_ref) = cpu::relu_forward(x.view()).unwrap();
        let dx_ref = cpu::relu_backward(dout.view(), &c_ref).unwrap();
        prop_assert_eq!(down(&y), y_ref);
        prop_assert_eq!(down(&dx), dx_ref);
    }

    #[test]
    fn affine_matches_the_cpu_reference(
        n in 1usize..9, h in 1usize..5, c in 1usize..7, m in 1usize..45, seed in 0u32..1000,
    ) {
        let mut rng = NumpyRng::seed(seed);
        let x = randn(&mut rng, &[n, h, 3, c]);
        let d = h * 3 * c;
        let w = randn(&mut rng, &[d, m]).into_dimensionality::<Ix2>().unwrap();
        let b = randn(&mut rng, &[m]).into_dimensionality::<Ix1>().unwrap();
        let dout = randn(&mut rng, &[n, m]).into_dimensionality::<Ix2>().unwrap();
        let (out, cache) = gpu().affine_forward(&up(&x), &up(&w), &up(&b)).unwrap();
        let grads = gpu().affine_backward(&up(&dout), &cache).unwrap();
        let (out_ref, c_ref) = cpu::affine_forward(x.view(), w.view(), b.view()).unwrap();
        let g_ref = cpu::affine_backward(dout.view(), &c_ref).unwrap();
        let tol = 1e-5 * (d.max(n) as f32).sqrt();
        assert_close("out", &down(&out).into_dimensionality::<Ix2>().unwrap(), &out_ref, tol);
        assert_close("dx", &down(&grads.dx), &g_ref.dx, tol);
        assert_close("dw", &down(&grads.dw).into_dimensionality::<Ix2>().unwrap(), &g_ref.dw, tol);
        assert_close("db", &down(&grads.db).into_dimensionality::<Ix1>().unwrap(), &g_ref.db, tol);
    }

    #[test]
    fn softmax_loss_matches_the_cpu_reference_even_for_huge_logits(
        n in 1usize..9, k in 1usize..12, scale in prop::sample::select(vec![1.0f32, 100.0, 1e4]),
        one_hot in any::<bool>(), seed in 0u32..1000,
    ) {
        let mut rng = NumpyRng::seed(seed);
        let scores = randn(&mut rng, &[n, k]).into_dimensionality::<Ix2>().unwrap() * scale;
        let idx: Vec<usize> = (0..n).map(|i| (i * 7 + seed as usize) % k).collect();
        let labels = if one_hot {
            Labels::OneHot(Labels::Indices(idx).targets(n, k).unwrap())
        } else {
            Labels::Indices(idx)
        };
        let (loss, dscores) = gpu().softmax_loss(&up(&scores), &labels).unwrap();
        let (loss_ref, d_ref) = cpu::softmax_loss(scores.view(), &labels).unwrap();
        let loss = down(&loss)[[0]];
        prop_assert!(loss.is_finite());
        prop_assert!((loss - loss_ref).abs() <= 1e-4 * (1.0 + loss_ref.abs()), "{} vs {}", loss, loss_ref);
        assert_close("dscores", &down(&dscores).into_dimensionality::<Ix2>().unwrap(), &d_ref, 1e-5);
    }

    #[test]
    fn batchnorm_matches_the_cpu_reference(
        n in 1usize..6, h in 1usize..5, w in 1usize..5, c in 1usize..11,
        constant_channel in any::<bool>(), seed in 0u32..1000,
    ) {
        let mut rng = NumpyRng::seed(seed);
        let mut x = randn(&mut rng, &[n, h, w, c]).into_dimensionality::<Ix4>().unwrap() * 3.0 + 1.0;
        if constant_channel {
            x.slice_mut(ndarray::s![.., .., .., 0]).fill(2.5); // variance 0
        }
        let gamma = randn(&mut rng, &[c]).into_dimensionality::<Ix1>().unwrap();
        let beta = randn(&mut rng, &[c]).into_dimensionality::<Ix1>().unwrap();
        let dout = randn(&mut rng, &[n, h, w, c]).into_dimensionality::<Ix4>().unwrap();
        let bn = BatchNorm::train().with_momentum(0.8);
        let mut state = BatchNormState::new();
        let mut state_ref = cpu::BatchNormState::<f32>::new();
        for step in 0..2 {
            let x_step = &x + step as f32;
            let (y, cache) = gpu()
                .spatial_batchnorm_forward(&up(&x_step), &up(&gamma), &up(&beta), &mut state, bn)
                .unwrap();
            let grads = gpu().spatial_batchnorm_backward(&up(&dout), &cache).unwrap();
            let (y_ref, c_ref) = cpu::spatial_batchnorm_forward(
                x_step.view(), gamma.view(), beta.view(), &mut state_ref, bn,
            )
            .unwrap();
            let g_ref = cpu::spatial_batchnorm_backward(dout.view(), &c_ref).unwrap();
            assert_close("y", &down(&y).into_dimensionality::<Ix4>().unwrap(), &y_ref, 1e-4);
            assert_close("dx", &down(&grads.dx).into_dimensionality::<Ix4>().unwrap(), &g_ref.dx, 1e-3);
            assert_close("dgamma", &down(&grads.dgamma).into_dimensionality::<Ix1>().unwrap(), &g_ref.dgamma, 1e-4);
            assert_close("dbeta", &down(&grads.dbeta).into_dimensionality::<Ix1>().unwrap(), &g_ref.dbeta, 1e-4);
        }
        let rm = down(state.running_mean.as_ref().unwrap()).into_dimensionality::<Ix1>().unwrap();
        let rv = down(state.running_var.as_ref().unwrap()).into_dimensionality::<Ix1>().unwrap();
        assert_close("running mean", &rm, state_ref.running_mean.as_ref().unwrap(), 1e-5);
        assert_close("running var", &rv, state_ref.running_var.as_ref().unwrap(), 1e-4);
        // Test mode uses them.
        let (y, cache) = gpu()
            .spatial_batchnorm_forward(&up(&x), &up(&gamma), &up(&beta), &mut state, BatchNorm::test())
            .unwrap();
        let (y_ref, c_ref) = cpu::spatial_batchnorm_forward(
            x.view(), gamma.view(), beta.view(), &mut state_ref, BatchNorm::test(),
        )
        .unwrap();
        assert_close("test-mode y", &down(&y).into_dimensionality::<Ix4>().unwrap(), &y_ref, 1e-3);
        // A train-mode pass between the test-mode forward and its backward moves the running
        // statistics in place; the test-mode cache keeps the ones its forward used.
        let x2 = x.mapv(|v| 3.0 * v + 1.0);
        gpu()
            .spatial_batchnorm_forward(&up(&x2), &up(&gamma), &up(&beta), &mut state, BatchNorm::train())
            .unwrap();
        let grads = gpu().spatial_batchnorm_backward(&up(&dout), &cache).unwrap();
        let g_ref = cpu::spatial_batchnorm_backward(dout.view(), &c_ref).unwrap();
        assert_close("test-mode dx", &down(&grads.dx).into_dimensionality::<Ix4>().unwrap(), &g_ref.dx, 1e-3);
        assert_close("test-mode dgamma", &down(&grads.dgamma).into_dimensionality::<Ix1>().unwrap(), &g_ref.dgamma, 1e-3);
        assert_close("test-mode dbeta", &down(&grads.dbeta).into_dimensionality::<Ix1>().unwrap(), &g_ref.dbeta, 1e-3);
    }

    #[test]
    fn groupnorm_matches_the_cpu_reference_for_every_group_count(
        n in 1usize..5, h in 1usize..5, w in 1usize..4, c in 1usize..13, g_pick in 0usize..13,
        constant_channel in any::<bool>(), seed in 0u32..1000,
    ) {
        let divisors: Vec<usize> = (1..=c).filter(|g| c % g == 0).collect();
        let groups = divisors[g_pick % divisors.len()];
        let mut rng = NumpyRng::seed(seed);
        let mut x = randn(&mut rng, &[n, h, w, c]).into_dimensionality::<Ix4>().unwrap() * 2.0 - 0.5;
        if constant_channel {
            x.fill(-1.25); // every group has variance 0
        }
        let gamma = randn(&mut rng, &[c]).into_dimensionality::<Ix1>().unwrap();
        let beta = randn(&mut rng, &[c]).into_dimensionality::<Ix1>().unwrap();
        let dout = randn(&mut rng, &[n, h, w, c]).into_dimensionality::<Ix4>().unwrap();
        let gn = GroupNorm::new(groups);
        let (y, cache) = gpu().spatial_groupnorm_forward(&up(&x), &up(&gamma), &up(&beta), gn).unwrap();
        let grads = gpu().spatial_groupnorm_backward(&up(&dout), &cache).unwrap();
        let (y_ref, c_ref) = cpu::spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), gn).unwrap();
        let g_ref = cpu::spatial_groupnorm_backward(dout.view(), &c_ref).unwrap();
        assert_close("y", &down(&y).into_dimensionality::<Ix4>().unwrap(), &y_ref, 1e-4);
        let dx = down(&grads.dx).into_dimensionality::<Ix4>().unwrap();
        prop_assert!(dx.iter().all(|v| v.is_finite()));
        assert_close("dx", &dx, &g_ref.dx, 1e-3);
        assert_close("dgamma", &down(&grads.dgamma).into_dimensionality::<Ix1>().unwrap(), &g_ref.dgamma, 1e-4);
        assert_close("dbeta", &down(&grads.dbeta).into_dimensionality::<Ix1>().unwrap(), &g_ref.dbeta, 1e-4);
    }
}

/// Shapes whose norm passes make a thread loop: more vec4s than a CPU adapter's grid has threads
/// (each thread walks several pixels), group norm with more images than the grid has pixel
/// lanes (an image lane takes several images), and sums whose last serial pass would outrun
/// llvmpipe's loop budget (the statistics take the reduction's own fold or passes instead).
#[test]
fn norms_match_the_cpu_reference_when_threads_loop_over_pixels_and_images() {
    let mut rng = NumpyRng::seed(7);
    for (shape, groups) in [
        ([20, 64, 64, 8], 0),
        ([20, 64, 64, 8], 2),
        // 2 and 1 channels a group (on CPU adapters: one thread per image and vec4 of channels,
        // one dispatch each way), then batch norm and 8 channels a group with the sums taken
        // image by image there.
        ([16, 32, 32, 12], 6),
        ([9, 16, 16, 4], 4),
        ([64, 16, 16, 8], 0),
        ([16, 8, 8, 16], 2),
        ([140_000, 1, 1, 8], 2),
        // Group norm's per-channel sums over 7000 images: partial sums too many for one
        // thread's loop on llvmpipe (folded first), then 7000 terms a channel.
        ([7000, 4, 4, 8], 2),
        // More vec4s of channels than a workgroup has threads, and lane groups of one pixel.
        ([3, 5, 7, 1028], 0),
        ([3, 5, 7, 1028], 4),
        ([2, 9, 9, 24], 0),
    ] {
        let x = randn(&mut rng, &shape)
            .into_dimensionality::<Ix4>()
            .unwrap();
        let dout = randn(&mut rng, &shape)
            .into_dimensionality::<Ix4>()
            .unwrap();
        let c = shape[3];
        let gamma = randn(&mut rng, &[c]).into_dimensionality::<Ix1>().unwrap();
        let beta = randn(&mut rng, &[c]).into_dimensionality::<Ix1>().unwrap();
        let (gx, gg, gb, gd) = (up(&x), up(&gamma), up(&beta), up(&dout));
        let ((y, grads), (y_ref, dx_ref, dgamma_ref)) = if groups == 0 {
            let mut state = BatchNormState::new();
            let (y, cache) = gpu()
                .spatial_batchnorm_forward(&gx, &gg, &gb, &mut state, BatchNorm::train())
                .unwrap();
            let grads = gpu().spatial_batchnorm_backward(&gd, &cache).unwrap();
            let mut s_ref = cpu::BatchNormState::<f32>::new();
            let (y_ref, c_ref) = cpu::spatial_batchnorm_forward(
                x.view(),
                gamma.view(),
                beta.view(),
                &mut s_ref,
                BatchNorm::train(),
            )
            .unwrap();
            let g_ref = cpu::spatial_batchnorm_backward(dout.view(), &c_ref).unwrap();
            ((y, grads), (y_ref, g_ref.dx, g_ref.dgamma))
        } else {
            let gn = GroupNorm::new(groups);
            let (y, cache) = gpu().spatial_groupnorm_forward(&gx, &gg, &gb, gn).unwrap();
            let grads = gpu().spatial_groupnorm_backward(&gd, &cache).unwrap();
            let (y_ref, c_ref) =
                cpu::spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), gn).unwrap();
            let g_ref = cpu::spatial_groupnorm_backward(dout.view(), &c_ref).unwrap();
            ((y, grads), (y_ref, g_ref.dx, g_ref.dgamma))
        };
        assert_close(
            "y",
            &down(&y).into_dimensionality::<Ix4>().unwrap(),
            &y_ref,
            1e-4,
        );
        assert_close(
            "dx",
            &down(&grads.dx).into_dimensionality::<Ix4>().unwrap(),
            &dx_ref,
            1e-3,
        );
        // dgamma sums up to 655360 products of unit-scale terms to a value near 5: both sides
        // carry f32 rounding of the terms' mass (measured 1.3e-3 apart).
        let dgamma = down(&grads.dgamma).into_dimensionality::<Ix1>().unwrap();
        assert_close("dgamma", &dgamma, &dgamma_ref, 1e-3);
    }
}

/// The element-wise kernels' loops (`stream.wgsl`: lane groups streaming through chunks on CPU
/// adapters, the plain grid stride on GPUs) visit every item exactly once at any count.
#[test]
fn element_wise_kernels_cover_every_item_at_any_count() {
    let mut rng = NumpyRng::seed(11);
    for n in [
        1, 3, 8, 63, 64, 65, 513, 4095, 4097, 262_143, 262_145, 3_000_001,
    ] {
        // (n,): the scalar kernels; (1, 4n): the vec4 kernels.
        for shape in [vec![n], vec![1, 4 * n]] {
            let x = randn(&mut rng, &shape);
            let dout = randn(&mut rng, &shape);
            let (y, cache) = gpu().relu_forward(&up(&x)).unwrap();
            let dx = gpu().relu_backward(&up(&dout), &cache).unwrap();
            let (y_ref, c_ref) = cpu::relu_forward(x.view()).unwrap();
            let dx_ref = cpu::relu_backward(dout.view(), &c_ref).unwrap();
            assert_eq!(down(&y), y_ref, "relu forward, shape {shape:?}");
            assert_eq!(down(&dx), dx_ref, "relu backward, shape {shape:?}");
        }
    }
}

#[test]
fn optimizers_match_the_formulas_over_several_steps() {
    // 35 parameters (one at a time) and 24 (four at a time).
    check_optimizers([7, 5]);
    check_optimizers([6, 4]);
}

fn check_optimizers(shape: [usize; 2]) {
    let mut rng = NumpyRng::seed(3);
    let w0 = randn(&mut rng, &shape);
    let grads: Vec<ArrayD<f32>> = (0..4).map(|_| randn(&mut rng, &shape)).collect();
    // Adam (bias correction depends on t), with weight decay.
    let cfg = AdamConfig::new(0.01).with_weight_decay(0.1);
    let mut w = up(&w0);
    let mut adam = Adam::with_config(cfg);
    let mut w_ref = w0.clone();
    let mut st = cpu::AdamState::<f32>::zeros(&shape).unwrap();
    for (t, g) in grads.iter().enumerate() {
        adam.step(gpu(), &mut w, &up(g)).unwrap();
        cpu::adam(w_ref.view_mut(), g.view(), &mut st, &cfg).unwrap();
        assert_eq!(adam.steps(&w), t as u64 + 1);
        assert_close(&format!("adam step {}", t + 1), &down(&w), &w_ref, 1e-5);
    }
    // SGD with momentum.
    let cfg = MomentumConfig::new(0.05);
    let mut w = up(&w0);
    let mut opt = SgdMomentum::with_config(cfg);
    let (mut w_ref, mut v) = (w0.clone(), ArrayD::<f32>::zeros(IxDyn(&shape)));
    for g in &grads {
        opt.step(gpu(), &mut w, &up(g)).unwrap();
        cpu::sgd_momentum(w_ref.view_mut(), g.view(), v.view_mut(), &cfg).unwrap();
    }
    assert_close("momentum", &down(&w), &w_ref, 1e-5);
    // Plain SGD.
    let mut w = up(&w0);
    let sgd = Sgd {
        config: SgdConfig {
            lr: 0.1,
            weight_decay: 0.01,
        },
    };
    let mut w_ref = w0.clone();
    for g in &grads {
        sgd.step(gpu(), &mut w, &up(g)).unwrap();
        cpu::sgd(w_ref.view_mut(), g.view(), &sgd.config).unwrap();
    }
    assert_close("sgd", &down(&w), &w_ref, 1e-5);
    // A gradient of the wrong shape is an error; a gradient that is the parameter is too.
    let e = sgd
        .step(gpu(), &mut w, &up(&randn(&mut rng, &[5, 7])))
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let same = w.clone();
    let e = sgd.step(gpu(), &mut w, &same).unwrap_err();
    assert!(matches!(e, Error::Aliased { .. }), "{e}");
}

#[test]
fn layout_conversions_match_the_cpu_reference() {
    // Odd sizes (element by element), widths in fours (four at a time), and channels and
    // widths in fours (4 x 4 tile transposes both ways; their tile extents are specialised
    // into the kernel: several shapes, one with more tiles than a CPU adapter's grid has
    // threads).
    for shape in [
        [2, 3, 4, 5],
        [2, 3, 5, 8],
        [2, 8, 3, 4],
        [3, 4, 4, 8],
        [5, 12, 9, 16],
        [64, 8, 64, 64],
    ] {
        check_layout(shape);
    }
}

fn check_layout(shape: [usize; 4]) {
    let mut rng = NumpyRng::seed(9);
    let x = randn(&mut rng, &shape)
        .into_dimensionality::<Ix4>()
        .unwrap();
    let t = up(&x);
    let nhwc = gpu().nchw_to_nhwc(&t).unwrap();
    assert_eq!(
        down(&nhwc).into_dimensionality::<Ix4>().unwrap(),
        cpu::nchw_to_nhwc(x.view()).unwrap()
    );
    assert_eq!(
        down(&gpu().nhwc_to_nchw(&nhwc).unwrap())
            .into_dimensionality::<Ix4>()
            .unwrap(),
        x
    );
    let hwio = gpu().oihw_to_hwio(&t).unwrap();
    assert_eq!(
        down(&hwio).into_dimensionality::<Ix4>().unwrap(),
        cpu::oihw_to_hwio(x.view()).unwrap()
    );
    assert_eq!(
        down(&gpu().hwio_to_oihw(&hwio).unwrap())
            .into_dimensionality::<Ix4>()
            .unwrap(),
        x
    );
}

#[test]
fn bad_layer_inputs_are_typed_errors() {
    let g = gpu();
    let x = g.zeros(&[2, 3, 3, 6]).unwrap();
    let (gamma, beta) = (g.zeros(&[6]).unwrap(), g.zeros(&[6]).unwrap());
    let e = g
        .spatial_groupnorm_forward(&x, &gamma, &beta, GroupNorm::new(4))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Groups {
                groups: 4,
                channels: 6
            }
        ),
        "{e}"
    );
    let e = g
        .spatial_batchnorm_forward(
            &x,
            &g.zeros(&[5]).unwrap(),
            &beta,
            &mut BatchNormState::new(),
            BatchNorm::train(),
        )
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let e = g
        .spatial_batchnorm_forward(
            &x,
            &gamma,
            &beta,
            &mut BatchNormState::new(),
            BatchNorm::test(),
        )
        .unwrap_err();
    assert!(matches!(e, Error::NoRunningStats { channels: 6 }), "{e}");
    let scores = g.zeros(&[2, 3]).unwrap();
    let e = g
        .softmax_loss(&scores, &Labels::Indices(vec![0, 3]))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::LabelOutOfRange {
                index: 1,
                label: 3,
                classes: 3
            }
        ),
        "{e}"
    );
    let e = g
        .softmax_loss(&scores, &Labels::Indices(vec![0]))
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let e = g
        .affine_forward(&x, &g.zeros(&[50, 4]).unwrap(), &g.zeros(&[4]).unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let e = g
        .affine_forward(&x, &g.zeros(&[54, 4]).unwrap(), &g.zeros(&[3]).unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let e = g.relu_forward_into(&x, &mut x.clone()).unwrap_err();
    assert!(matches!(e, Error::Aliased { .. }), "{e}");
}

#[test]
fn every_kernel_with_a_reduction_is_bitwise_deterministic() {
    let mut rng = NumpyRng::seed(21);
    let x = randn(&mut rng, &[5, 9, 7, 6])
        .into_dimensionality::<Ix4>()
        .unwrap();
    let w = randn(&mut rng, &[378, 10])
        .into_dimensionality::<Ix2>()
        .unwrap();
    let b = Array1::<f32>::zeros(10);
    let gamma = Array1::<f32>::ones(6);
    let x8 = randn(&mut rng, &[5, 9, 7, 8])
        .into_dimensionality::<Ix4>()
        .unwrap();
    let gamma8 = randn(&mut rng, &[8]).into_dimensionality::<Ix1>().unwrap();
    let x32 = randn(&mut rng, &[32, 3, 3, 8])
        .into_dimensionality::<Ix4>()
        .unwrap();
    let run = || {
        let g = gpu();
        let (out, ac) = g.affine_forward(&up(&x), &up(&w), &up(&b)).unwrap();
        let (loss, dscores) = g
            .softmax_loss(&out, &Labels::Indices(vec![1, 2, 3, 4, 5]))
            .unwrap();
        let ag = g.affine_backward(&dscores, &ac).unwrap();
        let mut st = BatchNormState::new();
        let (y, bc) = g
            .spatial_batchnorm_forward(
                &up(&x),
                &up(&gamma),
                &up(&b.slice(ndarray::s![..6]).to_owned()),
                &mut st,
                BatchNorm::train(),
            )
            .unwrap();
        let bg = g.spatial_batchnorm_backward(&y, &bc).unwrap();
        let (z, gc) = g
            .spatial_groupnorm_forward(&up(&x), &up(&gamma), &up(&gamma), GroupNorm::new(3))
            .unwrap();
        let gg = g.spatial_groupnorm_backward(&z, &gc).unwrap();
        // Channels a multiple of 4, 2 a group (one dispatch each way on CPU adapters).
        let (z4, gc4) = g
            .spatial_groupnorm_forward(&up(&x8), &up(&gamma8), &up(&gamma8), GroupNorm::new(4))
            .unwrap();
        let gg4 = g.spatial_groupnorm_backward(&z4, &gc4).unwrap();
        // Enough images and vec4 channels for the sums image by image (CPU adapters).
        let mut st32 = BatchNormState::new();
        let (y32, bc32) = g
            .spatial_batchnorm_forward(
                &up(&x32),
                &up(&gamma8),
                &up(&gamma8),
                &mut st32,
                BatchNorm::train(),
            )
            .unwrap();
        let bg32 = g.spatial_batchnorm_backward(&y32, &bc32).unwrap();
        [
            loss,
            ag.dx,
            ag.dw,
            ag.db,
            y,
            bg.dx,
            bg.dgamma,
            bg.dbeta,
            gg.dx,
            gg.dgamma,
            gg.dbeta,
            z4,
            gg4.dx,
            gg4.dgamma,
            gg4.dbeta,
            y32,
            bg32.dx,
            bg32.dgamma,
            bg32.dbeta,
        ]
        .iter()
        .map(down)
        .collect::<Vec<_>>()
    };
    let first = run();
    for _ in 0..2 {
        assert_eq!(run(), first);
    }
}

/// cs231n's sanity check: a three-layer convnet (conv - relu - 2x2 max pool - affine - relu -
/// affine - softmax) overfits 50 training images to 100% training accuracy with Adam.
#[test]
fn three_layer_convnet_overfits_50_images() {
    let g = gpu();
    let mut rng = NumpyRng::seed(0);
    let (n, hw, c, f, hidden, classes) = (50usize, 16usize, 3usize, 8usize, 32usize, 10usize);
    let x = randn_f32(&mut rng, [n, hw, hw, c]);
    let labels: Vec<usize> = (0..n).map(|i| (i * 7) % classes).collect();
    let scale = |fan_in: usize| (2.0 / fan_in as f64).sqrt() as f32;
    let w1 = randn_f32(&mut rng, [3, 3, c, f]) * scale(9 * c);
    let d = (hw / 2) * (hw / 2) * f;
    let w2 = randn(&mut rng, &[d, hidden])
        .into_dimensionality::<Ix2>()
        .unwrap()
        * scale(d);
    let w3 = randn(&mut rng, &[hidden, classes])
        .into_dimensionality::<Ix2>()
        .unwrap()
        * scale(hidden);
    let mut params = [
        up(&w1),
        g.zeros(&[f]).unwrap(),
        up(&w2),
        g.zeros(&[hidden]).unwrap(),
        up(&w3),
        g.zeros(&[classes]).unwrap(),
    ];
    let xt = up(&x);
    let mut adam = Adam::new(1e-2);
    let pool = PoolParams::new(2, 2, PoolMode::Max);
    let mut accuracy = 0.0;
    let mut loss_value = f32::NAN;
    for step in 0..300 {
        let [w1, b1, w2, b2, w3, b3] = &params;
        let (z1, c1) = g.conv_forward(&xt, w1, b1, ConvParams::new(1, 1)).unwrap();
        let (a1, r1) = g.relu_forward(&z1).unwrap();
        let (p1, pc) = g.pool_forward(&a1, pool).unwrap();
        let (h, ac2) = g.affine_forward(&p1, w2, b2).unwrap();
        let (hr, r2) = g.relu_forward(&h).unwrap();
        let (scores, ac3) = g.affine_forward(&hr, w3, b3).unwrap();
        let (loss, dscores) = g
            .softmax_loss(&scores, &Labels::Indices(labels.clone()))
            .unwrap();
        if step % 25 == 0 || step == 299 {
            let s: Array2<f32> = g.download(&scores).unwrap();
            let right = (0..n)
                .filter(|&i| {
                    let row = s.row(i);
                    let best = (0..classes)
                        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                        .unwrap();
                    best == labels[i]
                })
                .count();
            accuracy = right as f64 / n as f64;
            loss_value = g.download::<Ix1>(&loss).unwrap()[0];
            if accuracy == 1.0 {
                break;
            }
        }
        let g3 = g.affine_backward(&dscores, &ac3).unwrap();
        let dh = g.relu_backward(&g3.dx, &r2).unwrap();
        let g2 = g.affine_backward(&dh, &ac2).unwrap();
        let da1 = g.pool_backward(&g2.dx, &pc).unwrap();
        let dz1 = g.relu_backward(&da1, &r1).unwrap();
        let g1 = g.conv_backward(&dz1, &c1).unwrap();
        let db1 = g1.db.reshape(&[f]).unwrap();
        let grads = [&g1.dw, &db1, &g2.dw, &g2.db, &g3.dw, &g3.db];
        for (p, d) in params.iter_mut().zip(grads) {
            adam.step(g, p, d).unwrap();
        }
    }
    assert_eq!(
        accuracy, 1.0,
        "training accuracy {accuracy} (loss {loss_value})"
    );
    assert!(loss_value < 0.5, "loss {loss_value}");
    let _ = Array4::<f32>::zeros((1, 1, 1, 1));
}

#[test]
fn same_pooling_never_lets_padding_win_or_count() {
    use wgpu_cnn::{Padding, Ties};
    // A hand check: 3x3 input, 2x2 windows, stride 2, SAME: padding goes below and right.
    let x = Array4::from_shape_vec(
        (1, 3, 3, 1),
        vec![-1.0f32, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -8.0, -9.0],
    )
    .unwrap();
    let same = Padding::same((3, 3), (2, 2), (2, 2));
    let max = PoolParams::new(2, 2, PoolMode::Max).with_padding(same);
    let avg = PoolParams::new(2, 2, PoolMode::Average).with_padding(same);
    let (a, _) = cpu::pool_forward(x.view(), max).unwrap();
    assert_eq!(a.into_raw_vec_and_offset().0, vec![-1.0, -3.0, -7.0, -9.0]); // never 0
    let (a, _) = cpu::pool_forward(x.view(), avg).unwrap();
    assert_eq!(a.into_raw_vec_and_offset().0, vec![-3.0, -4.5, -7.5, -9.0]); // counts 4, 2, 2, 1
                                                                             // The GPU against the CPU on sizes the window does not divide, both modes, both tie rules,
                                                                             // channels in fours (which the vec4 kernels would take without padding) and not.
    let mut rng = NumpyRng::seed(17);
    for (hw, f, s, c) in [
        (10usize, 4usize, 4usize, 8usize),
        (9, 3, 2, 3),
        (64, 8, 8, 8),
        (13, 4, 4, 16),
    ] {
        let x = randn_f32(&mut rng, [3, hw, hw + 1, c]);
        let same = Padding::same((hw, hw + 1), (f, f), (s, s));
        for mode in [PoolMode::Max, PoolMode::Average] {
            for ties in [Ties::EveryMax, Ties::FirstMax] {
                let params = PoolParams::new(f, s, mode)
                    .with_padding(same)
                    .with_ties(ties);
                let (a, cache) = gpu().pool_forward(&up(&x), params).unwrap();
                let (a_ref, c_ref) = cpu::pool_forward(x.view(), params).unwrap();
                let a_host = down(&a).into_dimensionality::<Ix4>().unwrap();
                assert_close("SAME pool forward", &a_host, &a_ref, 1e-6);
                let da = randn_f32(&mut rng, a_ref.dim().into());
                let dx = gpu().pool_backward(&up(&da), &cache).unwrap();
                let dx_ref = cpu::pool_backward(da.view(), &c_ref).unwrap();
                assert_close(
                    "SAME pool backward",
                    &down(&dx).into_dimensionality::<Ix4>().unwrap(),
                    &dx_ref,
                    1e-6,
                );
            }
        }
    }
    // Padding as wide as the window is refused.
    let e = cpu::pool_forward(x.view(), max.with_padding(Padding::uniform(2))).unwrap_err();
    assert!(matches!(e, Error::PoolPadding { .. }), "{e}");
}

#[test]
fn fused_conv_relu_and_filter_only_backward_are_bitwise_the_plain_ops_on_every_path() {
    use wgpu_cnn::{GpuOptions, Padding};
    let small = wgpu_cnn::Gpu::with_options(GpuOptions {
        max_binding_bytes: Some(48 << 10), // the packed filter does not fit: the direct kernel
        ..Default::default()
    })
    .unwrap();
    let mut rng = NumpyRng::seed(31);
    let x = randn_f32(&mut rng, [3, 12, 12, 3]);
    let w = randn_f32(&mut rng, [4, 4, 3, 8]);
    let b = Array1::from_iter(randn_f32(&mut rng, [1, 1, 1, 8]));
    let da = randn_f32(&mut rng, [3, 12, 12, 8]);
    let params = ConvParams::new(1, 0).with_padding(Padding::same((12, 12), (4, 4), (1, 1)));
    for g in [gpu(), &small] {
        let (tx, tw, tb) = common::upload_conv(g, &x, &w, &b);
        let (a, cache) = g.conv_relu_forward(&tx, &tw, &tb, params).unwrap();
        let (z, zc) = g.conv_forward(&tx, &tw, &tb, params).unwrap();
        let (a2, rc) = g.relu_forward(&z).unwrap();
        let d = |t: &Tensor| g.download::<IxDyn>(t).unwrap();
        assert_eq!(d(&a), d(&a2), "forward");
        assert!(d(&a).iter().any(|&v| v == 0.0) && d(&a).iter().any(|&v| v > 0.0));
        let tda = g.upload(&da).unwrap();
        let fused = g.conv_relu_backward(&tda, &cache).unwrap();
        let plain = g
            .conv_backward(&g.relu_backward(&tda, &rc).unwrap(), &zc)
            .unwrap();
        assert_eq!(d(&fused.da_prev), d(&plain.da_prev));
        assert_eq!(d(&fused.dw), d(&plain.dw));
        assert_eq!(d(&fused.db), d(&plain.db));
        // The filter gradient alone (a first layer's backward) is the same, bit for bit.
        let (dw, db) = g.conv_relu_backward_filter(&tda, &cache).unwrap();
        assert_eq!(d(&dw), d(&plain.dw));
        assert_eq!(d(&db), d(&plain.db));
        let (dw, db) = g
            .conv_backward_filter(&g.relu_backward(&tda, &rc).unwrap(), &zc)
            .unwrap();
        assert_eq!(d(&dw), d(&plain.dw));
        assert_eq!(d(&db), d(&plain.db));
    }
}

#[test]
fn fused_pool_relu_backward_is_bitwise_relu_backward_after_pool_backward() {
    use wgpu_cnn::Ties;
    let g = gpu();
    let mut rng = NumpyRng::seed(41);
    // (input, pool): the vec4 kernel (non-overlapping windows, channels of 4) and the general
    // one (overlapping windows, 3 channels, SAME padding).
    let cases = [
        ([3, 16, 16, 8], PoolParams::new(8, 8, PoolMode::Max)),
        (
            [3, 16, 16, 8],
            PoolParams::new(4, 4, PoolMode::Max).with_ties(Ties::FirstMax),
        ),
        ([2, 8, 8, 4], PoolParams::new(2, 2, PoolMode::Average)),
        (
            [2, 9, 7, 3],
            PoolParams::new(3, 2, PoolMode::Max).with_kernel(3, 3),
        ),
        (
            [2, 9, 7, 3],
            PoolParams::new(3, 2, PoolMode::Average).with_kernel(3, 3),
        ),
    ];
    for (i, (shape, pool)) in cases.into_iter().enumerate() {
        let mut z = randn(&mut rng, &shape);
        // Ties and a NaN: zeros (ReLU of negatives) tie in every all-negative window.
        z.iter_mut().step_by(11).for_each(|v| *v = -v.abs());
        z.as_slice_mut().unwrap()[5] = f32::NAN;
        let (a, rc) = g.relu_forward(&up(&z)).unwrap();
        let (p, pc) = g.pool_forward(&a, pool).unwrap();
        let dp = up(&randn(&mut rng, p.shape()));
        let fused = down(&g.pool_relu_backward(&dp, &pc).unwrap());
        let plain = down(
            &g.relu_backward(&g.pool_backward(&dp, &pc).unwrap(), &rc)
                .unwrap(),
        );
        assert!(
            fused
                .iter()
                .zip(&plain)
                .all(|(f, q)| f.to_bits() == q.to_bits()),
            "case {i}: fused pool + ReLU backward differs"
        );
        assert!(
            plain.iter().any(|&v| v != 0.0),
            "case {i}: nothing flows back"
        );
    }
}

/// Conv -> ReLU -> max pool (first maximum, windows that do not overlap) as one layer. The
/// filter gradient straight from the pool's gradient, against the dense path on the GPU (the
/// pool's backward, then the convolution's) and the CPU reference's chain; and the one-kernel
/// forward (`conv_relu_pool_forward`) and its backward passes, bitwise against the same layer
/// run as two ops. SAME and explicit padding, a strided convolution, a pool stride past its
/// window (uncovered rows), a filter too large for the sparse kernel (the dense fallback),
/// seed 001's two layers (8 and 16 output channels: one and two subgroups of lanes),
/// small-integer inputs so that windows tie (and ReLU zeros tie), a bias that moves them.
#[test]
fn conv_relu_pool_layer_matches_the_dense_path_and_the_cpu() {
    use wgpu_cnn::{ConvReluPoolCache, Padding, Ties};
    let g = gpu();
    let bits = |t: &Tensor| down(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let mut fused = 0;
    // (m, h, w, k, c_out, filter, padding, conv stride, pool window, pool stride)
    let cases = [
        (
            2,
            16,
            16,
            3,
            8,
            4,
            Padding::same((16, 16), (4, 4), (1, 1)),
            1,
            8,
            8,
        ),
        (3, 8, 12, 4, 4, 3, Padding::uniform(1), 1, 2, 2),
        (2, 12, 12, 2, 8, 2, Padding::uniform(0), 2, 3, 3),
        (1, 10, 10, 1, 4, 1, Padding::uniform(0), 1, 2, 3),
        (1, 8, 8, 8, 4, 3, Padding::uniform(1), 1, 2, 2),
        (3, 8, 12, 4, 8, 3, Padding::uniform(1), 1, 2, 2),
        (1, 10, 10, 1, 8, 1, Padding::uniform(0), 1, 2, 3),
        (
            3,
            8,
            8,
            8,
            16,
            2,
            Padding::same((8, 8), (2, 2), (1, 1)),
            1,
            4,
            4,
        ),
    ];
    let mut rng = NumpyRng::seed(7);
    for (n, &(m, h, w, k, c, f, pad, s, pf, ps)) in cases.iter().enumerate() {
        let small = |rng: &mut NumpyRng, shape: [usize; 4]| {
            Array4::from_shape_simple_fn(shape, || (rng.next_u32() % 5) as f32 - 2.0)
        };
        let x = small(&mut rng, [m, h, w, k]);
        let wt = small(&mut rng, [f, f, k, c]);
        let b = Array4::from_shape_fn((1, 1, 1, c), |(.., j)| (j % 3) as f32 - 1.0);
        let conv = ConvParams::new(s, 0).with_padding(pad);
        let pool = PoolParams::new(pf, ps, PoolMode::Max).with_ties(Ties::FirstMax);
        let (a, conv_cache) = g
            .conv_relu_forward(&up(&x), &up(&wt), &up(&b), conv)
            .unwrap();
        let (p, pool_cache) = g.pool_forward(&a, pool).unwrap();
        assert!(pool_cache.keeps_first_maxima(), "case {n}");
        let da = randn_f32(&mut rng, [m, p.shape()[1], p.shape()[2], c]);
        let tda = up(&da);
        let apart = ConvReluPoolCache::of(conv_cache.clone(), pool_cache.clone()).unwrap();
        let (dw, db) = g.conv_relu_pool_backward_filter(&tda, &apart).unwrap();
        // The layer as one op: the same bits, forward and backward.
        let (p1, one) = g
            .conv_relu_pool_forward(&up(&x), &up(&wt), &up(&b), conv, pool)
            .unwrap();
        fused += usize::from(one.fused());
        assert_eq!(bits(&p1), bits(&p), "case {n}: pooled output");
        let (dw1, db1) = g.conv_relu_pool_backward_filter(&tda, &one).unwrap();
        assert_eq!(bits(&dw1), bits(&dw), "case {n}: dW of the one-op layer");
        assert_eq!(bits(&db1), bits(&db), "case {n}: db of the one-op layer");
        let (r0, r1) = (
            g.conv_relu_pool_backward(&tda, &apart).unwrap(),
            g.conv_relu_pool_backward(&tda, &one).unwrap(),
        );
        assert_eq!(bits(&r1.da_prev), bits(&r0.da_prev), "case {n}: dA_prev");
        assert_eq!(bits(&r1.dw), bits(&r0.dw), "case {n}: dW");
        assert_eq!(
            bits(&r0.dw),
            bits(&dw),
            "case {n}: dW of the whole backward"
        );
        let dz = g.pool_relu_backward(&tda, &pool_cache).unwrap();
        let da_dense = g.conv_backward_data(&dz, conv_cache.conv()).unwrap();
        assert_eq!(
            bits(&r0.da_prev),
            bits(&da_dense),
            "case {n}: dA_prev, dense"
        );
        let (dw_dense, db_dense) = g.conv_backward_filter(&dz, conv_cache.conv()).unwrap();
        let (dw, db) = (down(&dw), down(&db));
        assert_close(&format!("case {n}: dW"), &dw, &down(&dw_dense), 1e-5);
        assert_close(&format!("case {n}: db"), &db, &down(&db_dense), 1e-5);
        // The CPU reference's chain, in f64.
        let f64s = |a: &Array4<f32>| a.mapv(f64::from);
        let (z, cc) =
            cpu::conv_forward(f64s(&x).view(), f64s(&wt).view(), f64s(&b).view(), conv).unwrap();
        let (ar, rc) = cpu::relu_forward(z.into_dyn().view()).unwrap();
        let ar = ar.into_dimensionality::<Ix4>().unwrap();
        let (_, pc) = cpu::pool_forward(ar.view(), pool).unwrap();
        let dap = cpu::pool_backward(f64s(&da).view(), &pc).unwrap();
        let dzr = cpu::relu_backward(dap.into_dyn().view(), &rc).unwrap();
        let grads =
            cpu::conv_backward(dzr.into_dimensionality::<Ix4>().unwrap().view(), &cc).unwrap();
        let want = |t: &ndarray::ArrayD<f64>| t.mapv(|v| v as f32);
        assert_close(
            &format!("case {n}: dW vs CPU"),
            &dw,
            &want(&grads.dw.into_dyn()),
            1e-4,
        );
        assert_close(
            &format!("case {n}: db vs CPU"),
            &db,
            &want(&grads.db.into_dyn()),
            1e-4,
        );
    }
    // Lavapipe's Vulkan adapter has subgroups: the one-kernel forward must have run there.
    let info = g.adapter_info();
    if info.device_type == wgpu::DeviceType::Cpu && info.backend == wgpu::Backend::Vulkan {
        assert!(fused >= 4, "the one-kernel forward ran for {fused} cases");
    }
    // The pool must sit on the ReLU's output.
    let x = up(&Array4::<f32>::ones((1, 4, 4, 1)));
    let (wt, b) = (
        up(&Array4::<f32>::ones((1, 1, 1, 4))),
        up(&Array4::<f32>::zeros((1, 1, 1, 4))),
    );
    let (a, conv_cache) = g
        .conv_relu_forward(&x, &wt, &b, ConvParams::new(1, 0))
        .unwrap();
    let other = up(&down(&a).into_dimensionality::<Ix4>().unwrap());
    let pool = PoolParams::new(2, 2, PoolMode::Max).with_ties(wgpu_cnn::Ties::FirstMax);
    let (p, pool_cache) = g.pool_forward(&other, pool).unwrap();
    assert!(matches!(
        ConvReluPoolCache::of(conv_cache, pool_cache),
        Err(Error::ShapeMismatch { .. })
    ));
    // A gradient of the wrong shape.
    let (_, one) = g
        .conv_relu_pool_forward(&x, &wt, &b, ConvParams::new(1, 0), pool)
        .unwrap();
    assert!(matches!(
        g.conv_relu_pool_backward(&p.reshape(&[1, 2, 4, 2]).unwrap(), &one),
        Err(Error::ShapeMismatch { .. })
    ));
}

/// NaN through conv -> ReLU -> max pool as one layer: a NaN input pixel makes NaN outputs, the
/// windows holding them pool to NaN with their first NaN as the maximum (as `pool_forward`
/// does), and a window of zeros after the ReLU keeps its first tap; the one-op layer gives the
/// two ops' bits, forward and backward.
#[test]
fn conv_relu_pool_layer_passes_nan_and_ties_like_the_two_ops() {
    use wgpu_cnn::{ConvReluPoolCache, Padding, Ties};
    let g = gpu();
    let bits = |t: &Tensor| down(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let mut x = Array4::from_shape_fn((2, 16, 16, 3), |(i, h, w, k)| {
        ((i * 7 + h * 3 + w * 5 + k) % 9) as f32 - 4.0
    });
    x[[0, 5, 9, 1]] = f32::NAN;
    x[[1, 12, 2, 0]] = f32::NAN;
    let wt = Array4::from_shape_fn((4, 4, 3, 8), |(a, b, k, c)| {
        ((a * 5 + b * 3 + k + c) % 7) as f32 * 0.25 - 0.5
    });
    // Channel 0's bias sinks it: its ReLU output is zeros (tied windows) but for the NaNs.
    let b = Array4::from_shape_fn((1, 1, 1, 8), |(.., c)| if c == 0 { -1e3 } else { 0.0 });
    let conv = ConvParams::new(1, 0).with_padding(Padding::same((16, 16), (4, 4), (1, 1)));
    let pool = PoolParams::new(8, 8, PoolMode::Max).with_ties(Ties::FirstMax);
    let (tx, tw, tb) = (up(&x), up(&wt), up(&b));
    let (a, conv_cache) = g.conv_relu_forward(&tx, &tw, &tb, conv).unwrap();
    let (p, pool_cache) = g.pool_forward(&a, pool).unwrap();
    let (p1, one) = g.conv_relu_pool_forward(&tx, &tw, &tb, conv, pool).unwrap();
    let pooled = down(&p1);
    assert!(pooled.iter().any(|v| v.is_nan()), "no NaN window");
    assert!(pooled.iter().any(|&v| v == 0.0), "no window of zeros");
    assert_eq!(bits(&p1), bits(&p), "pooled output");
    let da = up(&Array4::from_shape_fn((2, 2, 2, 8), |(i, h, w, c)| {
        (i + 2 * h + 3 * w + c) as f32 * 0.5 - 2.0
    }));
    let apart = ConvReluPoolCache::of(conv_cache, pool_cache).unwrap();
    let (r0, r1) = (
        g.conv_relu_pool_backward(&da, &apart).unwrap(),
        g.conv_relu_pool_backward(&da, &one).unwrap(),
    );
    assert_eq!(bits(&r1.da_prev), bits(&r0.da_prev), "dA_prev");
    assert_eq!(bits(&r1.dw), bits(&r0.dw), "dW");
    assert_eq!(bits(&r1.db), bits(&r0.db), "db");
}

/// `conv_backward_data` is `conv_backward`'s `dA_prev` alone: the same kernels, the same bits,
/// on a 1x1, a strided and a padded 3-channel case; a `dZ` of the wrong shape is an error.
#[test]
fn conv_backward_data_is_conv_backwards_input_gradient() {
    let g = gpu();
    let mut rng = NumpyRng::seed(11);
    for (x_shape, f, c_out, params) in [
        ([2, 5, 5, 4], 1, 8, ConvParams::new(1, 0)),
        ([3, 9, 7, 8], 3, 16, ConvParams::new(2, 1)),
        ([2, 8, 8, 3], 2, 4, ConvParams::new(1, 1)),
    ] {
        let x = randn_f32(&mut rng, x_shape);
        let w = randn_f32(&mut rng, [f, f, x_shape[3], c_out]);
        let b = Array4::<f32>::zeros((1, 1, 1, c_out));
        let (z, cache) = g.conv_forward(&up(&x), &up(&w), &up(&b), params).unwrap();
        let dz = up(&randn_f32(
            &mut rng,
            [z.shape()[0], z.shape()[1], z.shape()[2], c_out],
        ));
        let alone = down(&g.conv_backward_data(&dz, &cache).unwrap());
        let all = down(&g.conv_backward(&dz, &cache).unwrap().da_prev);
        assert_eq!(alone, all, "{x_shape:?} f{f}");
    }
    let x = up(&Array4::<f32>::ones((1, 4, 4, 2)));
    let w = up(&Array4::<f32>::ones((3, 3, 2, 4)));
    let b = up(&Array4::<f32>::zeros((1, 1, 1, 4)));
    let (_, cache) = g.conv_forward(&x, &w, &b, ConvParams::new(1, 0)).unwrap();
    let wrong = up(&Array4::<f32>::ones((1, 3, 3, 4)));
    assert!(matches!(
        g.conv_backward_data(&wrong, &cache),
        Err(Error::ShapeMismatch { .. })
    ));
}
