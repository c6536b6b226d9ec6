//! [`Tensor`]: an `f32` buffer on one [`Gpu`] and its shape.

use std::sync::Arc;

use super::memory::Block;
use super::Gpu;
use crate::error::{Error, Result};

/// Data living on one [`Gpu`]: `f32`s in row-major order, and a shape. Cheap to clone: clones
/// share the buffer, so an op that writes into a tensor (the `*_into` ops, [`Gpu::write`], an
/// optimizer step) is seen through every clone, as a numpy array updated in place is seen
/// through every reference to it. Dropping the last clone gives the buffer back to the `Gpu`'s
/// pool for the next tensor of that size.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) gpu: Gpu,
    pub(crate) block: Arc<Block>,
    pub(crate) shape: Vec<usize>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape)
            .finish()
    }
}

impl Tensor {
    /// The shape, e.g. `(m, n_H, n_W, n_C)` for activations.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The [`Gpu`] the tensor lives on.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Size in bytes of the data.
    pub fn byte_len(&self) -> u64 {
        self.len() as u64 * 4
    }

    /// Whether `self` and `other` are the same buffer (clones of one tensor).
    pub fn same_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.block, &other.block)
    }

    /// The same data with another shape of as many elements (no copy: the result shares the
    /// buffer, like `ndarray`'s `into_shape` on a standard-layout array).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the element counts differ.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let len = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if len != Some(self.len()) {
            return Err(Error::ShapeMismatch {
                what: "reshape needs as many elements",
                expected: self.shape.clone(),
                got: shape.to_vec(),
            });
        }
        Ok(Tensor {
            gpu: self.gpu.clone(),
            block: self.block.clone(),
            shape: shape.to_vec(),
        })
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.block.buffer
    }

    pub(crate) fn buffer_id(&self) -> u64 {
        self.block.id
    }

    /// The shape as `(m, n_H, n_W, n_C)`, or [`Error::Rank`].
    pub(crate) fn dims4(&self, what: &'static str) -> Result<[usize; 4]> {
        <[usize; 4]>::try_from(self.shape.as_slice()).map_err(|_| Error::Rank {
            what,
            expected: 4,
            shape: self.shape.clone(),
        })
    }

    /// Errors unless the tensor has exactly `shape`.
    pub(crate) fn expect_shape(&self, what: &'static str, shape: &[usize]) -> Result<()> {
        if self.shape == shape {
            Ok(())
        } else {
            Err(Error::ShapeMismatch {
                what,
                expected: shape.to_vec(),
                got: self.shape.clone(),
            })
        }
    }
}
