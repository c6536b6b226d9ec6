//! Layer parameters and the one place where output shapes are computed.
//!
//! Every path (CPU reference, GPU host code, tests, benchmark) asks [`ConvGeometry`] and
//! [`PoolGeometry`] for sizes; nothing else repeats the formula
//! `n_out = floor((n_in + pad_before + pad_after - f) / stride) + 1`.
//!
//! Every size here is computed with checked arithmetic and never wraps: a padded extent that
//! does not fit in `usize` is [`Error::SizeOverflow`], a kernel larger than the padded input is
//! [`Error::KernelTooLarge`]. Whether the arrays of a valid geometry fit in memory is checked
//! where they are allocated (the CPU reference returns [`Error::TooLarge`] before allocating).

use crate::error::{Error, Result};

/// Zero padding around height and width: `top`, `bottom`, `left`, `right`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Padding {
    /// Rows of zeros above.
    pub top: usize,
    /// Rows of zeros below.
    pub bottom: usize,
    /// Columns of zeros to the left.
    pub left: usize,
    /// Columns of zeros to the right.
    pub right: usize,
}

impl Padding {
    /// The same padding on all four sides (the integer `pad` of the numpy exercises).
    pub const fn uniform(pad: usize) -> Self {
        Self::explicit(pad, pad, pad, pad)
    }

    /// `pad_h` above and below, `pad_w` left and right.
    pub const fn symmetric(pad_h: usize, pad_w: usize) -> Self {
        Self::explicit(pad_h, pad_h, pad_w, pad_w)
    }

    /// Asymmetric padding, in the order `top, bottom, left, right`.
    pub const fn explicit(top: usize, bottom: usize, left: usize, right: usize) -> Self {
        Self {
            top,
            bottom,
            left,
            right,
        }
    }

    /// TensorFlow's `SAME` padding: the output has `ceil(n_in / stride)` rows and columns; the
    /// total padding `max((n_out - 1) * stride + f - n_in, 0)` is split with the odd one at the
    /// bottom/right. `input`, `kernel` and `stride` are `(h, w)` pairs.
    ///
    /// Never overflows and never panics, for any arguments: the total is computed as
    /// `f - (n_in - (n_out - 1) * stride)` (or 0 when that is negative), where
    /// `(n_out - 1) * stride < n_in`, so every intermediate is at most `max(n_in, f)`; the total
    /// is at most `f`. The padded extent `n_in + total` that it implies can still exceed
    /// `usize::MAX` for a huge input and kernel: [`ConvGeometry::new`] reports that as
    /// [`Error::SizeOverflow`]. A stride of 0 is treated as 1 here (the geometry rejects it with
    /// [`Error::ZeroStride`]); an input of 0 gives a total of `f`.
    ///
    /// ```
    /// use wgpu_cnn::Padding;
    /// // A 64x64 input, 4x4 kernel, stride 1 -> top 1, bottom 2.
    /// assert_eq!(Padding::same((64, 64), (4, 4), (1, 1)), Padding::explicit(1, 2, 1, 2));
    /// // Huge sizes do not wrap.
    /// let p = Padding::same((usize::MAX, 1), (usize::MAX, 1), (1, 1));
    /// assert_eq!((p.top, p.bottom), (usize::MAX / 2, usize::MAX - usize::MAX / 2 - 1));
    /// ```
    pub fn same(input: (usize, usize), kernel: (usize, usize), stride: (usize, usize)) -> Self {
        fn axis(n: usize, f: usize, s: usize) -> (usize, usize) {
            let s = s.max(1);
            let out = n.div_ceil(s);
            // The rows from the last window's start to the end of the input: at least 1 when
            // n > 0, since (out - 1) * s < n; 0 when n = 0.
            let rest = n - (out.max(1) - 1) * s;
            let total = f.saturating_sub(rest);
            (total / 2, total - total / 2)
        }
        let (top, bottom) = axis(input.0, kernel.0, stride.0);
        let (left, right) = axis(input.1, kernel.1, stride.1);
        Self::explicit(top, bottom, left, right)
    }
}

impl From<usize> for Padding {
    /// The numpy exercises' integer `pad`: the same on all four sides.
    fn from(pad: usize) -> Self {
        Self::uniform(pad)
    }
}

