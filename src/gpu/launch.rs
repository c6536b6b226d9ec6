//! Launching a kernel within the device's limits.
//!
//! Every kernel binds one uniform (`binding 0`, its `Params`), then its read-only storage
//! buffers, then its read-write ones. Tensors whose leading axis is the batch are bound as
//! windows of whole images: when a binding would exceed `max_storage_buffer_binding_size`, the
//! batch is split into chunks and the kernel is dispatched once per chunk, with each window's
//! element offset (the binding offset is aligned down to the device's
//! `min_storage_buffer_offset_alignment`) passed in the params. The dispatch grid is 2-D and
//! capped at the per-dimension limit; kernels loop over their virtual workgroups, so any amount of
//! work fits.

use std::sync::Arc;

use bytemuck::Pod;
use wgpu::util::DeviceExt;

use super::{Gpu, Tensor};
use crate::error::{Error, Result};

/// One entry point of one WGSL file, and how many buffers it reads and writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kernel {
    /// File name, for the cache and for labels.
    pub name: &'static str,
    /// WGSL source.
    pub source: &'static str,
    /// Entry point.
    pub entry: &'static str,
    /// Read-only storage buffers (bindings `1..=reads`).
    pub reads: u32,
    /// Read-write storage buffers (the bindings after the reads).
    pub writes: u32,
}

pub(crate) struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// A buffer argument: a whole tensor, or a tensor with the batch as its leading axis whose
/// images are split across chunks.
#[derive(Clone, Copy)]
pub(crate) enum Arg<'a> {
    Whole(&'a Tensor),
    Batched(&'a Tensor),
}

impl Arg<'_> {
    fn tensor(&self) -> &Tensor {
        match self {
            Arg::Whole(t) | Arg::Batched(t) => t,
        }
    }

    /// Bytes per image for batched arguments.
    fn image_bytes(&self) -> Option<u64> {
        match self {
            Arg::Whole(_) => None,
            Arg::Batched(t) => {
                let m = t.shape().first().copied().unwrap_or(1).max(1) as u64;
                Some(t.byte_len() / m)
            }
        }
    }
}

/// The images one dispatch covers, and where each batched argument's window starts (in
/// elements, from the start of its binding), in argument order; whole arguments get 0.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    pub first: usize,
    pub images: usize,
    pub offsets: Vec<u32>,
}

impl Chunk {
    /// The window offset of argument `arg` (in the order given to [`Gpu::launch`]).
    pub fn offset(&self, arg: usize) -> u32 {
        self.offsets[arg]
    }
}

fn u32_of(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::TooLarge {
        what: "index",
        shape: vec![v],
        bytes: v as u64,
        limit: u64::from(u32::MAX),
    })
}

/// Threads per workgroup of the element-wise kernels (`const WG` in their WGSL).
pub(crate) const WG: u64 = 64;

/// Most workgroups one dispatch launches; kernels loop over the rest. 4096 x 64 threads fill any
/// GPU, and a CPU-emulated adapter (lavapipe) runs far fewer, longer workgroups faster (a 64 MiB
/// copy: 1.2 GB/s with one workgroup per 64 vec4s, 3.8 GB/s capped at 4096).
const MAX_GRID: u64 = 4096;

/// Converts a size to the `u32` the kernels take.
pub(crate) fn to_u32(v: usize) -> Result<u32> {
    u32_of(v)
}

