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

/// How an entry point uses one binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    Write,
    /// `var<uniform>` window of [`Gpu::window_bytes`] bytes of a tensor.
    Window,
}

/// One entry point of one WGSL file and the bindings it uses (binding 0 is always its params).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kernel {
    /// File name, for the cache and for labels.
    pub name: &'static str,
    /// WGSL source; `{{NAME}}` placeholders are replaced by the launch's specialisation.
    pub source: &'static str,
    /// Entry point.
    pub entry: &'static str,
    /// `(binding, access)` of each buffer argument, in argument order.
    pub bindings: &'static [(u32, Access)],
}

/// Bindings `1..=reads` read-only, then `writes` read-write: the layout of the simple kernels.
pub(crate) const fn simple(reads: usize, writes: usize) -> &'static [(u32, Access)] {
    const R: Access = Access::Read;
    const W: Access = Access::Write;
    match (reads, writes) {
        (1, 1) => &[(1, R), (2, W)],
        (2, 1) => &[(1, R), (2, R), (3, W)],
        (3, 1) => &[(1, R), (2, R), (3, R), (4, W)],
        _ => panic!("no such simple layout"),
    }
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
    /// A uniform window of [`Gpu::window_bytes`] bytes starting at this byte offset (a multiple
    /// of the device's uniform offset alignment; tensors carry that much slack at their end).
    Window(&'a Tensor, u64),
}

impl Arg<'_> {
    fn tensor(&self) -> &Tensor {
        match self {
            Arg::Whole(t) | Arg::Batched(t) | Arg::Window(t, _) => t,
        }
    }

    /// Bytes per image for batched arguments.
    fn image_bytes(&self) -> Option<u64> {
        match self {
            Arg::Whole(_) | Arg::Window(..) => None,
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

/// Specialises a WGSL template: `{{NAME}}` becomes the value of `NAME`, and a line ending in
/// `// @unroll(RANGE)` is repeated for each `i` in `RANGE` (`N` means `0..N`, or `A..B`), with
/// `{EXPR}` replaced by the value of `EXPR` (an integer expression in `i`, the names, `+ - *`).
pub(crate) fn specialize(template: &str, spec: &[(&str, u32)]) -> String {
    let value = |expr: &str, i: i64| -> i64 {
        Expr {
            text: expr.as_bytes(),
            pos: 0,
            i,
            spec,
        }
        .sum()
    };
    let mut out = String::with_capacity(template.len() * 2);
    for line in template.lines() {
        let Some((code, range)) = line
            .split_once("// @unroll(")
            .and_then(|(code, rest)| rest.strip_suffix(')').map(|r| (code, r)))
        else {
            let mut line = line.to_string();
            for (name, v) in spec {
                line = line.replace(&format!("{{{{{name}}}}}"), &v.to_string());
            }
            out.push_str(&line);
            out.push('\n');
            continue;
        };
        let (lo, hi) = match range.split_once("..") {
            Some((a, b)) => (value(a, 0), value(b, 0)),
            None => (0, value(range, 0)),
        };
        for i in lo..hi {
            let mut text = String::new();
            let mut rest = code.trim_end();
            while let Some(open) = rest.find('{') {
                let close = open + rest[open..].find('}').unwrap_or(rest.len() - open);
                text.push_str(&rest[..open]);
                text.push_str(&value(&rest[open + 1..close], i).to_string());
                rest = rest.get(close + 1..).unwrap_or("");
            }
            text.push_str(rest);
            out.push_str(&text);
            out.push('\n');
        }
    }
    out
}

/// A tiny evaluator for `@unroll` expressions: integers, `i`, specialisation names, `+ - * / %`
/// and parentheses, with the usual precedence. Unknown names count as 0.
struct Expr<'a> {
    text: &'a [u8],
    pos: usize,
    i: i64,
    spec: &'a [(&'a str, u32)],
}

impl Expr<'_> {
    fn peek(&mut self) -> Option<u8> {
        while self.text.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
        self.text.get(self.pos).copied()
    }

    fn sum(&mut self) -> i64 {
        let mut v = self.product();
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.pos += 1;
            let r = self.product();
            v = if op == b'+' { v + r } else { v - r };
        }
        v
    }

    fn product(&mut self) -> i64 {
        let mut v = self.factor();
        while let Some(op @ (b'*' | b'/' | b'%')) = self.peek() {
            self.pos += 1;
            let r = self.factor();
            v = match op {
                b'*' => v * r,
                b'/' => v.checked_div(r).unwrap_or(0),
                _ => v.checked_rem(r).unwrap_or(0),
            };
        }
        v
    }

    fn factor(&mut self) -> i64 {
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let v = self.sum();
                if self.peek() == Some(b')') {
                    self.pos += 1;
                }
                v
            }
            Some(b'-') => {
                self.pos += 1;
                -self.factor()
            }
            _ => {
                let start = self.pos;
                while self
                    .text
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    self.pos += 1;
                }
                let word = std::str::from_utf8(&self.text[start..self.pos]).unwrap_or("");
                match word {
                    "i" => self.i,
                    _ => word.parse().unwrap_or_else(|_| {
                        self.spec
                            .iter()
                            .find(|(n, _)| *n == word)
                            .map_or(0, |&(_, v)| i64::from(v))
                    }),
                }
            }
        }
    }
}

