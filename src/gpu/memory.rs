//! Device memory: a pool of buffers that tensors borrow and give back when dropped.
//!
//! A buffer is created only when the pool holds none of the wanted size class; a dropped tensor's
//! buffer goes back to the pool, and the next tensor of that class takes the free buffer with the
//! lowest id. That rule makes reuse repeatable: a program that runs the same sequence of ops
//! twice gets the same buffers in the same places the second time, so the bind groups cached for
//! the first run serve the second (see `recorder.rs`). Recorded work runs in recording order, so
//! a buffer given back while work that reads it is still pending is only written by work recorded
//! later; host writes into a pooled buffer submit the pending work first (see `Gpu::write`).
//!
//! Staging buffers for downloads are pooled the same way.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Live, peak and pooled device memory, and how many device objects were ever created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes of the buffers that tensors hold now.
    pub live_bytes: u64,
    /// Most `live_bytes + texture_bytes` ever held at once (see [`crate::Gpu::reset_peak`]).
    pub peak_bytes: u64,
    /// Bytes of the textures that convolution inputs are copied into where a kernel reads its
    /// input through a texture (kept for reuse, one per size; [`crate::Gpu::trim`] frees them).
    pub texture_bytes: u64,
    /// Bytes of free buffers kept for reuse (see [`crate::Gpu::trim`]).
    pub pooled_bytes: u64,
    /// Device buffers created so far (tensors, staging, uniforms).
    pub buffers_created: u64,
    /// Bind groups created so far.
    pub bind_groups_created: u64,
    /// Compute pipelines created so far.
    pub pipelines_created: u64,
}

/// Usage of every tensor buffer: storage for the kernels, uniform for the windows, copies both
/// ways for uploads and downloads.
const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::UNIFORM)
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

const STAGING_USAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

/// The size class of a request: whole 256-byte units up to 64 KiB, then steps of 1/8 of the
/// power of two below (at most 12.5% unused).
pub(crate) fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    if bytes <= 65536 {
        return bytes.next_multiple_of(256);
    }
    let step = (1u64 << (63 - bytes.leading_zeros())) / 8;
    bytes.next_multiple_of(step)
}

#[derive(Default)]
struct Free {
    /// Free buffers by size class, then by id.
    tensors: BTreeMap<u64, BTreeMap<u64, wgpu::Buffer>>,
    staging: BTreeMap<u64, BTreeMap<u64, wgpu::Buffer>>,
    pooled_bytes: u64,
}

/// The pool. Shared (`Arc`) by the runtime and every [`Block`] it hands out.
pub(crate) struct Pool {
    free: Mutex<Free>,
    next_id: AtomicU64,
    live: AtomicU64,
    peak: AtomicU64,
    textures: AtomicU64,
    pub buffers_created: AtomicU64,
    pub bind_groups_created: AtomicU64,
    pub pipelines_created: AtomicU64,
    /// Ids of buffers that were destroyed, for the bind group cache to forget.
    retired: Mutex<Vec<u64>>,
}

/// A buffer on loan from the pool; it goes back when the block is dropped.
pub(crate) struct Block {
    pub buffer: wgpu::Buffer,
    pub id: u64,
    class: u64,
    staging: bool,
    pool: Weak<Pool>,
}

impl Drop for Block {
    fn drop(&mut self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        if !self.staging {
            pool.live.fetch_sub(self.class, Ordering::Relaxed);
        }
        let mut free = pool.lock();
        free.pooled_bytes += self.class;
        let map = if self.staging {
            &mut free.staging
        } else {
            &mut free.tensors
        };
        map.entry(self.class)
            .or_default()
            .insert(self.id, self.buffer.clone());
    }
}

impl Pool {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            free: Mutex::default(),
            next_id: AtomicU64::new(1),
            live: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            textures: AtomicU64::new(0),
            buffers_created: AtomicU64::new(0),
            bind_groups_created: AtomicU64::new(0),
            pipelines_created: AtomicU64::new(0),
            retired: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Free> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A buffer of at least `bytes` for a tensor, and whether it is fresh (zero-filled).
    pub fn tensor(self: &Arc<Self>, device: &wgpu::Device, bytes: u64) -> (Block, bool) {
        let (block, fresh) = self.take(device, bytes, false);
        self.live.fetch_add(block.class, Ordering::Relaxed);
        self.peak.fetch_max(self.held(), Ordering::Relaxed);
        (block, fresh)
    }

    /// Bytes held now: tensors' buffers and input textures (what the peak tracks).
    fn held(&self) -> u64 {
        self.live.load(Ordering::Relaxed) + self.textures.load(Ordering::Relaxed)
    }

