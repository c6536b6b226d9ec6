//! Every kernel variant the autotune can choose gives the CPU reference's result. The autotune
//! times variants only on large shapes, so the properties (small shapes) see the default variant;
//! here `GpuOptions::force_variant` runs each variant in turn on shapes that take the fast paths
//! (strides 1 to 3, channels in and out of multiples of 4, asymmetric padding, several windows).

mod common;

use common::numpy_rng::NumpyRng;
use common::{compare_conv, ok, randn_f32};
use ndarray::ArrayD;
use wgpu_cnn::{ConvGeometry, ConvParams, Gpu, GpuOptions, Padding};

/// At least the largest number of variants of any op (the split filter kernel has up to 10: 8
/// tilings, the channel-lane kernel and the workgroup-memory tiles; the implicit GEMM up to 17:
/// pixel counts and row segments reading the buffer or a texture, pixels reading the filter
/// through a texture too, the tiles, the lanes).
const VARIANTS: usize = 17;

/// Runs every variant on each of `cases` (input, weights, params) with a `Gpu` whose storage
/// bindings hold at most `max_binding_bytes`, and compares with the CPU reference.
fn every_variant_matches_cpu(
    cases: &[([usize; 4], [usize; 4], ConvParams)],
    max_binding_bytes: Option<u64>,
) {
    for variant in 0..VARIANTS {
        let g = Gpu::with_options(GpuOptions {
            force_variant: Some(variant),
            max_binding_bytes,
            ..Default::default()
        })
        .expect("a Gpu");
        for (i, &(input, weights, params)) in cases.iter().enumerate() {
            let mut rng = NumpyRng::seed(7 + i as u32);
            let x = randn_f32(&mut rng, input);
            let w = randn_f32(&mut rng, weights);
            let b: ArrayD<f32> = randn_f32(&mut rng, [1, 1, 1, weights[3]]).into_dyn();
            let out = ConvGeometry::new(input, weights, params)
                .expect("valid conv")
                .output_shape();
            let dz = randn_f32(&mut rng, out);
            let agreement = compare_conv(&g, &x, &w, &b, params, &dz)
                .map_err(|e| format!("variant {variant}, case {i}: {e}"));
            ok(agreement);
        }
    }
}

#[test]
fn every_conv_kernel_variant_matches_cpu_reference() {
    let cases = [
        // (input, weights, params)
        ([2, 9, 7, 8], [3, 3, 8, 16], ConvParams::new(1, 1)),
        (
            [3, 6, 11, 5],
            [2, 4, 5, 7],
            ConvParams::new(1, 0).with_padding(Padding::explicit(1, 0, 3, 2)),
        ),
        // 130 input channels: the filter of one tap needs more than one window per 4 taps.
        ([1, 4, 3, 130], [2, 3, 130, 9], ConvParams::new(1, 1)),
        // Stride 2: the data gradient is one product per stride phase (2x2 phases of 2x2,
        // 2x1, 1x2 and 1x1 taps).
        ([2, 10, 9, 4], [3, 3, 4, 12], ConvParams::new(2, 1)),
        // Strides (3, 2) past a 2x1 filter: the rows no tap reaches have a zero gradient.
        (
            [2, 11, 8, 6],
            [2, 1, 6, 5],
            ConvParams::new(1, 0)
                .with_stride(3, 2)
                .with_padding(Padding::explicit(2, 0, 1, 1)),
        ),
        // Stride 2 with 3 output channels: the phases' products over dZ can take the
        // channel-lane kernel (3 input channels, 8 outputs: one subgroup of lanes).
        ([2, 9, 11, 8], [3, 3, 8, 3], ConvParams::new(2, 1)),
        // Three input channels, 16 output channels (two subgroups of lanes on lavapipe), rows
        // longer than one segment of the channel-lane kernel, asymmetric padding.
        (
            [2, 7, 19, 3],
            [3, 4, 3, 16],
            ConvParams::new(1, 0).with_padding(Padding::explicit(1, 2, 0, 3)),
        ),
        // Rows of whole vec4s (the channel-lane kernels' vec4 loads): each row's first float
        // 1 (3 channels, 1 column of padding) and 2 (2 channels, 1 column) floats into its
        // vec4; enough pixels (2048) that the filter gradient's runs are 8 pixels, one run of
        // its vec4 rows each.
        (
            [2, 32, 32, 3],
            [4, 4, 3, 8],
            ConvParams::new(1, 0).with_padding(Padding::same((32, 32), (4, 4), (1, 1))),
        ),
        ([3, 6, 10, 2], [3, 3, 2, 8], ConvParams::new(1, 1)),
        // 16 input channels, 32 outputs (cifar's layer): the channel-lane kernels with 4 and 2
        // output channels a lane, rows of whole vec4s, and for the data gradient 32 input
        // channels, 16 outputs; enough pixels that the filter gradient's runs (10 pixels) take
        // its 4- and 8-pixel steps.
        ([2, 16, 32, 16], [3, 3, 16, 32], ConvParams::new(1, 1)),
        // 49 taps (seed 002's convnet: 7x7, 3 -> 32, padding 3; rows of 13 pixels, segments
        // past the row's end): the filter gradient's channel-lane kernels.
        ([2, 12, 13, 3], [7, 7, 3, 32], ConvParams::new(1, 3)),
        // 13 input channels (rows not whole vec4s), 30 outputs (the last lane's last two
        // channels store nothing), rows longer than several segments, filter-gradient runs of
        // 6 pixels.
        (
            [3, 16, 21, 13],
            [3, 2, 13, 30],
            ConvParams::new(1, 0).with_padding(Padding::explicit(1, 1, 0, 1)),
        ),
    ];
    every_variant_matches_cpu(&cases, None);
}