/// Convolution hyperparameters: stride per axis and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvParams {
    /// Stride `(h, w)`.
    pub stride: (usize, usize),
    /// Zero padding.
    pub padding: Padding,
}

impl ConvParams {
    /// The numpy exercises' `{"stride": stride, "pad": pad}`: the same on both axes and all
    /// sides.
    pub const fn new(stride: usize, pad: usize) -> Self {
        Self {
            stride: (stride, stride),
            padding: Padding::uniform(pad),
        }
    }

    /// A different stride per axis, `(h, w)`.
    pub const fn with_stride(mut self, stride_h: usize, stride_w: usize) -> Self {
        self.stride = (stride_h, stride_w);
        self
    }

    /// Explicit (possibly asymmetric) padding.
    pub const fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }
}

/// Pooling mode, as in the numpy exercises' `mode = "max" | "average"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolMode {
    /// Maximum over the window.
    Max,
    /// Mean over the window.
    Average,
}

/// Where max-pool backward sends the gradient when several elements equal the window maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Ties {
    /// Every element equal to the maximum receives the gradient (the numpy exercises'
    /// `x == np.max(x)` mask).
    #[default]
    EveryMax,
    /// Only the first maximum in row-major window order receives it (TensorFlow's, JAX's and
    /// PyTorch's choice).
    FirstMax,
}

/// Pooling hyperparameters: window, stride, mode and tie rule. No padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolParams {
    /// Window `(f_h, f_w)`.
    pub kernel: (usize, usize),
    /// Stride `(h, w)`.
    pub stride: (usize, usize),
    /// Max or average.
    pub mode: PoolMode,
    /// Tie rule for max-pool backward.
    pub ties: Ties,
    /// Padding around height and width, none by default. As in TensorFlow, padding never wins
    /// a maximum and is not counted in an average; each side must be smaller than the window.
    pub padding: Padding,
}

impl PoolParams {
    /// The numpy exercises' `{"f": f, "stride": stride}` with a mode; ties go to every maximum.
    pub const fn new(f: usize, stride: usize, mode: PoolMode) -> Self {
        Self {
            kernel: (f, f),
            stride: (stride, stride),
            mode,
            ties: Ties::EveryMax,
            padding: Padding::uniform(0),
        }
    }

    /// Padding around the input ([`Padding::same`] for TensorFlow's `SAME`): padded positions
    /// never win a maximum and are not counted in an average.
    pub const fn with_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// A rectangular window `(f_h, f_w)`.
    pub const fn with_kernel(mut self, f_h: usize, f_w: usize) -> Self {
        self.kernel = (f_h, f_w);
        self
    }

    /// A different stride per axis `(h, w)`.
    pub const fn with_stride(mut self, stride_h: usize, stride_w: usize) -> Self {
        self.stride = (stride_h, stride_w);
        self
    }

    /// The tie rule for max-pool backward.
    pub const fn with_ties(mut self, ties: Ties) -> Self {
        self.ties = ties;
        self
    }
}

/// The input range `start..end` of window `o` along one axis: `o * s - before .. + f`, clipped
/// to `0..n`.
fn window_range(o: usize, s: usize, before: usize, f: usize, n: usize) -> (usize, usize) {
    let start = o.saturating_mul(s);
    let end = start.saturating_add(f).saturating_sub(before).min(n);
    (start.saturating_sub(before).min(end), end)
}

/// Output size along one axis of `padded` rows, `floor((padded - f) / s) + 1`, or `None` when
/// the kernel does not fit. `s >= 1`; cannot overflow (`room / s <= padded - 1` when `f >= 1`,
/// and `checked_add` covers `f = 0`).
fn out_size(padded: usize, f: usize, s: usize) -> Option<usize> {
    let room = padded.checked_sub(f)?;
    room.checked_div(s)?.checked_add(1)
}

/// `n + before + after`, or [`Error::SizeOverflow`] naming the operands and the input shape.
/// Also used by the CPU reference's `zero_pad`.
pub(crate) fn padded_extent(
    what: &'static str,
    n: usize,
    before: usize,
    after: usize,
    input: &[usize],
) -> Result<usize> {
    n.checked_add(before)
        .and_then(|n| n.checked_add(after))
        .ok_or_else(|| Error::SizeOverflow {
            what,
            operands: vec![n, before, after],
            input: input.to_vec(),
        })
}

