//! Moving data between the host and the device, and handing recorded work to the queue.

use std::sync::Arc;

use ndarray::{Array, ArrayBase, Data, Dimension, IxDyn};

use super::device::WINDOW_BYTES;
use super::{Gpu, Tensor};
use crate::error::{Error, Result};

impl Gpu {
    /// Bytes of the buffer behind a tensor of `bytes`: one uniform window of slack follows the
    /// data, so that any window starting inside it can be bound whole.
    fn padded_size(bytes: u64) -> u64 {
        (bytes.max(4) + WINDOW_BYTES).next_multiple_of(16)
    }

    /// The data bytes of `shape`, or [`Error::TooLarge`] when its buffer exceeds the device's
    /// `max_buffer_size`.
    pub(crate) fn check_buffer_size(&self, what: &'static str, shape: &[usize]) -> Result<u64> {
        let limit = self.limits().buffer_bytes.saturating_sub(WINDOW_BYTES + 16) / 8 * 7; // the pool's size classes round up by at most 1/8
        let bytes = shape
            .iter()
            .try_fold(4u64, |acc, &d| acc.checked_mul(d as u64))
            .unwrap_or(u64::MAX);
        if bytes > limit {
            return Err(Error::TooLarge {
                what,
                shape: shape.to_vec(),
                bytes,
                limit,
            });
        }
        Ok(bytes)
    }

    /// A tensor of `shape` from the pool; its contents are unspecified unless `zeroed`.
    pub(crate) fn alloc(
        &self,
        what: &'static str,
        shape: &[usize],
        zeroed: bool,
    ) -> Result<Tensor> {
        let bytes = self.check_buffer_size(what, shape)?;
        let _serial = self.inner.device.serial();
        let (block, fresh) = self
            .inner
            .pool
            .tensor(&self.inner.device.device, Self::padded_size(bytes));
        if zeroed && !fresh {
            self.recorder()
                .commands(&self.inner.device)
                .clear_buffer(&block.buffer, 0, None);
        }
        Ok(Tensor {
            gpu: self.clone(),
            block: Arc::new(block),
            shape: shape.to_vec(),
        })
    }

    /// Zeros the whole buffer of `t` (recorded, in order with the ops around it).
    pub(crate) fn clear(&self, t: &Tensor) {
        let _serial = self.inner.device.serial();
        self.recorder()
            .commands(&self.inner.device)
            .clear_buffer(t.buffer(), 0, None);
    }

