//! The device: the adapter that was chosen, its limits, and every choice that is specific to an
//! adapter ([`Quirks`]), decided once, here, when the device is opened.
//!
//! Also the two things every other part needs to talk to wgpu safely: the OpenGL serialisation
//! guard ([`Device::serial`]) and the wait for the device ([`Device::wait`]).

use std::sync::{Arc, Mutex, MutexGuard};

use super::tune::TuningCache;
use crate::error::{Error, Result};

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
    /// Cap the bytes of one buffer below the device's `max_buffer_size`.
    pub max_buffer_bytes: Option<u64>,
    /// Cap the workgroups per dispatch dimension below the device's 65535.
    pub max_workgroups_per_dim: Option<u32>,
    /// Skip the autotune (timing kernel variants on the first run of each shape, which waits for
    /// the device once per shape) and use each op's default variant.
    pub no_autotune: bool,
    /// Where the autotune's choices persist between processes (see [`TuningCache`]).
    pub tuning_cache: TuningCache,
    /// Tests only: run variant `i` (modulo the count) of every op that has variants, untimed.
    #[doc(hidden)]
    pub force_variant: Option<usize>,
}

/// The limits every launch respects: the device's, or smaller ones from [`GpuOptions`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Largest storage binding, in bytes.
    pub binding_bytes: u64,
    /// Largest buffer, in bytes.
    pub buffer_bytes: u64,
    /// Alignment of storage binding offsets.
    pub offset_alignment: u64,
    /// Alignment of uniform binding offsets.
    pub uniform_alignment: u64,
    /// Workgroups per dispatch dimension.
    pub workgroups_per_dim: u32,
    /// Texels along either side of a 2-D texture.
    pub texture_side: u32,
}

/// Bytes of a uniform window (the `var<uniform>` array that the fast convolution kernels read
/// their shared operand from). The kernels declare it as `array<vec4<f32>, 4096>`.
pub(crate) const WINDOW_BYTES: u64 = 65536;

