//! The CPU reference and the shape math under hostile sizes: strides, paddings and kernels up to
//! `usize::MAX`, zero-size axes, outputs or copies far larger than memory. Nothing may wrap,
//! panic or abort the process: every case is `Ok` with the shape the geometry gives, or a typed
//! [`Error`], returned before anything huge is allocated. Also one test per defect of the
//! original numpy exercises that the reference does not copy.

use ndarray::{arr1, s, Array1, Array2, Array4, ArrayView4};
use proptest::prelude::*;
use wgpu_cnn::cpu::{
    conv_backward, conv_forward, conv_single_step, create_mask_from_window, distribute_value,
    first_max_mask, pool_backward, pool_forward, zero_pad, ConvCache, PoolCache, MAX_HOST_BYTES,
};
use wgpu_cnn::{ConvGeometry, ConvParams, Error, Padding, PoolGeometry, PoolMode, PoolParams};

const MAX: usize = usize::MAX;

/// Outputs up to this many elements are computed by the tests; larger ones that are still under
/// [`MAX_HOST_BYTES`] are skipped (they are legal, only slow).
const AFFORDABLE: u128 = 1 << 12;

/// Deterministic test values `0, 1, 2, ...` for the arrays.
fn ramp(shape: [usize; 4]) -> Array4<f64> {
    let mut k = 0.0;
    Array4::from_shape_fn(shape, |_| {
        k += 1.0;
        (k * 0.37) % 3.0 - 1.5
    })
}

/// What an array of `shape` holding `f64` needs: `Some(elements)` if it may be allocated,
/// `None` if the reference must refuse it with `TooLarge` (its non-empty axes overflow `isize`
/// in bytes, or its bytes exceed `MAX_HOST_BYTES`).
fn host_elements(shape: &[u128]) -> Option<u128> {
    let nonzero_bytes = shape
        .iter()
        .filter(|&&n| n != 0)
        .try_fold(8u128, |acc, &n| acc.checked_mul(n))?;
    if nonzero_bytes > isize::MAX as u128 {
        return None;
    }
    if shape.contains(&0) {
        return Some(0);
    }
    (nonzero_bytes <= u128::from(MAX_HOST_BYTES)).then_some(nonzero_bytes / 8)
}

/// `n_out = floor((n_in + before + after - f) / s) + 1` in `u128`, where nothing overflows:
/// `Err(true)` if the padded extent exceeds `usize::MAX`, `Err(false)` if the kernel does not
/// fit.
fn axis_out(n: usize, before: usize, after: usize, f: usize, s: usize) -> Result<u128, bool> {
    let padded = n as u128 + before as u128 + after as u128;
    if padded > MAX as u128 {
        return Err(true);
    }
    if (f as u128) > padded {
        return Err(false);
    }
    Ok((padded - f as u128) / s as u128 + 1)
}

/// An independent convolution: `Z`, `dA_prev`, `dW`, `db` by the formulas of the `cpu` module
/// docs, looping over output positions and kernel offsets only (a huge padding costs nothing),
/// with `dZ = dz`.
#[allow(clippy::type_complexity)]
fn brute_force_conv(
    a: &Array4<f64>,
    w: &Array4<f64>,
    b: &Array1<f64>,
    g: &ConvGeometry,
    dz: &Array4<f64>,
) -> (Array4<f64>, Array4<f64>, Array4<f64>, Array1<f64>) {
    let mut z = Array4::zeros(g.output_shape());
    let mut da = Array4::zeros(a.raw_dim());
    let mut dw = Array4::zeros(w.raw_dim());
    let mut db = Array1::zeros(g.c_out);
    // A_pad[i, ph, pw, k] as an index of A, if inside.
    let inside = |ph: usize, pw: usize| -> Option<(usize, usize)> {
        let h = ph.checked_sub(g.pad.top).filter(|&h| h < g.in_h)?;
        let w = pw.checked_sub(g.pad.left).filter(|&w| w < g.in_w)?;
        Some((h, w))
    };
    for i in 0..g.m {
        for h in 0..g.out_h {
            for x in 0..g.out_w {
                for c in 0..g.c_out {
                    let mut sum = 0.0;
                    for dh in 0..g.f_h {
                        for dx in 0..g.f_w {
                            let Some((ah, ax)) = inside(h * g.s_h + dh, x * g.s_w + dx) else {
                                continue;
                            };
                            for k in 0..g.c_in {
                                sum += a[[i, ah, ax, k]] * w[[dh, dx, k, c]];
                                da[[i, ah, ax, k]] += w[[dh, dx, k, c]] * dz[[i, h, x, c]];
                                dw[[dh, dx, k, c]] += a[[i, ah, ax, k]] * dz[[i, h, x, c]];
                            }
                        }
                    }
                    z[[i, h, x, c]] = sum + b[c];
                    db[c] += dz[[i, h, x, c]];
                }
            }
        }
    }
    (z, da, dw, db)
}

