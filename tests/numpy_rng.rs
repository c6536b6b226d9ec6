//! Checks `NumpyRng` against numbers printed by real numpy (2.4.6, legacy
//! `np.random` API). Every reference is numpy's `repr`, which round-trips, and
//! the generator is compared bit for bit.

#[path = "common/numpy_rng.rs"]
mod numpy_rng;

use numpy_rng::NumpyRng;

/// Asserts that `actual` and `expected` are the same doubles, bit for bit.
#[track_caller]
fn assert_bits(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(
            a.to_bits(),
            e.to_bits(),
            "element {i}: got {a:e}, numpy gave {e:e}"
        );
    }
}

#[test]
fn seed_uses_init_genrand() {
    // np.random.seed(1); np.random.get_state()[1][:4], and the first raw outputs
    // (np.random.randint(0, 2**32, size=3, dtype=np.uint64)).
    let mut rng = NumpyRng::seed(1);
    let raw: Vec<u32> = (0..3).map(|_| rng.next_u32()).collect();
    assert_eq!(raw, [1_791_095_845, 4_282_876_139, 3_093_770_124]);
}

#[test]
fn randn_first_ten() {
    // np.random.seed(1); np.random.randn(10)
    let expected = [
        1.6243453636632417,
        -0.6117564136500754,
        -0.5281717522634557,
        -1.0729686221561705,
        0.8654076293246785,
        -2.3015386968802827,
        1.74481176421648,
        -0.7612069008951028,
        0.31903909605709857,
        -0.2493703754774101,
    ];
    let x = NumpyRng::seed(1).randn(&[10]);
    assert_eq!(x.shape(), [10]);
    assert_bits(x.as_slice().unwrap(), &expected);
}

#[test]
fn randn_deep_in_a_long_sequence() {
    // np.random.seed(1); x = np.random.randn(1000); x[500], x[998], x[999]
    let x = NumpyRng::seed(1).randn(&[1000]);
    assert_bits(
        &[x[500], x[998], x[999]],
        &[
            -1.719394474619523,
            0.35387042688284037,
            -0.18695501653274957,
        ],
    );
}

#[test]
fn random_sample_and_rand() {
    // np.random.seed(1); [np.random.random_sample() for _ in range(5)]
    let expected = [
        0.417022004702574,
        0.7203244934421581,
        0.00011437481734488664,
        0.30233257263183977,
        0.14675589081711304,
    ];
    let mut rng = NumpyRng::seed(1);
    let samples: Vec<f64> = (0..5).map(|_| rng.random_sample()).collect();
    assert_bits(&samples, &expected);

    // np.random.seed(1); np.random.rand(3)
    let x = NumpyRng::seed(1).rand(&[3]);
    assert_bits(x.as_slice().unwrap(), &expected[..3]);
}

#[test]
fn cached_gauss_survives_random_sample() {
    // np.random.seed(1); g1 = np.random.randn(); u = np.random.random_sample();
    // g2 = np.random.randn(3)
    let mut rng = NumpyRng::seed(1);
    let g1 = rng.gauss();
    let u = rng.random_sample();
    let g2 = rng.randn(&[3]);
    assert_bits(&[g1], &[1.6243453636632417]);
    assert_bits(&[u], &[0.00011437481734488664]);
    assert_bits(
        g2.as_slice().unwrap(),
        &[
            -0.6117564136500754,
            -0.8021728386486427,
            -0.4488778077207725,
        ],
    );
}

#[test]
fn other_seeds() {
    // np.random.seed(0); np.random.randn(3)
    let x = NumpyRng::seed(0).randn(&[3]);
    assert_bits(
        x.as_slice().unwrap(),
        &[1.764052345967664, 0.4001572083672233, 0.9787379841057392],
    );
    // np.random.seed(2**32 - 1); np.random.randn(3)
    let x = NumpyRng::seed(u32::MAX).randn(&[3]);
    assert_bits(
        x.as_slice().unwrap(),
        &[0.6484086742306527, 0.6693235306338161, -1.0805437227474493],
    );
}

#[test]
fn reseeding_clears_the_cached_gauss() {
    // np.random.seed(1); np.random.randn(); np.random.seed(1); np.random.randn()
    let mut rng = NumpyRng::seed(1);
    rng.gauss();
    let mut rng = NumpyRng::seed(1);
    assert_bits(&[rng.gauss()], &[1.6243453636632417]);
}

#[test]
fn zero_pad_example_fills_in_c_order() {
    // np.random.seed(1); x = np.random.randn(4, 3, 3, 2); x[1, 1]
    let x = NumpyRng::seed(1).randn4([4, 3, 3, 2]);
    let row: Vec<f64> = x.slice(ndarray::s![1, 1, .., ..]).iter().copied().collect();
    assert_bits(
        &row,
        &[
            0.9008559492644118,
            -0.6837278591743331,
            -0.12289022551864817,
            -0.9357694342590688,
            -0.2678880796260159,
            0.530355466738186,
        ],
    );
    // The values printed in the spec, to its 8 decimals.
    let spec = [
        0.90085595,
        -0.68372786,
        -0.12289023,
        -0.93576943,
        -0.26788808,
        0.53035547,
    ];
    for (got, want) in row.iter().zip(spec) {
        assert!((got - want).abs() < 5e-9, "{got} vs the spec's {want}");
    }
    // randn and randn4 draw the same numbers in the same order.
    let flat = NumpyRng::seed(1).randn(&[4, 3, 3, 2]);
    assert_eq!(flat.shape(), x.shape());
    assert_bits(flat.as_slice().unwrap(), x.as_slice().unwrap());
}

#[test]
fn conv_single_step_example() {
    // np.random.seed(1); a = np.random.randn(4, 4, 3); W = np.random.randn(4, 4, 3);
    // b = np.random.randn(1, 1, 1); np.sum(a * W) + float(b)
    let mut rng = NumpyRng::seed(1);
    let a = rng.randn(&[4, 4, 3]);
    let w = rng.randn(&[4, 4, 3]);
    let b = rng.randn(&[1, 1, 1]);
    assert_bits(&[a[[0, 0, 0]]], &[1.6243453636632417]);
    assert_bits(
        &[w[[0, 0, 0]], w[[3, 3, 2]]],
        &[0.12015895248162915, 0.07734006834855942],
    );
    assert_bits(&[b[[0, 0, 0]]], &[-0.3438536755710756]);

    let z = a.iter().zip(&w).map(|(x, y)| x * y).sum::<f64>() + b[[0, 0, 0]];
    // numpy's pairwise sum may round differently from a running sum, so allow
    // a few ulps against numpy's value, and the spec's 12 significant digits.
    let numpy_z = -6.999089450680221;
    assert!(
        (z - numpy_z).abs() <= 1e-15 * numpy_z.abs(),
        "{z} vs numpy's {numpy_z}"
    );
    assert!(
        (z - -6.99908945068).abs() < 5e-12,
        "{z} vs the spec's -6.99908945068"
    );
}
