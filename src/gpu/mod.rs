//! The GPU path. [`Gpu`] is the public facade; behind it:
//!
//! | module | what |
//! |---|---|
//! | `device.rs` | the adapter, its limits, and every adapter-specific choice (`Quirks`) |
//! | `kernels.rs` | kernel descriptors, uniform layouts, the module and pipeline cache |
//! | `unroll.rs` | the register-block unrolling, the only text generation in the kernels |
//! | `recorder.rs` | the pending encoder, the open compute pass, the uniform ring, bind groups |
//! | `memory.rs` | the buffer pool (live, peak, pooled bytes; counts of created objects) |
//! | `launch.rs` | batch chunking and grid capping for one kernel launch |
//! | `transfer.rs` | upload, write, download, submit, synchronize |
//! | `tune.rs` | variant choice with typed, bucketed keys |
//! | `pad.rs`, `pool.rs`, `conv/` | the ops, each beside its kernels in `shaders/` |
//!
//! Work is recorded into one pending command encoder; nothing waits for the device except
//! [`Gpu::download`], [`Gpu::synchronize`] and the first run of a tuned op on a new shape.

mod affine;
mod conv;
mod device;
pub(crate) mod kernels;
pub(crate) mod launch;
mod layout;
mod memory;
mod norm;
mod optim;
mod pad;
mod pool;
pub(crate) mod recorder;
mod reduce;
mod relu;
mod tensor;
mod texture;
mod transfer;
pub(crate) mod tune;
mod unroll;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};

pub use affine::{AffineCache, AffineGrads};
pub use conv::{ConvCache, ConvGrads, ConvReluCache, ConvReluPoolCache};
pub use device::GpuOptions;
pub use memory::MemoryStats;
pub use norm::{BatchNormState, NormCache, NormGrads};
pub use optim::{Adam, Sgd, SgdMomentum};
pub use pool::PoolCache;
pub use relu::ReluCache;
pub use tensor::Tensor;
pub use tune::TuningCache;

pub(crate) use launch::Arg;

struct Inner {
    id: u64,
    device: device::Device,
    kernels: kernels::KernelCache,
    pool: Arc<memory::Pool>,
    recorder: Mutex<recorder::Recorder>,
    tuner: tune::Tuner,
    textures: texture::Textures,
}

static NEXT_GPU_ID: AtomicU64 = AtomicU64::new(1);

/// A wgpu device with this crate's pipelines and memory pool. Cheap to clone (an `Arc`),
/// `Send + Sync`.
///
/// ```no_run
/// use wgpu_cnn::Gpu;
/// let gpu = Gpu::new()?;
/// println!("running on {}", gpu.adapter_info().name);
/// # Ok::<(), wgpu_cnn::Error>(())
/// ```
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.inner.device.info.name)
            .field("backend", &self.inner.device.info.backend)
            .finish()
    }
}

impl Gpu {
    /// The first adapter that wgpu's environment conventions choose (see [`GpuOptions`]), with
    /// the adapter's full limits.
    ///
    /// # Errors
    /// [`Error::NoAdapter`] when no adapter matches, [`Error::Device`] when it refuses a device.
    pub fn new() -> Result<Self> {
        Self::with_options(GpuOptions::default())
    }

    /// Like [`Gpu::new`], with explicit choices and optional smaller limits.
    ///
    /// # Errors
    /// [`Error::NoAdapter`], [`Error::Device`].
    pub fn with_options(options: GpuOptions) -> Result<Self> {
        let device = pollster::block_on(device::Device::open(&options))?;
        Ok(Self::wrap(device, &options))
    }

