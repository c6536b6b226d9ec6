//! The fully connected layer and the softmax loss on the GPU; kernels: `shaders/matmul.wgsl`
//! (a tiled matrix product through workgroup memory, and one thread per four columns of a row
//! for small products), `shaders/matmul_lanes.wgsl` (lanes on columns with the rows of A
//! broadcast, for CPU adapters), `shaders/softmax.wgsl`, and the deterministic reduction for
//! `db` and the loss. Every product kernel gives the same bits.

use super::kernels::{uniform, Access, Kernel};
use super::launch::{count, WG};
use super::tune::{TuneKey, TunedOp, TUNE_MIN_MACS};
use super::{Arg, Gpu, Tensor};
use crate::error::{Error, Result};
use crate::layers::Labels;

uniform! {
    /// The uniform block of `matmul.wgsl`.
    struct MatmulParams {
        m: u32,
        n: u32,
        kk: u32,
        tiles_n: u32,
        tiles: u32,
        a_off: u32,
        sa_row: u32,
        sa_k: u32,
        b_off: u32,
        sb_k: u32,
        sb_col: u32,
        c_off: u32,
        has_bias: u32,
        accumulate: u32,
    }
}

uniform! {
    /// The uniform block of `softmax.wgsl`.
    struct SoftmaxParams {
        rows: u32,
        k: u32,
        inv_n: f32,
    }
}

pub(crate) const MATMUL: Kernel = Kernel::new::<MatmulParams>(
    "matmul.wgsl",
    include_str!("../../shaders/matmul.wgsl"),
    "matmul",
    &MATMUL_BINDINGS,
);

/// The bindings of every product kernel: a, b, the bias, c.
const MATMUL_BINDINGS: [(u32, Access); 4] = [
    (1, Access::Read),
    (2, Access::Read),
    (3, Access::Read),
    (4, Access::Write),
];

/// One thread per four columns of a row of the product, no workgroup memory: for products under
/// [`TUNE_MIN_MACS`] multiply-adds (seed 001's fully connected layer), where the tiled kernel's
/// barriers cost more than its loads save. The same bits as [`MATMUL`].
pub(crate) const MATMUL_DOT: Kernel = MATMUL.entry("matmul_dot", &MATMUL_BINDINGS);

/// `matmul_lanes`: lanes on four columns each, the rows' elements of A loaded once per subgroup
/// and broadcast (`SG` lanes, `R` rows a lane): for CPU adapters with fixed-size subgroups,
/// where the tiled kernel's barriers and lane-by-lane loads made a large product 100x slower
/// than the convolutions. The same bits as [`MATMUL`].
pub(crate) const MATMUL_LANES: Kernel = Kernel::new::<MatmulParams>(
    "matmul_lanes.wgsl",
    concat!(
        include_str!("../../shaders/matmul.wgsl"),
        include_str!("../../shaders/matmul_lanes.wgsl")
    ),
    "matmul_lanes",
    &[
        (1, Access::Read),
        (2, Access::Read),
        (3, Access::Read),
        (4, Access::Write),
        (5, Access::Read),
    ],
);

/// The kernels of a matrix product (`Lanes(sg, r)`: `matmul_lanes` with `SG = sg`, `R = r`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Product {
    Tiled,
    Dot,
    Lanes(u32, u32),
}

/// Rows a lane of `matmul_lanes` takes, in the order offered. On lavapipe, 64 x 32768 x 100
/// (x @ w of seed 002's convnet on 64x64 images) and its two backward products took 24, 34 and
/// 38 ms with 16 rows, 27, 45 and 49 ms with 8, 42-78 ms and more with 4, 280-290 ms and
/// 0.55 s together in the tiled kernel.
pub(crate) const LANES_ROWS: [u32; 2] = [16, 8];

pub(crate) const SOFTMAX: Kernel = Kernel::new::<SoftmaxParams>(
    "softmax.wgsl",
    include_str!("../../shaders/softmax.wgsl"),
    "softmax_loss",
    &[
        (1, Access::Read),
        (2, Access::Read),
        (3, Access::Write),
        (4, Access::Write),
    ],
);

/// What `affine_forward` keeps for `affine_backward`.
#[derive(Debug, Clone)]
pub struct AffineCache {
    x: Tensor,
    w: Tensor,
}

impl AffineCache {
    /// The input, as given (`(N, d_1, ..., d_k)`).
    pub fn x(&self) -> &Tensor {
        &self.x
    }

    /// The weights `(D, M)`.
    pub fn w(&self) -> &Tensor {
        &self.w
    }
}

/// Gradients from `affine_backward`.
#[derive(Debug, Clone)]
pub struct AffineGrads {
    /// `dx = dout @ w.T`, shaped like `x`.
    pub dx: Tensor,
    /// `dw = x2d.T @ dout`, `(D, M)`.
    pub dw: Tensor,
    /// `db = sum_N dout`, `(M,)`.
    pub db: Tensor,
}