impl Gpu {
    fn pipeline(&self, kernel: &Kernel) -> Arc<Pipeline> {
        let key = (kernel.name, kernel.entry, String::new());
        let mut cache = self
            .inner
            .pipelines
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(&key) {
            return Arc::clone(p);
        }
        let device = &self.inner.device;
        let module = {
            let mut modules = self.inner.modules.lock().unwrap_or_else(|p| p.into_inner());
            modules
                .entry(kernel.name)
                .or_insert_with(|| {
                    device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.name),
                        source: wgpu::ShaderSource::Wgsl(kernel.source.into()),
                    })
                })
                .clone()
        };
        let storage = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }];
        entries.extend((1..=kernel.reads).map(|b| storage(b, true)));
        entries.extend((kernel.reads + 1..=kernel.reads + kernel.writes).map(|b| storage(b, false)));
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(kernel.entry),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kernel.entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let p = Arc::new(Pipeline { pipeline, layout });
        cache.insert(key, Arc::clone(&p));
        p
    }

    /// Images per chunk so that every batched binding (plus alignment slack) fits the limit.
    fn images_per_chunk(&self, m: usize, args: &[Arg]) -> Result<usize> {
        let limits = self.limits();
        for arg in args {
            let t = arg.tensor();
            let need = match arg {
                Arg::Whole(_) => t.byte_len(),
                Arg::Batched(_) => arg.image_bytes().unwrap_or(0) + limits.offset_alignment,
            };
            if need > limits.binding_bytes {
                return Err(Error::TooLarge {
                    what: match arg {
                        Arg::Whole(_) => "tensor bound whole",
                        Arg::Batched(_) => "one image of a tensor",
                    },
                    shape: t.shape().to_vec(),
                    bytes: need,
                    limit: limits.binding_bytes,
                });
            }
        }
        let per_chunk = args
            .iter()
            .filter_map(|a| a.image_bytes().filter(|&b| b > 0))
            .map(|b| ((limits.binding_bytes - limits.offset_alignment) / b) as usize)
            .min()
            .unwrap_or(m);
        Ok(per_chunk.clamp(1, m.max(1)))
    }

    /// Records `kernel` over `m` images in as many chunks as the limits need. `work` returns,
    /// for each chunk, the params to bind and the number of workgroups the chunk wants.
    pub(crate) fn launch<P: Pod>(
        &self,
        kernel: &Kernel,
        m: usize,
        args: &[Arg],
        mut work: impl FnMut(&Chunk) -> Result<(P, u64)>,
    ) -> Result<()> {
        for arg in args {
            self.check_owner(arg.tensor())?;
        }
        debug_assert_eq!(args.len() as u32, kernel.reads + kernel.writes);
        let per_chunk = self.images_per_chunk(m, args)?;
        let limits = self.limits();
        let pipeline = self.pipeline(kernel);
        let device = &self.inner.device;
        let mut first = 0;
        while first < m.max(1) {
            let images = per_chunk.min(m.max(1) - first);
            let mut ranges = Vec::with_capacity(args.len());
            let mut offsets = Vec::with_capacity(args.len());
            for arg in args {
                let t = arg.tensor();
                match arg.image_bytes() {
                    None => {
                        ranges.push((0, t.byte_len().max(4)));
                        offsets.push(0);
                    }
                    Some(per_image) => {
                        let start = first as u64 * per_image;
                        let aligned = start / limits.offset_alignment * limits.offset_alignment;
                        let end = (start + images as u64 * per_image).max(aligned + 4);
                        ranges.push((aligned, end - aligned));
                        offsets.push(((start - aligned) / 4) as u32);
                    }
                }
            }
            let chunk = Chunk {
                first,
                images,
                offsets,
            };
            let (params, workgroups) = work(&chunk)?;
            first += images;
            if workgroups == 0 {
                continue;
            }
            let mut bytes = bytemuck::bytes_of(&params).to_vec();
            bytes.resize(bytes.len().next_multiple_of(16), 0);
            let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: &bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            });
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: uniform.as_entire_binding(),
            }];
            for (i, (arg, &(offset, size))) in args.iter().zip(&ranges).enumerate() {
                entries.push(wgpu::BindGroupEntry {
                    binding: i as u32 + 1,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: arg.tensor().buffer(),
                        offset,
                        size: wgpu::BufferSize::new(size),
                    }),
                });
            }
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(kernel.entry),
                layout: &pipeline.layout,
                entries: &entries,
            });
            let max = u64::from(limits.workgroups_per_dim);
            let x = workgroups.min(max).min(MAX_GRID);
            let y = workgroups.div_ceil(x).min(max).min(MAX_GRID.div_ceil(x));
            let mut pending = self.pending();
            let encoder = Gpu::encoder(device, &mut pending);
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(kernel.entry),
                    timestamp_writes: None,
                });
                pass.set_pipeline(&pipeline.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(x as u32, y as u32, 1);
            }
            pending.passes += 1;
            let full = pending.passes >= super::PASSES_PER_SUBMIT;
            drop(pending);
            if full {
                self.submit();
            }
        }
        Ok(())
    }
}