    /// Wraps a device and queue that the caller already has (a renderer's, another library's).
    /// The caller's uncaptured-error handler stays in place; the device's own limits apply.
    ///
    /// ```no_run
    /// # fn demo(device: wgpu::Device, queue: wgpu::Queue) {
    /// let gpu = wgpu_cnn::Gpu::from_wgpu(device, queue);
    /// # }
    /// ```
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        Self::wrap(
            device::Device::from_wgpu(device, queue),
            &GpuOptions::default(),
        )
    }

    fn wrap(device: device::Device, options: &GpuOptions) -> Self {
        let pool = memory::Pool::new();
        let recorder = {
            let _serial = device.serial();
            recorder::Recorder::new(&device, &pool)
        };
        Self {
            inner: Arc::new(Inner {
                id: NEXT_GPU_ID.fetch_add(1, Ordering::Relaxed),
                kernels: kernels::KernelCache::default(),
                textures: texture::Textures::default(),
                recorder: Mutex::new(recorder),
                tuner: tune::Tuner::new(
                    !options.no_autotune,
                    options.force_variant,
                    &options.tuning_cache,
                    &device.info,
                ),
                device,
                pool,
            }),
        }
    }

    /// What the device runs on: adapter name, backend, driver.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.device.info
    }

    /// The wgpu device (to share with other code).
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.device.queue
    }

    /// Largest storage binding an op uses, in bytes; larger tensors are processed in batch chunks.
    pub fn max_binding_bytes(&self) -> u64 {
        self.inner.device.limits.binding_bytes
    }

    /// Device memory and object counts: live bytes (held by tensors), the peak of live bytes,
    /// bytes pooled for reuse, and how many buffers, bind groups and pipelines were ever created.
    ///
    /// ```no_run
    /// let gpu = wgpu_cnn::Gpu::new()?;
    /// let x = gpu.upload(&ndarray::Array4::<f32>::zeros((2, 5, 5, 3)))?;
    /// assert!(gpu.memory().live_bytes >= x.byte_len());
    /// drop(x);
    /// assert_eq!(gpu.memory().live_bytes, 0);
    /// # Ok::<(), wgpu_cnn::Error>(())
    /// ```
    pub fn memory(&self) -> MemoryStats {
        self.inner.pool.stats()
    }

    /// Starts a new peak: `memory().peak_bytes` becomes the live and texture bytes of now.
    pub fn reset_peak(&self) {
        self.inner.pool.reset_peak();
    }

    /// Frees the pooled buffers (those no tensor holds) and the input textures; returns the
    /// bytes released.
    pub fn trim(&self) -> u64 {
        let _serial = self.inner.device.serial();
        self.inner.pool.trim() + self.trim_textures()
    }

    pub(crate) fn limits(&self) -> device::Limits {
        self.inner.device.limits
    }

    pub(crate) fn quirks(&self) -> device::Quirks {
        self.inner.device.quirks
    }

    /// Errors unless `tensor` was made by this `Gpu`.
    pub(crate) fn check_owner(&self, tensor: &Tensor) -> Result<()> {
        if tensor.gpu.inner.id == self.inner.id {
            Ok(())
        } else {
            Err(Error::ForeignTensor {
                shape: tensor.shape.clone(),
            })
        }
    }

    /// The pipeline of `kernel` with `consts`. Callers hold the serial guard.
    pub(crate) fn pipeline(
        &self,
        kernel: &kernels::Kernel,
        consts: &[(&'static str, u32)],
    ) -> Result<Arc<kernels::Pipeline>> {
        self.inner
            .kernels
            .pipeline(&self.inner.device, &self.inner.pool, kernel, consts)
    }

    fn recorder(&self) -> MutexGuard<'_, recorder::Recorder> {
        self.inner
            .recorder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(feature = "bench")]
impl Gpu {
    /// The benchmark's access to the recorder (timestamps).
    pub(crate) fn with_recorder<T>(&self, f: impl FnOnce(&mut recorder::Recorder) -> T) -> T {
        let _serial = self.inner.device.serial();
        f(&mut self.recorder())
    }

    /// The benchmark's access to the pending encoder, no pass open.
    pub(crate) fn with_encoder<T>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> T) -> T {
        let _serial = self.inner.device.serial();
        f(self.recorder().commands(&self.inner.device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_binding_is_the_failing_ops_error_and_poisons_nothing() {
        let gpu = Gpu::new().expect("an adapter");
        let x = gpu
            .upload(&ndarray::Array4::<f32>::ones((1, 4, 4, 4)))
            .unwrap();
        let y = gpu.alloc("y", &[1, 6, 6, 4], false).unwrap();
        let params = [0u8; std::mem::size_of::<pad::Params>()];
        let past_the_end = recorder::Binding {
            buffer: x.buffer(),
            id: x.buffer_id(),
            offset: 0,
            size: x.buffer().size() + 256,
            view: None,
        };
        let fine = recorder::Binding {
            buffer: y.buffer(),
            id: y.buffer_id(),
            offset: 0,
            size: 256,
            view: None,
        };
        {
            let _serial = gpu.inner.device.serial();
            let pipeline = gpu.pipeline(&pad::ZERO_PAD, &[]).unwrap();
            // Refused by our checks, before anything is recorded.
            let e = gpu
                .recorder()
                .dispatch(
                    &gpu.inner.device,
                    &gpu.inner.pool,
                    &pipeline,
                    &params,
                    &[past_the_end, fine],
                    (1, 1),
                )
                .unwrap_err();
            assert!(
                matches!(&e, Error::Kernel(m) if m.contains("zero_pad.wgsl")),
                "{e}"
            );
            // What wgpu itself refuses inside a scope is returned, not left for a download.
            let e = gpu
                .inner
                .device
                .scoped(|d| {
                    d.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &pipeline.layout,
                        entries: &[wgpu::BindGroupEntry {
                            binding: 0,
                            resource: x.buffer().as_entire_binding(),
                        }],
                    })
                })
                .unwrap_err();
            assert!(matches!(e, Error::Gpu(_)), "{e}");
        }
        let z = gpu.zero_pad(&x, 1).unwrap();
        let z: ndarray::Array4<f32> = gpu.download(&z).unwrap();
        assert_eq!(z.sum(), 64.0);
    }

    #[test]
    fn gpu_and_tensor_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Gpu>();
        check::<Tensor>();
    }
}