fn assert_close(actual: ArrayView4<f64>, expected: ArrayView4<f64>, what: &str) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shape");
    for ((index, &x), &y) in actual.indexed_iter().zip(expected.iter()) {
        assert!(
            (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
            "{what}{index:?}: {x} != {y}"
        );
    }
}

/// `conv_forward` and `conv_backward` against [`brute_force_conv`].
fn check_conv_against_brute_force(a_shape: [usize; 4], w_shape: [usize; 4], params: ConvParams) {
    let a = ramp(a_shape);
    let w = ramp(w_shape).mapv(|v| v * 0.5 + 0.25);
    let b: Array1<f64> = (0..w_shape[3]).map(|c| 0.125 * c as f64 - 0.3).collect();
    let g = ConvGeometry::new(a_shape, w_shape, params).expect("geometry");
    let dz = ramp(g.output_shape()).mapv(|v| v + 0.7);
    let (z, cache) = conv_forward(a.view(), w.view(), b.view(), params).expect("forward");
    let grads = conv_backward(dz.view(), &cache).expect("backward");
    let (z_ref, da_ref, dw_ref, db_ref) = brute_force_conv(&a, &w, &b, &g, &dz);
    assert_close(z.view(), z_ref.view(), "Z");
    assert_close(grads.da_prev.view(), da_ref.view(), "dA_prev");
    assert_close(grads.dw.view(), dw_ref.view(), "dW");
    let db_ref = db_ref.into_shape_with_order((1, 1, 1, w_shape[3])).unwrap();
    assert_close(grads.db.view(), db_ref.view(), "db");
}

// ---------------------------------------------------------------------------------------------
// 1. Every size computation is checked
// ---------------------------------------------------------------------------------------------

#[test]
fn explicit_padding_overflowing_usize_is_a_size_overflow_everywhere() {
    // 4 + 0 + (usize::MAX - 3) = usize::MAX + 1, which used to wrap to 0.
    let pad = Padding::explicit(0, MAX - 3, 0, 0);
    let expected = Error::SizeOverflow {
        what: "padded height n_H + top + bottom",
        operands: vec![4, 0, MAX - 3],
        input: vec![1, 4, 4, 3],
    };
    let params = ConvParams::new(1, 0).with_padding(pad);
    assert_eq!(
        ConvGeometry::new([1, 4, 4, 3], [2, 2, 3, 2], params),
        Err(expected.clone())
    );
    let x = Array4::<f64>::ones((1, 4, 4, 3));
    assert_eq!(zero_pad(x.view(), pad), Err(expected.clone()));
    let w = Array4::<f64>::ones((2, 2, 3, 2));
    let b = Array1::<f64>::zeros(2);
    assert_eq!(
        conv_forward(x.view(), w.view(), b.view(), params).map(|_| ()),
        Err(expected)
    );
    // Each side alone fits, their sum does not.
    let pad = Padding::explicit(0, 0, MAX / 2 + 1, MAX / 2 + 1);
    assert!(matches!(
        zero_pad(x.view(), pad),
        Err(Error::SizeOverflow {
            what: "padded width n_W + left + right",
            ..
        })
    ));
    // An empty batch does not excuse it: the padded shape still cannot be written down.
    let empty = Array4::<f64>::zeros((0, 4, 4, 3));
    assert!(matches!(
        zero_pad(empty.view(), MAX),
        Err(Error::SizeOverflow { .. })
    ));
}

#[test]
fn same_padding_for_huge_sizes_never_wraps() {
    // Once (ceil(n/s) - 1) * s + f overflowed; now the total is at most f and exact.
    for (n, f, s) in [
        (MAX, MAX, 1),
        (MAX, MAX, MAX),
        (MAX, 3, MAX),
        (MAX - 1, MAX, 2),
        (1, MAX, MAX),
        (0, MAX, 1),
        (MAX / 2 + 1, MAX / 2 + 7, MAX / 2),
    ] {
        let p = Padding::same((n, 1), (f, 1), (s, 1));
        let out = (n as u128).div_ceil(s as u128);
        let total = ((out.max(1) - 1) * s as u128 + f as u128).saturating_sub(n as u128);
        assert_eq!(
            p.top as u128 + p.bottom as u128,
            total,
            "n {n}, f {f}, s {s}"
        );
        assert!(p.bottom - p.top <= 1);
        // The geometry either gives ceil(n / s) rows or names the overflow.
        let params = ConvParams::new(1, 0).with_stride(s, 1).with_padding(p);
        match ConvGeometry::new([1, n.max(1), 1, 1], [f, 1, 1, 1], params) {
            Ok(g) => assert_eq!(g.out_h as u128, (n.max(1) as u128).div_ceil(s as u128)),
            Err(Error::SizeOverflow { .. }) => {
                assert!(n.max(1) as u128 + total > MAX as u128)
            }
            Err(e) => assert!(n == 0, "n {n}, f {f}, s {s}: {e:?}"),
        }
    }
}