/// The batch split across bindings (7 images of 25.6 KB in bindings of 160 KiB: chunks of 6
/// and 1): the GEMM that reads X through a texture holds all of X there and starts each chunk
/// at its first image.
#[test]
fn every_conv_kernel_variant_matches_cpu_reference_when_the_batch_is_split() {
    let case = ([7, 20, 20, 16], [3, 3, 16, 16], ConvParams::new(1, 1));
    every_variant_matches_cpu(&[case], Some(160 << 10));
}

/// The autotune may pick any variant, so variants of one kernel must give the same bits: then
/// training is bitwise repeatable whatever the timings chose. Here the implicit GEMM's pixel
/// counts, its row-segment kernel and the channel-lane kernel on a 3-channel input (seed 001's
/// first layer, SAME), and its data gradient (the GEMM over dZ's 8 channels: two input vec4s
/// for the row-segment kernel); the filter gradient split over runs of pixels (its tilings, the
/// channel-lane kernel, the workgroup-memory tiles) there, and by windows (tilings and
/// workgroup-memory tiles) on a 512-channel input (2048 lanes: too many to split); the stride
/// phases of a strided data gradient. With each variant, `conv_backward` (one texture copy of
/// dZ for both gradients) gives the bits of each gradient alone, and of dZ / 2 exactly half.
#[test]
fn every_conv_variant_gives_the_same_bits() {
    let cases = [
        (
            [3, 13, 11, 3],
            [4, 4, 3, 8],
            ConvParams::new(1, 0).with_padding(Padding::same((13, 11), (4, 4), (1, 1))),
        ),
        (
            [1, 5, 6, 512],
            [4, 4, 512, 8],
            ConvParams::new(1, 0).with_padding(Padding::explicit(1, 2, 2, 1)),
        ),
        // Stride 2: the data gradient's stride phases each pick their variant.
        ([2, 12, 9, 8], [3, 3, 8, 16], ConvParams::new(2, 1)),
        // Seed 001's second layer (SAME): the channel-lane kernel takes its 8 input channels.
        (
            [3, 8, 8, 8],
            [2, 2, 8, 16],
            ConvParams::new(1, 0).with_padding(Padding::same((8, 8), (2, 2), (1, 1))),
        ),
        // cifar's layer: the channel-lane kernels with 4 and 2 output channels a lane.
        ([2, 16, 32, 16], [3, 3, 16, 32], ConvParams::new(1, 1)),
        // Seed 002's convnet's layer (7x7, 3 -> 32, padding 3): 49 taps, the filter gradient's
        // channel-lane kernels with 4 and 2 output channels a lane.
        ([2, 12, 13, 3], [7, 7, 3, 32], ConvParams::new(1, 3)),
    ];
    for (case, (input, weights, params)) in cases.into_iter().enumerate() {
        let mut rng = NumpyRng::seed(5 + case as u32);
        let x = randn_f32(&mut rng, input);
        let w = randn_f32(&mut rng, weights);
        let b = ndarray::Array1::from_iter(randn_f32(&mut rng, [1, 1, 1, weights[3]]));
        let out = ConvGeometry::new(input, weights, params)
            .expect("valid conv")
            .output_shape();
        let dz = randn_f32(&mut rng, out);
        let mut first: Option<[ArrayD<f32>; 4]> = None;
        for variant in 0..VARIANTS {
            let g = Gpu::with_options(GpuOptions {
                force_variant: Some(variant),
                ..Default::default()
            })
            .expect("a Gpu");
            let (tx, tw, tb) = common::upload_conv(&g, &x, &w, &b);
            let (z, _) = g.conv_relu_forward(&tx, &tw, &tb, params).unwrap();
            let (_, cache) = g.conv_forward(&tx, &tw, &tb, params).unwrap();
            let tdz = g.upload(&dz).unwrap();
            let grads = g.conv_backward(&tdz, &cache).unwrap();
            // Then with dZ / 2 (every product and sum halves exactly): a texture still holding
            // the first dZ, read again, would leave the gradients as they were.
            let half = g.upload(&dz.mapv(|v| v * 0.5)).unwrap();
            let halves = g.conv_backward(&half, &cache).unwrap();
            let got: [ArrayD<f32>; 4] =
                [&z, &grads.da_prev, &grads.dw, &grads.db].map(|t| g.download(t).unwrap());
            let same = |a: &ArrayD<f32>, b: &ArrayD<f32>| {
                a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits())
            };
            for (name, (t, want)) in ["dA", "dW", "db"].iter().zip(
                [&halves.da_prev, &halves.dw, &halves.db]
                    .into_iter()
                    .zip(&got[1..]),
            ) {
                assert!(
                    same(&g.download(t).unwrap(), &want.mapv(|v| v * 0.5)),
                    "case {case}, variant {variant}: {name} of dZ / 2 is not half of dZ's"
                );
            }
            // conv_backward copies dZ into a texture once for both gradients where both read
            // it there; each gradient alone makes its own copies: the same bits.
            let da = g
                .download(&g.conv_backward_data(&tdz, &cache).unwrap())
                .unwrap();
            let (dw, db) = g.conv_backward_filter(&tdz, &cache).unwrap();
            let alone = [da, g.download(&dw).unwrap(), g.download(&db).unwrap()];
            for (name, (a, b)) in ["dA", "dW", "db"].iter().zip(got[1..].iter().zip(&alone)) {
                assert!(
                    same(a, b),
                    "case {case}, variant {variant}: conv_backward's {name} differs from the op alone"
                );
            }
            match &first {
                None => first = Some(got),
                Some(want) => {
                    for (name, (a, b)) in ["forward", "dA", "dW", "db"]
                        .iter()
                        .zip(want.iter().zip(&got))
                    {
                        assert!(
                            same(a, b),
                            "case {case}, variant {variant}: {name} differs from variant 0"
                        );
                    }
                }
            }
        }
    }
}