fn check_nonempty(what: &'static str, shape: &[usize]) -> Result<()> {
    if shape.contains(&0) {
        return Err(Error::EmptyTensor {
            what,
            shape: shape.to_vec(),
        });
    }
    Ok(())
}

/// Every size of one convolution: input, weights, padding, output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    /// Batch size `m`.
    pub m: usize,
    /// Input height `n_H_prev`.
    pub in_h: usize,
    /// Input width `n_W_prev`.
    pub in_w: usize,
    /// Input channels `n_C_prev`.
    pub c_in: usize,
    /// Kernel height.
    pub f_h: usize,
    /// Kernel width.
    pub f_w: usize,
    /// Output channels `n_C`.
    pub c_out: usize,
    /// Stride along height.
    pub s_h: usize,
    /// Stride along width.
    pub s_w: usize,
    /// Padding.
    pub pad: Padding,
    /// Output height `n_H`.
    pub out_h: usize,
    /// Output width `n_W`.
    pub out_w: usize,
}

impl ConvGeometry {
    /// Checks an input `(m, n_H_prev, n_W_prev, n_C_prev)` and weights `(f_h, f_w, n_C_prev, n_C)`
    /// against `params` and computes the output size.
    ///
    /// # Errors
    /// [`Error::ZeroStride`], [`Error::ZeroKernel`], [`Error::EmptyTensor`],
    /// [`Error::ChannelMismatch`]; [`Error::SizeOverflow`] when `n_H + top + bottom` or
    /// `n_W + left + right` exceeds `usize::MAX`; [`Error::KernelTooLarge`] when the kernel is
    /// larger than the padded input. Never panics.
    ///
    /// ```
    /// use wgpu_cnn::{ConvGeometry, ConvParams, Error, Padding};
    ///
    /// let g = ConvGeometry::new([10, 4, 4, 3], [2, 2, 3, 8], ConvParams::new(2, 2))?;
    /// assert_eq!(g.output_shape(), [10, 4, 4, 8]);
    /// // 4 + 0 + (usize::MAX - 3) rows do not fit in usize.
    /// let huge = ConvParams::new(1, 0).with_padding(Padding::explicit(0, usize::MAX - 3, 0, 0));
    /// assert!(matches!(
    ///     ConvGeometry::new([1, 4, 4, 3], [2, 2, 3, 8], huge),
    ///     Err(Error::SizeOverflow { .. })
    /// ));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(input: [usize; 4], weights: [usize; 4], params: ConvParams) -> Result<Self> {
        let (s_h, s_w) = params.stride;
        if s_h == 0 || s_w == 0 {
            return Err(Error::ZeroStride(s_h, s_w));
        }
        let [f_h, f_w, w_c_in, c_out] = weights;
        if f_h == 0 || f_w == 0 {
            return Err(Error::ZeroKernel(f_h, f_w));
        }
        check_nonempty("input", &input)?;
        check_nonempty("weights", &weights)?;
        let [m, in_h, in_w, c_in] = input;
        if c_in != w_c_in {
            return Err(Error::ChannelMismatch { input, weights });
        }
        let pad = params.padding;
        let padded_h = padded_extent(
            "padded height n_H + top + bottom",
            in_h,
            pad.top,
            pad.bottom,
            &input,
        )?;
        let padded_w = padded_extent(
            "padded width n_W + left + right",
            in_w,
            pad.left,
            pad.right,
            &input,
        )?;
        let too_large = || Error::KernelTooLarge {
            input,
            kernel: [f_h, f_w],
            padded: [padded_h, padded_w],
        };
        let out_h = out_size(padded_h, f_h, s_h).ok_or_else(too_large)?;
        let out_w = out_size(padded_w, f_w, s_w).ok_or_else(too_large)?;
        Ok(Self {
            m,
            in_h,
            in_w,
            c_in,
            f_h,
            f_w,
            c_out,
            s_h,
            s_w,
            pad,
            out_h,
            out_w,
        })
    }

    /// Input shape `(m, n_H_prev, n_W_prev, n_C_prev)`.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.m, self.in_h, self.in_w, self.c_in]
    }

    /// Weight shape `(f_h, f_w, n_C_prev, n_C)`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.f_h, self.f_w, self.c_in, self.c_out]
    }

    /// Output shape `(m, n_H, n_W, n_C)`.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.m, self.out_h, self.out_w, self.c_out]
    }

    /// Padded input shape `(m, n_H_prev + top + bottom, n_W_prev + left + right, n_C_prev)`.
    ///
    /// Exact for a geometry made by [`ConvGeometry::new`], which checks that both sums fit in
    /// `usize`. The fields are public, so a hand-built geometry may not fit: its sums saturate
    /// at `usize::MAX` rather than wrap.
    pub fn padded_shape(&self) -> [usize; 4] {
        [
            self.m,
            self.in_h
                .saturating_add(self.pad.top)
                .saturating_add(self.pad.bottom),
            self.in_w
                .saturating_add(self.pad.left)
                .saturating_add(self.pad.right),
            self.c_in,
        ]
    }

    /// Multiply-adds of the forward pass, times two: `2 * m * n_H * n_W * n_C * f_h * f_w * n_C_prev`.
    ///
    /// Computed in `f64` (each factor converted first), so it never wraps; beyond 2^53 it is
    /// rounded.
    pub fn forward_flops(&self) -> f64 {
        [
            self.m, self.out_h, self.out_w, self.c_out, self.f_h, self.f_w, self.c_in,
        ]
        .iter()
        .fold(2.0, |flops, &n| flops * n as f64)
    }
}