    /// A new tensor of `shape`, filled with zeros.
    ///
    /// # Errors
    /// [`Error::TooLarge`] when it exceeds the device's `max_buffer_size`.
    pub fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        self.alloc("zeros", shape, true)
    }

    /// Copies a host array (any shape, any memory order) to a new tensor on the device.
    ///
    /// ```no_run
    /// let gpu = wgpu_cnn::Gpu::new()?;
    /// let x = gpu.upload(&ndarray::Array4::<f32>::zeros((2, 5, 5, 3)))?;
    /// assert_eq!(x.shape(), &[2, 5, 5, 3]);
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::TooLarge`] when the array exceeds the device's `max_buffer_size`.
    pub fn upload<S, D>(&self, array: &ArrayBase<S, D>) -> Result<Tensor>
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        let mut t = self.alloc("uploaded array", array.shape(), false)?;
        self.write(&mut t, array)?;
        Ok(t)
    }

    /// Copies a host array into an existing tensor of the same shape (a new minibatch into the
    /// network's input, say). Work recorded before the call sees the old contents, work
    /// recorded after sees the new ones; no device memory is allocated.
    ///
    /// ```no_run
    /// use ndarray::Array4;
    /// let gpu = wgpu_cnn::Gpu::new()?;
    /// let mut x = gpu.upload(&Array4::<f32>::zeros((1, 2, 2, 1)))?;
    /// gpu.write(&mut x, &Array4::<f32>::ones((1, 2, 2, 1)))?;
    /// assert_eq!(gpu.download::<ndarray::Ix4>(&x)?, Array4::<f32>::ones((1, 2, 2, 1)));
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the shapes differ, [`Error::ForeignTensor`].
    pub fn write<S, D>(&self, tensor: &mut Tensor, array: &ArrayBase<S, D>) -> Result<()>
    where
        S: Data<Elem = f32>,
        D: Dimension,
    {
        self.check_owner(tensor)?;
        tensor.expect_shape("array written into a tensor", array.shape())?;
        let standard = array.as_standard_layout();
        let Some(data) = standard.as_slice().filter(|d| !d.is_empty()) else {
            return Ok(());
        };
        // Work already recorded may read the buffer's old contents (or, for a pooled buffer,
        // a previous tensor's): submit it first, so that the write lands after it.
        self.submit();
        let _serial = self.inner.device.serial();
        self.inner
            .device
            .queue
            .write_buffer(tensor.buffer(), 0, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Copies the contents of `src` into `dst` (same number of elements), recorded in order.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the element counts differ, [`Error::ForeignTensor`].
    pub fn copy(&self, src: &Tensor, dst: &mut Tensor) -> Result<()> {
        self.check_owner(src)?;
        self.check_owner(dst)?;
        if src.len() != dst.len() {
            return Err(Error::ShapeMismatch {
                what: "copy needs as many elements in the destination as in the source",
                expected: src.shape().to_vec(),
                got: dst.shape().to_vec(),
            });
        }
        if src.is_empty() || src.same_buffer(dst) {
            return Ok(());
        }
        let _serial = self.inner.device.serial();
        self.recorder()
            .commands(&self.inner.device)
            .copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), 0, src.byte_len());
        Ok(())
    }

    /// Copies a tensor back to the host, waiting for all recorded work that it depends on.
    /// `D` is the dimensionality wanted (`Ix4`, `Ix1`, `IxDyn`...).
    ///
    /// ```no_run
    /// use ndarray::{Array4, Ix4};
    /// let gpu = wgpu_cnn::Gpu::new()?;
    /// let x = gpu.upload(&Array4::<f32>::ones((1, 2, 2, 1)))?;
    /// let back: Array4<f32> = gpu.download(&x)?;
    /// assert_eq!(back, Array4::<f32>::ones((1, 2, 2, 1)));
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ForeignTensor`], [`Error::Rank`] when `D` does not match the tensor's rank,
    /// [`Error::Gpu`] when the device reported an error while running the recorded work.
    pub fn download<D: Dimension>(&self, tensor: &Tensor) -> Result<Array<f32, D>> {
        self.check_owner(tensor)?;
        let rank_error = || Error::Rank {
            what: "downloaded tensor",
            expected: D::NDIM.unwrap_or(tensor.shape.len()),
            shape: tensor.shape.clone(),
        };
        if D::NDIM.is_some_and(|n| n != tensor.shape.len()) {
            return Err(rank_error());
        }
        let bytes = tensor.byte_len();
        let data: Vec<f32> = if bytes == 0 {
            self.synchronize()?;
            Vec::new()
        } else {
            let staging = {
                let _serial = self.inner.device.serial();
                let staging = self.inner.pool.staging(&self.inner.device.device, bytes);
                let mut recorder = self.recorder();
                recorder.commands(&self.inner.device).copy_buffer_to_buffer(
                    tensor.buffer(),
                    0,
                    &staging.buffer,
                    0,
                    bytes,
                );
                recorder.submit(&self.inner.device);
                staging
            };
            let slice = staging.buffer.slice(..bytes);
            let (tx, rx) = std::sync::mpsc::channel();
            {
                let _serial = self.inner.device.serial();
                slice.map_async(wgpu::MapMode::Read, move |r| {
                    let _ = tx.send(r);
                });
            }
            self.inner.device.wait()?;
            let _serial = self.inner.device.serial();
            rx.recv()
                .map_err(|e| Error::Gpu(e.to_string()))?
                .map_err(|e| Error::Gpu(e.to_string()))?;
            let data = {
                let view = slice
                    .get_mapped_range()
                    .map_err(|e| Error::Gpu(e.to_string()))?;
                bytemuck::cast_slice(&view).to_vec()
            };
            staging.buffer.unmap();
            data
        };
        Array::from_shape_vec(IxDyn(&tensor.shape), data)
            .map_err(|_| rank_error())?
            .into_dimensionality::<D>()
            .map_err(|_| rank_error())
    }

    /// Hands all recorded work to the queue without waiting.
    pub fn submit(&self) {
        // Submit while holding the recorder, so that work recorded earlier is always submitted
        // earlier, whichever thread takes it (serial first, as everywhere).
        let _serial = self.inner.device.serial();
        self.recorder().submit(&self.inner.device);
    }

    /// Submits recorded work and blocks until the device has finished it.
    ///
    /// # Errors
    /// [`Error::Gpu`] when the device reported an error.
    pub fn synchronize(&self) -> Result<()> {
        self.submit();
        self.inner.device.wait()
    }
}
