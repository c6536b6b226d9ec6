//! Tensors read through a texture: a tensor's vec4s copied, in order, into the rows of an
//! `rgba32float` texture [`TEXTURE_WIDTH`] texels wide, so that a kernel reads vec4 `i` with
//! `textureLoad` at `(i % TEXTURE_WIDTH, i / TEXTURE_WIDTH)`.
//!
//! Why: a storage-buffer load at a different address in each lane is, on Mesa 22.3's llvmpipe,
//! a loop over the lanes with a bounds check and a branch per component; a texel fetch is
//! straight-line code (one 16-byte load per lane and a transpose). In a scratch kernel with
//! deep's access pattern (16x16 images, 128 channels, 3x3 taps, 8 pixels x 8 output vec4s a
//! thread) the texture read its activations in about half the time of the buffer, and the
//! kernel took 10-15% less time; `conv_gemm` itself on deep's forward 7% (see
//! `Quirks::texture_first`), `conv_gemm_rows` on the first layers' data gradients 5-15%. On a
//! GPU, textures go through the texture cache. The copy costs one pass over the tensor; the
//! autotune times it with the kernel.
//!
//! The kernels bind it as a read-only storage texture (`texture_storage_2d<rgba32float,
//! read>`), not a sampled one: llvmpipe fetches a sampled texel by calling a generated function
//! that works out the mip level's size and clamps the coordinates lane by lane (a third of the
//! time of seed 001's first data gradient went there, in a profile), while a storage texture's
//! load is inline. On lavapipe (alternated runs): deep's forward 21.3-22.1 -> 17.5-17.9 ms, the
//! stride-2 forward of `down` 17.9-18.6 -> 15.2-15.6 ms, seed 001's first data gradient
//! (`conv_gemm_rows`) 8.9 -> 7.1-7.3 ms, the stem's 2.24 -> 1.84 ms.
//!
//! The channel-lane kernels read their rows of input vec4s through X's texture too (`TEX` in
//! `conv_lanes.wgsl`, `lanes_rows.wgsl`), and `conv_filter_lanes` also dZ: medians of 25
//! alternated calls on lavapipe, the copies included: seed 001's first forward 6.45 -> 5.74 ms,
//! cifar's 10.75 -> 9.77, seed 001's second 0.43 -> 0.32; the first layer's conv + ReLU + max
//! pool of training 4.15 -> 3.44 ms (same bits); its filter gradient 7.7 -> 6.5 ms (cifar's no
//! faster: the autotune keeps the buffers there).
//!
//! Ops that read one tensor through a texture one after the other share the copy inside a
//! [`Gpu::sharing_textures`] scope: `conv_backward`'s data and filter gradients both read dZ
//! (the filter gradient takes it from slot 0, where the data gradient put it). Seed 001's
//! first layer's backward (an 8 MB dZ), alternated whole-bench runs on lavapipe: 13.0-14.3 ->
//! 12.2-12.9 ms.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::memory::Block;
use super::{Gpu, Tensor};
use crate::error::{Error, Result};

/// Texels per row of an input texture (`texel_at` in `shaders/texel.wgsl`: `& 4095u`, `>> 12u`).
pub(crate) const TEXTURE_WIDTH: u32 = 4096;

/// A texture that tensors are copied into; `id` keys its bind groups like a buffer's id;
/// `busy` is held from a copy into it to the last dispatch that reads that copy; `holds`: the
/// tensor (its buffer's block, elements) its last copy came from and the sharing scope it was
/// made in (see [`Gpu::sharing_textures`]), `None` for a copy made outside one. The block is
/// held weakly, compared by address: a tensor let go of (its buffer back in the pool, to come
/// back under the same id in another block) never matches again, and its block's memory,
/// held by the weak reference, cannot come back as another's.
pub(crate) struct InputTexture {
    pub view: wgpu::TextureView,
    pub id: u64,
    busy: Mutex<()>,
    holds: Mutex<Option<(Weak<Block>, usize, u64)>>,
    /// Copies recorded into it (for the tests).
    copies: AtomicU64,
    texture: wgpu::Texture,
}

/// Numbers the texture-sharing scopes, so that a copy made in one is never taken for a copy
/// made in another.
static NEXT_SCOPE: AtomicU64 = AtomicU64::new(1);

/// Sets this thread's sharing scope back to what it holds when dropped (a panic included).
struct Restore(Option<u64>);

impl Drop for Restore {
    fn drop(&mut self) {
        SCOPE.set(self.0);
    }
}

thread_local! {
    /// The texture-sharing scope this thread is in, if any ([`Gpu::sharing_textures`]).
    static SCOPE: Cell<Option<u64>> = const { Cell::new(None) };
}

