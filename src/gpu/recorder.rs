//! The recorder: the pending command encoder that every op records into, the compute pass that
//! stays open across dispatches, a ring of uniform slots for the dispatches' params, and the
//! bind groups already made.
//!
//! A dispatch writes its params into the next slot of a host-side copy of the ring and binds the
//! ring at that slot with a dynamic offset, so one bind group per (pipeline, buffers) serves every
//! dispatch with any params. The host copy reaches the device with one `write_buffer` right
//! before the encoder is submitted (wgpu orders it after earlier submissions and before this
//! one). Everything a dispatch binds is checked against the device's rules before anything is
//! recorded, so an op that would be invalid fails on its own and never poisons the encoder that
//! other ops share.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::device::{Device, WINDOW_BYTES};
use super::kernels::{Access, Pipeline};
use super::memory::{BindGroups, Pool};
use crate::error::{Error, Result};

/// Bytes of one uniform slot (every params block fits, offsets stay aligned).
const SLOT_MAX: u64 = 256;

/// One binding of a dispatch: buffer, its id, byte offset and size; or with `view`, a texture
/// (its id; the buffer, offset and size are those of the tensor it was copied from).
#[derive(Clone, Copy)]
pub(crate) struct Binding<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub id: u64,
    pub offset: u64,
    pub size: u64,
    pub view: Option<&'a wgpu::TextureView>,
}

/// Timestamp slots for the benchmark's per-op device time (see `bench/profile.rs`).
pub(crate) struct Timestamps {
    pub set: Arc<wgpu::QuerySet>,
    pub used: u32,
    pub capacity: u32,
    pub overflow: bool,
    /// The kernel entry point of each timed pass, in order.
    pub labels: Vec<&'static str>,
}

pub(crate) struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    dispatches: usize,
    per_submit: usize,
    slot: u64,
    staged: Vec<u8>,
    ring: wgpu::Buffer,
    ring_id: u64,
    bind_groups: BindGroups,
    /// While the benchmark measures: every dispatch gets its own pass with two timestamps.
    pub timestamps: Option<Timestamps>,
}

impl Recorder {
    pub fn new(device: &Device, pool: &Pool) -> Self {
        let slot = SLOT_MAX.next_multiple_of(device.limits.uniform_alignment);
        let per_submit = device.quirks.dispatches_per_submit;
        let ring = device.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params ring"),
            size: slot * per_submit as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        pool.buffers_created.fetch_add(1, Ordering::Relaxed);
        Self {
            encoder: None,
            pass: None,
            dispatches: 0,
            per_submit,
            slot,
            staged: Vec::with_capacity((slot * per_submit as u64) as usize),
            ring,
            ring_id: pool.next_id(),
            bind_groups: BindGroups::default(),
            timestamps: None,
        }
    }

