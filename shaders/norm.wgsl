// Spatial batch norm and group norm (NHWC), the element-wise and per-statistic steps; the sums
// between them are the deterministic reduction (reduce.wgsl). A "statistic" s is a channel c
// (batch norm: groups = 0, over (N, H, W)) or a (sample i, group g) pair (group norm: s = i * groups
// + c / cg, over (H, W, cg channels)); n elements contribute to each.
//   finish_stats:  from the partial sums that reduce.wgsl leaves (t1 of x - shift, t2 of its
//                  square, the shift of statistic s its first element; `rows` rows per segment
//                  and channel, added in row order, then a group's channels in order): S1, S2 per
//                  statistic, then
//                  mean[s] = shift + S1 / n;  var = max(S2 / n - (S1 / n)^2, 0);
//                  inv_std[s] = 1 / sqrt(var + eps); with update = 1 also
//                  running_mean = momentum * running_mean + (1 - momentum) * mean (and running_var)
//   inv_std_of:    inv_std[s] = 1 / sqrt(var[s] + eps)        (test mode, from the running var)
//   apply:         y = gamma[c] * xhat + beta[c], xhat = (x - mean[s]) * inv_std[s] (not kept: the
//                  backward pass recomputes it from x, in the same operations)
//   finish_grads:  from the partial sums of dout (t1) and dout * xhat (t2), added as in
//                  finish_stats: sd[s] = sum_{j < cg} gamma[g*cg + j] * T1[i, g*cg + j] and sdx[s]
//                  likewise (fma in channel order; batch norm: one channel), and per channel
//                  dbeta[c] = sum over the images of T1[i, c], dgamma[c] of T2 (group norm:
//                  update = 1; batch norm: the same thread, one segment)
//   norm_dx:       train: dx = inv_n * inv_std[s] * (n * gamma[c] * dout - sd[s] - xhat * sdx[s])
//                  with sd = sum(dxhat), sdx = sum(dxhat * xhat) over the statistic, dxhat = dout * gamma,
//                  xhat from x (binding 11) and the means (12) as apply computed it;
//                  test:  dx = gamma[c] * inv_std[s] * dout
// Bindings: 0 params; 1 src, 2 aux, 6 gamma, 7 beta, 8 sd (apply: the means; finish_stats: x),
// 9 sdx, 10 inv, 11 x, 12 mean (norm_dx): read; 3 dst, 4 dst2, 5 dst3, 13 dst4: write
// (which ones each entry uses: see `src/gpu/norm.rs`).

override WG: u32 = 64u;

// @splice(norm_params.wgsl)

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
@group(0) @binding(13) var<storage, read_write> dst4: array<f32>;

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

// The partial sums of channel col in segment seg (src and aux side by side), added in row order
// as reduce.wgsl's fold_rows adds them.
fn folded(seg: u32, col: u32) -> vec2<f32> {
    var acc = vec2<f32>(0.0);
    let base = seg * p.rows * p.c + col;
    for (var r = 0u; r < p.rows; r++) {
        let i = base + r * p.c;
        acc += vec2<f32>(src[i], aux[i]);
    }
    return acc;
}

// Statistic s's segment (sample) and first channel; batch norm: one segment, channel s.
fn stat_cols(s: u32) -> vec2<u32> {
    if (p.groups == 0u) {
        return vec2<u32>(0u, s);
    }
    return vec2<u32>(s / p.groups, (s % p.groups) * p.cg);
}

@compute @workgroup_size(WG)
fn finish_stats(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // A plain grid stride (not stream_range): a few items, each a long serial loop, one per
    // lane of a SIMD group (stream_range would give each lane group one item).
    let grid = nwg.x * nwg.y * WG;
    for (var s = linear_id(wid, nwg, lid); s < p.total; s += grid) {
        let at = stat_cols(s);
        var t = folded(at.x, at.y);
        for (var j = 1u; j < p.cg; j++) {
            t += folded(at.x, at.y + j);
        }
        // The shift: statistic s's first element of x (as reduce.wgsl read it).
        let m1 = t.x / p.n;
        let mean_s = sd[at.x * p.per_image + at.y] + m1;
        let var_s = max(t.y / p.n - m1 * m1, 0.0);
        dst[s] = mean_s;
        dst2[s] = 1.0 / sqrt(var_s + p.eps);
        if (p.update != 0u) {
            dst3[s] = p.momentum * dst3[s] + (1.0 - p.momentum) * mean_s;
            dst4[s] = p.momentum * dst4[s] + (1.0 - p.momentum) * var_s;
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

// Items 0..stats: sd, sdx of statistic s (batch norm: also dbeta, dgamma of its channel); group
// norm with update = 1: items stats..stats + C: dbeta, dgamma of channel c.
@compute @workgroup_size(WG)
fn finish_grads(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let stats = p.total - select(0u, p.c, p.groups > 0u && p.update != 0u);
    let grid = nwg.x * nwg.y * WG; // as in finish_stats
    for (var item = linear_id(wid, nwg, lid); item < p.total; item += grid) {
        if (item < stats) {
            let at = stat_cols(item);
            var acc = vec2<f32>(0.0);
            for (var j = 0u; j < p.cg; j++) {
                let t = folded(at.x, at.y + j);
                acc = fma(vec2<f32>(gamma[at.y + j]), t, acc);
                if (p.groups == 0u) {
                    dst[item] = t.x;
                    dst2[item] = t.y;
                }
            }
            dst3[item] = acc.x;
            dst4[item] = acc.y;
        } else {
            let c = item - stats;
            var acc = vec2<f32>(0.0);
            for (var i = 0u; i < stats / p.groups; i++) {
                acc += folded(i, c);
            }
            dst[c] = acc.x;
            dst2[c] = acc.y;
        }
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

// dbeta[c] = sum over the images of src[i * C + c], dgamma[c] of aux (group norm's per-image
// channel sums, norm_images.wgsl's t1 and t2), in image order: `rows` images, one item a channel.
@compute @workgroup_size(WG)
fn channel_sums(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG; // as in finish_stats
    for (var c = linear_id(wid, nwg, lid); c < p.total; c += grid) {
        var acc = vec2<f32>(0.0);
        for (var i = 0u; i < p.rows; i++) {
            acc += vec2<f32>(src[i * p.c + c], aux[i * p.c + c]);
        }
        dst[c] = acc.x;
        dst2[c] = acc.y;
    }
}