/// One operand of a product: a tensor and how `[row, k]` maps to its elements.
struct Operand<'a> {
    t: &'a Tensor,
    stride_row: usize,
    stride_k: usize,
}

impl Gpu {
    /// `c (m, n) = a (m, kk) @ b (kk, n) (+ bias)`, operands given by strides.
    fn matmul(
        &self,
        (m, n, kk): (usize, usize, usize),
        a: Operand,
        b: Operand,
        bias: Option<&Tensor>,
        c: &Tensor,
    ) -> Result<()> {
        let tiles_n = n.div_ceil(32);
        let tiles = m.div_ceil(32) * tiles_n;
        let p = MatmulParams {
            m: count(m)?,
            n: count(n)?,
            kk: count(kk)?,
            tiles_n: count(tiles_n)?,
            tiles: count(tiles)?,
            sa_row: count(a.stride_row)?,
            sa_k: count(a.stride_k)?,
            sb_k: count(b.stride_row)?,
            sb_col: count(b.stride_k)?,
            has_bias: u32::from(bias.is_some()),
            ..MatmulParams::default()
        };
        // Small products take the one-thread-per-element kernel untimed (tests force either).
        // Larger ones on CPU adapters with fixed-size subgroups take the lanes kernel (the tiled
        // one, ten times slower there, is not even timed), else the tiled one.
        let macs = (m * n * kk) as f64;
        let candidates: Vec<Product> = if macs < TUNE_MIN_MACS {
            vec![Product::Dot, Product::Tiled]
        } else {
            let lanes = self.matmul_lanes((m, n, kk));
            if lanes.is_empty() {
                vec![Product::Tiled]
            } else {
                lanes
            }
        };
        let key = TuneKey {
            op: TunedOp::Matmul,
            image: [
                n,
                kk,
                a.stride_row,
                a.stride_k,
                b.stride_row,
                b.stride_k,
                0,
                0,
                0,
                0,
                0,
                0,
            ]
            .map(|v| v as i64),
        };
        let launch = |product| {
            // The kernel, its threads (in its grid-stride loop), each one's loop iterations, its
            // constants and its workgroups.
            let (kernel, threads, per_thread, consts, workgroups) = match product {
                // Each thread: tiles x k-steps x (8 loads + 16 products) + 16 stores.
                Product::Tiled => {
                    let per_thread = kk.div_ceil(16) as u64 * 26 + 22;
                    (&MATMUL, tiles as u64 * 64, per_thread, vec![], tiles as u64)
                }
                // Each thread: four columns of a row of C.
                Product::Dot => {
                    let threads = (m * n.div_ceil(4)) as u64;
                    (
                        &MATMUL_DOT,
                        threads,
                        kk as u64 + 4,
                        vec![],
                        threads.div_ceil(64),
                    )
                }
                // No grid-stride loop beyond the tiles each workgroup takes, counted in its
                // iterations: its tiles x (kk / SG steps and the tail). B's four columns are
                // one vec4 where they are contiguous and every row starts a vec4.
                Product::Lanes(sg, r) => {
                    let (workgroups, per_wg) = self.lanes_grid((m, n, kk), sg, r);
                    let v4b =
                        b.stride_k == 1 && n.is_multiple_of(4) && b.stride_row.is_multiple_of(4);
                    let consts = vec![("SG", sg), ("R", r), ("V4B", u32::from(v4b))];
                    (&MATMUL_LANES, 1, per_wg, consts, workgroups)
                }
            };
            self.check_loops(
                "matrix product",
                threads,
                per_thread,
                &[a.t.shape(), b.t.shape()],
            )?;
            let mut args = vec![
                Arg::Whole(a.t),
                Arg::Whole(b.t),
                Arg::Whole(bias.unwrap_or(a.t)),
                Arg::Whole(c),
            ];
            // matmul_lanes also reads b as vec4s.
            if matches!(product, Product::Lanes(..)) {
                args.push(Arg::Whole(b.t));
            }
            self.launch(kernel, &consts, 1, &args, |_| Ok((p, workgroups)))
        };
        let product = self.pick(key, macs, &candidates, launch)?;
        launch(product)
    }

    /// The `matmul_lanes` variants for a product of `(m, n, kk)`, where the adapter runs a
    /// workgroup as the lanes of one core (`Gpu::lanes_first`) with fixed-size subgroups of at
    /// most 16 lanes and the kernel's loops stay within the loop budget.
    fn matmul_lanes(&self, dims: (usize, usize, usize)) -> Vec<Product> {
        let Some(sg) = self.quirks().subgroup.filter(|&sg| sg <= 16) else {
            return vec![];
        };
        if !self.lanes_first() {
            return vec![];
        }
        LANES_ROWS
            .into_iter()
            .filter(|&r| self.within_loop_budget(self.lanes_grid(dims, sg, r).1))
            .map(|r| Product::Lanes(sg, r))
            .collect()
    }

