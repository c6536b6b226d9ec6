//! Launching a kernel within the device's limits.
//!
//! Every kernel binds its params (binding 0, a slot of the recorder's uniform ring), then its
//! read-only storage buffers, then its read-write ones. Tensors whose leading axis is the batch
//! are bound as windows of whole images: when a binding would exceed
//! `max_storage_buffer_binding_size`, the batch is split into chunks and the kernel is dispatched
//! once per chunk, with each window's element offset (the binding offset is aligned down to the
//! device's `min_storage_buffer_offset_alignment`) passed in the params. The dispatch grid is 2-D
//! and capped (see `Quirks::grid_cap`); kernels loop over their virtual workgroups, so any amount
//! of work fits. All chunks are planned and checked before the first is recorded.

use super::device::WINDOW_BYTES;
use super::kernels::{Access, Kernel, Uniform};
use super::recorder::Binding;
use super::texture::InputTexture;
use super::{Gpu, Tensor};
use crate::error::{Error, Result};

/// Threads per workgroup of the element-wise kernels (the `WG` override of their WGSL).
pub(crate) const WG: u64 = 64;

/// A buffer argument: a whole tensor, or a tensor with the batch as its leading axis whose
/// images are split across chunks.
#[derive(Clone, Copy)]
pub(crate) enum Arg<'a> {
    Whole(&'a Tensor),
    Batched(&'a Tensor),
    /// A 64 KiB uniform window starting at this byte offset (a multiple of the device's uniform
    /// offset alignment; tensors carry that much slack at their end).
    Window(&'a Tensor, u64),
    /// The texture that a tensor was copied into ([`Gpu::with_texture`]), bound whole.
    Texture(&'a Tensor, &'a InputTexture),
}

impl Arg<'_> {
    fn tensor(&self) -> &Tensor {
        match self {
            Arg::Whole(t) | Arg::Batched(t) | Arg::Window(t, _) | Arg::Texture(t, _) => t,
        }
    }

    /// Bytes per image for batched arguments.
    fn image_bytes(&self) -> Option<u64> {
        match self {
            Arg::Whole(_) | Arg::Window(..) | Arg::Texture(..) => None,
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

/// A size the kernels take as `u32`, or [`Error::IndexRange`] naming it and the op's shapes.
pub(crate) fn to_u32(
    what: &'static str,
    v: usize,
    input: &[usize],
    output: &[usize],
) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::IndexRange {
        what,
        value: v as u64,
        limit: u64::from(u32::MAX),
        input: input.to_vec(),
        output: output.to_vec(),
    })
}

/// Element counts of one dispatch (`chunk.images * per_image`) in `u32`; chunks keep every
/// binding within `max_binding_bytes` < 2^31, so this only fails for tensors the chunking
/// already refused.
pub(crate) fn count(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::TooLarge {
        what: "elements of one dispatch",
        shape: vec![n],
        bytes: n as u64 * 4,
        limit: u64::from(u32::MAX),
    })
}

/// A binding's size: at least 16 bytes and a multiple of 16 (vec4 arrays), which every tensor's
/// slack allows.
fn binding_size(bytes: u64) -> u64 {
    bytes.max(16).next_multiple_of(16)
}

impl Gpu {
    /// Most loop iterations one kernel invocation may run on this adapter (`None`: no limit).
    /// Mesa's llvmpipe (lavapipe, and llvmpipe through OpenGL) silently ends any loop after
    /// 65535 iterations of all of an invocation's loops; kernels with long serial loops split
    /// their work to stay within it.
    pub fn loop_budget(&self) -> Option<u64> {
        self.quirks().loop_budget
    }

    /// Iterations of a kernel's grid-stride loop for `total` threads' worth of work.
    pub(crate) fn grid_iterations(&self, total: u64) -> u64 {
        let threads = self
            .quirks()
            .grid_cap
            .min(u64::from(self.limits().workgroups_per_dim).pow(2))
            * WG;
        total.div_ceil(threads).max(1)
    }

    /// Whether loops of `iterations` iterations in all (per invocation) stay within half the
    /// loop budget, the margin every launch keeps (see `capped_workgroups`).
    pub(crate) fn within_loop_budget(&self, iterations: u64) -> bool {
        self.loop_budget()
            .is_none_or(|budget| iterations <= budget / 2)
    }

    /// Workgroups for a window kernel that needs `needed` workgroups' worth of threads, each
    /// thread's grid-stride iteration running `inner` loop iterations: at most the adapter's
    /// window cap (see `Quirks::window_grid_cap`), and never so few that a thread's loops
    /// together pass half the loop budget.
    pub(crate) fn window_workgroups(&self, needed: u64, inner: u64) -> u64 {
        self.capped_workgroups(needed, inner, self.quirks().window_grid_cap)
    }

    /// Workgroups for a streamed kernel (see `Kernel::stream`) over `items` items, each running
    /// `inner` loop iterations of its own: at most the adapter's stream cap (see
    /// `Quirks::stream_grid_cap`), and never so few that a thread's loops together pass half
    /// the loop budget.
    pub(crate) fn stream_workgroups(&self, items: u64, inner: u64) -> u64 {
        self.capped_workgroups(items.div_ceil(WG), inner, self.quirks().stream_grid_cap)
    }

    /// `needed` workgroups capped at `cap`, but not below what the loop budget asks for when
    /// each grid-stride iteration runs `inner` inner iterations.
    fn capped_workgroups(&self, needed: u64, inner: u64, cap: Option<u64>) -> u64 {
        let Some(cap) = cap else {
            return needed;
        };
        let floor = match self.loop_budget() {
            // iterations = ceil(needed / wg) * (1 + inner) <= budget / 2
            Some(budget) => {
                let per_thread = (budget / 2 / (1 + inner)).max(1);
                needed.div_ceil(per_thread)
            }
            None => 1,
        };
        needed.min(cap.max(floor))
    }

    /// Errors when a kernel whose threads each run `per_item` loop iterations for each of
    /// `items` elements (in a grid-stride loop) would exceed the adapter's loop budget.
    pub(crate) fn check_loops(
        &self,
        what: &'static str,
        items: u64,
        per_item: u64,
        shapes: &[&[usize]],
    ) -> Result<()> {
        let Some(limit) = self.loop_budget() else {
            return Ok(());
        };
        let iterations = self.grid_iterations(items).saturating_mul(per_item);
        if iterations + 64 > limit {
            return Err(Error::AdapterLimit {
                what,
                iterations,
                limit,
                shapes: shapes.iter().map(|s| s.to_vec()).collect(),
            });
        }
        Ok(())
    }

    /// Images per chunk so that every batched binding (plus alignment slack) fits the limit.
    fn images_per_chunk(&self, m: usize, args: &[Arg]) -> Result<usize> {
        let limits = self.limits();
        let budget = limits.binding_bytes - limits.offset_alignment - 16;
        for arg in args {
            let t = arg.tensor();
            // What one binding needs: the tensor, or one image plus the alignment slack of a
            // chunk's window; the limit named is the device's binding limit.
            let need = match arg {
                Arg::Whole(_) => binding_size(t.byte_len()),
                Arg::Batched(_) => arg.image_bytes().unwrap_or(0) + limits.offset_alignment + 16,
                Arg::Window(..) | Arg::Texture(..) => 0,
            };
            let limit = limits.binding_bytes;
            if need > limit {
                return Err(Error::TooLarge {
                    what: match arg {
                        Arg::Batched(_) => "one image of a tensor",
                        _ => "tensor bound whole",
                    },
                    shape: t.shape().to_vec(),
                    bytes: need,
                    limit,
                });
            }
        }
        let per_chunk = args
            .iter()
            .filter_map(|a| a.image_bytes().filter(|&b| b > 0))
            .map(|b| (budget / b) as usize)
            .min()
            .unwrap_or(m);
        Ok(per_chunk.clamp(1, m.max(1)))
    }

    /// Records `kernel` (specialised with `consts`) over `m` images in as many chunks as the
    /// limits need. `work` returns, for each chunk, the params to bind and the number of
    /// workgroups the chunk wants. Every chunk is planned and checked before any is recorded.
    pub(crate) fn launch<P: Uniform>(
        &self,
        kernel: &Kernel,
        consts: &[(&'static str, u32)],
        m: usize,
        args: &[Arg],
        work: impl FnMut(&Chunk) -> Result<(P, u64)>,
    ) -> Result<()> {
        self.launch_capped(kernel, consts, m, usize::MAX, args, work)
    }

    /// [`Gpu::launch`] with at most `max_images` images per chunk.
    pub(crate) fn launch_capped<P: Uniform>(
        &self,
        kernel: &Kernel,
        consts: &[(&'static str, u32)],
        m: usize,
        max_images: usize,
        args: &[Arg],
        mut work: impl FnMut(&Chunk) -> Result<(P, u64)>,
    ) -> Result<()> {
        for arg in args {
            self.check_owner(arg.tensor())?;
        }
        // A buffer written by the kernel may not also be read by it (wgpu forbids it, and the
        // result would depend on the order of threads).
        for (i, (arg, &(_, access))) in args.iter().zip(kernel.bindings).enumerate() {
            if access != Access::Write {
                continue;
            }
            let clash =
                args.iter()
                    .zip(kernel.bindings)
                    .enumerate()
                    .any(|(j, (other, &(_, a)))| {
                        j != i && a != Access::Write && other.tensor().same_buffer(arg.tensor())
                    });
            if clash {
                return Err(Error::Aliased {
                    what: kernel.entry,
                    shape: arg.tensor().shape().to_vec(),
                });
            }
        }
        let per_chunk = self.images_per_chunk(m, args)?.min(max_images.max(1));
        let limits = self.limits();
        let quirks = self.inner.device.quirks;
        let mut planned = Vec::new();
        let mut first = 0;
        while first < m.max(1) {
            let images = per_chunk.min(m.max(1) - first);
            let mut ranges = Vec::with_capacity(args.len());
            let mut offsets = Vec::with_capacity(args.len());
            for arg in args {
                let t = arg.tensor();
                match (arg, arg.image_bytes()) {
                    (Arg::Window(_, offset), _) => {
                        ranges.push((*offset, WINDOW_BYTES));
                        offsets.push(0);
                    }
                    (Arg::Texture(..), _) => {
                        ranges.push((0, 0));
                        offsets.push(0);
                    }
                    (_, None) => {
                        ranges.push((0, binding_size(t.byte_len())));
                        offsets.push(0);
                    }
                    (_, Some(per_image)) => {
                        let start = first as u64 * per_image;
                        let aligned = start / limits.offset_alignment * limits.offset_alignment;
                        let end = start + images as u64 * per_image;
                        ranges.push((aligned, binding_size(end - aligned)));
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
            let max = u64::from(limits.workgroups_per_dim);
            let x = workgroups.min(max).min(quirks.grid_cap);
            let y = workgroups
                .div_ceil(x)
                .min(max)
                .min(quirks.grid_cap.div_ceil(x));
            planned.push((params, (x as u32, y as u32), ranges));
        }
        if planned.is_empty() {
            return Ok(());
        }
        let _serial = self.inner.device.serial();
        let lanes = quirks.stream_lanes;
        let pipeline = if kernel.stream && lanes > 0 {
            let mut with_stream = consts.to_vec();
            with_stream.push(("STREAM", lanes));
            self.pipeline(kernel, &with_stream)?
        } else {
            self.pipeline(kernel, consts)?
        };
        let mut recorder = self.recorder();
        for (params, grid, ranges) in &planned {
            let bindings: Vec<Binding> = args
                .iter()
                .zip(ranges)
                .map(|(arg, &(offset, size))| {
                    let (id, view) = match arg {
                        Arg::Texture(_, texture) => (texture.id, Some(&texture.view)),
                        _ => (arg.tensor().buffer_id(), None),
                    };
                    Binding {
                        buffer: arg.tensor().buffer(),
                        id,
                        offset,
                        size,
                        view,
                    }
                })
                .collect();
            recorder.dispatch(
                &self.inner.device,
                &self.inner.pool,
                &pipeline,
                bytemuck::bytes_of(params),
                &bindings,
                *grid,
            )?;
        }
        Ok(())
    }
}
