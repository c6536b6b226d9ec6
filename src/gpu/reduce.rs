//! Deterministic sums (`shaders/reduce.wgsl`): the one reduction primitive that every layer's
//! statistics and gradients use (conv `db`, batch and group norm statistics, `dgamma`, `dbeta`,
//! the affine `db`, the loss mean). A fixed-order tree in workgroup memory, applied block by
//! block until one block is left: bitwise the same on every run, whatever the batch chunking.

use super::kernels::{uniform, Access, Kernel};
use super::launch::count;
use super::{Arg, Gpu, Tensor};
use crate::error::Result;

uniform! {
    /// The uniform block of `reduce.wgsl`.
    struct ReduceParams {
        total: u32,
        rows: u32,
        cols: u32,
        blocks: u32,
        tiles: u32,
        stride_s: u32,
        stride_r: u32,
        stride_c: u32,
        a_off: u32,
        w_off: u32,
        out_off: u32,
        groups: u32,
        cg: u32,
        seg0: u32,
    }
}

pub(crate) const REDUCE: Kernel = Kernel::new::<ReduceParams>(
    "reduce.wgsl",
    include_str!("../../shaders/reduce.wgsl"),
    "reduce_rows",
    &[
        (1, Access::Read),
        (2, Access::Read),
        (3, Access::Write),
        (4, Access::Write),
        (5, Access::Read),
        (6, Access::Read),
    ],
);

/// `reduce.wgsl`'s serial fold of short columns (CPU adapters' last pass).
pub(crate) const FOLD: Kernel = REDUCE.entry("fold_rows", &[(1, Access::Read), (3, Access::Write)]);

uniform! {
    /// The uniform block of `reduce_vec4.wgsl`.
    struct Reduce4Params {
        total: u32,
        rows: u32,
        cols4: u32,
        blocks: u32,
        tiles: u32,
        a_off: u32,
        w_off: u32,
        out_off: u32,
        groups: u32,
        cg: u32,
        seg0: u32,
        parts: u32,
    }
}

pub(crate) const REDUCE4: Kernel = Kernel::new::<Reduce4Params>(
    "reduce_vec4.wgsl",
    include_str!("../../shaders/reduce_vec4.wgsl"),
    "reduce_rows4",
    &[
        (1, Access::Read),
        (2, Access::Read),
        (3, Access::Write),
        (4, Access::Write),
        (5, Access::Read),
        (6, Access::Read),
    ],
);

/// [`REDUCE4`] with no tree: every row lane's sums (CPU adapters; see `reduce_rows4_flat`).
pub(crate) const REDUCE4_FLAT: Kernel = REDUCE4.entry("reduce_rows4_flat", REDUCE4.bindings);

/// Longest column the last pass adds serially on CPU adapters ([`FOLD`]): the row lanes'
/// partial sums of a few blocks.
const FOLD_ROWS_MAX: usize = 4096;

/// Rows per block (`BLOCK` in the WGSL).
const BLOCK: usize = 4096;
/// Columns per workgroup (`CT` in the WGSL).
const CT: usize = 8;

