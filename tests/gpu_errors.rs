//! Every bad call to the GPU path returns the right `Error` variant, naming the offending
//! shapes, and never panics.

mod common;

use common::{assert_setting, gpu};
use ndarray::{Array, Array1, Dimension, Ix1, Ix4};
use wgpu_cnn::{
    Adam, AdamConfig, BatchNorm, BatchNormState, ConvParams, Error, Gpu, GpuOptions, GroupNorm,
    MomentumConfig, Padding, PoolMode, PoolParams, Sgd, SgdConfig, SgdMomentum, Tensor,
};

fn zeros(gpu: &Gpu, shape: &[usize]) -> Tensor {
    gpu.upload(&Array::<f32, _>::zeros(shape)).expect("upload")
}

fn zeros4(gpu: &Gpu, shape: [usize; 4]) -> Tensor {
    zeros(gpu, &shape)
}

fn max_pool(f: usize, stride: usize) -> PoolParams {
    PoolParams::new(f, stride, PoolMode::Max)
}

/// The error of `result`, or a panic naming what succeeded.
#[track_caller]
fn error_of<T: std::fmt::Debug>(result: Result<T, Error>) -> Error {
    match result {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// Shapes that disagree
// ---------------------------------------------------------------------------------------------

#[test]
fn conv_backward_rejects_dz_of_the_wrong_shape() {
    let g = gpu();
    let (z, cache) = g
        .conv_forward(
            &zeros4(g, [2, 5, 5, 3]),
            &zeros4(g, [3, 3, 3, 4]),
            &zeros(g, &[4]),
            ConvParams::new(1, 1),
        )
        .expect("forward");
    assert_eq!(z.shape(), &[2, 5, 5, 4]);
    for wrong in [[2, 5, 5, 3], [2, 4, 5, 4], [1, 5, 5, 4], [2, 5, 6, 4]] {
        match error_of(g.conv_backward(&zeros4(g, wrong), &cache)) {
            Error::ShapeMismatch { expected, got, .. } => {
                assert_eq!(expected, [2, 5, 5, 4]);
                assert_eq!(got, wrong);
            }
            e => panic!("dZ {wrong:?}: expected ShapeMismatch, got {e:?}"),
        }
    }
    // A dZ of the right size but the wrong rank is a mismatch too.
    match error_of(g.conv_backward(&zeros(g, &[2 * 5 * 5 * 4]), &cache)) {
        Error::ShapeMismatch { expected, got, .. } => {
            assert_eq!(expected, [2, 5, 5, 4]);
            assert_eq!(got, [200]);
        }
        e => panic!("1-d dZ: expected ShapeMismatch, got {e:?}"),
    }
}

#[test]
fn pool_backward_rejects_da_of_the_wrong_shape() {
    let g = gpu();
    for mode in [PoolMode::Max, PoolMode::Average] {
        let (a, cache) = g
            .pool_forward(&zeros4(g, [2, 6, 6, 3]), PoolParams::new(2, 2, mode))
            .expect("forward");
        assert_eq!(a.shape(), &[2, 3, 3, 3]);
        for wrong in [[2, 6, 6, 3], [2, 3, 3, 2], [3, 3, 3, 3], [2, 3, 4, 3]] {
            match error_of(g.pool_backward(&zeros4(g, wrong), &cache)) {
                Error::ShapeMismatch { expected, got, .. } => {
                    assert_eq!(expected, [2, 3, 3, 3]);
                    assert_eq!(got, wrong);
                }
                e => panic!("{mode:?}, dA {wrong:?}: expected ShapeMismatch, got {e:?}"),
            }
        }
    }
}

#[test]
fn conv_forward_rejects_channel_mismatch() {
    let g = gpu();
    let err = error_of(g.conv_forward(
        &zeros4(g, [2, 5, 5, 3]),
        &zeros4(g, [3, 3, 4, 6]),
        &zeros(g, &[6]),
        ConvParams::new(1, 0),
    ));
    assert_eq!(
        err,
        Error::ChannelMismatch {
            input: [2, 5, 5, 3],
            weights: [3, 3, 4, 6],
        }
    );
}

#[test]
fn conv_forward_rejects_bias_of_the_wrong_length() {
    let g = gpu();
    let a = zeros4(g, [1, 4, 4, 2]);
    let w = zeros4(g, [2, 2, 2, 5]);
    for bias in [
        vec![4],
        vec![6],
        vec![1, 1, 1, 4],
        vec![1, 5],
        vec![5, 1, 1, 1],
    ] {
        let err = error_of(g.conv_forward(&a, &w, &zeros(g, &bias), ConvParams::new(1, 0)));
        assert_eq!(
            err,
            Error::BiasShape {
                bias: bias.clone(),
                channels: 5,
            },
            "bias {bias:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Hyperparameters that make no layer
// ---------------------------------------------------------------------------------------------

#[test]
fn conv_forward_rejects_zero_stride() {
    let g = gpu();
    let (a, w, b) = (
        zeros4(g, [1, 4, 4, 1]),
        zeros4(g, [2, 2, 1, 1]),
        zeros(g, &[1]),
    );
    for (s_h, s_w) in [(0, 1), (2, 0), (0, 0)] {
        let params = ConvParams::new(1, 0).with_stride(s_h, s_w);
        assert_eq!(
            error_of(g.conv_forward(&a, &w, &b, params)),
            Error::ZeroStride(s_h, s_w)
        );
    }
}

#[test]
fn pool_forward_rejects_zero_stride() {
    let g = gpu();
    let a = zeros4(g, [1, 4, 4, 1]);
    for (s_h, s_w) in [(0, 1), (3, 0), (0, 0)] {
        for mode in [PoolMode::Max, PoolMode::Average] {
            let params = PoolParams::new(2, 1, mode).with_stride(s_h, s_w);
            assert_eq!(
                error_of(g.pool_forward(&a, params)),
                Error::ZeroStride(s_h, s_w)
            );
        }
    }
}

#[test]
fn conv_forward_rejects_zero_kernel() {
    let g = gpu();
    let a = zeros4(g, [1, 4, 4, 2]);
    for (f_h, f_w) in [(0, 2), (3, 0), (0, 0)] {
        let w = zeros4(g, [f_h, f_w, 2, 3]);
        assert_eq!(
            error_of(g.conv_forward(&a, &w, &zeros(g, &[3]), ConvParams::new(1, 0))),
            Error::ZeroKernel(f_h, f_w)
        );
    }
}

#[test]
fn pool_forward_rejects_zero_kernel() {
    let g = gpu();
    let a = zeros4(g, [1, 4, 4, 2]);
    for (f_h, f_w) in [(0, 2), (3, 0), (0, 0)] {
        let params = max_pool(1, 1).with_kernel(f_h, f_w);
        assert_eq!(
            error_of(g.pool_forward(&a, params)),
            Error::ZeroKernel(f_h, f_w)
        );
    }
}

#[test]
fn conv_forward_rejects_kernel_larger_than_padded_input() {
    let g = gpu();
    let a = zeros4(g, [2, 3, 4, 1]);
    // (kernel, padding, padded size): too tall, too wide, too large only after asymmetric pads.
    let cases = [
        ((4, 2), Padding::uniform(0), [3, 4]),
        ((2, 5), Padding::uniform(0), [3, 4]),
        ((6, 1), Padding::explicit(1, 1, 0, 0), [5, 4]),
        ((1, 8), Padding::explicit(5, 5, 0, 3), [13, 7]),
    ];
    for ((f_h, f_w), pad, padded) in cases {
        let w = zeros4(g, [f_h, f_w, 1, 2]);
        let params = ConvParams::new(1, 0).with_padding(pad);
        assert_eq!(
            error_of(g.conv_forward(&a, &w, &zeros(g, &[2]), params)),
            Error::KernelTooLarge {
                input: [2, 3, 4, 1],
                kernel: [f_h, f_w],
                padded,
            },
            "kernel {f_h}x{f_w}, {pad:?}"
        );
    }
}

#[test]
fn pool_forward_rejects_kernel_larger_than_input() {
    let g = gpu();
    let a = zeros4(g, [1, 3, 4, 2]);
    for (f_h, f_w) in [(4, 1), (1, 5), (4, 5)] {
        let params = max_pool(1, 1).with_kernel(f_h, f_w);
        assert_eq!(
            error_of(g.pool_forward(&a, params)),
            Error::KernelTooLarge {
                input: [1, 3, 4, 2],
                kernel: [f_h, f_w],
                padded: [3, 4],
            }
        );
    }
}

#[test]
fn ops_reject_an_empty_batch_or_axis() {
    let g = gpu();
    let w = zeros4(g, [1, 1, 2, 2]);
    for input in [[0, 3, 3, 2], [1, 0, 3, 2], [1, 3, 0, 2]] {
        let a = zeros4(g, input);
        match error_of(g.conv_forward(&a, &w, &zeros(g, &[2]), ConvParams::new(1, 0))) {
            Error::EmptyTensor { shape, .. } => assert_eq!(shape, input),
            e => panic!("conv input {input:?}: expected EmptyTensor, got {e:?}"),
        }
        match error_of(g.pool_forward(&a, max_pool(1, 1))) {
            Error::EmptyTensor { shape, .. } => assert_eq!(shape, input),
            e => panic!("pool input {input:?}: expected EmptyTensor, got {e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ranks
// ---------------------------------------------------------------------------------------------

#[test]
fn ops_reject_tensors_of_the_wrong_rank() {
    let g = gpu();
    let a3 = zeros(g, &[4, 4, 3]);
    let a4 = zeros4(g, [1, 4, 4, 3]);
    let w = zeros4(g, [2, 2, 3, 2]);
    let b = zeros(g, &[2]);
    let rank = |e: Error, shape: &[usize]| match e {
        Error::Rank {
            expected, shape: s, ..
        } => {
            assert_eq!(expected, 4);
            assert_eq!(s, shape);
        }
        e => panic!("expected Rank for {shape:?}, got {e:?}"),
    };
    rank(
        error_of(g.conv_forward(&a3, &w, &b, ConvParams::new(1, 0))),
        &[4, 4, 3],
    );
    let w5 = zeros(g, &[2, 2, 3, 2, 1]);
    rank(
        error_of(g.conv_forward(&a4, &w5, &b, ConvParams::new(1, 0))),
        &[2, 2, 3, 2, 1],
    );
    rank(error_of(g.pool_forward(&a3, max_pool(2, 2))), &[4, 4, 3]);
    rank(error_of(g.zero_pad(&a3, 1)), &[4, 4, 3]);
}

#[test]
fn download_rejects_a_rank_that_is_not_the_tensors() {
    let g = gpu();
    let v = g.upload(&Array1::<f32>::zeros(12)).expect("upload");
    match error_of(g.download::<Ix4>(&v)) {
        Error::Rank {
            expected, shape, ..
        } => {
            assert_eq!(expected, 4);
            assert_eq!(shape, [12]);
        }
        e => panic!("expected Rank, got {e:?}"),
    }
    let t = zeros4(g, [1, 2, 3, 2]);
    match error_of(g.download::<Ix1>(&t)) {
        Error::Rank {
            expected, shape, ..
        } => {
            assert_eq!(expected, 1);
            assert_eq!(shape, [1, 2, 3, 2]);
        }
        e => panic!("expected Rank, got {e:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Tensors from another Gpu
// ---------------------------------------------------------------------------------------------

#[test]
fn ops_reject_a_tensor_from_another_gpu() {
    let g = gpu();
    let other = Gpu::new().expect("a second Gpu");
    let foreign = |shape: &[usize]| zeros(&other, shape);
    let foreign_err = |e: Error, shape: &[usize]| {
        assert_eq!(
            e,
            Error::ForeignTensor {
                shape: shape.to_vec()
            }
        );
    };
    let (a, w, b) = (
        zeros4(g, [1, 4, 4, 2]),
        zeros4(g, [2, 2, 2, 3]),
        zeros(g, &[3]),
    );
    let p = ConvParams::new(1, 0);

    foreign_err(
        error_of(g.conv_forward(&foreign(&[1, 4, 4, 2]), &w, &b, p)),
        &[1, 4, 4, 2],
    );
    foreign_err(
        error_of(g.conv_forward(&a, &foreign(&[2, 2, 2, 3]), &b, p)),
        &[2, 2, 2, 3],
    );
    foreign_err(error_of(g.conv_forward(&a, &w, &foreign(&[3]), p)), &[3]);
    let (z, cache) = g.conv_forward(&a, &w, &b, p).expect("forward");
    foreign_err(
        error_of(g.conv_backward(&foreign(z.shape()), &cache)),
        z.shape(),
    );
    // A cache made on the other Gpu, used with this one.
    let (z_other, cache_other) = other
        .conv_forward(
            &foreign(&[1, 4, 4, 2]),
            &foreign(&[2, 2, 2, 3]),
            &foreign(&[3]),
            p,
        )
        .expect("forward on the other Gpu");
    assert!(matches!(
        error_of(g.conv_backward(&z, &cache_other)),
        Error::ForeignTensor { .. }
    ));
    assert!(matches!(
        error_of(other.conv_backward(&z_other, &cache)),
        Error::ForeignTensor { .. }
    ));

    foreign_err(
        error_of(g.pool_forward(&foreign(&[1, 4, 4, 2]), max_pool(2, 2))),
        &[1, 4, 4, 2],
    );
    let (pooled, pool_cache) = g.pool_forward(&a, max_pool(2, 2)).expect("pool");
    foreign_err(
        error_of(g.pool_backward(&foreign(pooled.shape()), &pool_cache)),
        pooled.shape(),
    );
    foreign_err(
        error_of(g.zero_pad(&foreign(&[1, 4, 4, 2]), 1)),
        &[1, 4, 4, 2],
    );
    foreign_err(error_of(other.download::<Ix4>(&a)), &[1, 4, 4, 2]);
}

// ---------------------------------------------------------------------------------------------
// Tensors larger than the device's limits
// ---------------------------------------------------------------------------------------------

/// A `Gpu` whose storage bindings hold at most 4096 bytes.
fn small_gpu() -> Gpu {
    let g = Gpu::with_options(GpuOptions {
        max_binding_bytes: Some(4096),
        ..Default::default()
    })
    .expect("a Gpu with a 4 KiB binding limit");
    assert_eq!(g.max_binding_bytes(), 4096);
    g
}

#[track_caller]
fn assert_too_large(e: Error, offending: &[usize]) {
    match e {
        Error::TooLarge {
            shape,
            bytes,
            limit,
            ..
        } => {
            assert_eq!(
                shape, offending,
                "the shape named is the offending tensor's"
            );
            assert_eq!(limit, 4096);
            assert!(bytes > limit, "{bytes} bytes do not exceed {limit}");
        }
        e => panic!("expected TooLarge for {offending:?}, got {e:?}"),
    }
}

fn upload_zeros<D: Dimension>(g: &Gpu, shape: D) -> Tensor {
    g.upload(&Array::<f32, D>::zeros(shape)).expect("upload")
}

#[test]
fn conv_forward_rejects_an_image_larger_than_a_binding() {
    let g = small_gpu();
    // One image is 20 * 20 * 3 * 4 = 4800 bytes: no chunk of whole images fits a binding.
    let a = upload_zeros(&g, Ix4(2, 20, 20, 3));
    let w = upload_zeros(&g, Ix4(3, 3, 3, 1));
    let b = upload_zeros(&g, Ix1(1));
    assert_too_large(
        error_of(g.conv_forward(&a, &w, &b, ConvParams::new(1, 0))),
        &[2, 20, 20, 3],
    );
}

#[test]
fn conv_forward_rejects_weights_larger_than_a_binding() {
    let g = small_gpu();
    // Images of 512 bytes fit, but the weights (4 * 4 * 8 * 16 * 4 = 8192 bytes) are bound whole.
    let a = upload_zeros(&g, Ix4(3, 4, 4, 8));
    let w = upload_zeros(&g, Ix4(4, 4, 8, 16));
    let b = upload_zeros(&g, Ix1(16));
    assert_too_large(
        error_of(g.conv_forward(&a, &w, &b, ConvParams::new(1, 0))),
        &[4, 4, 8, 16],
    );
}

#[test]
fn conv_forward_rejects_an_output_image_larger_than_a_binding() {
    let g = small_gpu();
    // The input image (8 * 8 * 1 * 4 = 256 bytes) fits, but with 32 output channels and
    // padding 1 one output image is 8 * 8 * 32 * 4 = 8192 bytes.
    let a = upload_zeros(&g, Ix4(2, 8, 8, 1));
    let w = upload_zeros(&g, Ix4(3, 3, 1, 32));
    let b = upload_zeros(&g, Ix1(32));
    assert_too_large(
        error_of(g.conv_forward(&a, &w, &b, ConvParams::new(1, 1))),
        &[2, 8, 8, 32],
    );
}

#[test]
fn pool_and_zero_pad_reject_an_image_larger_than_a_binding() {
    let g = small_gpu();
    let a = upload_zeros(&g, Ix4(2, 20, 20, 3));
    for mode in [PoolMode::Max, PoolMode::Average] {
        assert_too_large(
            error_of(g.pool_forward(&a, PoolParams::new(2, 2, mode))),
            &[2, 20, 20, 3],
        );
    }
    // The input image (16 * 16 * 3 * 4 = 3072 bytes) fits; the padded one (20 * 20 * 3) does not.
    let small = upload_zeros(&g, Ix4(2, 16, 16, 3));
    assert_too_large(error_of(g.zero_pad(&small, 2)), &[2, 20, 20, 3]);
}

// ---------------------------------------------------------------------------------------------
// Settings out of range
// ---------------------------------------------------------------------------------------------

#[test]
fn optimizer_steps_reject_settings_out_of_range_and_leave_w_unchanged() {
    let g = gpu();
    let w0 = Array1::from_vec(vec![1.0_f32, -2.0, 3.0]);
    let mut w = g.upload(&w0).expect("upload");
    let dw = g
        .upload(&Array1::from_vec(vec![0.5_f32; 3]))
        .expect("upload");
    let e = error_of(Sgd::new(f64::NAN).step(g, &mut w, &dw));
    assert_setting(e, "SGD: lr", "NaN");
    let mut momentum = SgdMomentum::with_config(MomentumConfig {
        momentum: -0.5,
        ..MomentumConfig::new(0.1)
    });
    assert_setting(
        error_of(momentum.step(g, &mut w, &dw)),
        "SGD momentum: momentum",
        "-0.5",
    );
    let mut adam = Adam::new(-1e-3);
    assert_setting(error_of(adam.step(g, &mut w, &dw)), "Adam: lr", "-0.001");
    assert_eq!(adam.steps(&w), 0, "a rejected Adam step must not count");
    let mut adam = Adam::with_config(AdamConfig {
        beta2: 1.0,
        ..AdamConfig::new(1e-3)
    });
    assert_setting(error_of(adam.step(g, &mut w, &dw)), "Adam: beta2", "= 1:");
    let decayed = Sgd {
        config: SgdConfig {
            weight_decay: f64::INFINITY,
            ..SgdConfig::new(0.1)
        },
    };
    assert_setting(
        error_of(decayed.step(g, &mut w, &dw)),
        "SGD: weight_decay",
        "inf",
    );
    let back: Array1<f32> = g.download(&w).expect("download");
    assert_eq!(back, w0);
}

#[test]
fn norms_reject_eps_and_momentum_out_of_range() {
    let g = gpu();
    let x = zeros4(g, [2, 3, 3, 4]);
    let gamma = g.upload(&Array1::<f32>::ones(4)).expect("upload");
    let beta = zeros(g, &[4]);
    for (bn, what, shown) in [
        (
            BatchNorm::train().with_eps(f64::NAN),
            "batch norm: eps",
            "NaN",
        ),
        (
            BatchNorm::train().with_momentum(2.0),
            "batch norm: momentum",
            "= 2:",
        ),
    ] {
        let mut state = BatchNormState::new();
        let e = error_of(g.spatial_batchnorm_forward(&x, &gamma, &beta, &mut state, bn));
        assert_setting(e, what, shown);
        assert!(
            state.running_mean.is_none(),
            "a rejected pass must not touch the state"
        );
    }
    let gn = GroupNorm::new(2).with_eps(-1.0);
    let e = error_of(g.spatial_groupnorm_forward(&x, &gamma, &beta, gn));
    assert_setting(e, "group norm: eps", "-1");
}
