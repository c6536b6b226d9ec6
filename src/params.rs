//! Layer parameters and the one place where output shapes are computed.
//!
//! Every path (CPU reference, GPU host code, tests, benchmark) asks [`ConvGeometry`] and
//! [`PoolGeometry`] for sizes; nothing else repeats the formula
//! `n_out = floor((n_in + pad_before + pad_after - f) / stride) + 1`.

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
    /// The same padding on all four sides (the seeds' `pad`).
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
    /// ```
    /// use wgpu_cnn::Padding;
    /// // Seed 001's model: 64x64 input, 4x4 kernel, stride 1 -> top 1, bottom 2.
    /// assert_eq!(Padding::same((64, 64), (4, 4), (1, 1)), Padding::explicit(1, 2, 1, 2));
    /// ```
    pub fn same(input: (usize, usize), kernel: (usize, usize), stride: (usize, usize)) -> Self {
        fn axis(n: usize, f: usize, s: usize) -> (usize, usize) {
            let s = s.max(1);
            let out = n.div_ceil(s);
            let total = ((out.max(1) - 1) * s + f).saturating_sub(n);
            (total / 2, total - total / 2)
        }
        let (top, bottom) = axis(input.0, kernel.0, stride.0);
        let (left, right) = axis(input.1, kernel.1, stride.1);
        Self::explicit(top, bottom, left, right)
    }
}

impl From<usize> for Padding {
    /// The seeds' integer `pad`: the same on all four sides.
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
    /// The seeds' `{"stride": stride, "pad": pad}`: the same on both axes and all sides.
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

/// Pooling mode, as in the seeds.
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
    /// Every element equal to the maximum receives the gradient (the seeds' `x == max(x)` mask).
    #[default]
    EveryMax,
    /// Only the first maximum in row-major window order receives it (PyTorch's choice).
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
}

impl PoolParams {
    /// The seeds' `{"f": f, "stride": stride}` with a mode; ties go to every maximum.
    pub const fn new(f: usize, stride: usize, mode: PoolMode) -> Self {
        Self {
            kernel: (f, f),
            stride: (stride, stride),
            mode,
            ties: Ties::EveryMax,
        }
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

/// Output size along one axis, or `None` when the kernel does not fit.
fn out_size(n: usize, pad: usize, f: usize, s: usize) -> Option<usize> {
    let padded = n.checked_add(pad)?;
    padded.checked_sub(f).map(|room| room / s + 1)
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
    /// [`Error::ChannelMismatch`], [`Error::KernelTooLarge`].
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
        let too_large = || Error::KernelTooLarge {
            input,
            kernel: [f_h, f_w],
            padded: [
                in_h.saturating_add(pad.top).saturating_add(pad.bottom),
                in_w.saturating_add(pad.left).saturating_add(pad.right),
            ],
        };
        let pad_h = pad.top.checked_add(pad.bottom).ok_or_else(too_large)?;
        let pad_w = pad.left.checked_add(pad.right).ok_or_else(too_large)?;
        let out_h = out_size(in_h, pad_h, f_h, s_h).ok_or_else(too_large)?;
        let out_w = out_size(in_w, pad_w, f_w, s_w).ok_or_else(too_large)?;
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
    pub fn padded_shape(&self) -> [usize; 4] {
        [
            self.m,
            self.in_h + self.pad.top + self.pad.bottom,
            self.in_w + self.pad.left + self.pad.right,
            self.c_in,
        ]
    }

    /// Multiply-adds of the forward pass, times two: `2 * m * n_H * n_W * n_C * f_h * f_w * n_C_prev`.
    pub fn forward_flops(&self) -> f64 {
        2.0 * (self.m * self.out_h * self.out_w * self.c_out) as f64
            * (self.f_h * self.f_w * self.c_in) as f64
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
}

impl PoolGeometry {
    /// Checks an input `(m, n_H_prev, n_W_prev, n_C)` against `params`.
    ///
    /// # Errors
    /// [`Error::ZeroStride`], [`Error::ZeroKernel`], [`Error::EmptyTensor`],
    /// [`Error::KernelTooLarge`].
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
        let too_large = || Error::KernelTooLarge {
            input,
            kernel: [f_h, f_w],
            padded: [in_h, in_w],
        };
        let out_h = out_size(in_h, 0, f_h, s_h).ok_or_else(too_large)?;
        let out_w = out_size(in_w, 0, f_w, s_w).ok_or_else(too_large)?;
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
        })
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
}
