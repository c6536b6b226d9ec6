//! The kernel cache: shader modules and compute pipelines, built once per `Gpu` and
//! specialisation.
//!
//! A [`Kernel`] names one entry point of one `.wgsl` file, the buffers it binds and the layout of
//! its uniform `Params` (from the Rust struct, which a test compares with naga's reflection of the
//! WGSL). A specialisation is a list of named `u32` constants: each reaches the shader as the
//! value of the WGSL `override` of that name, and the register-block unrolling (`unroll.rs`)
//! reads the same values. Pipelines are cached by file, entry point and constants.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::device::Device;
use super::memory::Pool;
use super::unroll::unroll;
use crate::error::{Error, Result};

/// `bindings` with the one at `at` replaced by `binding`: the list of a kernel's twin that reads
/// an operand another way (through a texture where the other reads a buffer).
pub(crate) const fn replacing<const N: usize>(
    mut bindings: [(u32, Access); N],
    at: usize,
    binding: (u32, Access),
) -> [(u32, Access); N] {
    bindings[at] = binding;
    bindings
}

/// How an entry point uses one buffer binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    Write,
    /// `var<uniform>` window of 64 KiB of a tensor.
    Window,
    /// `texture_storage_2d<rgba32float, read>`: a tensor's vec4s copied into a texture, read
    /// with `textureLoad` (see `texture.rs`).
    Texture,
}

/// A `#[repr(C)]` uniform block and the names and offsets of its fields.
pub(crate) trait Uniform: bytemuck::Pod {
    /// `(field, byte offset)` in declaration order.
    const FIELDS: &'static [(&'static str, usize)];
}

/// Declares the uniform `Params` block of a kernel: a `#[repr(C)]` struct of 32-bit fields that
/// implements [`Uniform`], so that a test can compare it with the WGSL struct of the same name.
macro_rules! uniform {
    ($(#[$meta:meta])* struct $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $($(#[$fmeta])* pub $field: $ty),*
        }

        impl $crate::gpu::kernels::Uniform for $name {
            const FIELDS: &'static [(&'static str, usize)] =
                &[$((stringify!($field), std::mem::offset_of!($name, $field))),*];
        }
    };
}
pub(crate) use uniform;

/// One entry point of one WGSL file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kernel {
    /// File name under `shaders/`.
    pub file: &'static str,
    /// The WGSL source.
    pub source: &'static str,
    /// Entry point.
    pub entry: &'static str,
    /// `(binding, access)` of each buffer argument, in argument order (binding 0 is the params).
    pub bindings: &'static [(u32, Access)],
    /// The layout of the params block (binding 0), for the test that compares it with the WGSL.
    #[cfg_attr(not(test), allow(dead_code))]
    pub params: &'static [(&'static str, usize)],
    /// Its size in bytes.
    pub params_size: usize,
    /// Whether its grid-stride loop is `stream.wgsl`'s `stream_range` with the adapter's lane
    /// groups: the launch sets `STREAM` (see `Quirks::stream_lanes`). Entry points made from a
    /// streamed kernel with [`Kernel::entry`] are streamed too.
    pub stream: bool,
}

impl Kernel {
    /// A kernel whose params block is `P`.
    pub const fn new<P: Uniform>(
        file: &'static str,
        source: &'static str,
        entry: &'static str,
        bindings: &'static [(u32, Access)],
    ) -> Self {
        Self {
            file,
            source,
            entry,
            bindings,
            params: P::FIELDS,
            params_size: std::mem::size_of::<P>(),
            stream: false,
        }
    }

    /// The same kernel, streamed (its source ends in `stream.wgsl`; see [`Kernel::stream`]).
    pub const fn streamed(self) -> Self {
        Self {
            stream: true,
            ..self
        }
    }

    /// The same file and params, another entry point and bindings.
    pub const fn entry(self, entry: &'static str, bindings: &'static [(u32, Access)]) -> Self {
        Self {
            entry,
            bindings,
            ..self
        }
    }

