//! The GPU path: a [`Gpu`] (device, queue, cached pipelines, a queue of recorded work) and the
//! [`Tensor`]s that live on it. The ops themselves are in `pad.rs`, `conv.rs` and `pool.rs`,
//! each beside its WGSL kernel in `shaders/`.
//!
//! Work is recorded into one pending command encoder; nothing waits for the device except
//! [`Gpu::download`] and [`Gpu::synchronize`].

mod conv;
mod conv_gemm;
mod launch;
mod pad;
mod pool;
mod profile;
mod roofline;
mod tune;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ndarray::{Array, ArrayBase, Data, Dimension, IxDyn};

use crate::error::{Error, Result};

pub use conv::{ConvCache, ConvGrads};
pub(crate) use launch::{Arg, Chunk, Kernel};
pub use pool::PoolCache;
pub use roofline::{median, OpTiming, Probe};

/// How to choose and limit the device. [`GpuOptions::default`] reads wgpu's environment
/// conventions: `WGPU_BACKEND` (`vulkan`, `gl`, `metal`, `dx12`) and `WGPU_ADAPTER_NAME` (a
/// case-insensitive substring of the adapter's name).
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Backends to consider; `None` means `WGPU_BACKEND`, or all of them.
    pub backends: Option<wgpu::Backends>,
    /// Substring of the adapter name; `None` means `WGPU_ADAPTER_NAME`, or the first adapter.
    pub adapter_name: Option<String>,
    /// Cap the bytes bound per storage binding below the device's
    /// `max_storage_buffer_binding_size` (to exercise the split path, or to leave room).
    pub max_binding_bytes: Option<u64>,
    /// Cap the workgroups per dispatch dimension below the device's 65535.
    pub max_workgroups_per_dim: Option<u32>,
    /// Skip the autotune (timing kernel variants on the first run of each shape, which waits for
    /// the device once per shape) and use each op's default variant.
    pub no_autotune: bool,
    /// Tests only: run variant `i` (modulo the count) of every op that has variants, untimed.
    #[doc(hidden)]
    pub force_variant: Option<usize>,
}

/// The limits every launch respects: the device's, or smaller ones from [`GpuOptions`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaunchLimits {
    pub binding_bytes: u64,
    pub buffer_bytes: u64,
    pub offset_alignment: u64,
    pub workgroups_per_dim: u32,
}

type PipelineKey = (&'static str, &'static str, String);

struct Inner {
    id: u64,
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: LaunchLimits,
    pipelines: Mutex<HashMap<PipelineKey, Arc<launch::Pipeline>>>,
    modules: Mutex<HashMap<(&'static str, String), wgpu::ShaderModule>>,
    pending: Mutex<Pending>,
    device_error: Arc<Mutex<Option<String>>>,
    allocated: AtomicU64,
    autotune: bool,
    force_variant: Option<usize>,
    tuned: Mutex<HashMap<tune::TuneKey, usize>>,
    /// On OpenGL, one thread at a time talks to the device (see [`Gpu::serial`]).
    serial: Option<Mutex<()>>,
    profiler: Mutex<Option<profile::Profiler>>,
    window_bytes: u64,
    uniform_alignment: u64,
}

#[derive(Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    passes: usize,
}

/// Record at most this many passes before handing them to the queue.
const PASSES_PER_SUBMIT: usize = 128;

/// Bytes of a uniform window: 64 KiB or the device's uniform binding limit, a multiple of the
/// uniform offset alignment (windows are bound at multiples of it).
fn window_bytes(l: &wgpu::Limits) -> u64 {
    let align = u64::from(l.min_uniform_buffer_offset_alignment.max(16));
    l.max_uniform_buffer_binding_size.min(65536) / align * align
}

static NEXT_GPU_ID: AtomicU64 = AtomicU64::new(1);

/// A wgpu device with this crate's pipelines. Cheap to clone (an `Arc`), `Send + Sync`.
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
            .field("adapter", &self.inner.info.name)
            .field("backend", &self.inner.info.backend)
            .finish()
    }
}

/// Data living on one [`Gpu`]: an `f32` buffer and its shape (row-major). Cheap to clone;
/// immutable (ops return new tensors).
#[derive(Clone)]
pub struct Tensor {
    gpu: Gpu,
    buffer: Arc<wgpu::Buffer>,
    shape: Vec<usize>,
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

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The shape as `(m, n_H, n_W, n_C)`, or [`Error::Rank`].
    pub(crate) fn dims4(&self, what: &'static str) -> Result<[usize; 4]> {
        <[usize; 4]>::try_from(self.shape.as_slice()).map_err(|_| Error::Rank {
            what,
            expected: 4,
            shape: self.shape.clone(),
        })
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
        pollster::block_on(Self::create(options))
    }