    fn encoder(&mut self, device: &Device) -> &mut wgpu::CommandEncoder {
        self.encoder.get_or_insert_with(|| {
            device
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("wgpu-cnn ops"),
                })
        })
    }

    /// The encoder with no pass open, for copies and clears.
    pub fn commands(&mut self, device: &Device) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder(device)
    }

    /// Hands what was recorded to the queue.
    pub fn submit(&mut self, device: &Device) {
        self.pass = None;
        if let Some(encoder) = self.encoder.take() {
            if !self.staged.is_empty() {
                device.queue.write_buffer(&self.ring, 0, &self.staged);
            }
            device.queue.submit([encoder.finish()]);
        }
        self.staged.clear();
        self.dispatches = 0;
    }

    /// Checks one binding of `pipeline` against the device's rules.
    fn check(device: &Device, pipeline: &Pipeline, access: Access, b: &Binding) -> Result<()> {
        if access == Access::Texture {
            return match b.view {
                Some(_) => Ok(()), // made to the device's limits by `Gpu::texture_of`
                None => Err(Error::Kernel(format!(
                    "{} ({}): a buffer where the kernel reads a texture",
                    pipeline.kernel.file, pipeline.kernel.entry
                ))),
            };
        }
        if b.view.is_some() {
            return Err(Error::Kernel(format!(
                "{} ({}): a texture where the kernel reads a buffer",
                pipeline.kernel.file, pipeline.kernel.entry
            )));
        }
        let l = &device.limits;
        let (align, max) = match access {
            Access::Window => (l.uniform_alignment, WINDOW_BYTES),
            _ => (l.offset_alignment, l.binding_bytes),
        };
        let min = if access == Access::Window {
            WINDOW_BYTES
        } else {
            16
        };
        let ok = b.offset.is_multiple_of(align)
            && b.size.is_multiple_of(4)
            && b.size >= min
            && b.size <= max
            && b.offset
                .checked_add(b.size)
                .is_some_and(|e| e <= b.buffer.size());
        if ok {
            Ok(())
        } else {
            Err(Error::Kernel(format!(
                "{} ({}): binding of {} bytes at offset {} in a buffer of {} bytes breaks the \
                 device's rules (offset alignment {align}, size {min}..={max})",
                pipeline.kernel.file,
                pipeline.kernel.entry,
                b.size,
                b.offset,
                b.buffer.size()
            )))
        }
    }

    /// Records one dispatch of `pipeline` with `params` and `bindings` (in the kernel's binding
    /// order) over a `(x, y)` grid of workgroups. Checks everything first; on error nothing is
    /// recorded.
    pub fn dispatch(
        &mut self,
        device: &Device,
        pool: &Pool,
        pipeline: &Pipeline,
        params: &[u8],
        bindings: &[Binding],
        grid: (u32, u32),
    ) -> Result<()> {
        let kernel = &pipeline.kernel;
        let max = device.limits.workgroups_per_dim;
        if bindings.len() != kernel.bindings.len()
            || params.len() != kernel.params_size
            || params.len() as u64 > self.slot
            || grid.0 == 0
            || grid.1 == 0
            || grid.0 > max
            || grid.1 > max
        {
            return Err(Error::Kernel(format!(
                "{} ({}): {} bindings for {}, {} bytes of params for {}, grid {grid:?} \
                 (limit {max} per dimension)",
                kernel.file,
                kernel.entry,
                bindings.len(),
                kernel.bindings.len(),
                params.len(),
                kernel.params_size
            )));
        }
        for (b, &(_, access)) in bindings.iter().zip(kernel.bindings) {
            Self::check(device, pipeline, access, b)?;
        }
        if self.dispatches == self.per_submit {
            self.submit(device);
        }
        let mut key_ranges = Vec::with_capacity(bindings.len() + 1);
        key_ranges.push((self.ring_id, 0, self.slot));
        key_ranges.extend(bindings.iter().map(|b| (b.id, b.offset, b.size)));
        let key = (pipeline.id, key_ranges);
        self.bind_groups.forget(&pool.take_retired());
        if self.bind_groups.get(&key).is_none() {
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &self.ring,
                    offset: 0,
                    size: wgpu::BufferSize::new(params.len().next_multiple_of(16) as u64),
                }),
            }];
            for (b, &(binding, _)) in bindings.iter().zip(kernel.bindings) {
                let resource = match b.view {
                    Some(view) => wgpu::BindingResource::TextureView(view),
                    None => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: b.buffer,
                        offset: b.offset,
                        size: wgpu::BufferSize::new(b.size),
                    }),
                };
                entries.push(wgpu::BindGroupEntry { binding, resource });
            }
            let group = device.scoped(|d| {
                d.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(kernel.entry),
                    layout: &pipeline.layout,
                    entries: &entries,
                })
            })?;
            pool.bind_groups_created.fetch_add(1, Ordering::Relaxed);
            self.bind_groups.insert(key.clone(), group);
        }
        let group = self.bind_groups.get(&key).cloned();
        let offset = self.staged.len() as u64;
        self.staged.extend_from_slice(params);
        self.staged.resize((offset + self.slot) as usize, 0);
        let timestamps = self.timestamps.as_mut().and_then(|t| {
            if t.used + 2 > t.capacity {
                t.overflow = true;
                return None;
            }
            t.used += 2;
            t.labels.push(kernel.entry);
            Some((Arc::clone(&t.set), t.used - 2))
        });
        if timestamps.is_some() {
            self.pass = None;
        }
        if self.pass.is_none() {
            let encoder = self.encoder(device);
            let pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("wgpu-cnn"),
                timestamp_writes: timestamps.as_ref().map(|(set, first)| {
                    wgpu::ComputePassTimestampWrites {
                        query_set: set,
                        beginning_of_pass_write_index: Some(*first),
                        end_of_pass_write_index: Some(first + 1),
                    }
                }),
            });
            self.pass = Some(pass.forget_lifetime());
        }
        let pass = self.pass.as_mut().expect("a pass was just opened");
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, group.as_ref(), &[offset as u32]);
        pass.dispatch_workgroups(grid.0, grid.1, 1);
        if timestamps.is_some() {
            self.pass = None;
        }
        self.dispatches += 1;
        Ok(())
    }
}