/// The input textures of one `Gpu`, one per height and slot (the tensors one dispatch reads
/// through textures at once: its input, its filter), made on first use and kept.
#[derive(Default)]
pub(crate) struct Textures {
    map: Mutex<HashMap<(u32, u8), Arc<InputTexture>>>,
}

/// Bytes of an input texture of `rows` rows.
fn texture_bytes(rows: u32) -> u64 {
    u64::from(rows) * u64::from(TEXTURE_WIDTH) * 16
}

impl Gpu {
    fn textures(&self) -> MutexGuard<'_, HashMap<(u32, u8), Arc<InputTexture>>> {
        self.inner
            .textures
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Lets go of the input textures (work already recorded keeps what it reads: wgpu frees a
    /// texture when nothing uses it); returns their bytes.
    pub(crate) fn trim_textures(&self) -> u64 {
        let mut map = self.textures();
        let bytes = map.keys().map(|&(rows, _)| texture_bytes(rows)).sum();
        self.inner.pool.retire(map.drain().map(|(_, t)| t.id));
        self.inner.pool.texture(bytes, false);
        bytes
    }

    /// Texture rows for `vec4s` texels, if they fit a texture of this device.
    pub(crate) fn texture_rows(&self, vec4s: usize) -> Option<u32> {
        let rows = vec4s.div_ceil(TEXTURE_WIDTH as usize).max(1);
        let side = self.limits().texture_side;
        u32::try_from(rows)
            .ok()
            .filter(|&r| r <= side && TEXTURE_WIDTH <= side)
    }

    /// Whether a kernel that is not autotuned reads `x`'s vec4s through a texture: on CPU
    /// adapters (`Quirks::texture_first`), where `x` is whole vec4s that fit one. The fused
    /// conv + ReLU + max pool and its filter gradient from the pool both ask this of the
    /// layer's input, so that in a training step the second reads the copy the first made.
    pub(crate) fn texture_untuned(&self, x: &Tensor) -> bool {
        self.quirks().texture_first
            && x.len().is_multiple_of(4)
            && self.texture_rows(x.len() / 4).is_some()
    }

    /// Records a copy of `x` (read as vec4s: its length a multiple of 4) into the input texture
    /// of its size and `slot`, in order with the ops around it, then `dispatches`, which record
    /// the work that reads the texture. The texture is this `Gpu`'s for that size and slot (a
    /// dispatch that reads two tensors through textures takes slots 0 and 1, in that order, so
    /// that no two threads wait on each other's): the texture's lock, held from the copy to the
    /// last dispatch, keeps another thread's copy of another tensor of that size from landing
    /// between them.
    ///
    /// # Errors
    /// [`Error::TooLarge`] when `x` does not fit a texture of this device; what `dispatches`
    /// returns.
    ///
    /// In a [`Gpu::sharing_textures`] scope, a texture that already holds `x` from a copy this
    /// scope made is read as it is, without another copy.
    pub(crate) fn with_texture(
        &self,
        x: &Tensor,
        slot: u8,
        dispatches: impl FnOnce(&InputTexture) -> Result<()>,
    ) -> Result<()> {
        let texture = self.texture_of(x, slot)?;
        let _busy = texture.busy.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut holds = texture.holds.lock().unwrap_or_else(|p| p.into_inner());
            let scope = SCOPE.get();
            let held = match (&*holds, scope) {
                (Some((block, len, s)), Some(scope)) => {
                    *s == scope && *len == x.len() && Weak::ptr_eq(block, &Arc::downgrade(&x.block))
                }
                _ => false,
            };
            if !held {
                self.copy_to_texture(x, &texture);
                *holds = scope.map(|s| (Arc::downgrade(&x.block), x.len(), s));
            }
        }
        dispatches(&texture)
    }

    /// Runs `ops` in a texture-sharing scope: within it, an op that reads a tensor through the
    /// input texture that an earlier op of the scope copied it into reads that copy instead of
    /// making another (a copy of anything else into the texture in between, from any thread,
    /// makes it copy again). The caller promises that no op of the scope writes a tensor that
    /// it reads through a texture (say `dZ`, read by both the data and the filter gradient). A
    /// scope inside a scope is the outer one.
    pub(crate) fn sharing_textures<T>(&self, ops: impl FnOnce() -> Result<T>) -> Result<T> {
        if SCOPE.get().is_some() {
            return ops();
        }
        let _back = Restore(SCOPE.replace(Some(NEXT_SCOPE.fetch_add(1, Ordering::Relaxed))));
        ops()
    }