#[test]
fn forward_flops_never_wraps() {
    let g = ConvGeometry::new([MAX, 1, 1, MAX], [1, 1, MAX, MAX], ConvParams::new(1, 0))
        .expect("geometry");
    let n = MAX as f64;
    assert_eq!(g.forward_flops(), 2.0 * n * n * n);
    assert!(g.forward_flops().is_finite());
}

// ---------------------------------------------------------------------------------------------
// 2. No huge allocation: an error before allocating, or no huge temporary at all
// ---------------------------------------------------------------------------------------------

#[test]
fn zero_pad_with_pad_2_pow_20_is_too_large_before_allocating() {
    let x = Array4::<f64>::ones((1, 4, 4, 3));
    let padded = 4 + (1 << 21);
    assert_eq!(
        zero_pad(x.view(), 1 << 20),
        Err(Error::TooLarge {
            what: "padded input",
            shape: vec![1, padded, padded, 3],
            bytes: (padded * padded * 3 * 8) as u64,
            limit: MAX_HOST_BYTES,
        })
    );
}

#[test]
fn distribute_value_with_2_pow_40_elements_is_too_large_before_allocating() {
    assert_eq!(
        distribute_value(1.0_f64, (1 << 20, 1 << 20)),
        Err(Error::TooLarge {
            what: "distribute_value window",
            shape: vec![1 << 20, 1 << 20],
            bytes: 8 << 40,
            limit: MAX_HOST_BYTES,
        })
    );
    // The element count itself overflows.
    assert!(matches!(
        distribute_value(1.0_f32, (MAX, MAX)),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn conv_with_pad_2_pow_16_and_stride_2_pow_17_has_a_2x2_output_without_a_padded_copy() {
    // The padded input would be 1 x 131076 x 131076 x 3: 412 GB in f64.
    let a = ramp([1, 4, 4, 3]);
    let w = ramp([2, 2, 3, 2]);
    let b = arr1(&[0.5, -1.0]);
    let params = ConvParams::new(1 << 17, 1 << 16);
    let (z, cache) = conv_forward(a.view(), w.view(), b.view(), params).expect("forward");
    assert_eq!(z.shape(), &[1, 2, 2, 2]);
    // Both windows lie in the padding: only the bias.
    for ((_, _, _, c), &v) in z.indexed_iter() {
        assert_eq!(v, b[c]);
    }
    let grads = conv_backward(Array4::ones(z.raw_dim()).view(), &cache).expect("backward");
    assert!(grads.da_prev.iter().all(|&v| v == 0.0));
    assert!(grads.dw.iter().all(|&v| v == 0.0));
    assert_eq!(grads.db.iter().copied().collect::<Vec<_>>(), vec![4.0, 4.0]);
}

#[test]
fn conv_with_huge_asymmetric_padding_matches_brute_force() {
    // Windows at padded rows/columns 0 and 2^17; the image starts at row 2^17 - 2 and column
    // 2^17, so the second windows overlap it (partly, for the rows).
    let big = 1 << 17;
    let params = ConvParams::new(big, 0).with_padding(Padding::explicit(big - 2, 1 << 16, big, 3));
    check_conv_against_brute_force([2, 4, 5, 3], [3, 2, 3, 2], params);
    // And near usize::MAX: padding that only just fits, a stride that jumps over it.
    let params = ConvParams::new(MAX / 2, 0).with_padding(Padding::explicit(
        MAX / 2 - 1,
        MAX / 2 - 8,
        0,
        MAX - 10,
    ));
    check_conv_against_brute_force([1, 3, 4, 2], [2, 3, 2, 2], params);
}

#[test]
fn broadcast_views_far_larger_than_memory_are_too_large_not_an_abort() {
    let one = Array4::<f64>::ones((1, 1, 1, 1));
    // Weights 2^20 x 2^20 x 1 x 1 that occupy 8 bytes; the stride makes Z 1x1.
    let w = one.broadcast((1 << 20, 1 << 20, 1, 1)).expect("broadcast");
    let a = Array4::<f64>::ones((1, 4, 4, 1));
    let b = arr1(&[0.0]);
    let params = ConvParams::new(1 << 21, 1 << 20);
    match conv_forward(a.view(), w, b.view(), params) {
        Err(Error::TooLarge {
            what: "cache W",
            limit,
            ..
        }) => assert_eq!(limit, MAX_HOST_BYTES),
        other => panic!(
            "expected TooLarge for the cached W, got {:?}",
            other.map(|_| ())
        ),
    }
    let a = one.broadcast((1, 1 << 20, 1 << 20, 1)).expect("broadcast");
    let p = PoolParams::new(1 << 20, 1 << 20, PoolMode::Max);
    assert!(matches!(
        pool_forward(a, p),
        Err(Error::TooLarge {
            what: "cache A_prev",
            ..
        })
    ));
    let window = Array2::<f64>::ones((1, 1));
    let window = window.broadcast((1 << 20, 1 << 20)).expect("broadcast");
    assert!(matches!(
        create_mask_from_window(window),
        Err(Error::TooLarge { what: "mask", .. })
    ));
    assert!(matches!(
        first_max_mask(window),
        Err(Error::TooLarge { what: "mask", .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// 3. Typed errors, never a panic
// ---------------------------------------------------------------------------------------------

/// Runs every CPU op on a tiny input with these hyperparameters and checks each result: `Ok`
/// with the geometry's shape, the geometry's own error, or `TooLarge` for outputs over the
/// limit. Outputs that are legal but large are skipped.
fn check_ops_on_tiny_input(
    a_shape: [usize; 4],
    w_shape: [usize; 4],
    stride: (usize, usize),
    pad: Padding,
    pool_kernel: (usize, usize),
) {
    let a = ramp(a_shape);
    let w = ramp(w_shape);
    let b = Array1::<f64>::zeros(w_shape[3]);

    // zero_pad (called only where the result is an error or small: a legal padded array of
    // gigabytes would be slow, not wrong)
    let [m, h, x, c] = a_shape.map(|n| n as u128);
    let ph = h + pad.top as u128 + pad.bottom as u128;
    let pw = x + pad.left as u128 + pad.right as u128;
    if ph > MAX as u128 || pw > MAX as u128 {
        let result = zero_pad(a.view(), pad);
        assert!(
            matches!(result, Err(Error::SizeOverflow { .. })),
            "zero_pad {a_shape:?} {pad:?}: {result:?}"
        );
    } else {
        match host_elements(&[m, ph, pw, c]) {
            None => assert!(
                matches!(zero_pad(a.view(), pad), Err(Error::TooLarge { .. })),
                "zero_pad {a_shape:?} {pad:?}"
            ),
            Some(n) if n <= AFFORDABLE => {
                let x_pad = zero_pad(a.view(), pad).expect("zero_pad");
                let shape = [m, ph, pw, c].map(|n| n as usize);
                assert_eq!(x_pad.shape(), &shape);
                let inner = x_pad.slice(s![
                    ..,
                    pad.top..pad.top + a_shape[1],
                    pad.left..pad.left + a_shape[2],
                    ..
                ]);
                assert_eq!(inner, a);
                // Nothing but zeros around it.
                let nonzero = |x: &Array4<f64>| x.iter().filter(|&&v| v != 0.0).count();
                assert_eq!(nonzero(&x_pad), nonzero(&a));
            }
            Some(_) => {}
        }
    }

    // conv_forward, conv_backward
    let params = ConvParams::new(1, 0)
        .with_stride(stride.0, stride.1)
        .with_padding(pad);
    let geometry = ConvGeometry::new(a_shape, w_shape, params);
    match geometry {
        Err(e) => {
            let got = conv_forward(a.view(), w.view(), b.view(), params).map(|_| ());
            assert_eq!(got, Err(e));
        }
        Ok(g) => {
            // The geometry follows the formula.
            let out_h = axis_out(a_shape[1], pad.top, pad.bottom, w_shape[0], stride.0);
            let out_w = axis_out(a_shape[2], pad.left, pad.right, w_shape[1], stride.1);
            assert_eq!((Ok(g.out_h as u128), Ok(g.out_w as u128)), (out_h, out_w));
            let out = g.output_shape().map(|n| n as u128);
            match host_elements(&out) {
                None => assert!(matches!(
                    conv_forward(a.view(), w.view(), b.view(), params),
                    Err(Error::TooLarge { what: "Z", .. })
                )),
                Some(n) if n <= AFFORDABLE => {
                    let (z, cache) =
                        conv_forward(a.view(), w.view(), b.view(), params).expect("forward");
                    assert_eq!(z.shape(), &g.output_shape());
                    let grads = conv_backward(z.view(), &cache).expect("backward");
                    assert_eq!(grads.da_prev.shape(), &a_shape);
                    assert_eq!(grads.dw.shape(), &w_shape);
                }
                Some(_) => {}
            }
        }
    }

    // pool_forward, pool_backward (no padding: the output is never larger than the input)
    for mode in [PoolMode::Max, PoolMode::Average] {
        let params = PoolParams::new(1, 1, mode)
            .with_kernel(pool_kernel.0, pool_kernel.1)
            .with_stride(stride.0, stride.1);
        match PoolGeometry::new(a_shape, params) {
            Err(e) => assert_eq!(pool_forward(a.view(), params).map(|_| ()), Err(e)),
            Ok(g) => {
                let (out, cache) = pool_forward(a.view(), params).expect("pool forward");
                assert_eq!(out.shape(), &g.output_shape());
                let da_prev = pool_backward(out.view(), &cache).expect("pool backward");
                assert_eq!(da_prev.shape(), &a_shape);
            }
        }
    }
}

#[test]
fn near_max_strides_and_pads_never_panic() {
    let values = [
        0,
        1,
        2,
        3,
        1 << 16,
        1 << 17,
        MAX / 2,
        MAX / 2 + 1,
        MAX - 3,
        MAX - 1,
        MAX,
    ];
    for &s in &values {
        for &p in &values {
            for &q in &[0, 1, MAX - 4, MAX] {
                let pad = Padding::explicit(p, q, q, p);
                check_ops_on_tiny_input([2, 4, 3, 2], [2, 3, 2, 2], (s, s.max(1)), pad, (2, 2));
                check_ops_on_tiny_input([1, 3, 4, 1], [3, 1, 1, 1], (1, s), pad, (3, 1));
            }
        }
    }
}

#[test]
fn zero_size_axes_are_errors_or_empty_results() {
    for a_shape in [[0, 4, 4, 2], [1, 0, 4, 2], [1, 4, 0, 2], [1, 4, 4, 0]] {
        let a = Array4::<f64>::zeros(a_shape);
        // zero_pad of an empty array: empty, padded shape.
        let x_pad = zero_pad(a.view(), 1).expect("pad");
        assert_eq!(
            x_pad.shape(),
            &[a_shape[0], a_shape[1] + 2, a_shape[2] + 2, a_shape[3]]
        );
        let w = Array4::<f64>::zeros((1, 1, a_shape[3], 2));
        let b = Array1::<f64>::zeros(2);
        assert!(matches!(
            conv_forward(a.view(), w.view(), b.view(), ConvParams::new(1, 0)),
            Err(Error::EmptyTensor { what: "input", .. })
        ));
        assert!(matches!(
            pool_forward(a.view(), PoolParams::new(1, 1, PoolMode::Max)),
            Err(Error::EmptyTensor { .. })
        ));
    }
    // Weights with no output channel.
    let a = Array4::<f64>::zeros((1, 4, 4, 2));
    let w = Array4::<f64>::zeros((1, 1, 2, 0));
    let b = Array1::<f64>::zeros(0);
    assert!(matches!(
        conv_forward(a.view(), w.view(), b.view(), ConvParams::new(1, 0)),
        Err(Error::EmptyTensor {
            what: "weights",
            ..
        })
    ));
    // Empty windows.
    let empty = Array2::<f64>::zeros((0, MAX / 16));
    assert_eq!(
        create_mask_from_window(empty.view()),
        Err(Error::EmptyWindow)
    );
    assert_eq!(first_max_mask(empty.view()), Err(Error::EmptyWindow));
    assert_eq!(distribute_value(1.0_f64, (0, MAX)), Err(Error::EmptyWindow));
    // conv_single_step on empty slices: just the bias.
    let e = ndarray::Array3::<f64>::zeros((0, 2, 2));
    assert_eq!(conv_single_step(e.view(), e.view(), 0.5), Ok(0.5));
}

#[test]
fn backward_rejects_hand_built_caches_with_hostile_geometry() {
    let a = ramp([1, 4, 4, 2]);
    let w = ramp([2, 2, 2, 3]);
    let b = Array1::<f64>::zeros(3);
    let (z, cache) = conv_forward(a.view(), w.view(), b.view(), ConvParams::new(1, 1)).unwrap();
    let mut geometry = cache.geometry;
    for (pad, stride) in [
        (Padding::explicit(MAX, MAX, 0, 0), (1, 1)),
        (Padding::explicit(1, 1, 1, 1), (0, 1)),
        (Padding::explicit(1, 1, 1, 1), (MAX, MAX)),
        (Padding::explicit(MAX - 4, 0, 1, 1), (1, 1)),
    ] {
        geometry.pad = pad;
        (geometry.s_h, geometry.s_w) = stride;
        let bad = ConvCache {
            geometry,
            ..cache.clone()
        };
        assert!(conv_backward(z.view(), &bad).is_err(), "{pad:?} {stride:?}");
    }
    let (out, cache) = pool_forward(a.view(), PoolParams::new(2, 1, PoolMode::Max)).unwrap();
    for stride in [(0, 1), (MAX, MAX)] {
        let mut bad: PoolCache<f64> = cache.clone();
        bad.geometry.s_h = stride.0;
        bad.geometry.s_w = stride.1;
        assert!(pool_backward(out.view(), &bad).is_err(), "{stride:?}");
        bad.params.stride = stride;
        assert!(pool_backward(out.view(), &bad).is_err(), "{stride:?}");
    }
}

/// Small values most of the time, powers of two, values near `usize::MAX / 2` and `usize::MAX`,
/// and anything.
fn hostile() -> impl Strategy<Value = usize> {
    prop_oneof![
        4 => 0usize..5,
        2 => (0..usize::BITS).prop_map(|k| 1usize << k),
        1 => (0usize..5).prop_map(|d| MAX / 2 - 2 + d),
        2 => (0usize..5).prop_map(|d| MAX - d),
        1 => any::<usize>(),
    ]
}

fn hostile_padding() -> impl Strategy<Value = Padding> {
    (hostile(), hostile(), hostile(), hostile())
        .prop_map(|(top, bottom, left, right)| Padding::explicit(top, bottom, left, right))
}

/// A small value most of the time, a [`hostile`] one otherwise: so that a good share of the
/// paddings of tiny inputs give outputs small enough to compute.
fn sometimes_hostile() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..4, 1 => hostile()]
}

/// An axis of a tiny array: 1 to `max - 1` elements, sometimes 0.
fn tiny_axis(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![1 => Just(0), 6 => 1..max]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `Padding::same` and `ConvGeometry::new` on arbitrary sizes: no panic; `Ok` follows the
    /// output-size formula computed in `u128`, every error is the one the sizes call for.
    #[test]
    fn hostile_conv_geometry_follows_the_formula_or_errs(
        input in [hostile(), hostile(), hostile(), hostile()],
        kernel in (hostile(), hostile(), hostile()),
        stride in (hostile(), hostile()),
        explicit in hostile_padding(),
        same in any::<bool>(),
        match_channels in any::<bool>(),
    ) {
        let (f_h, f_w, c_out) = kernel;
        let c_in = if match_channels { input[3] } else { kernel.0 };
        let weights = [f_h, f_w, c_in, c_out];
        let pad = if same {
            let p = Padding::same((input[1], input[2]), (f_h, f_w), stride);
            prop_assert!(p.top as u128 + p.bottom as u128 <= f_h as u128);
            prop_assert!(p.left as u128 + p.right as u128 <= f_w as u128);
            prop_assert!(p.bottom - p.top <= 1 && p.right - p.left <= 1);
            p
        } else {
            explicit
        };
        let params = ConvParams::new(1, 0).with_stride(stride.0, stride.1).with_padding(pad);
        let out_h = axis_out(input[1], pad.top, pad.bottom, f_h, stride.0.max(1));
        let out_w = axis_out(input[2], pad.left, pad.right, f_w, stride.1.max(1));
        match ConvGeometry::new(input, weights, params) {
            Ok(g) => {
                prop_assert_eq!((Ok(g.out_h as u128), Ok(g.out_w as u128)), (out_h, out_w));
                prop_assert_eq!(g.output_shape(), [input[0], g.out_h, g.out_w, c_out]);
                let padded = g.padded_shape();
                prop_assert_eq!(padded[1] as u128, input[1] as u128 + pad.top as u128 + pad.bottom as u128);
                prop_assert_eq!(padded[2] as u128, input[2] as u128 + pad.left as u128 + pad.right as u128);
                prop_assert!(g.forward_flops().is_finite() && g.forward_flops() >= 2.0);
                if same {
                    // SAME: ceil(n / s) rows and columns.
                    prop_assert_eq!(g.out_h, input[1].div_ceil(stride.0));
                    prop_assert_eq!(g.out_w, input[2].div_ceil(stride.1));
                }
            }
            Err(Error::ZeroStride(..)) => prop_assert!(stride.0 == 0 || stride.1 == 0),
            Err(Error::ZeroKernel(..)) => prop_assert!(f_h == 0 || f_w == 0),
            Err(Error::EmptyTensor { .. }) => {
                prop_assert!(input.contains(&0) || weights.contains(&0))
            }
            Err(Error::ChannelMismatch { .. }) => prop_assert_ne!(c_in, input[3]),
            Err(Error::SizeOverflow { .. }) => {
                prop_assert!(out_h == Err(true) || out_w == Err(true))
            }
            Err(Error::KernelTooLarge { padded, .. }) => {
                prop_assert!(out_h == Err(false) || out_w == Err(false));
                prop_assert!(padded[0] < f_h || padded[1] < f_w);
            }
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
        }
    }

    /// `PoolGeometry::new` on arbitrary sizes: no panic, the formula or the right error.
    #[test]
    fn hostile_pool_geometry_follows_the_formula_or_errs(
        input in [hostile(), hostile(), hostile(), hostile()],
        kernel in (hostile(), hostile()),
        stride in (hostile(), hostile()),
    ) {
        let params = PoolParams::new(1, 1, PoolMode::Max)
            .with_kernel(kernel.0, kernel.1)
            .with_stride(stride.0, stride.1);
        match PoolGeometry::new(input, params) {
            Ok(g) => {
                prop_assert_eq!(Ok(g.out_h as u128), axis_out(input[1], 0, 0, kernel.0, stride.0));
                prop_assert_eq!(Ok(g.out_w as u128), axis_out(input[2], 0, 0, kernel.1, stride.1));
                prop_assert_eq!(g.input_shape(), input);
            }
            Err(Error::ZeroStride(..)) => prop_assert!(stride.0 == 0 || stride.1 == 0),
            Err(Error::ZeroKernel(..)) => prop_assert!(kernel.0 == 0 || kernel.1 == 0),
            Err(Error::EmptyTensor { .. }) => prop_assert!(input.contains(&0)),
            Err(Error::KernelTooLarge { .. }) => {
                prop_assert!(kernel.0 > input[1] || kernel.1 > input[2])
            }
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
        }
    }

    /// `zero_pad`, `conv_forward`/`conv_backward`, `pool_forward`/`pool_backward` on tiny inputs
    /// (zero-size axes included) with hostile strides and paddings: `Ok` with the geometry's
    /// shape, or a typed error; never a panic or an abort.
    #[test]
    fn cpu_ops_on_tiny_inputs_never_panic(
        a_shape in [tiny_axis(3), tiny_axis(6), tiny_axis(6), tiny_axis(3)],
        kernel in (tiny_axis(4), tiny_axis(4), tiny_axis(3)),
        channels_match in prop::bool::weighted(0.9),
        stride in (hostile(), hostile()),
        pad in (sometimes_hostile(), sometimes_hostile(), sometimes_hostile(), sometimes_hostile()),
        pool_kernel in (tiny_axis(4), tiny_axis(4)),
    ) {
        let pad = Padding::explicit(pad.0, pad.1, pad.2, pad.3);
        let c_in = if channels_match { a_shape[3] } else { kernel.2 + 1 };
        let w_shape = [kernel.0, kernel.1, c_in, kernel.2];
        check_ops_on_tiny_input(a_shape, w_shape, stride, pad, pool_kernel);
    }

    /// The window helpers on hostile window shapes (as zero-stride broadcasts, so a huge window
    /// costs nothing until something is allocated for it).
    #[test]
    fn window_helpers_on_hostile_shapes_never_panic(n_h in hostile(), n_w in hostile()) {
        // Only the results that are errors or small are computed: a legal window of gigabytes
        // would be slow, not wrong.
        let elements = (n_h as u128) * (n_w as u128);
        let distribute = || distribute_value(2.0_f64, (n_h, n_w));
        if n_h == 0 || n_w == 0 {
            prop_assert_eq!(distribute(), Err(Error::EmptyWindow));
        } else if elements.saturating_mul(8) > u128::from(MAX_HOST_BYTES) {
            let result = distribute();
            prop_assert!(
                matches!(result, Err(Error::TooLarge { .. })),
                "distribute_value: {:?}",
                result
            );
        } else if elements <= AFFORDABLE {
            let d = distribute().expect("distribute_value");
            prop_assert_eq!(d.shape(), &[n_h, n_w]);
        }
        let one = Array2::<f64>::ones((1, 1));
        if let Some(window) = one.broadcast((n_h, n_w)) {
            if n_h == 0 || n_w == 0 {
                prop_assert_eq!(create_mask_from_window(window), Err(Error::EmptyWindow));
                prop_assert_eq!(first_max_mask(window), Err(Error::EmptyWindow));
            } else if elements > u128::from(MAX_HOST_BYTES) {
                // Refused before the window is scanned.
                let mask = create_mask_from_window(window);
                prop_assert!(
                    matches!(mask, Err(Error::TooLarge { .. })),
                    "mask: {:?}",
                    mask
                );
                let first = first_max_mask(window);
                prop_assert!(
                    matches!(first, Err(Error::TooLarge { .. })),
                    "first max mask: {:?}",
                    first
                );
            } else if elements <= AFFORDABLE {
                prop_assert!(create_mask_from_window(window).expect("mask").iter().all(|&m| m));
                let first = first_max_mask(window).expect("first max");
                prop_assert_eq!(first.iter().filter(|&&m| m).count(), 1);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Defects of the original numpy exercises that this crate does not copy
// ---------------------------------------------------------------------------------------------

#[test]
fn defect_a_bias_is_added_once_not_per_product() {
    // Three versions computed sum(a * W + b): 12 products of 1 plus 12 biases = 18.
    let a_slice_prev = ndarray::Array3::<f64>::ones((2, 2, 3));
    let w = ndarray::Array3::<f64>::ones((2, 2, 3));
    assert_eq!(
        conv_single_step(a_slice_prev.view(), w.view(), 0.5),
        Ok(12.5)
    );
    let a = Array4::<f64>::ones((1, 2, 2, 3));
    let w = Array4::<f64>::ones((2, 2, 3, 1));
    let (z, cache) = conv_forward(
        a.view(),
        w.view(),
        arr1(&[0.5]).view(),
        ConvParams::new(1, 0),
    )
    .expect("forward");
    assert_eq!(z[[0, 0, 0, 0]], 12.5);
    // And db is the sum of dZ, not f_h * f_w * n_C_prev times it.
    let grads = conv_backward(Array4::ones(z.raw_dim()).view(), &cache).expect("backward");
    assert_eq!(grads.db[[0, 0, 0, 0]], 1.0);
}

#[test]
fn defect_b_pool_backward_routes_each_output_gradient_to_its_own_window() {
    // Two versions read dA[i, vert_start, horiz_start, c]: right only at stride 1. Here each
    // dA[i, h, w, c] goes to its own window, at strides 2 and 3.
    for (n, f, stride) in [(6, 2, 2), (7, 3, 3), (7, 3, 2)] {
        let a = Array4::from_shape_fn((1, n, n, 1), |(_, h, w, _)| (n * h + w) as f64);
        let params = PoolParams::new(f, stride, PoolMode::Average);
        let (out, cache) = pool_forward(a.view(), params).expect("forward");
        let da = Array4::from_shape_fn(out.raw_dim(), |(_, h, w, _)| (10 * h + w + 1) as f64);
        let da_prev = pool_backward(da.view(), &cache).expect("backward");
        let n_out = out.shape()[1];
        let mut expected = Array4::<f64>::zeros((1, n, n, 1));
        for h in 0..n_out {
            for w in 0..n_out {
                let g = da[[0, h, w, 0]] / (f * f) as f64;
                expected
                    .slice_mut(s![
                        0,
                        h * stride..h * stride + f,
                        w * stride..w * stride + f,
                        0
                    ])
                    .mapv_inplace(|v| v + g);
            }
        }
        assert_eq!(da_prev, expected, "n {n}, f {f}, stride {stride}");
        // Max: each window's maximum is its bottom-right element, which receives dA[i, h, w, c].
        let (_, cache) =
            pool_forward(a.view(), PoolParams::new(f, stride, PoolMode::Max)).expect("forward");
        let da_prev = pool_backward(da.view(), &cache).expect("backward");
        for h in 0..n_out {
            for w in 0..n_out {
                let corner = [0, h * stride + f - 1, w * stride + f - 1, 0];
                assert_eq!(da_prev[corner], da[[0, h, w, 0]]);
            }
        }
    }
}

#[test]
fn defect_c_pad_0_and_one_sided_padding_work() {
    // `X[pad:-pad]` is empty for pad = 0; here pad 0 and a 0 on any side work.
    let x = ramp([2, 3, 4, 2]);
    assert_eq!(zero_pad(x.view(), 0).expect("pad"), x);
    check_conv_against_brute_force([2, 4, 5, 2], [2, 3, 2, 3], ConvParams::new(1, 0));
    for pad in [
        Padding::explicit(0, 2, 0, 1),
        Padding::explicit(2, 0, 1, 0),
        Padding::explicit(0, 0, 3, 0),
    ] {
        let params = ConvParams::new(1, 0).with_stride(2, 1).with_padding(pad);
        check_conv_against_brute_force([2, 4, 5, 2], [2, 3, 2, 3], params);
    }
}