/// Every specialisation of `reduce.wgsl`.
#[cfg(test)]
pub(crate) fn specializations() -> Vec<(Kernel, Vec<(&'static str, u32)>)> {
    let mut out = Vec::new();
    for spans in [0, 1] {
        for mode in 0..5 {
            out.push((REDUCE, vec![("MODE", mode), ("SPANS", spans)]));
        }
    }
    out.push((FOLD, vec![]));
    for mode in [0, 3, 4] {
        for ct4 in [1, 2, 4, 8] {
            for spans in [0, 1, 2, 4, 8].into_iter().filter(|&g| g <= 64 / ct4) {
                for kernel in [REDUCE4, REDUCE4_FLAT] {
                    out.push((kernel, vec![("CT4", ct4), ("MODE", mode), ("SPANS", spans)]));
                }
            }
        }
    }
    out
}

/// What is summed over the rows (the `MODE` of `reduce.wgsl`).
#[derive(Clone, Copy)]
pub(crate) enum Terms<'a> {
    /// `a`.
    Sum,
    /// `a * w`, `w` laid out like `a` (`a * a` with one load when `w` is `a`).
    Product(&'a Tensor),
    /// `a` into the first result and `a * xhat` into the second, in one pass, with
    /// `xhat = (x - mean) * inv_std` (a norm layer's normalised input, recomputed as its forward
    /// pass computed it; `x` laid out like `a`), the statistics per column (`groups = 0`) or per
    /// (image, group of `cg` columns).
    Normalised {
        x: &'a Tensor,
        mean: &'a Tensor,
        inv_std: &'a Tensor,
        groups: usize,
        cg: usize,
    },
    /// `d = a - shift` into the first result and `d^2` into the second, in one pass; the shift
    /// a value of `a` itself, the first of each statistic: `a[0, 0, c]` per column (`groups =
    /// 0`), `a[i, 0, g * cg]` per (image `i`, group `g` of `cg` columns). (`a` is also bound
    /// whole for it.)
    Shifted { groups: usize, cg: usize },
}

impl Terms<'_> {
    fn mode(&self, a: &Tensor) -> u32 {
        match self {
            Terms::Sum => 0,
            Terms::Product(w) if w.same_buffer(a) => 2,
            Terms::Product(_) => 1,
            Terms::Shifted { .. } => 3,
            Terms::Normalised { .. } => 4,
        }
    }
}

/// What [`Gpu::partial_sums`] leaves: `(segments, rows, cols)` partial sums per tensor (the
/// second for [`Terms::Shifted`] and [`Terms::Normalised`]); each column's sum is its rows
/// added in order. `rows` is 1 where the sums are complete.
pub(crate) struct Partials {
    pub first: Tensor,
    pub second: Option<Tensor>,
    pub segments: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Partials {
    /// The second tensor of a pair of sums ([`Terms::Shifted`], [`Terms::Normalised`]).
    pub fn pair(&self) -> Result<&Tensor> {
        self.second
            .as_ref()
            .ok_or_else(|| crate::Error::Kernel("a pair of sums without its second".into()))
    }
}

impl Gpu {
    /// The row lanes of `reduce_rows4_flat` (tiles of `ct4` vec4 columns) that get rows of a
    /// block of `rows`: the span groups that start below `rows`, `SPANS` lanes each (see
    /// `reduce_vec4.wgsl`).
    fn flat_parts(&self, ct4: usize, rows: usize) -> usize {
        let rl = 64 / ct4.max(1);
        let g = (self.spans4(ct4) as usize).max(1);
        let span = BLOCK / (rl / g);
        (rows.div_ceil(span) * g).clamp(1, rl)
    }

    /// `SPANS` of `reduce_vec4.wgsl` for tiles of `ct4` vec4 columns: 0 on GPUs; on CPU
    /// adapters, groups of row lanes that fill one SIMD group of lanes (a power of two that
    /// divides the row lanes).
    fn spans4(&self, ct4: usize) -> u32 {
        let q = self.quirks();
        if !q.reduce_spans {
            return 0;
        }
        let g = (q.stream_lanes as usize / ct4.max(1)).max(1);
        (1usize << g.ilog2()).min(64 / ct4.max(1)) as u32
    }

    /// Sums over the rows of each image: `a` holds `m` images of `(rows, cols)` (row-major,
    /// whatever its shape); with `w`, sums of `a * w` (same layout). The result is `(m, cols)`
    /// when `per_image`, else `(cols,)` (summed over the images too); written into `out` when
    /// given (any shape of that many elements), else into a new tensor.
    pub(crate) fn row_sums(
        &self,
        a: &Tensor,
        w: Option<&Tensor>,
        dims: (usize, usize, usize),
        per_image: bool,
        out: Option<&Tensor>,
    ) -> Result<Tensor> {
        let terms = w.map_or(Terms::Sum, Terms::Product);
        Ok(self.sums(a, terms, dims, per_image, out)?.0)
    }