/// The fully connected layer's matrix-product kernels (the tiled one through workgroup memory,
/// one thread per four columns of a row for small products, and on CPU adapters with fixed-size
/// subgroups the lanes kernel with 16 or 8 rows a lane for larger ones) give the same bits,
/// forward and backward, and the CPU reference's values: seed 001's layer (64 x 64 -> 6),
/// ragged shapes that fill no tile (column counts not multiples of 4), a bias that moves every
/// sum; products over a million multiply-adds (the lanes kernel's) with rows, columns and sums
/// that fill no tile and no group of lanes, with columns in whole vec4s (`B` loaded as vec4s)
/// and not.
#[test]
fn every_matmul_variant_gives_the_same_bits() {
    for (case, (n, d, m)) in [
        (64, 64, 6),
        (5, 7, 3),
        (33, 17, 35),
        (67, 1031, 37),
        (19, 2053, 44),
    ]
    .into_iter()
    .enumerate()
    {
        let mut rng = NumpyRng::seed(40 + case as u32);
        let x = randn_f32(&mut rng, [n, d, 1, 1])
            .into_shape_with_order((n, d))
            .unwrap();
        let w = randn_f32(&mut rng, [d, m, 1, 1])
            .into_shape_with_order((d, m))
            .unwrap();
        let b = randn_f32(&mut rng, [m, 1, 1, 1])
            .into_shape_with_order(m)
            .unwrap();
        let dout = randn_f32(&mut rng, [n, m, 1, 1])
            .into_shape_with_order((n, m))
            .unwrap();
        let (cpu_out, cpu_cache) =
            wgpu_cnn::cpu::affine_forward(x.view().into_dyn(), w.view(), b.view()).unwrap();
        let cpu_grads = wgpu_cnn::cpu::affine_backward(dout.view(), &cpu_cache).unwrap();
        let mut first: Option<Vec<ArrayD<f32>>> = None;
        // Every product has at most two variants.
        for variant in 0..2 {
            let g = Gpu::with_options(GpuOptions {
                force_variant: Some(variant),
                ..Default::default()
            })
            .expect("a Gpu");
            let up = |a: &ndarray::ArrayD<f32>| g.upload(a).unwrap();
            let (out, cache) = g
                .affine_forward(
                    &up(&x.clone().into_dyn()),
                    &up(&w.clone().into_dyn()),
                    &up(&b.clone().into_dyn()),
                )
                .unwrap();
            let grads = g
                .affine_backward(&up(&dout.clone().into_dyn()), &cache)
                .unwrap();
            let got: Vec<ArrayD<f32>> = [&out, &grads.dx, &grads.dw]
                .iter()
                .map(|t| g.download(t).unwrap())
                .collect();
            for (name, (a, want)) in ["out", "dx", "dw"].iter().zip(got.iter().zip([
                cpu_out.clone().into_dyn(),
                cpu_grads.dx.clone().into_dyn(),
                cpu_grads.dw.clone().into_dyn(),
            ])) {
                let err = a
                    .iter()
                    .zip(&want)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0f32, f32::max);
                // Sums of up to 2053 products in another order than the reference's: 1e-5 of
                // the largest value (1e-4 absolute at least).
                let scale = want.iter().fold(10.0f32, |m, v| m.max(v.abs()));
                assert!(
                    err < 1e-5 * scale,
                    "case {case}, variant {variant}: {name} off by {err}"
                );
            }
            match &first {
                None => first = Some(got),
                Some(want) => {
                    for (name, (a, b)) in ["out", "dx", "dw"].iter().zip(want.iter().zip(&got)) {
                        assert!(
                            a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits()),
                            "case {case}, variant {variant}: {name} differs from variant 0"
                        );
                    }
                }
            }
        }
    }
}
