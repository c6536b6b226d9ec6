// Spatial batch norm and group norm (NHWC), the element-wise and per-statistic steps; the sums
// between them are the deterministic reduction (reduce.wgsl). A "statistic" s is a channel c
// (batch norm: groups = 0, over (N, H, W)) or a (sample i, group g) pair (group norm: s = i * groups
// + c / cg, over (H, W, cg channels)); n elements contribute to each.
//   first_values:  shift[s] = the first element of statistic s
//   finish_shifted: mean[s] = shift[s] + s1[s] / n;  var[s] = s2[s] / n - (s1[s] / n)^2, with s1, s2
//                  the sums of x - shift and its square (one pass over x)
//   finish_var:    var = s2[s] / n;  inv_std[s] = 1 / sqrt(var + eps);  with update = 1 also
//                  running_mean = momentum * running_mean + (1 - momentum) * mean (and running_var)
//   inv_std_of:    inv_std[s] = 1 / sqrt(var[s] + eps)        (test mode, from the running var)
//   apply:         y = gamma[c] * xhat + beta[c], xhat = (x - mean[s]) * inv_std[s] (not kept: the
//                  backward pass recomputes it from x, in the same operations)
//   group_combine: out[i, g] = sum_{j < cg} (gamma[g*cg + j] if weighted else 1) * t[i, g*cg + j]
//                  (serial, in order; t is (samples, C) per-channel sums)
//   norm_dx:       train: dx = inv_n * inv_std[s] * (n * gamma[c] * dout - sd[s] - xhat * sdx[s])
//                  with sd = sum(dxhat), sdx = sum(dxhat * xhat) over the statistic, dxhat = dout * gamma,
//                  xhat from x (binding 11) and the means (12) as apply computed it;
//                  test:  dx = gamma[c] * inv_std[s] * dout
// Bindings: 0 params; 1 src, 2 aux, 6 gamma, 7 beta, 8 sd (apply: the means), 9 sdx, 10 inv,
// 11 x, 12 mean (norm_dx): read; 3 dst, 4 dst2, 5 dst3: write (which ones each entry uses: see
// `src/gpu/norm.rs`).

override WG: u32 = 64u;

struct Params {
    total: u32,      // elements, or statistics
    c: u32,          // channels
    per_image: u32,  // H * W * C
    groups: u32,     // 0: batch norm; else groups per sample
    cg: u32,         // channels per group (1 for batch norm)
    n: f32,          // elements per statistic
    eps: f32,
    momentum: f32,
    update: u32,     // finish_var: update the running statistics
    weighted: u32,   // group_combine: multiply by gamma
    train: u32,      // norm_dx: train-mode formula
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst2: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst3: array<f32>;
@group(0) @binding(6) var<storage, read> gamma: array<f32>;
@group(0) @binding(7) var<storage, read> beta: array<f32>;
@group(0) @binding(8) var<storage, read> sd: array<f32>;
@group(0) @binding(9) var<storage, read> sdx: array<f32>;
@group(0) @binding(10) var<storage, read> inv: array<f32>;
@group(0) @binding(11) var<storage, read> xs: array<f32>;
@group(0) @binding(12) var<storage, read> mean: array<f32>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// The statistic of element idx.
fn stat(idx: u32) -> u32 {
    let c = idx % p.c;
    if (p.groups == 0u) {
        return c;
    }
    return (idx / p.per_image) * p.groups + c / p.cg;
}

@compute @workgroup_size(WG)
fn first_values(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var s = items.x; s < items.y; s += items.z) {
        var i = s;
        if (p.groups > 0u) {
            i = (s / p.groups) * p.per_image + (s % p.groups) * p.cg;
        }
        dst[s] = src[i];
    }
}

// Mean and variance from the sums of d = x - shift and of d^2 (one pass over x):
// mean = shift + S1 / n;  var = max(S2 / n - (S1 / n)^2, 0).
@compute @workgroup_size(WG)
fn finish_shifted(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var s = items.x; s < items.y; s += items.z) {
        let m1 = src[s] / p.n;
        dst[s] = sd[s] + m1;
        dst2[s] = max(aux[s] / p.n - m1 * m1, 0.0);
    }
}

@compute @workgroup_size(WG)
fn finish_var(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var s = items.x; s < items.y; s += items.z) {
        let var_s = src[s] / p.n;
        dst[s] = 1.0 / sqrt(var_s + p.eps);
        if (p.update != 0u) {
            dst2[s] = p.momentum * dst2[s] + (1.0 - p.momentum) * aux[s];
            dst3[s] = p.momentum * dst3[s] + (1.0 - p.momentum) * var_s;
        }
    }
}

@compute @workgroup_size(WG)
fn inv_std_of(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var s = items.x; s < items.y; s += items.z) {
        dst[s] = 1.0 / sqrt(src[s] + p.eps);
    }
}

@compute @workgroup_size(WG)
fn apply(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        let c = i % p.c;
        let s = stat(i);
        let xhat = (src[i] - sd[s]) * aux[s];
        dst[i] = gamma[c] * xhat + beta[c];
    }
}

@compute @workgroup_size(WG)
fn group_combine(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var s = items.x; s < items.y; s += items.z) {
        let first = (s / p.groups) * p.c + (s % p.groups) * p.cg;
        let g0 = (s % p.groups) * p.cg;
        var acc = 0.0;
        for (var j = 0u; j < p.cg; j++) {
            var w = 1.0;
            if (p.weighted != 0u) {
                w = gamma[g0 + j];
            }
            acc = fma(w, src[first + j], acc);
        }
        dst[s] = acc;
    }
}

@compute @workgroup_size(WG)
fn norm_dx(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        let c = i % p.c;
        let s = stat(i);
        let g = gamma[c] * src[i];
        if (p.train != 0u) {
            let xhat = (xs[i] - mean[s]) * inv[s];
            dst[i] = inv[s] / p.n * (p.n * g - sd[s] - xhat * sdx[s]);
        } else {
            dst[i] = g * inv[s];
        }
    }
}