    /// [`Gpu::row_sums`] of any [`Terms`]; the second result only for [`Terms::Shifted`] and
    /// [`Terms::Normalised`].
    pub(crate) fn sums(
        &self,
        a: &Tensor,
        terms: Terms,
        dims: (usize, usize, usize),
        per_image: bool,
        out: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let p = self.partial_sums(a, terms, dims, per_image, out)?;
        let p = self.fold_partials(p, out)?;
        Ok((p.first, p.second))
    }

    /// `p` with one row per segment: itself where it has, else folded by [`FOLD`] (the first
    /// tensor into `out` where given).
    pub(crate) fn fold_partials(&self, p: Partials, out: Option<&Tensor>) -> Result<Partials> {
        if p.rows == 1 {
            return Ok(p);
        }
        let fold = |t: &Tensor, out| {
            let next = self.output(out, p.segments * p.cols)?;
            self.fold(t, &next, (p.segments, p.rows, p.cols))?;
            Ok::<_, crate::Error>(next)
        };
        let first = fold(&p.first, out)?;
        let second = match &p.second {
            Some(t) => Some(fold(t, None)?),
            None => None,
        };
        Ok(Partials {
            first,
            second,
            rows: 1,
            ..p
        })
    }

    /// [`Gpu::sums`] up to its last pass: on CPU adapters the sums may be left as a few rows
    /// of partial sums per segment (`(segments, rows, cols)`), to be added serially in row
    /// order ([`FOLD`]'s order) by whoever reads them, which saves a dispatch; elsewhere, and
    /// when one pass sufficed, `rows` is 1 and the tensors (the first one `out` where given)
    /// hold the sums.
    pub(crate) fn partial_sums(
        &self,
        a: &Tensor,
        terms: Terms,
        (m, rows, cols): (usize, usize, usize),
        per_image: bool,
        out: Option<&Tensor>,
    ) -> Result<Partials> {
        let blocks = rows.div_ceil(BLOCK).max(1);
        let mode = terms.mode(a);
        let spans = u32::from(self.quirks().reduce_spans);
        let consts = [("MODE", mode), ("SPANS", spans)];
        let wanted = if per_image { m * cols } else { cols };
        let pair = matches!(terms, Terms::Normalised { .. } | Terms::Shifted { .. });
        let (groups, cg) = match terms {
            Terms::Shifted { groups, cg, .. } | Terms::Normalised { groups, cg, .. } => {
                (groups, cg)
            }
            _ => (0, 0),
        };
        // The vec4 kernel's shifts (MODE 3) are one per four columns: cg a multiple of 4.
        let vec4 =
            cols % 4 == 0 && mode != 1 && mode != 2 && (mode != 3 || groups == 0 || cg % 4 == 0);
        let ct4 = (cols / 4).next_power_of_two().min(8);
        // Partial sums per block that stage 1 leaves: 1 (the tree's), or those of the row lanes
        // that have rows (no more of them than rows, so the partials never outgrow the input).
        let lane_parts = self.flat_parts(ct4, rows.min(BLOCK));
        let flat = vec4 && self.quirks().reduce_spans && lane_parts <= rows.min(BLOCK);
        let parts = if flat { lane_parts } else { 1 };
        // Stage 1: per image, blocks of rows (chunks split at images, so blocks never move).
        let single = if per_image {
            blocks * parts == 1
        } else {
            m * blocks * parts == 1
        };
        let stage = |out: Option<&Tensor>| {
            if single {
                self.output(out, wanted)
            } else {
                self.alloc("row sums", &[m, blocks * parts, cols], false)
            }
        };
        let first = stage(out)?;
        let second = if pair { Some(stage(None)?) } else { None };
        let a4 = a.reshape(&[m, rows * cols])?;
        let first4 = first.reshape(&[m, blocks * parts * cols])?;
        let second4 = second
            .as_ref()
            .map(|t| t.reshape(&[m, blocks * parts * cols]))
            .transpose()?;
        let w4 = match terms {
            Terms::Product(w) | Terms::Normalised { x: w, .. } => {
                Some(w.reshape(&[m, rows * cols])?)
            }
            Terms::Shifted { .. } => Some(a4.clone()),
            Terms::Sum => None,
        };
        let batched_w = !matches!(terms, Terms::Shifted { .. });
        let base = ReduceParams {
            rows: count(rows)?,
            cols: count(cols)?,
            blocks: count(blocks)?,
            tiles: count(cols.div_ceil(CT))?,
            stride_s: count(rows * cols)?,
            stride_r: count(cols)?,
            stride_c: 1,
            groups: count(groups)?,
            cg: count(cg)?,
            ..ReduceParams::default()
        };
        let w_ref = w4.as_ref().unwrap_or(&a4);
        // The statistics of Terms::Normalised (unused bindings hold `a`).
        let (mean, inv) = match terms {
            Terms::Normalised { mean, inv_std, .. } => (Arg::Whole(mean), Arg::Whole(inv_std)),
            _ => (Arg::Batched(&a4), Arg::Batched(&a4)),
        };
        if vec4 {
            let cols4 = cols / 4;
            let tiles = cols4.div_ceil(ct4);
            let base4 = Reduce4Params {
                rows: count(rows)?,
                cols4: count(cols4)?,
                blocks: count(blocks)?,
                tiles: count(tiles)?,
                groups: count(groups)?,
                cg: count(cg)?,
                ..Reduce4Params::default()
            };
            // Binding 2 (scalar w) holds the group shifts or the means; binding 6 (vec4 w) the
            // column shifts or `x`; unused ones are bound to `a`.
            let (w_scalar, w_vec) = match terms {
                Terms::Shifted { .. } if groups > 0 => (Arg::Whole(w_ref), Arg::Batched(&a4)),
                Terms::Shifted { .. } => (Arg::Batched(&a4), Arg::Whole(w_ref)),
                Terms::Normalised { .. } => (mean, Arg::Batched(w_ref)),
                _ => (Arg::Batched(&a4), Arg::Batched(&a4)),
            };
            self.launch(
                if flat { &REDUCE4_FLAT } else { &REDUCE4 },
                &[
                    ("CT4", ct4 as u32),
                    ("MODE", mode),
                    ("SPANS", self.spans4(ct4)),
                ],
                m,
                &[
                    Arg::Batched(&a4),
                    w_scalar,
                    Arg::Batched(&first4),
                    Arg::Batched(second4.as_ref().unwrap_or(&first4)),
                    inv,
                    w_vec,
                ],
                |chunk| {
                    let p = Reduce4Params {
                        total: count(chunk.images * blocks * tiles)?,
                        a_off: chunk.offset(0) / 4,
                        w_off: chunk.offset(5) / 4,
                        out_off: chunk.offset(2) / 4,
                        seg0: count(chunk.first)?,
                        parts: count(parts)?,
                        ..base4
                    };
                    Ok((p, u64::from(p.total)))
                },
            )?;
        } else {
            self.launch(
                &REDUCE,
                &consts,
                m,
                &[
                    Arg::Batched(&a4),
                    if batched_w || w4.is_none() {
                        Arg::Batched(w_ref)
                    } else {
                        Arg::Whole(w_ref)
                    },
                    Arg::Batched(&first4),
                    Arg::Batched(second4.as_ref().unwrap_or(&first4)),
                    mean,
                    inv,
                ],
                |chunk| {
                    let p = ReduceParams {
                        total: count(chunk.images * blocks * cols.div_ceil(CT))?,
                        a_off: chunk.offset(0),
                        w_off: chunk.offset(1),
                        out_off: chunk.offset(2),
                        seg0: count(chunk.first)?,
                        ..base
                    };
                    Ok((p, u64::from(p.total)))
                },
            )?;
        }
        // Then the block sums, until one block per segment is left.
        let (segments, rows) = if per_image {
            (m, blocks * parts)
        } else {
            (1, m * blocks * parts)
        };
        let (first, left) = self.finish_sums(first, (segments, rows, cols), out)?;
        let second = match second {
            Some(t) => Some(self.finish_sums(t, (segments, rows, cols), None)?.0),
            None => None,
        };
        Ok(Partials {
            first,
            second,
            segments,
            rows: left,
            cols,
        })
    }

