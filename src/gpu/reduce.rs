//! Deterministic sums (`shaders/reduce.wgsl`): the one reduction primitive that every layer's
//! statistics and gradients use (conv `db`, batch and group norm statistics, `dgamma`, `dbeta`,
//! the affine `db`, the loss mean). A fixed-order tree in workgroup memory, applied block by
//! block until one block is left: bitwise the same on every run, whatever the batch chunking.

use super::kernels::{uniform, Kernel};
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
    }
}

pub(crate) const REDUCE: Kernel = Kernel::new::<ReduceParams>(
    "reduce.wgsl",
    include_str!("../../shaders/reduce.wgsl"),
    "reduce_rows",
    super::kernels::simple(2, 1),
);

/// Rows per block (`BLOCK` in the WGSL).
const BLOCK: usize = 1024;
/// Columns per workgroup (`CT` in the WGSL).
const CT: usize = 8;

/// Every specialisation of `reduce.wgsl`.
#[cfg(test)]
pub(crate) fn specializations() -> Vec<(Kernel, Vec<(&'static str, u32)>)> {
    vec![
        (REDUCE, vec![("PRODUCT", 0)]),
        (REDUCE, vec![("PRODUCT", 1)]),
        (REDUCE, vec![("PRODUCT", 2)]),
    ]
}

impl Gpu {
    /// Sums over the rows of each image: `a` holds `m` images of `(rows, cols)` (row-major,
    /// whatever its shape); with `w`, sums of `a * w` (same layout). The result is `(m, cols)`
    /// when `per_image`, else `(cols,)` (summed over the images too); written into `out` when
    /// given (any shape of that many elements), else into a new tensor.
    pub(crate) fn row_sums(
        &self,
        a: &Tensor,
        w: Option<&Tensor>,
        (m, rows, cols): (usize, usize, usize),
        per_image: bool,
        out: Option<&Tensor>,
    ) -> Result<Tensor> {
        let blocks = rows.div_ceil(BLOCK).max(1);
        // Sums of a, of a * w, or of a * a (one load) when w is a itself.
        let product = match w {
            None => 0,
            Some(w) if w.same_buffer(a) => 2,
            Some(_) => 1,
        };
        let consts = [("PRODUCT", product)];
        let wanted = if per_image { m * cols } else { cols };
        // Stage 1: per image, blocks of rows (chunks split at images, so blocks never move).
        let single = if per_image {
            blocks == 1
        } else {
            m * blocks == 1
        };
        let first = if single {
            self.output(out, wanted)?
        } else {
            self.alloc("row sums", &[m, blocks, cols], false)?
        };
        let a4 = a.reshape(&[m, rows * cols])?;
        let w4 = w.map(|w| w.reshape(&[m, rows * cols])).transpose()?;
        let first4 = first.reshape(&[m, blocks * cols])?;
        let base = ReduceParams {
            rows: count(rows)?,
            cols: count(cols)?,
            blocks: count(blocks)?,
            tiles: count(cols.div_ceil(CT))?,
            stride_s: count(rows * cols)?,
            stride_r: count(cols)?,
            stride_c: 1,
            ..ReduceParams::default()
        };
        self.launch(
            &REDUCE,
            &consts,
            m,
            &[
                Arg::Batched(&a4),
                Arg::Batched(w4.as_ref().unwrap_or(&a4)),
                Arg::Batched(&first4),
            ],
            |chunk| {
                let p = ReduceParams {
                    total: count(chunk.images * blocks * cols.div_ceil(CT))?,
                    a_off: chunk.offset(0),
                    w_off: chunk.offset(1),
                    out_off: chunk.offset(2),
                    ..base
                };
                Ok((p, u64::from(p.total)))
            },
        )?;
        // Then the block sums, until one block per segment is left.
        let (segments, mut rows) = if per_image {
            (m, blocks)
        } else {
            (1, m * blocks)
        };
        let mut current = first;
        while rows > 1 {
            let blocks = rows.div_ceil(BLOCK);
            let next = if blocks == 1 {
                self.output(out, wanted)?
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
        Ok(current)
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
            &[("PRODUCT", 0)],
            1,
            &[Arg::Whole(a), Arg::Whole(a), Arg::Whole(out)],
            |_| Ok((p, u64::from(p.total))),
        )
    }
}