/// What is specific to the adapter. Every choice that was measured on one adapter and would be
/// wrong on another lives here, with the measurement behind it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quirks {
    /// Most workgroups one dispatch launches per dimension product; kernels loop over the rest.
    /// On a CPU-emulated adapter (lavapipe, llvmpipe) far fewer, longer workgroups run faster: a
    /// 64 MiB copy ran at 1.2 GB/s with one workgroup per 64 vec4s and 3.8 GB/s capped at 4096.
    /// A discrete GPU wants the whole grid (up to the device's per-dimension limit).
    pub grid_cap: u64,
    /// Most workgroups of one dispatch of the implicit-GEMM convolutions (`conv_gemm`,
    /// `conv_gemm_rows`), whose threads loop over the rest; `None`: no cap beyond `grid_cap`.
    /// On lavapipe a workgroup of these large unrolled kernels costs ~13 us before it does any
    /// work (an empty `conv_gemm_rows` dispatch: 6.9 ms with 512 workgroups, 1.8 ms with 64), so
    /// 16 (8 per core here) is faster: seed 001's first convolution forward, 64x64x64x3 *
    /// 4x4x3x8, went from 36.9 to 31.2 ms (`conv_gemm`) and from 29.3 to 23.5 ms
    /// (`conv_gemm_rows`, 16 pixels), medians of 25, back to back; 4 was no faster. The loop
    /// budget still bounds it from below (`Gpu::window_workgroups`).
    pub window_grid_cap: Option<u64>,
    /// Dispatches recorded before the pending work is handed to the queue, so that the device
    /// starts while the host records more (and the uniform ring stays small).
    pub dispatches_per_submit: usize,
    /// Whether the fast convolution paths may read their shared operand from 64 KiB uniform
    /// windows. Uniform reads at a uniform address are broadcast loads on GPUs; on lavapipe
    /// only at a constant offset (one scalar load against one load per lane for storage:
    /// measured 35 against 80 cycles per 8-lane vec4 load), and a gather of one scalar per lane
    /// at any other offset (see `spread_windows`). Needs
    /// `max_uniform_buffer_binding_size >= 64 KiB`.
    pub uniform_windows: bool,
    /// Whether the row lanes of the reductions (`reduce.wgsl`, `reduce_vec4.wgsl`) each sum a
    /// contiguous span of a block's rows (`SPANS = 1`) instead of every `RL`-th row (0, which
    /// neighbouring threads of a GPU read coalesced). Lavapipe runs a workgroup's invocations
    /// eight at a time, one group after the other up to the barrier, so interleaved rows made
    /// each group sweep the whole block: spans took batch norm's statistics of a 64x64x64x8
    /// tensor from 5.5 to 1.9 ms, and its pair of backward sums from 8.5 to 3.7 ms. In
    /// `reduce_vec4.wgsl` the spans belong to groups of row lanes that fill `stream_lanes`
    /// (one stream per SIMD group): the backward sums then went from 5.9 to 4.7 ms (medians
    /// of 5, alternated).
    pub reduce_spans: bool,
    /// The lane groups of the streamed element-wise kernels (`stream.wgsl`): 0 on GPUs (every
    /// step of the grid-stride loop on neighbouring items, coalesced); on CPU adapters the
    /// SIMD width (lavapipe: 8), so that each group of that many lanes streams through its own
    /// contiguous chunk. Lavapipe runs a group's whole loop before the next group's; with the
    /// plain grid stride each group touched one 128-byte piece of every page of the tensor.
    /// Measured on the 64 MiB copy probe: 72 ms before, 19 ms with groups of 8 lanes and 64
    /// workgroups (medians of 5 runs of 5, alternated); batch norm's `xhat, y` pass over a
    /// 64x64x64x8 tensor: 10.2 to 4.1 ms.
    pub stream_lanes: u32,
    /// Most workgroups of a streamed kernel's dispatch (`None`: `grid_cap` only). CPU adapters:
    /// 64 (16 to 256 measured within 10% of each other on the copy probe; 4096 lost 3x).
    /// The loop budget bounds it from below (`Gpu::stream_workgroups`).
    pub stream_grid_cap: Option<u64>,
    /// Most slices of the split filter gradient (runs of pixels summed in parallel, each a row
    /// of partial sums that `filter_sum` adds in order): GPUs 1024 (4096 lanes over slices and
    /// filter blocks fill the device); CPU adapters 64, a few per core. On lavapipe 512 slices
    /// of seed 001's second layer's 4096 pixels wrote 0.5 MB of partial sums for 2 cores.
    /// Medians of 5 alternated runs, 1024 -> 64: its backward 1.12 -> 0.98 ms (filter gradient
    /// and `filter_sum` 0.83 -> 0.54), stem's 6.01 -> 5.83, cifar's 26.0 -> 24.7, signs1's 20.5
    /// -> 20.3; 7 slices made cifar's filter gradient slower (13.2 -> 15.7-21.7 ms).
    pub split_max: usize,
    /// Most loop iterations one invocation of a kernel may run, all its loops together, if the
    /// adapter stops loops silently: Mesa's llvmpipe (lavapipe on Vulkan, llvmpipe on GL) ends
    /// any loop after 65535 iterations of all the invocation's loops (`LP_MAX_TGSI_LOOP_ITERATIONS`),
    /// so a longer reduction returns a partial sum without any error (measured: a serial `db`
    /// over 80000 pixels summed the first ~65600). Kernels with long serial loops split their
    /// work to stay within it, or refuse with a typed error.
    pub loop_budget: Option<u64>,
    /// The subgroup size, when the device has subgroup operations and every subgroup has that
    /// size (lavapipe: 8, its 256-bit lanes): `conv_lanes` is built for it.
    pub subgroup: Option<u32>,
    /// Subgroups of this many lanes read the uniform windows spread over their lanes (lane `l`
    /// reads rows `l, l + n, ...`) and hand each row to every lane with `subgroupBroadcast`,
    /// instead of every lane reading every row. Mesa 22.3's llvmpipe turns a uniform-buffer
    /// read into a broadcast only when its offset is a constant; at an offset that a loop
    /// advances it gathers one scalar per lane, so each vec4 row of a window cost 32 scalar
    /// loads (the weights were 30% of `conv_gemm`'s time in a profile). Spread: 32 loads fetch
    /// 8 rows. CPU adapters with fixed-size subgroups; measured on cifar's forward
    /// (`conv_gemm`, lavapipe): 53-65 -> 24-29 ms, backward data 43-49 -> 27-33 ms.
    pub spread_windows: Option<u32>,
    /// Whether `conv_gemm` reading its input through a texture (`texture.rs`) is the default
    /// variant where it applies, ahead of the same kernel reading the buffer. CPU adapters:
    /// Mesa 22.3's llvmpipe loads a buffer at a different address per lane with a loop over
    /// the lanes (a bounds check and a branch per component), a texel with straight-line code.
    /// On lavapipe, medians of 15 calls alternated in one process: deep's forward 33.8 ->
    /// 31.4 ms (the copy included), its data gradient 36.8 -> 33.1 ms; stride-2 `down` 17.6
    /// either way. Under the autotune's 10% margin, hence a quirk. Where the filter's taps take
    /// several windows, reading the filter through a texture too comes first: all taps in one
    /// dispatch, no window starting from what the one before stored (deep: 12 dispatches -> 4;
    /// medians of 11 alternated calls, forward 36.7 -> 24.1 ms, data gradient 38.6 -> 26.8).
    /// Likewise the channel-lane kernel's texture variant, and the fused conv + ReLU + max pool
    /// (not autotuned) reads its rows through X's texture (seed 001's first layer 4.15 -> 3.44
    /// ms).
    pub texture_first: bool,
    /// Whether the norms run image by image (`norm_images.wgsl`): one thread per image and
    /// vec4 of channels, no partial sums across threads, no barrier. Group norm, where the
    /// vec4 holds whole groups, in one dispatch each way (statistics and element-wise pass);
    /// elsewhere (batch norm, larger groups) the per-image sums take the reduction's place.
    /// CPU adapters: a GPU wants far more threads than images times vec4s of channels. On
    /// lavapipe, seed 001's first activations (64x64x64x8), medians of 9 in 4 alternated
    /// pairs: group norm (2 groups) forward 2.38-2.48 against 2.75-3.20 ms, backward
    /// 3.92-4.28 against 4.40-4.95 ms (three dispatches each way before; outside two slow
    /// spells of the machine); batch norm's sums 0.83-0.86 against 1.06-1.08 ms (forward),
    /// 1.59-1.63 against 1.86-1.96 ms (backward), the layer 2.50-2.62 against 2.72-2.79 and
    /// 3.86-4.03 against 4.17-4.40 ms. A workgroup tree instead (one workgroup per image) ran
    /// at half the speed: lavapipe runs kernels with barriers as coroutines.
    pub norm_images: bool,
    /// On OpenGL, wgpu shares one context between threads and panics when a thread waits more
    /// than a few seconds for it (while another waits for the device, say): one thread at a time
    /// talks to the device, and waits are cut into 50 ms slices.
    pub serialize: bool,
}

