// The params of the norm kernels (norm.wgsl, norm_vec4.wgsl, norm_images.wgsl; `NormParams` in
// norm.rs), spliced into each where it says `// @splice(norm_params.wgsl)`.
struct Params {
    total: u32,      // elements, vec4s, statistics, or (norm_images) images * C / 4 threads
    c: u32,          // channels
    per_image: u32,  // H * W * C
    groups: u32,     // 0: batch norm; else groups per sample
    cg: u32,         // channels per group (1 for batch norm; group_norm_*: 1, 2 or 4)
    n: f32,          // elements per statistic
    eps: f32,
    momentum: f32,
    update: u32,     // finish_stats: update the running statistics; finish_grads (group norm):
                     // also the per-channel sums (dbeta, dgamma)
    train: u32,      // norm_dx: train-mode formula
    rows: u32,       // finish_stats, finish_grads: partial sums per segment and column
}