    /// Reduces block sums `(segments, rows, cols)` until one block per segment is left, or
    /// until a few rows are left that a serial fold adds best (CPU adapters; see
    /// [`Gpu::partial_sums`]). Returns the tensor and its rows per segment.
    fn finish_sums(
        &self,
        mut current: Tensor,
        (segments, mut rows, cols): (usize, usize, usize),
        out: Option<&Tensor>,
    ) -> Result<(Tensor, usize)> {
        while rows > 1 {
            let blocks = rows.div_ceil(BLOCK);
            if blocks == 1 && rows <= FOLD_ROWS_MAX && self.quirks().reduce_spans {
                return Ok((current, rows));
            }
            let next = if blocks == 1 {
                self.output(out, segments * cols)?
            } else {
                self.alloc("row sums", &[segments, blocks, cols], false)?
            };
            self.reduce_view(
                &current,
                &next,
                (segments, rows, cols),
                (rows * cols, cols, 1),
            )?;
            current = next;
            rows = blocks;
        }
        Ok((current, 1))
    }

    /// `out` `(segments, cols)`: the sums of `a` `(segments, rows, cols)` over its rows, each
    /// column added in row order by one thread ([`FOLD`]).
    fn fold(
        &self,
        a: &Tensor,
        out: &Tensor,
        (segments, rows, cols): (usize, usize, usize),
    ) -> Result<()> {
        let p = ReduceParams {
            total: count(segments * cols)?,
            rows: count(rows)?,
            cols: count(cols)?,
            stride_s: count(rows * cols)?,
            stride_r: count(cols)?,
            stride_c: 1,
            ..ReduceParams::default()
        };
        self.launch(&FOLD, &[], 1, &[Arg::Whole(a), Arg::Whole(out)], |_| {
            Ok((p, u64::from(p.total).div_ceil(64)))
        })
    }