/// Checks a bias against `c_out` channels: `(1, 1, 1, n_C)` or `(n_C,)`.
///
/// # Errors
/// [`Error::BiasShape`] naming the shape given.
pub fn check_bias(shape: &[usize], c_out: usize) -> Result<()> {
    let ok = match shape {
        [c] => *c == c_out,
        [1, 1, 1, c] => *c == c_out,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::BiasShape {
            bias: shape.to_vec(),
            channels: c_out,
        })
    }
}

/// Every size of one pooling layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolGeometry {
    /// Batch size.
    pub m: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Channels (unchanged by pooling).
    pub c: usize,
    /// Window height.
    pub f_h: usize,
    /// Window width.
    pub f_w: usize,
    /// Stride along height.
    pub s_h: usize,
    /// Stride along width.
    pub s_w: usize,
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Padding (each side smaller than the window).
    pub pad: Padding,
}

impl PoolGeometry {
    /// Checks an input `(m, n_H_prev, n_W_prev, n_C)` against `params`.
    ///
    /// # Errors
    /// [`Error::ZeroStride`], [`Error::ZeroKernel`], [`Error::EmptyTensor`],
    /// [`Error::KernelTooLarge`], [`Error::PoolPadding`], [`Error::SizeOverflow`]. Never panics.
    pub fn new(input: [usize; 4], params: PoolParams) -> Result<Self> {
        let (s_h, s_w) = params.stride;
        if s_h == 0 || s_w == 0 {
            return Err(Error::ZeroStride(s_h, s_w));
        }
        let (f_h, f_w) = params.kernel;
        if f_h == 0 || f_w == 0 {
            return Err(Error::ZeroKernel(f_h, f_w));
        }
        check_nonempty("input", &input)?;
        let [m, in_h, in_w, c] = input;
        let pad = params.padding;
        if pad.top >= f_h || pad.bottom >= f_h || pad.left >= f_w || pad.right >= f_w {
            return Err(Error::PoolPadding {
                padding: [pad.top, pad.bottom, pad.left, pad.right],
                kernel: [f_h, f_w],
            });
        }
        // Padding is smaller than the window, so these sums cannot overflow past what the
        // window check allows; checked anyway.
        let padded_h = padded_extent(
            "padded height n_H + top + bottom",
            in_h,
            pad.top,
            pad.bottom,
            &input,
        )?;
        let padded_w = padded_extent(
            "padded width n_W + left + right",
            in_w,
            pad.left,
            pad.right,
            &input,
        )?;
        let too_large = || Error::KernelTooLarge {
            input,
            kernel: [f_h, f_w],
            padded: [padded_h, padded_w],
        };
        let out_h = out_size(padded_h, f_h, s_h).ok_or_else(too_large)?;
        let out_w = out_size(padded_w, f_w, s_w).ok_or_else(too_large)?;
        Ok(Self {
            m,
            in_h,
            in_w,
            c,
            f_h,
            f_w,
            s_h,
            s_w,
            out_h,
            out_w,
            pad,
        })
    }