/// Converts a signed offset to the `i32` the kernels take.
pub(crate) fn to_i32(v: i64) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::TooLarge {
        what: "offset",
        shape: vec![v.unsigned_abs() as usize],
        bytes: v.unsigned_abs(),
        limit: i32::MAX as u64,
    })
}

/// Converts a size to the `u32` the kernels take.
pub(crate) fn to_u32(v: usize) -> Result<u32> {
    u32_of(v)
}

impl Gpu {
    fn pipeline(&self, kernel: &Kernel, spec: &[(&str, u32)]) -> Arc<Pipeline> {
        let spec_key: String = spec.iter().map(|(k, v)| format!("{k}={v};")).collect();
        let key = (kernel.name, kernel.entry, spec_key.clone());
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
                .entry((kernel.name, spec_key))
                .or_insert_with(|| {
                    let source = specialize(kernel.source, spec);
                    device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.name),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    })
                })
                .clone()
        };
        let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let mut entries = vec![entry(0, wgpu::BufferBindingType::Uniform)];
        entries.extend(kernel.bindings.iter().map(|&(binding, access)| {
            entry(
                binding,
                match access {
                    Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                    Access::Write => wgpu::BufferBindingType::Storage { read_only: false },
                    Access::Window => wgpu::BufferBindingType::Uniform,
                },
            )
        }));
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
                Arg::Window(..) => 0,
            };
            if need > limits.binding_bytes {
                return Err(Error::TooLarge {
                    what: match arg {
                        Arg::Batched(_) => "one image of a tensor",
                        _ => "tensor bound whole",
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
        work: impl FnMut(&Chunk) -> Result<(P, u64)>,
    ) -> Result<()> {
        self.launch_with(kernel, &[], m, args, work)
    }

    /// [`Gpu::launch`] of a kernel whose source is specialised: each `(NAME, value)` replaces
    /// `{{NAME}}` in the WGSL (pipelines are cached per specialisation).
    pub(crate) fn launch_with<P: Pod>(
        &self,
        kernel: &Kernel,
        spec: &[(&str, u32)],
        m: usize,
        args: &[Arg],
        mut work: impl FnMut(&Chunk) -> Result<(P, u64)>,
    ) -> Result<()> {
        for arg in args {
            self.check_owner(arg.tensor())?;
        }
        debug_assert_eq!(args.len(), kernel.bindings.len());
        let per_chunk = self.images_per_chunk(m, args)?;
        let limits = self.limits();
        let pipeline = {
            let _serial = self.serial();
            self.pipeline(kernel, spec)
        };
        let device = &self.inner.device;
        let mut first = 0;
        while first < m.max(1) {
            let images = per_chunk.min(m.max(1) - first);
            let mut ranges = Vec::with_capacity(args.len());
            let mut offsets = Vec::with_capacity(args.len());
            for arg in args {
                let t = arg.tensor();
                match (arg, arg.image_bytes()) {
                    (Arg::Window(_, offset), _) => {
                        ranges.push((*offset, self.window_bytes()));
                        offsets.push(0);
                    }
                    (_, None) => {
                        ranges.push((0, t.byte_len().max(4)));
                        offsets.push(0);
                    }
                    (_, Some(per_image)) => {
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
            let serial = self.serial();
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
            for ((arg, &(offset, size)), &(binding, _)) in
                args.iter().zip(&ranges).zip(kernel.bindings)
            {
                entries.push(wgpu::BindGroupEntry {
                    binding,
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
            let timestamps = self.next_timestamps();
            let mut pending = self.pending();
            let encoder = Gpu::encoder(device, &mut pending);
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(kernel.entry),
                    timestamp_writes: timestamps.as_ref().map(|(set, first)| {
                        wgpu::ComputePassTimestampWrites {
                            query_set: set,
                            beginning_of_pass_write_index: Some(*first),
                            end_of_pass_write_index: Some(first + 1),
                        }
                    }),
                });
                pass.set_pipeline(&pipeline.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(x as u32, y as u32, 1);
            }
            pending.passes += 1;
            let full = pending.passes >= super::PASSES_PER_SUBMIT;
            drop(pending);
            drop(serial);
            if full {
                self.submit();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::specialize;

    #[test]
    fn specialize_unrolls_lines_and_fills_constants() {
        let t =
            "const N: u32 = {{N}}u;\nvar a{i} = {i-N}; // @unroll(N..2*N)\nx{i}; // @unroll(N)\n";
        assert_eq!(
            specialize(t, &[("N", 2)]),
            "const N: u32 = 2u;\nvar a2 = 0;\nvar a3 = 1;\nx0;\nx1;\n"
        );
        let t = "a{i/N}b{N+i%N}c{(i+1)*2}; // @unroll(N*2)\n";
        assert_eq!(
            specialize(t, &[("N", 3)]),
            "a0b3c2;\na0b4c4;\na0b5c6;\na1b3c8;\na1b4c10;\na1b5c12;\n"
        );
    }
}