    /// `out` if given (checked to hold `len` elements), else a new `(len,)` tensor.
    fn output(&self, out: Option<&Tensor>, len: usize) -> Result<Tensor> {
        match out {
            Some(t) if t.len() == len => Ok(t.clone()),
            Some(t) => Err(crate::Error::ShapeMismatch {
                what: "sum output",
                expected: vec![len],
                got: t.shape().to_vec(),
            }),
            None => self.alloc("sums", &[len], false),
        }
    }

    /// One pass of the reduction over a whole tensor `a` viewed as `(segments, rows, cols)` with
    /// `strides`, into `out` `(segments, ceil(rows / BLOCK), cols)`.
    pub(crate) fn reduce_view(
        &self,
        a: &Tensor,
        out: &Tensor,
        (segments, rows, cols): (usize, usize, usize),
        (stride_s, stride_r, stride_c): (usize, usize, usize),
    ) -> Result<()> {
        let blocks = rows.div_ceil(BLOCK).max(1);
        let p = ReduceParams {
            total: count(segments * blocks * cols.div_ceil(CT))?,
            rows: count(rows)?,
            cols: count(cols)?,
            blocks: count(blocks)?,
            tiles: count(cols.div_ceil(CT))?,
            stride_s: count(stride_s)?,
            stride_r: count(stride_r)?,
            stride_c: count(stride_c)?,
            ..ReduceParams::default()
        };
        self.launch(
            &REDUCE,
            &[("MODE", 0)],
            1,
            &[
                Arg::Whole(a),
                Arg::Whole(a),
                Arg::Whole(out),
                Arg::Whole(out),
                Arg::Whole(a),
                Arg::Whole(a),
            ],
            |_| Ok((p, u64::from(p.total))),
        )
    }
}