impl Quirks {
    fn for_adapter(
        info: &wgpu::AdapterInfo,
        limits: &wgpu::Limits,
        features: wgpu::Features,
    ) -> Self {
        let cpu_adapter = info.device_type == wgpu::DeviceType::Cpu;
        let subgroup = (features.contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == info.subgroup_max_size
            && info.subgroup_min_size > 0)
            .then_some(info.subgroup_min_size);
        Self {
            grid_cap: if cpu_adapter { 4096 } else { 1 << 20 },
            window_grid_cap: cpu_adapter.then_some(16),
            dispatches_per_submit: 128,
            reduce_spans: cpu_adapter,
            stream_lanes: match (cpu_adapter, info.subgroup_min_size) {
                (false, _) => 0,
                (true, 0) => 8,
                (true, lanes) => lanes.min(64),
            },
            stream_grid_cap: cpu_adapter.then_some(64),
            split_max: if cpu_adapter { 64 } else { 1024 },
            uniform_windows: limits.max_uniform_buffer_binding_size >= WINDOW_BYTES,
            spread_windows: subgroup.filter(|_| cpu_adapter),
            texture_first: cpu_adapter,
            norm_images: cpu_adapter,
            serialize: info.backend == wgpu::Backend::Gl,
            subgroup,
            loop_budget: [&info.name, &info.driver]
                .iter()
                .any(|s| s.to_lowercase().contains("llvmpipe"))
                .then_some(65535),
        }
    }
}