    /// `matmul_lanes`' workgroups for `(m, n, kk)` with `sg` lanes and `r` rows a lane (its
    /// tiles, capped as the convolutions' window kernels are), and the loop iterations each runs.
    fn lanes_grid(&self, (m, n, kk): (usize, usize, usize), sg: u32, r: u32) -> (u64, u64) {
        let (sg, r) = (sg as usize, r as usize);
        let tiles = (m.div_ceil(r) * n.div_ceil(4 * sg)) as u64;
        let steps = kk.div_ceil(sg) as u64;
        let workgroups = self.window_workgroups(tiles, steps).max(1);
        (workgroups, tiles.div_ceil(workgroups) * (steps + 1))
    }

    /// `(N, D, M)` of an affine layer, checking the shapes.
    fn affine_dims(x: &Tensor, w: &Tensor) -> Result<(usize, usize, usize)> {
        let n = match x.shape() {
            [n, _, ..] => *n,
            _ => {
                return Err(Error::Rank {
                    what: "affine_forward input (N, d_1, ..., d_k)",
                    expected: 2,
                    shape: x.shape().to_vec(),
                })
            }
        };
        let [d, m] = <[usize; 2]>::try_from(w.shape()).map_err(|_| Error::Rank {
            what: "affine_forward weights (D, M)",
            expected: 2,
            shape: w.shape().to_vec(),
        })?;
        if n == 0 || x.len() / n != d {
            return Err(Error::ShapeMismatch {
                what:
                    "affine_forward: x (N, d_1, ..., d_k) must have d_1 * ... * d_k = D of w (D, M)",
                expected: vec![n, d],
                got: x.shape().to_vec(),
            });
        }
        Ok((n, d, m))
    }