    /// The rows `start..end` of the input that window `o` covers along the height (`o < out_h`):
    /// the window starts at `o * s_h - top` and is clipped to the input (never empty).
    pub fn rows(&self, o: usize) -> (usize, usize) {
        window_range(o, self.s_h, self.pad.top, self.f_h, self.in_h)
    }

    /// The columns that window `o` covers along the width (see [`PoolGeometry::rows`]).
    pub fn cols(&self, o: usize) -> (usize, usize) {
        window_range(o, self.s_w, self.pad.left, self.f_w, self.in_w)
    }

    /// Input shape `(m, n_H_prev, n_W_prev, n_C)`.
    pub fn input_shape(&self) -> [usize; 4] {
        [self.m, self.in_h, self.in_w, self.c]
    }

    /// Output shape `(m, n_H, n_W, n_C)`.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.m, self.out_h, self.out_w, self.c]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // Stride 2, odd input: out = ceil(5/2) = 3, total = (3-1)*2 + 3 - 5 = 2.
        assert_eq!(
            Padding::same((5, 6), (3, 3), (2, 2)),
            Padding::explicit(1, 1, 0, 1)
        );
        // Kernel smaller than stride needs no padding.
        assert_eq!(Padding::same((8, 8), (1, 1), (2, 2)), Padding::uniform(0));
    }

    #[test]
    fn conv_geometry_computes_seed_shape() {
        let g = ConvGeometry::new([10, 4, 4, 3], [2, 2, 3, 8], ConvParams::new(2, 2)).unwrap();
        assert_eq!(g.output_shape(), [10, 4, 4, 8]);
        assert_eq!(g.padded_shape(), [10, 8, 8, 3]);
    }

    /// `max((ceil(n / s) - 1) * s + f - n, 0)` split top/bottom, in `i128` where nothing can
    /// overflow for `usize` operands.
    fn same_reference(n: usize, f: usize, s: usize) -> (u128, u128) {
        let (n, f, s) = (n as i128, f as i128, s.max(1) as i128);
        let out = (n + s - 1) / s;
        let total = ((out.max(1) - 1) * s + f - n).max(0);
        ((total / 2) as u128, (total - total / 2) as u128)
    }

    #[test]
    fn same_padding_never_wraps_for_huge_inputs_kernels_and_strides() {
        let m = usize::MAX;
        let values = [
            0,
            1,
            2,
            3,
            7,
            64,
            1 << 20,
            1 << 32,
            m / 2,
            m / 2 + 1,
            m - 3,
            m - 1,
            m,
        ];
        for &n in &values {
            for &f in &values {
                for &s in &values {
                    let p = Padding::same((n, 5), (f, 3), (s, 2));
                    assert_eq!(
                        (p.top as u128, p.bottom as u128),
                        same_reference(n, f, s),
                        "n {n}, f {f}, s {s}"
                    );
                    assert_eq!((p.left, p.right), (1, 1));
                }
            }
        }
    }

    #[test]
    fn explicit_padding_that_overflows_is_a_size_overflow_not_a_wrap() {
        // 4 + 0 + (usize::MAX - 3) = usize::MAX + 1 would wrap to 0.
        let params = ConvParams::new(1, 0).with_padding(Padding::explicit(0, usize::MAX - 3, 0, 0));
        assert_eq!(
            ConvGeometry::new([1, 4, 4, 3], [2, 2, 3, 8], params),
            Err(Error::SizeOverflow {
                what: "padded height n_H + top + bottom",
                operands: vec![4, 0, usize::MAX - 3],
                input: vec![1, 4, 4, 3],
            })
        );
        let params = ConvParams::new(1, 0).with_padding(Padding::explicit(0, 0, usize::MAX, 1));
        assert_eq!(
            ConvGeometry::new([1, 4, 4, 3], [2, 2, 3, 8], params),
            Err(Error::SizeOverflow {
                what: "padded width n_W + left + right",
                operands: vec![4, usize::MAX, 1],
                input: vec![1, 4, 4, 3],
            })
        );
        // The largest padding that fits: the padded height is exactly usize::MAX.
        let params =
            ConvParams::new(usize::MAX, 0).with_padding(Padding::explicit(0, usize::MAX - 4, 0, 0));
        let g = ConvGeometry::new([1, 4, 4, 3], [2, 2, 3, 8], params).unwrap();
        assert_eq!(g.padded_shape(), [1, usize::MAX, 4, 3]);
        assert_eq!(g.output_shape(), [1, 1, 1, 8]);
    }

    #[test]
    fn same_padding_on_a_huge_input_and_kernel_is_a_size_overflow() {
        // n = f = usize::MAX, stride 1: the total padding is usize::MAX - 1, which fits, but
        // n + total does not.
        let pad = Padding::same((usize::MAX, 4), (usize::MAX, 1), (1, 1));
        assert_eq!(pad.top + pad.bottom, usize::MAX - 1);
        let params = ConvParams::new(1, 0).with_padding(pad);
        assert!(matches!(
            ConvGeometry::new([1, usize::MAX, 4, 1], [usize::MAX, 1, 1, 1], params),
            Err(Error::SizeOverflow { .. })
        ));
        // A huge stride keeps the padding small enough: ceil(n / s) = 1 output row.
        let pad = Padding::same((usize::MAX, 4), (3, 1), (usize::MAX, 1));
        let params = ConvParams::new(1, 0)
            .with_stride(usize::MAX, 1)
            .with_padding(pad);
        let g = ConvGeometry::new([1, usize::MAX, 4, 1], [3, 1, 1, 1], params).unwrap();
        assert_eq!(g.output_shape(), [1, 1, 4, 1]);
    }

    #[test]
    fn forward_flops_does_not_wrap() {
        let g = ConvGeometry::new(
            [usize::MAX, 1, 1, 1],
            [1, 1, 1, usize::MAX],
            ConvParams::new(1, 0),
        )
        .unwrap();
        let expected = 2.0 * (usize::MAX as f64) * (usize::MAX as f64);
        assert_eq!(g.forward_flops(), expected);
        assert!(g.forward_flops() > 1e38);
        let g = ConvGeometry::new([10, 4, 4, 3], [2, 2, 3, 8], ConvParams::new(2, 2)).unwrap();
        assert_eq!(g.forward_flops(), 2.0 * (10 * 4 * 4 * 8 * 2 * 2 * 3) as f64);
    }

    #[test]
    fn padded_shape_of_a_hand_built_geometry_saturates() {
        let mut g = ConvGeometry::new([1, 4, 4, 3], [2, 2, 3, 8], ConvParams::new(1, 0)).unwrap();
        g.pad = Padding::explicit(usize::MAX, 1, 2, 3);
        assert_eq!(g.padded_shape(), [1, usize::MAX, 9, 3]);
    }

    #[test]
    fn pool_geometry_with_huge_window_and_stride_does_not_overflow() {
        let m = usize::MAX;
        let p = PoolParams::new(1, 1, PoolMode::Max);
        let g = PoolGeometry::new([1, m, m, 1], p.with_kernel(m, 1).with_stride(m, 1)).unwrap();
        assert_eq!(g.output_shape(), [1, 1, m, 1]);
        let g = PoolGeometry::new([1, m, 4, 1], p.with_kernel(1, 2)).unwrap();
        assert_eq!(g.output_shape(), [1, m, 3, 1]);
        assert!(matches!(
            PoolGeometry::new([1, m - 1, 4, 1], p.with_kernel(m, 1)),
            Err(Error::KernelTooLarge { .. })
        ));
    }

    #[test]
    fn out_size_is_checked_at_the_edges() {
        assert_eq!(out_size(usize::MAX, 1, 1), Some(usize::MAX));
        assert_eq!(out_size(usize::MAX, usize::MAX, 1), Some(1));
        assert_eq!(out_size(usize::MAX, 1, usize::MAX), Some(1));
        assert_eq!(out_size(3, 4, 1), None);
        assert_eq!(out_size(3, 0, 1), Some(4));
        assert_eq!(out_size(usize::MAX, 0, 1), None);
        assert_eq!(out_size(3, 1, 0), None);
    }
}