/// The wgpu device and queue, with what was decided about them.
pub(crate) struct Device {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: Limits,
    pub quirks: Quirks,
    /// Errors the device reported outside any error scope (kept for the next wait).
    uncaptured: Arc<Mutex<Option<String>>>,
    serial: Option<Mutex<()>>,
}

impl Device {
    /// Opens the adapter that `options` (or wgpu's environment conventions) choose.
    pub async fn open(options: &GpuOptions) -> Result<Self> {
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
        let uncaptured = Arc::new(Mutex::new(None::<String>));
        let slot = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        Ok(Self::wrap(
            device,
            queue,
            adapter.get_info(),
            options,
            uncaptured,
        ))
    }

    /// A device the caller already has; its uncaptured-error handler stays in place.
    pub fn from_wgpu(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let info = device.adapter_info();
        Self::wrap(device, queue, info, &GpuOptions::default(), Arc::default())
    }

    fn wrap(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        options: &GpuOptions,
        uncaptured: Arc<Mutex<Option<String>>>,
    ) -> Self {
        let l = device.limits();
        // Element indices of one binding stay inside u32 arithmetic in the kernels.
        let binding_bytes = l
            .max_storage_buffer_binding_size
            .min(l.max_buffer_size)
            .min(1 << 31);
        let limits = Limits {
            binding_bytes: options
                .max_binding_bytes
                .map_or(binding_bytes, |b| b.min(binding_bytes)),
            buffer_bytes: options
                .max_buffer_bytes
                .map_or(l.max_buffer_size, |b| b.min(l.max_buffer_size)),
            offset_alignment: u64::from(l.min_storage_buffer_offset_alignment.max(4)),
            uniform_alignment: u64::from(l.min_uniform_buffer_offset_alignment.max(16)),
            workgroups_per_dim: options
                .max_workgroups_per_dim
                .map_or(l.max_compute_workgroups_per_dimension, |w| {
                    w.clamp(1, l.max_compute_workgroups_per_dimension)
                })
                .max(1),
            texture_side: l.max_texture_dimension_2d,
        };
        let quirks = Quirks::for_adapter(&info, &l, device.features());
        Self {
            device,
            queue,
            info,
            limits,
            quirks,
            uncaptured,
            serial: quirks.serialize.then(Mutex::default),
        }
    }

    /// Held around every call into wgpu on OpenGL (see [`Quirks::serialize`]); `None` elsewhere.
    pub fn serial(&self) -> Option<MutexGuard<'_, ()>> {
        self.serial
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Runs `create` inside a validation error scope and returns its error, if any, to the
    /// caller (instead of to whichever op waits next). Callers hold [`Device::serial`].
    pub fn scoped<T>(&self, create: impl FnOnce(&wgpu::Device) -> T) -> Result<T> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = create(&self.device);
        match pollster::block_on(scope.pop()) {
            Some(e) => Err(Error::Gpu(e.to_string())),
            None => Ok(value),
        }
    }

    /// Blocks until the device has finished everything submitted.
    ///
    /// On OpenGL the wait is cut into 50 ms slices: it holds wgpu's shared context, which other
    /// threads (dropping a buffer, say) may only wait a few seconds for. Elsewhere it waits
    /// without a timeout (wgpu-core 30.0.1 can trip an assertion when timed waits race).
    pub fn wait(&self) -> Result<()> {
        let slice = wgpu::PollType::Wait {
            submission_index: None,
            timeout: self
                .serial
                .as_ref()
                .map(|_| std::time::Duration::from_millis(50)),
        };
        loop {
            let polled = {
                let _serial = self.serial();
                self.device.poll(slice.clone())
            };
            match polled {
                Ok(_) => break,
                Err(wgpu::PollError::Timeout) => std::thread::yield_now(),
                Err(e) => return Err(Error::Gpu(e.to_string())),
            }
        }
        self.take_uncaptured()
    }

    fn take_uncaptured(&self) -> Result<()> {
        let mut slot = self.uncaptured.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some(message) => Err(Error::Gpu(message)),
            None => Ok(()),
        }
    }
}
