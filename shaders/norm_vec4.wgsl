// The element-wise steps of norm.wgsl, four channels per thread (channels a multiple of 4), for
// the memory-bound passes: one vec4 load or store where the scalar kernels make four.
//   apply4:   xhat = (x - mean[s]) * inv_std[s];  y = gamma[c] * xhat + beta[c]
//   norm_dx4: train: dx = inv_std[s] / n * (n * gamma[c] * dout - sd[s] - xhat * sdx[s]);
//             test:  dx = gamma[c] * inv_std[s] * dout
// with s the statistic of each channel, as in norm.wgsl (c4 = index of the vec4 of channels).
// Bindings: 0 params; 1 src (x or dout), 2 aux (apply4: inv_std), 6 gamma, 7 beta, 8 sd (apply4:
// the means), 9 sdx, 10 inv, 11 xhat (norm_dx4): read; 3 dst, 4 dst2: write.

override WG: u32 = 64u;

struct Params {
    total: u32,      // vec4s
    c: u32,
    per_image: u32,  // H * W * C
    groups: u32,     // 0: batch norm
    cg: u32,
    n: f32,
    eps: f32,
    momentum: f32,
    update: u32,
    weighted: u32,
    train: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst2: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> gamma: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> beta: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> sd: array<f32>;
@group(0) @binding(9) var<storage, read> sdx: array<f32>;
@group(0) @binding(10) var<storage, read> inv: array<f32>;
@group(0) @binding(11) var<storage, read> xhat4: array<vec4<f32>>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// The statistics of the four channels of vec4 i.
fn stats(i: u32) -> vec4<u32> {
    let c0 = (i * 4u) % p.c;
    let c = vec4<u32>(c0, c0 + 1u, c0 + 2u, c0 + 3u);
    if (p.groups == 0u) {
        return c;
    }
    let base = ((i * 4u) / p.per_image) * p.groups;
    return vec4<u32>(base) + c / vec4<u32>(p.cg);
}

// Each statistic buffer read at the four channels' statistics (one function per buffer, so that
// an entry point binds only the buffers it reads).
fn gather_aux(s: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(aux[s.x], aux[s.y], aux[s.z], aux[s.w]);
}

fn gather_sd(s: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(sd[s.x], sd[s.y], sd[s.z], sd[s.w]);
}

fn gather_sdx(s: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(sdx[s.x], sdx[s.y], sdx[s.z], sdx[s.w]);
}

fn gather_inv(s: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(inv[s.x], inv[s.y], inv[s.z], inv[s.w]);
}

@compute @workgroup_size(WG)
fn apply4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    let c4 = p.c / 4u;
    for (var i = linear_id(wid, nwg, lid); i < p.total; i += grid) {
        let s = stats(i);
        let xhat = (src[i] - gather_sd(s)) * gather_aux(s);
        dst[i] = xhat;
        dst2[i] = gamma[i % c4] * xhat + beta[i % c4];
    }
}

@compute @workgroup_size(WG)
fn norm_dx4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    let c4 = p.c / 4u;
    for (var i = linear_id(wid, nwg, lid); i < p.total; i += grid) {
        let s = stats(i);
        let g = gamma[i % c4] * src[i];
        let inv_std = gather_inv(s);
        if (p.train != 0u) {
            dst[i] = inv_std / p.n * (p.n * g - gather_sd(s) - xhat4[i] * gather_sdx(s));
        } else {
            dst[i] = g * inv_std;
        }
    }
}