    /// The WGSL of this kernel for `consts` (unrolled).
    pub fn wgsl(&self, consts: &[(&str, u32)]) -> Result<String> {
        unroll(self.source, consts)
            .map_err(|e| Error::Kernel(format!("{} ({}): {e}", self.file, self.entry)))
    }
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

/// A compute pipeline and its bind group layout; `id` is unique per `Gpu`.
pub(crate) struct Pipeline {
    pub id: usize,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub kernel: Kernel,
}

type Consts = Vec<(&'static str, u32)>;
type PipelineKey = (&'static str, &'static str, Consts);

/// Modules and pipelines of one `Gpu`.
#[derive(Default)]
pub(crate) struct KernelCache {
    modules: Mutex<HashMap<(&'static str, Consts), wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
}

impl KernelCache {
    /// The pipeline of `kernel` specialised with `consts`, built on first use.
    ///
    /// # Errors
    /// [`Error::Kernel`] when the source does not unroll, [`Error::Gpu`] when the device rejects
    /// the module or the pipeline (returned here, not to a later download).
    pub fn pipeline(
        &self,
        device: &Device,
        pool: &Pool,
        kernel: &Kernel,
        consts: &[(&'static str, u32)],
    ) -> Result<Arc<Pipeline>> {
        let consts: Consts = consts.to_vec();
        let key = (kernel.file, kernel.entry, consts.clone());
        let mut pipelines = self.pipelines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = pipelines.get(&key) {
            return Ok(Arc::clone(p));
        }
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
            match modules.get(&(kernel.file, consts.clone())) {
                Some(m) => m.clone(),
                None => {
                    let source = kernel.wgsl(&consts)?;
                    let m = device.scoped(|d| {
                        d.create_shader_module(wgpu::ShaderModuleDescriptor {
                            label: Some(kernel.file),
                            source: wgpu::ShaderSource::Wgsl(source.into()),
                        })
                    })?;
                    modules.insert((kernel.file, consts.clone()), m.clone());
                    m
                }
            }
        };
        let entry =
            |binding: u32, ty: wgpu::BufferBindingType, dynamic: bool| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty,
                    has_dynamic_offset: dynamic,
                    min_binding_size: None,
                },
                count: None,
            };
        let mut entries = vec![entry(0, wgpu::BufferBindingType::Uniform, true)];
        entries.extend(kernel.bindings.iter().map(|&(binding, access)| {
            let ty = match access {
                Access::Read => wgpu::BufferBindingType::Storage { read_only: true },
                Access::Write => wgpu::BufferBindingType::Storage { read_only: false },
                Access::Window => wgpu::BufferBindingType::Uniform,
                Access::Texture => {
                    return wgpu::BindGroupLayoutEntry {
                        binding,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::StorageTexture {
                            access: wgpu::StorageTextureAccess::ReadOnly,
                            format: wgpu::TextureFormat::Rgba32Float,
                            view_dimension: wgpu::TextureViewDimension::D2,
                        },
                        count: None,
                    }
                }
            };
            entry(binding, ty, false)
        }));
        let overrides: Vec<(&str, f64)> = consts.iter().map(|&(n, v)| (n, f64::from(v))).collect();
        let (pipeline, layout) = device.scoped(|d| {
            let layout = d.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(kernel.entry),
                entries: &entries,
            });
            let pipeline_layout = d.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.entry),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
            let pipeline = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(kernel.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &overrides,
                    zero_initialize_workgroup_memory: true,
                },
                cache: None,
            });
            (pipeline, layout)
        })?;
        pool.pipelines_created.fetch_add(1, Ordering::Relaxed);
        let p = Arc::new(Pipeline {
            id: pipelines.len() + 1,
            pipeline,
            layout,
            kernel: *kernel,
        });
        pipelines.insert(key, Arc::clone(&p));
        Ok(p)
    }
}