    /// Counts a texture of `bytes` made (`held`) or let go of.
    pub fn texture(&self, bytes: u64, held: bool) {
        if held {
            self.textures.fetch_add(bytes, Ordering::Relaxed);
            self.peak.fetch_max(self.held(), Ordering::Relaxed);
        } else {
            self.textures.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// A mappable buffer of at least `bytes` to download into.
    pub fn staging(self: &Arc<Self>, device: &wgpu::Device, bytes: u64) -> Block {
        self.take(device, bytes, true).0
    }

    fn take(self: &Arc<Self>, device: &wgpu::Device, bytes: u64, staging: bool) -> (Block, bool) {
        let class = size_class(bytes);
        {
            let mut free = self.lock();
            let map = if staging {
                &mut free.staging
            } else {
                &mut free.tensors
            };
            let taken = map.get_mut(&class).and_then(|m| m.pop_first());
            if let Some((id, buffer)) = taken {
                free.pooled_bytes -= class;
                return (self.block(buffer, id, class, staging), false);
            }
        }
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(if staging { "staging" } else { "tensor" }),
            size: class,
            usage: if staging { STAGING_USAGE } else { TENSOR_USAGE },
            mapped_at_creation: false,
        });
        self.buffers_created.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id();
        (self.block(buffer, id, class, staging), true)
    }

    fn block(self: &Arc<Self>, buffer: wgpu::Buffer, id: u64, class: u64, staging: bool) -> Block {
        Block {
            buffer,
            id,
            class,
            staging,
            pool: Arc::downgrade(self),
        }
    }

    /// A fresh id for a buffer that is not pooled (the uniform ring).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Lets go of every free buffer; returns how many bytes that released.
    pub fn trim(&self) -> u64 {
        let mut guard = self.lock();
        let free = &mut *guard;
        let released = free.pooled_bytes;
        let mut retired = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        for map in [&mut free.tensors, &mut free.staging] {
            for (_, buffers) in std::mem::take(map) {
                // Dropped, not destroyed: work already recorded may still read the buffer;
                // wgpu frees it when that work is done and no bind group names it.
                retired.extend(buffers.into_keys());
            }
        }
        free.pooled_bytes = 0;
        released
    }

    /// Marks `ids` (of textures let go of) for the bind group cache to forget.
    pub fn retire(&self, ids: impl IntoIterator<Item = u64>) {
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(ids);
    }

    /// Ids destroyed since the last call.
    pub fn take_retired(&self) -> Vec<u64> {
        std::mem::take(&mut *self.retired.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn reset_peak(&self) {
        self.peak.store(self.held(), Ordering::Relaxed);
    }

    pub fn stats(&self) -> MemoryStats {
        MemoryStats {
            live_bytes: self.live.load(Ordering::Relaxed),
            peak_bytes: self.peak.load(Ordering::Relaxed),
            texture_bytes: self.textures.load(Ordering::Relaxed),
            pooled_bytes: self.lock().pooled_bytes,
            buffers_created: self.buffers_created.load(Ordering::Relaxed),
            bind_groups_created: self.bind_groups_created.load(Ordering::Relaxed),
            pipelines_created: self.pipelines_created.load(Ordering::Relaxed),
        }
    }
}

/// Bind groups already made, by pipeline and the exact buffer ranges they bind.
pub(crate) type BindKey = (usize, Vec<(u64, u64, u64)>);

/// A cache of bind groups that forgets those naming destroyed buffers.
#[derive(Default)]
pub(crate) struct BindGroups {
    map: HashMap<BindKey, wgpu::BindGroup>,
}

impl BindGroups {
    /// Most bind groups kept; past it the cache starts over (a program that binds ever new
    /// buffers, say, should not keep them all alive).
    const CAPACITY: usize = 4096;

    pub fn get(&self, key: &BindKey) -> Option<&wgpu::BindGroup> {
        self.map.get(key)
    }

    pub fn insert(&mut self, key: BindKey, group: wgpu::BindGroup) {
        if self.map.len() >= Self::CAPACITY {
            self.map.clear();
        }
        self.map.insert(key, group);
    }

    pub fn forget(&mut self, ids: &[u64]) {
        if !ids.is_empty() {
            self.map
                .retain(|(_, ranges), _| !ranges.iter().any(|(id, _, _)| ids.contains(id)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_round_up_by_at_most_an_eighth() {
        assert_eq!(size_class(1), 256);
        assert_eq!(size_class(257), 512);
        assert_eq!(size_class(65536), 65536);
        assert_eq!(size_class(65537), 65536 + 8192);
        for bytes in [70_000u64, 1 << 20, (1 << 20) + 1, 3 << 30, 123_456_789] {
            let c = size_class(bytes);
            assert!(c >= bytes && c - bytes <= bytes / 8, "{bytes} -> {c}");
        }
    }
}