    /// The fully connected layer: `x` `(N, d_1, ..., d_k)` read as `(N, D)` row-major (for
    /// NHWC activations: H, then W, then C, TensorFlow's flatten), `w` `(D, M)`, `b` `(M,)`;
    /// `out = x2d @ w + b`, `(N, M)`.
    ///
    /// ```no_run
    /// use ndarray::{arr1, arr2};
    /// let gpu = wgpu_cnn::Gpu::new()?;
    /// let x = gpu.upload(&arr2(&[[1.0f32, 2.0], [3.0, 4.0]]))?;
    /// let w = gpu.upload(&arr2(&[[1.0f32, 0.0, 1.0], [0.0, 1.0, 1.0]]))?;
    /// let b = gpu.upload(&arr1(&[0.5f32, 0.0, 0.0]))?;
    /// let (out, _cache) = gpu.affine_forward(&x, &w, &b)?;
    /// assert_eq!(gpu.download::<ndarray::Ix2>(&out)?, arr2(&[[1.5, 2.0, 3.0], [3.5, 4.0, 7.0]]));
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Rank`], [`Error::ShapeMismatch`] (D or M disagree), [`Error::ForeignTensor`],
    /// [`Error::TooLarge`] (an operand exceeds a binding).
    pub fn affine_forward(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
    ) -> Result<(Tensor, AffineCache)> {
        let (n, _, m) = Self::affine_dims(x, w)?;
        let mut out = self.alloc("affine output", &[n, m], false)?;
        let cache = self.affine_forward_into(x, w, b, &mut out)?;
        Ok((out, cache))
    }

    /// [`Gpu::affine_forward`] into `out` `(N, M)`.
    ///
    /// # Errors
    /// As [`Gpu::affine_forward`].
    pub fn affine_forward_into(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        out: &mut Tensor,
    ) -> Result<AffineCache> {
        for t in [x, w, b, &*out] {
            self.check_owner(t)?;
        }
        let (n, d, m) = Self::affine_dims(x, w)?;
        b.expect_shape("affine_forward bias (M,)", &[m])?;
        out.expect_shape("affine_forward output (N, M)", &[n, m])?;
        self.matmul(
            (n, m, d),
            Operand {
                t: x,
                stride_row: d,
                stride_k: 1,
            },
            Operand {
                t: w,
                stride_row: m,
                stride_k: 1,
            },
            Some(b),
            out,
        )?;
        Ok(AffineCache {
            x: x.clone(),
            w: w.clone(),
        })
    }

    /// The affine backward pass: `dx = dout @ w.T` (shaped like `x`), `dw = x2d.T @ dout`,
    /// `db = sum_N dout` (the deterministic reduction).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `dout` is not `(N, M)`, [`Error::ForeignTensor`].
    pub fn affine_backward(&self, dout: &Tensor, cache: &AffineCache) -> Result<AffineGrads> {
        let (_, _, m) = Self::affine_dims(&cache.x, &cache.w)?;
        let mut grads = AffineGrads {
            dx: self.alloc("affine dx", cache.x.shape(), false)?,
            dw: self.alloc("affine dw", cache.w.shape(), false)?,
            db: self.alloc("affine db", &[m], false)?,
        };
        self.affine_backward_into(dout, cache, &mut grads)?;
        Ok(grads)
    }

    /// [`Gpu::affine_backward`] into existing gradient tensors.
    ///
    /// # Errors
    /// As [`Gpu::affine_backward`].
    pub fn affine_backward_into(
        &self,
        dout: &Tensor,
        cache: &AffineCache,
        grads: &mut AffineGrads,
    ) -> Result<()> {
        let AffineGrads { dx, dw, db } = grads;
        for t in [dout, &cache.x, &cache.w, &*dx, &*dw, &*db] {
            self.check_owner(t)?;
        }
        let (n, d, m) = Self::affine_dims(&cache.x, &cache.w)?;
        dout.expect_shape("affine_backward dout (N, M)", &[n, m])?;
        dx.expect_shape("affine_backward dx", cache.x.shape())?;
        dw.expect_shape("affine_backward dw", &[d, m])?;
        db.expect_shape("affine_backward db", &[m])?;
        // dx (N, D) = dout (N, M) @ w.T
        self.matmul(
            (n, d, m),
            Operand {
                t: dout,
                stride_row: m,
                stride_k: 1,
            },
            Operand {
                t: &cache.w,
                stride_row: 1,
                stride_k: m,
            },
            None,
            dx,
        )?;
        // dw (D, M) = x2d.T @ dout
        self.matmul(
            (d, m, n),
            Operand {
                t: &cache.x,
                stride_row: 1,
                stride_k: d,
            },
            Operand {
                t: dout,
                stride_row: m,
                stride_k: 1,
            },
            None,
            dw,
        )?;
        self.row_sums(dout, None, (1, n, m), false, Some(db))?;
        Ok(())
    }

    /// Softmax cross-entropy of `scores` `(N, K)` against `labels` (class indices or one-hot
    /// rows): the loss `mean_N(-log softmax(scores)[label])`, computed stably, as a `(1,)` tensor
    /// that stays on the GPU, and `dscores = (softmax(scores) - onehot) / N`.
    ///
    /// ```no_run
    /// use wgpu_cnn::Labels;
    /// let gpu = wgpu_cnn::Gpu::new()?;
    /// let scores = gpu.upload(&ndarray::arr2(&[[0.0f32, 0.0], [0.0, 0.0]]))?;
    /// let (loss, _dscores) = gpu.softmax_loss(&scores, &Labels::Indices(vec![0, 1]))?;
    /// let loss: ndarray::Array1<f32> = gpu.download(&loss)?;
    /// assert!((loss[0] - 2f32.ln()).abs() < 1e-6);
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Rank`] unless `scores` is `(N, K)`, [`Error::ShapeMismatch`] when the labels do
    /// not match `N` (or `(N, K)`), [`Error::LabelOutOfRange`], [`Error::ForeignTensor`].
    pub fn softmax_loss(&self, scores: &Tensor, labels: &Labels) -> Result<(Tensor, Tensor)> {
        self.check_owner(scores)?;
        let [n, k] = <[usize; 2]>::try_from(scores.shape()).map_err(|_| Error::Rank {
            what: "softmax_loss scores (N, K)",
            expected: 2,
            shape: scores.shape().to_vec(),
        })?;
        if n == 0 || k == 0 {
            return Err(Error::EmptyTensor {
                what: "softmax_loss scores",
                shape: vec![n, k],
            });
        }
        let targets = labels.targets(n, k)?;
        self.check_loops(
            "softmax_loss (one row per thread)",
            n as u64,
            3 * k as u64 + 1,
            &[scores.shape()],
        )?;
        let mut y = self.alloc("softmax targets", &[n, k], false)?;
        self.write(&mut y, &targets)?;
        let dscores = self.alloc("softmax dscores", &[n, k], false)?;
        let row_loss = self.alloc("softmax row losses", &[n], false)?;
        let p = SoftmaxParams {
            rows: count(n)?,
            k: count(k)?,
            inv_n: 1.0 / n as f32,
        };
        self.launch(
            &SOFTMAX,
            &[],
            1,
            &[
                Arg::Whole(scores),
                Arg::Whole(&y),
                Arg::Whole(&dscores),
                Arg::Whole(&row_loss),
            ],
            |_| Ok((p, u64::from(p.rows).div_ceil(WG))),
        )?;
        let loss = self.row_sums(&row_loss, None, (1, n, 1), false, None)?;
        Ok((loss, dscores))
    }
}