/// The kernels checked with naga, with no device: every specialisation the ops can ask for.
#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{Access, Kernel};

    fn all_specializations() -> Vec<(Kernel, Vec<(&'static str, u32)>)> {
        let mut all = super::super::conv::specializations();
        all.extend(super::super::pool::vec4_specializations());
        all.push((super::super::pool::FORWARD, vec![]));
        all.push((super::super::pool::BACKWARD, vec![]));
        all.push((super::super::pool::BACKWARD, vec![("RELU", 1)]));
        all.push((super::super::pad::ZERO_PAD, vec![]));
        all.extend(super::super::reduce::specializations());
        for k in [
            super::super::relu::FORWARD,
            super::super::relu::BACKWARD,
            super::super::layout::PERMUTE,
            super::super::layout::PERMUTE_VEC4,
            super::super::layout::TRANSPOSE,
            super::super::optim::SGD,
            super::super::optim::MOMENTUM,
            super::super::optim::ADAM,
            super::super::optim::SGD4,
            super::super::optim::MOMENTUM4,
            super::super::optim::ADAM4,
            super::super::relu::FORWARD4,
            super::super::relu::BACKWARD4,
            super::super::affine::MATMUL,
            super::super::affine::MATMUL_DOT,
            super::super::affine::SOFTMAX,
            super::super::norm::FINISH_STATS,
            super::super::norm::FINISH_GRADS,
            super::super::norm::INV_STD_OF,
            super::super::norm::APPLY,
            super::super::norm::NORM_DX,
            super::super::norm::CHANNEL_SUMS,
        ] {
            all.push((k, vec![]));
        }
        for k in [
            super::super::norm::GROUP_NORM_FORWARD,
            super::super::norm::GROUP_NORM_BACKWARD,
            super::super::norm::IMAGE_SUMS_SHIFTED,
            super::super::norm::IMAGE_SUMS_NORMALISED,
        ] {
            all.push((k, vec![("WG", 8)]));
        }
        for sg in [4, 8, 16] {
            for r in super::super::affine::LANES_ROWS {
                for v4b in [0, 1] {
                    all.push((
                        super::super::affine::MATMUL_LANES,
                        vec![("SG", sg), ("R", r), ("V4B", v4b)],
                    ));
                }
            }
        }
        for k in [super::super::norm::APPLY4, super::super::norm::NORM_DX4] {
            for grouped in [0, 1] {
                for stream in [0, 1, 4] {
                    all.push((k, vec![("GROUPED", grouped), ("STREAM", stream)]));
                }
            }
        }
        #[cfg(feature = "bench")]
        {
            all.push((crate::bench::roofline_kernels().0, vec![]));
            all.push((crate::bench::roofline_kernels().1, vec![]));
        }
        // The streamed kernels as a CPU adapter's launch specialises them too.
        let streamed: Vec<_> = all
            .iter()
            .filter(|(k, _)| k.stream)
            .map(|(k, consts)| {
                let mut consts = consts.clone();
                consts.push(("STREAM", 8));
                (*k, consts)
            })
            .collect();
        all.extend(streamed);
        all
    }

    #[test]
    fn streamed_kernels_have_the_stream_loop() {
        for (k, _) in all_specializations() {
            assert!(
                !k.stream || k.source.contains("fn stream_range"),
                "{} ({}) is marked streamed without stream.wgsl",
                k.file,
                k.entry
            );
        }
    }

    fn validate(module: &naga::Module, what: &str) -> naga::valid::ModuleInfo {
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(module)
        .unwrap_or_else(|e| panic!("{what}: {e:?}"))
    }

    /// The uniform struct at binding 0 and the (binding -> address space) of the others.
    fn check_interface(module: &naga::Module, kernel: &Kernel, what: &str) {
        let mut spaces = HashMap::new();
        for (_, var) in module.global_variables.iter() {
            if let Some(b) = &var.binding {
                assert_eq!(b.group, 0, "{what}: group {}", b.group);
                spaces.insert(b.binding, (var.space, var.ty));
            }
        }
        let (space, ty) = spaces[&0];
        assert_eq!(space, naga::AddressSpace::Uniform, "{what}: binding 0");
        let naga::TypeInner::Struct { members, span } = &module.types[ty].inner else {
            panic!("{what}: binding 0 is not a struct");
        };
        let wgsl: Vec<(String, usize)> = members
            .iter()
            .map(|m| (m.name.clone().unwrap_or_default(), m.offset as usize))
            .collect();
        let rust: Vec<(String, usize)> = kernel
            .params
            .iter()
            .map(|&(n, o)| (n.to_string(), o))
            .collect();
        assert_eq!(
            wgsl, rust,
            "{what}: the Rust params and the WGSL struct differ"
        );
        assert_eq!(*span as usize, kernel.params_size, "{what}: params size");
        for &(binding, access) in kernel.bindings {
            let (space, _) = spaces
                .get(&binding)
                .unwrap_or_else(|| panic!("{what}: no binding {binding}"));
            let ok = match access {
                Access::Read => {
                    *space
                        == naga::AddressSpace::Storage {
                            access: naga::StorageAccess::LOAD,
                        }
                }
                Access::Write => matches!(space, naga::AddressSpace::Storage { access }
                    if access.contains(naga::StorageAccess::STORE)),
                Access::Window => *space == naga::AddressSpace::Uniform,
                Access::Texture => {
                    *space == naga::AddressSpace::Handle
                        && matches!(
                            module.types[spaces[&binding].1].inner,
                            naga::TypeInner::Image {
                                dim: naga::ImageDimension::D2,
                                arrayed: false,
                                class: naga::ImageClass::Storage { .. },
                            }
                        )
                }
            };
            assert!(
                ok,
                "{what}: binding {binding} is {space:?}, the host binds it {access:?}"
            );
        }
    }

    #[test]
    fn every_kernel_specialisation_is_valid_wgsl_and_matches_its_params() {
        let all = all_specializations();
        assert!(all.len() > 200, "only {} specialisations", all.len());
        for (kernel, consts) in &all {
            let what = format!("{} ({}) {consts:?}", kernel.file, kernel.entry);
            let source = kernel
                .wgsl(consts)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&source)));
            let info = validate(&module, &what);
            assert!(
                module.entry_points.iter().any(|e| e.name == kernel.entry),
                "{what}: no entry point"
            );
            let declared: Vec<&str> = module
                .overrides
                .iter()
                .filter_map(|(_, o)| o.name.as_deref())
                .collect();
            for (name, _) in consts {
                assert!(declared.contains(name), "{what}: no override {name}");
            }
            let constants: naga::back::PipelineConstants = consts
                .iter()
                .map(|&(n, v)| (n.to_string(), f64::from(v)))
                .collect();
            let (processed, _) = naga::back::pipeline_constants::process_overrides(
                &module,
                &info,
                Some((naga::ShaderStage::Compute, kernel.entry)),
                &constants,
            )
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
            validate(&processed, &what);
            check_interface(&module, kernel, &what);
            // Every buffer the entry point uses is in the host's bind group layout.
            let index = module
                .entry_points
                .iter()
                .position(|e| e.name == kernel.entry)
                .expect("entry point");
            let ep_info = info.get_entry_point(index);
            for (handle, var) in module.global_variables.iter() {
                let Some(binding) = &var.binding else {
                    continue;
                };
                let used = !ep_info[handle].is_empty();
                let bound = binding.binding == 0
                    || kernel.bindings.iter().any(|&(b, _)| b == binding.binding);
                assert!(
                    !used || bound,
                    "{what}: uses binding {} the host does not bind",
                    binding.binding
                );
            }
        }
    }

    #[test]
    fn a_kernel_with_an_unknown_unroll_name_is_an_error() {
        let k = super::super::conv::specializations()
            .into_iter()
            .find(|(k, _)| k.entry == "conv_gemm")
            .expect("conv_gemm")
            .0;
        let e = k
            .wgsl(&[("CB4", 2), ("SG", 1), ("SGON", 0)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("conv_gemm.wgsl") && e.contains("PX"), "{e}");
    }
}
