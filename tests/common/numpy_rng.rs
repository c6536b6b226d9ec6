//! A bit-exact re-implementation of numpy's legacy global random generator
//! (`numpy.random.RandomState`, i.e. `np.random.seed`, `np.random.rand`,
//! `np.random.randn`), so tests can rebuild the inputs of numpy-made examples
//! without Python.
//!
//! The pieces, each matching numpy's C sources (`mt19937.c`, `legacy-distributions.c`):
//!
//! * **MT19937**, the 32-bit Mersenne Twister. `np.random.seed(n)` with an
//!   integer `0 <= n < 2**32` goes through `mt19937_seed`, which is
//!   Matsumoto & Nishimura's `init_genrand(n)` (not `init_by_array`, which is
//!   only used for array seeds). The state starts "exhausted" (`pos = 624`), so
//!   the first draw regenerates the whole block.
//! * **`random_sample`**: a double in `[0, 1)` with 53 random bits built from two
//!   consecutive 32-bit outputs `a`, `b` as
//!   `((a >> 5) * 2**26 + (b >> 6)) / 2**53`.
//! * **legacy `standard_normal`** (used by `randn`): Marsaglia's polar method.
//!   It draws `x1 = 2u - 1`, `x2 = 2u - 1` until `0 < r2 = x1² + x2² < 1`, then
//!   with `f = sqrt(-2 ln(r2) / r2)` returns `f * x2` and caches `f * x1`
//!   (`has_gauss`/`gauss`) for the next call. The cache survives calls to
//!   `random_sample` and is cleared by reseeding.
//!
//! Arrays are filled in C (row-major) order, one draw per element, exactly as
//! numpy does.

use ndarray::{Array4, ArrayD, IxDyn};

/// Words of MT19937 state.
const N: usize = 624;
/// The middle word offset of MT19937's recurrence.
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// numpy's legacy `RandomState`: MT19937 plus the cached second value of the
/// polar method.
#[allow(dead_code)]
#[derive(Clone, Debug)]
pub struct NumpyRng {
    key: [u32; N],
    pos: usize,
    gauss: Option<f64>,
}

#[allow(dead_code)]
impl NumpyRng {
    /// The state after `np.random.seed(seed)`: `init_genrand(seed)`, no cached
    /// normal value.
    pub fn seed(seed: u32) -> Self {
        let mut key = [0u32; N];
        key[0] = seed;
        let mut prev = seed;
        for (i, word) in (1u32..).zip(&mut key[1..]) {
            *word = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i);
            prev = *word;
        }
        Self {
            key,
            pos: N,
            gauss: None,
        }
    }

    /// Regenerates the whole block of 624 words (`mt19937_gen`).
    fn generate(&mut self) {
        let mix = |hi: u32, lo: u32, far: u32| {
            let y = (hi & UPPER_MASK) | (lo & LOWER_MASK);
            far ^ (y >> 1) ^ if y & 1 == 1 { MATRIX_A } else { 0 }
        };
        for i in 0..N {
            self.key[i] = mix(self.key[i], self.key[(i + 1) % N], self.key[(i + M) % N]);
        }
        self.pos = 0;
    }

    /// The next tempered 32-bit output (`mt19937_next32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == N {
            self.generate();
        }
        let mut y = self.key[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// One `np.random.random_sample()`: a uniform double in `[0, 1)` with 53
    /// random bits.
    pub fn random_sample(&mut self) -> f64 {
        let a = f64::from(self.next_u32() >> 5);
        let b = f64::from(self.next_u32() >> 6);
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// One legacy standard normal (`legacy_gauss`, what `np.random.randn()`
    /// returns), by the polar method with the second value cached.
    pub fn gauss(&mut self) -> f64 {
        if let Some(cached) = self.gauss.take() {
            return cached;
        }
        let (x1, x2, r2) = loop {
            let x1 = 2.0 * self.random_sample() - 1.0;
            let x2 = 2.0 * self.random_sample() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                break (x1, x2, r2);
            }
        };
        let f = (-2.0 * r2.ln() / r2).sqrt();
        self.gauss = Some(f * x1);
        f * x2
    }

    /// `np.random.rand(*shape)`: uniform `[0, 1)` values in C order.
    pub fn rand(&mut self, shape: &[usize]) -> ArrayD<f64> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || self.random_sample())
    }

    /// `np.random.randn(*shape)`: standard normal values in C order.
    pub fn randn(&mut self, shape: &[usize]) -> ArrayD<f64> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || self.gauss())
    }

    /// `np.random.randn(n, h, w, c)` as a 4-d array, in C order.
    pub fn randn4(&mut self, shape: [usize; 4]) -> Array4<f64> {
        Array4::from_shape_simple_fn(shape, || self.gauss())
    }
}