    /// Runs `ops` outside any texture-sharing scope (the autotune times each variant with the
    /// copies it makes), then goes back to the scope it was called in.
    pub(crate) fn not_sharing_textures<T>(&self, ops: impl FnOnce() -> Result<T>) -> Result<T> {
        let _back = Restore(SCOPE.replace(None));
        ops()
    }

    /// The input texture of `slot` for `x`, made on first use.
    fn texture_of(&self, x: &Tensor, slot: u8) -> Result<Arc<InputTexture>> {
        let vec4s = x.len() / 4;
        let rows = self
            .texture_rows(vec4s)
            .filter(|_| x.len().is_multiple_of(4))
            .ok_or_else(|| Error::TooLarge {
                what: "tensor read through a texture",
                shape: x.shape().to_vec(),
                bytes: x.byte_len(),
                limit: texture_bytes(self.limits().texture_side),
            })?;
        let _serial = self.inner.device.serial();
        let mut map = self.textures();
        if let Some(t) = map.get(&(rows, slot)) {
            return Ok(Arc::clone(t));
        }
        let texture = self
            .inner
            .device
            .device
            .create_texture(&wgpu::TextureDescriptor {
                label: Some("input texture"),
                size: wgpu::Extent3d {
                    width: TEXTURE_WIDTH,
                    height: rows,
                    depth_or_array_layers: 1,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
        self.inner.pool.texture(texture_bytes(rows), true);
        let t = Arc::new(InputTexture {
            view: texture.create_view(&wgpu::TextureViewDescriptor::default()),
            id: self.inner.pool.next_id(),
            busy: Mutex::default(),
            holds: Mutex::default(),
            copies: AtomicU64::new(0),
            texture,
        });
        map.insert((rows, slot), Arc::clone(&t));
        Ok(t)
    }

    /// Records the copy of `x`'s vec4s into `texture`: the whole rows, then what is left of
    /// the last one.
    fn copy_to_texture(&self, x: &Tensor, texture: &InputTexture) {
        let vec4s = x.len() / 4;
        let full = (vec4s / TEXTURE_WIDTH as usize) as u32;
        let rest = (vec4s % TEXTURE_WIDTH as usize) as u32;
        let row_bytes = TEXTURE_WIDTH * 16;
        texture.copies.fetch_add(1, Ordering::Relaxed);
        let _serial = self.inner.device.serial();
        let mut recorder = self.recorder();
        let encoder = recorder.commands(&self.inner.device);
        for (first, width, height) in [(0, TEXTURE_WIDTH, full), (full, rest, 1)] {
            if width == 0 || height == 0 {
                continue;
            }
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: x.buffer(),
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: u64::from(first) * u64::from(row_bytes),
                        bytes_per_row: Some(row_bytes),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &texture.texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: first,
                        z: 0,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharing_scope_copies_a_tensor_once_and_never_takes_another_for_it() {
        let gpu = Gpu::new().expect("an adapter");
        let zeros = ndarray::Array4::<f32>::zeros((1, 4, 4, 4));
        let a = gpu.upload(&zeros).unwrap();
        let b = gpu.upload(&zeros).unwrap();
        let t = gpu.texture_of(&a, 0).unwrap();
        let copies = || t.copies.load(Ordering::Relaxed);
        let read = |x: &Tensor| gpu.with_texture(x, 0, |_| Ok(())).unwrap();
        // Outside a scope every read copies.
        read(&a);
        read(&a);
        assert_eq!(copies(), 2);
        gpu.sharing_textures(|| {
            read(&a);
            read(&a);
            assert_eq!(copies(), 3, "a copied once in the scope");
            read(&b);
            read(&a);
            assert_eq!(copies(), 5, "b in between: a copied again");
            // The autotune's timings copy, and leave nothing the scope would take.
            gpu.not_sharing_textures(|| {
                read(&a);
                Ok(())
            })?;
            read(&a);
            assert_eq!(copies(), 7);
            // A tensor let go of, its buffer back in the pool and out again (same id) as
            // another tensor: never taken for the copy.
            let id = b.buffer_id();
            read(&b);
            drop(b);
            let c = gpu.alloc("c", &[1, 4, 4, 4], false)?;
            assert_eq!(c.buffer_id(), id, "the pool hands the buffer out again");
            read(&c);
            assert_eq!(copies(), 9);
            read(&a);
            assert_eq!(copies(), 10);
            Ok(())
        })
        .unwrap();
        // A new scope takes nothing from the last (a is in the texture from it).
        gpu.sharing_textures(|| {
            read(&a);
            Ok(())
        })
        .unwrap();
        assert_eq!(copies(), 11);
    }
}