    async fn create(options: GpuOptions) -> Result<Self> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Some(backends) = options.backends {
            desc.backends = backends;
        }
        let backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let name = options
            .adapter_name
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
            .map(|n| n.to_lowercase());
        let adapters = instance.enumerate_adapters(backends).await;
        let listed: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?})", i.name, i.backend)
            })
            .collect();
        let adapter = adapters
            .into_iter()
            .find(|a| {
                name.as_deref()
                    .is_none_or(|n| a.get_info().name.to_lowercase().contains(n))
            })
            .ok_or_else(|| {
                Error::NoAdapter(format!(
                    "backends {backends:?}, name filter {name:?}; adapters seen: {listed:?}"
                ))
            })?;
        let features =
            adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgpu-cnn"),
                required_features: features,
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Device(e.to_string()))?;
        let device_error = Arc::new(Mutex::new(None::<String>));
        let slot = Arc::clone(&device_error);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        Ok(Self::wrap(
            device,
            queue,
            adapter.get_info(),
            &options,
            device_error,
        ))
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
        let info = device.adapter_info();
        Self::wrap(
            device,
            queue,
            info,
            &GpuOptions::default(),
            Arc::new(Mutex::new(None)),
        )
    }

    fn wrap(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        options: &GpuOptions,
        device_error: Arc<Mutex<Option<String>>>,
    ) -> Self {
        let l = device.limits();
        // Keep element indices of one binding inside u32 arithmetic in the kernels.
        let binding_bytes = l
            .max_storage_buffer_binding_size
            .min(l.max_buffer_size)
            .min(1 << 31);
        let limits = LaunchLimits {
            binding_bytes: options
                .max_binding_bytes
                .map_or(binding_bytes, |b| b.min(binding_bytes)),
            buffer_bytes: l.max_buffer_size,
            offset_alignment: u64::from(l.min_storage_buffer_offset_alignment.max(4)),
            workgroups_per_dim: options
                .max_workgroups_per_dim
                .map_or(l.max_compute_workgroups_per_dimension, |w| {
                    w.clamp(1, l.max_compute_workgroups_per_dimension)
                })
                .max(1),
        };
        let serial = (info.backend == wgpu::Backend::Gl).then(Mutex::default);
        Self {
            inner: Arc::new(Inner {
                id: NEXT_GPU_ID.fetch_add(1, Ordering::Relaxed),
                device,
                queue,
                info,
                limits,
                pipelines: Mutex::default(),
                modules: Mutex::default(),
                pending: Mutex::default(),
                device_error,
                allocated: AtomicU64::new(0),
                autotune: !options.no_autotune,
                force_variant: options.force_variant,
                serial,
                profiler: Mutex::default(),
                tuned: Mutex::default(),
                window_bytes: window_bytes(&l),
                uniform_alignment: u64::from(l.min_uniform_buffer_offset_alignment.max(16)),
            }),
        }
    }

    /// What the device runs on: adapter name, backend, driver.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }

    /// The wgpu device (to share with other code).
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// Largest storage binding an op uses, in bytes; larger tensors are processed in batch chunks.
    pub fn max_binding_bytes(&self) -> u64 {
        self.inner.limits.binding_bytes
    }

    /// Bytes of device memory that ops have allocated so far (outputs and scratch; uploads
    /// excluded). The benchmark reports the difference across one op.
    pub fn allocated_bytes(&self) -> u64 {
        self.inner.allocated.load(Ordering::Relaxed)
    }

    /// Bytes of one uniform window (a `var<uniform>` array the fast kernels read their shared
    /// operand from): 64 KiB, or less where the device allows less.
    pub(crate) fn window_bytes(&self) -> u64 {
        self.inner.window_bytes
    }

    /// Alignment of uniform window offsets.
    pub(crate) fn uniform_alignment(&self) -> u64 {
        self.inner.uniform_alignment
    }

    pub(crate) fn limits(&self) -> LaunchLimits {
        self.inner.limits
    }

    /// Copies a host array (any shape, any memory order) to the device.
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
        let shape = array.shape().to_vec();
        self.check_buffer_size("uploaded array", &shape)?;
        let standard = array.as_standard_layout();
        let data: &[f32] = standard.as_slice().unwrap_or(&[]);
        let contents: &[u8] = if data.is_empty() {
            &[0; 4]
        } else {
            bytemuck::cast_slice(data)
        };
        let _serial = self.serial();
        let buffer = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tensor"),
            size: self.padded_size(contents.len() as u64),
            usage: Self::TENSOR_USAGE,
            mapped_at_creation: true,
        });
        buffer
            .slice(..contents.len() as u64)
            .get_mapped_range_mut()
            .map_err(|e| Error::Gpu(e.to_string()))?
            .copy_from_slice(contents);
        buffer.unmap();
        Ok(Tensor {
            gpu: self.clone(),
            buffer: Arc::new(buffer),
            shape,
        })
    }

    /// Every tensor buffer ends with one uniform window of slack, so that any window starting
    /// inside the data can be bound whole.
    fn padded_size(&self, bytes: u64) -> u64 {
        (bytes.max(4) + self.inner.window_bytes).next_multiple_of(16)
    }

    const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
        .union(wgpu::BufferUsages::UNIFORM)
        .union(wgpu::BufferUsages::COPY_SRC)
        .union(wgpu::BufferUsages::COPY_DST);

    fn check_buffer_size(&self, what: &'static str, shape: &[usize]) -> Result<u64> {
        // The buffer also carries one uniform window of slack (see `padded_size`).
        let limit = self
            .inner
            .limits
            .buffer_bytes
            .saturating_sub(self.inner.window_bytes + 16);
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

    /// A new zero-filled tensor on the device.
    pub(crate) fn empty(&self, what: &'static str, shape: &[usize]) -> Result<Tensor> {
        let bytes = self.check_buffer_size(what, shape)?;
        self.inner.allocated.fetch_add(bytes, Ordering::Relaxed);
        let _serial = self.serial();
        let buffer = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size: self.padded_size(bytes),
            usage: Self::TENSOR_USAGE,
            mapped_at_creation: false,
        });
        Ok(Tensor {
            gpu: self.clone(),
            buffer: Arc::new(buffer),
            shape: shape.to_vec(),
        })
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

    /// Copies a tensor back to the host, waiting for all recorded work that it depends on.
    /// `D` is the dimensionality wanted (`Ix4`, `Ix1`, `IxDyn`...).
    ///
    /// ```no_run
    /// use ndarray::{Array4, Ix4};
    /// let gpu = wgpu_cnn::Gpu::new()?;
    /// let x = gpu.upload(&Array4::<f32>::ones((1, 2, 2, 1)))?;
    /// let back: Array4<f32> = gpu.download(&x)?;
    /// assert_eq!(back, Array4::ones((1, 2, 2, 1)));
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
        let bytes = tensor.byte_len().max(4);
        let serial = self.serial();
        let staging = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut pending = self.pending();
            let encoder = Self::encoder(&self.inner.device, &mut pending);
            encoder.copy_buffer_to_buffer(tensor.buffer(), 0, &staging, 0, bytes);
        }
        drop(serial);
        self.submit();
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let _serial = self.serial();
            slice.map_async(wgpu::MapMode::Read, move |r| {
                let _ = tx.send(r);
            });
        }
        self.wait()?;
        let _serial = self.serial();
        rx.recv()
            .map_err(|e| Error::Gpu(e.to_string()))?
            .map_err(|e| Error::Gpu(e.to_string()))?;
        let data: Vec<f32> = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(e.to_string()))?;
            bytemuck::cast_slice(&view[..tensor.byte_len() as usize]).to_vec()
        };
        staging.unmap();
        Array::from_shape_vec(IxDyn(&tensor.shape), data)
            .map_err(|_| rank_error())?
            .into_dimensionality::<D>()
            .map_err(|_| rank_error())
    }

    /// Hands all recorded work to the queue without waiting.
    pub fn submit(&self) {
        // Submit while holding the pending encoder, so that work recorded earlier is always
        // submitted earlier, whichever thread takes it (serial first, as everywhere).
        let _serial = self.serial();
        let mut pending = self.pending();
        pending.passes = 0;
        if let Some(encoder) = pending.encoder.take() {
            self.inner.queue.submit([encoder.finish()]);
        }
    }

    /// Submits recorded work and blocks until the device has finished it.
    ///
    /// # Errors
    /// [`Error::Gpu`] when the device reported an error.
    pub fn synchronize(&self) -> Result<()> {
        self.submit();
        self.wait()
    }

    fn wait(&self) -> Result<()> {
        // On OpenGL, wait in short slices: the wait holds wgpu's shared context, which other
        // threads (dropping a buffer, say) may only wait a few seconds for. Elsewhere wait
        // without a timeout (wgpu-core 30.0.1 can trip an assertion when timed waits race).
        let slice = wgpu::PollType::Wait {
            submission_index: None,
            timeout: self
                .inner
                .serial
                .as_ref()
                .map(|_| std::time::Duration::from_millis(50)),
        };
        loop {
            let polled = {
                let _serial = self.serial();
                self.inner.device.poll(slice.clone())
            };
            match polled {
                Ok(_) => break,
                Err(wgpu::PollError::Timeout) => std::thread::yield_now(),
                Err(e) => return Err(Error::Gpu(e.to_string())),
            }
        }
        self.take_device_error()
    }

    fn take_device_error(&self) -> Result<()> {
        let mut slot = self
            .inner
            .device_error
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some(message) => Err(Error::Gpu(message)),
            None => Ok(()),
        }
    }

    /// On OpenGL, wgpu shares one context between threads and panics when a thread waits more
    /// than a few seconds for it (while another waits for the device, say); callers hold this
    /// guard around every device call so that they queue here instead. Other backends: `None`.
    pub(crate) fn serial(&self) -> Option<MutexGuard<'_, ()>> {
        self.inner
            .serial
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.inner.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn encoder<'p>(
        device: &wgpu::Device,
        pending: &'p mut Pending,
    ) -> &'p mut wgpu::CommandEncoder {
        pending.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("wgpu-cnn ops"),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_and_tensor_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Gpu>();
        check::<Tensor>();
    }
}
