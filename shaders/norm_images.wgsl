// The norms image by image on CPU adapters: one thread per image and vec4 of channels, each
// streaming its image's pixels, with no workgroup memory and no barrier (llvmpipe runs a kernel
// with barriers as coroutines, about twice as slowly: a first version of group_norm_forward with
// a workgroup per image and a tree in workgroup memory ran at half the speed). A SIMD group's
// lanes stream a few images, each read twice while it is still in the core's cache.
// Group norm in one dispatch each way, where the vec4 holds whole groups (channels per group 1,
// 2 or 4; see `Gpu::group_norm_fused`):
//   group_norm_forward:  per channel, the sums of d = x - shift and d^2 over the pixels (the shift
//                        of each statistic its first element, as reduce.wgsl's MODE 3), per group
//                        its channels' sums in channel order and, as norm.wgsl's finish_stats,
//                        mean = shift + S1 / n, var = max(S2 / n - (S1 / n)^2, 0),
//                        inv_std = 1 / sqrt(var + eps); then y = gamma * xhat + beta as apply4
//   group_norm_backward: per channel, the sums of dout (t1) and dout * xhat (t2) as reduce.wgsl's
//                        MODE 4, written per image and channel (dbeta and dgamma are their sums
//                        over the images: norm.wgsl's channel_sums); per group
//                        sd = sum gamma * t1, sdx = sum gamma * t2 (fma in channel order, as
//                        finish_grads); then dx as norm_dx4 (train mode)
// The sums alone for either norm (see `Gpu::image_sums`), as the partial rows that finish_stats
// and finish_grads fold in image order (one row per image and channel: batch norm's rows of its
// one segment, group norm's segments of one row), in place of the reduction:
//   image_sums_shifted:    t1, t2 = sums of d = x - shift and d^2, as group_norm_forward's
//   image_sums_normalised: t1, t2 = sums of dout and dout * xhat, as group_norm_backward's (the
//                          statistics per channel for batch norm)
// Bindings: 0 params; group_norm_forward: 1 x, 6 gamma, 7 beta: read; 3 y, 4 mean, 5 inv_std:
// write. group_norm_backward: 1 dout, 6 gamma, 10 inv_std, 11 x, 12 mean: read; 3 dx, 4 t1,
// 5 t2: write. image_sums_shifted: 1 x; 4 t1, 5 t2. image_sums_normalised: 1 dout, 10 inv_std,
// 11 x, 12 mean; 4 t1, 5 t2.

override WG: u32 = 64u;

// @splice(norm_params.wgsl)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst2: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst3: array<f32>;
@group(0) @binding(6) var<storage, read> gamma: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> beta: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> inv: array<f32>;
@group(0) @binding(11) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read> mean: array<f32>;

// A thread's image and vec4 of channels: image-major, so that neighbouring lanes read
// neighbouring channels of one pixel.
struct Item {
    img: u32,
    col: u32,
    base: u32,  // the image's first vec4
    c4: u32,
}

fn item_of(t: u32) -> Item {
    let c4 = p.c / 4u;
    let img = t / c4;
    return Item(img, t % c4, img * (p.per_image / 4u), c4);
}

// The item's vec4 at pixel q of its image.
fn at(it: Item, q: u32) -> u32 {
    return it.base + q * it.c4 + it.col;
}

// The item's four channels.
fn channels_of(it: Item) -> vec4<u32> {
    return vec4<u32>(it.col * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
}

// Per channel, the sum of its group's channels' v (the group's channels in order).
fn group_sums(v: vec4<f32>) -> vec4<f32> {
    if (p.cg == 1u) {
        return v;
    }
    if (p.cg == 2u) {
        let a = v.x + v.y;
        let b = v.z + v.w;
        return vec4<f32>(a, a, b, b);
    }
    return vec4<f32>(((v.x + v.y) + v.z) + v.w);
}

// Per channel, its group's sum of g * v, fma in channel order (as finish_grads).
fn group_dots(g: vec4<f32>, v: vec4<f32>) -> vec4<f32> {
    if (p.cg == 1u) {
        return g * v;
    }
    if (p.cg == 2u) {
        let a = fma(g.y, v.y, g.x * v.x);
        let b = fma(g.w, v.w, g.z * v.z);
        return vec4<f32>(a, a, b, b);
    }
    return vec4<f32>(fma(g.w, v.w, fma(g.z, v.z, fma(g.y, v.y, g.x * v.x))));
}

// The statistic of each of the item's channels: the channel (batch norm: groups = 0), or the
// image's group.
fn stats_of(it: Item) -> vec4<u32> {
    let c = channels_of(it);
    if (p.groups == 0u) {
        return c;
    }
    return vec4<u32>(it.img * p.groups) + c / vec4<u32>(p.cg);
}

// The mean and inv_std of each of the item's channels (the forward pass's, bindings 12, 10).
fn statistics_of(it: Item) -> array<vec4<f32>, 2> {
    let s = stats_of(it);
    return array<vec4<f32>, 2>(
        vec4<f32>(mean[s.x], mean[s.y], mean[s.z], mean[s.w]),
        vec4<f32>(inv[s.x], inv[s.y], inv[s.z], inv[s.w]),
    );
}

// The shift of each of the item's channels: its statistic's first element, as reduce.wgsl's
// MODE 3 reads it (batch norm: x[0, 0, 0, c]; group norm: the image's first pixel at the group's
// first channel).
fn shift_of(it: Item) -> vec4<f32> {
    if (p.groups == 0u) {
        return src[it.col];
    }
    let f = vec4<u32>(it.base * 4u) + channels_of(it) / vec4<u32>(p.cg) * vec4<u32>(p.cg);
    return vec4<f32>(src[f.x / 4u][f.x % 4u], src[f.y / 4u][f.y % 4u], src[f.z / 4u][f.z % 4u], src[f.w / 4u][f.w % 4u]);
}

// An item's sums over its image's pixels of d = x - shift and d^2 (src is x).
fn shifted_sums(it: Item, shift: vec4<f32>) -> array<vec4<f32>, 2> {
    var a = vec4<f32>(0.0);
    var b = vec4<f32>(0.0);
    let pix = p.per_image / p.c;
    for (var q = 0u; q < pix; q++) {
        let d = src[at(it, q)] - shift;
        a += d;
        b = fma(d, d, b);
    }
    return array<vec4<f32>, 2>(a, b);
}

// An item's sums over its image's pixels of dout and dout * xhat (src is dout), xhat =
// (x - m) * k.
fn normalised_sums(it: Item, m: vec4<f32>, k: vec4<f32>) -> array<vec4<f32>, 2> {
    var a = vec4<f32>(0.0);
    var b = vec4<f32>(0.0);
    let pix = p.per_image / p.c;
    for (var q = 0u; q < pix; q++) {
        let i = at(it, q);
        let v = src[i];
        a += v;
        b = fma(v, (x4[i] - m) * k, b);
    }
    return array<vec4<f32>, 2>(a, b);
}

// The sums written per image and channel: t1 (dst2) and t2 (dst3), `(images, C)`.
fn write_sums(it: Item, sums: array<vec4<f32>, 2>) {
    for (var j = 0u; j < 4u; j++) {
        dst2[it.img * p.c + it.col * 4u + j] = sums[0][j];
        dst3[it.img * p.c + it.col * 4u + j] = sums[1][j];
    }
}

@compute @workgroup_size(WG)
fn group_norm_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    let pix = p.per_image / p.c;
    for (var t = (wid.y * nwg.x + wid.x) * WG + lid; t < p.total; t += grid) {
        let it = item_of(t);
        let shift = shift_of(it);
        let sums = shifted_sums(it, shift);
        let m1 = group_sums(sums[0]) / p.n;
        let m = shift + m1;
        let k = 1.0 / sqrt(max(group_sums(sums[1]) / p.n - m1 * m1, vec4<f32>(0.0)) + p.eps);
        let s = stats_of(it);
        for (var j = 0u; j < 4u; j += p.cg) {
            dst2[s[j]] = m[j];
            dst3[s[j]] = k[j];
        }
        let gm = gamma[it.col];
        let bt = beta[it.col];
        // Back from the last pixel: the first pass's last reads are the likeliest in cache.
        for (var q = pix; q > 0u; q--) {
            let i = at(it, q - 1u);
            let xhat = (src[i] - m) * k;
            dst[i] = fma(gm, xhat, bt);
        }
    }
}

@compute @workgroup_size(WG)
fn group_norm_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    let pix = p.per_image / p.c;
    for (var t = (wid.y * nwg.x + wid.x) * WG + lid; t < p.total; t += grid) {
        let it = item_of(t);
        let st = statistics_of(it);
        let m = st[0];
        let k = st[1];
        let sums = normalised_sums(it, m, k);
        write_sums(it, sums);
        let gm = gamma[it.col];
        // dx = a * dout + k * xhat + b as norm_dx4's dx_terms (train mode).
        let f = -k / p.n;
        let ta = k * gm;
        let tk = f * group_dots(gm, sums[1]);
        let tb = f * group_dots(gm, sums[0]);
        for (var q = pix; q > 0u; q--) { // (back, as in the forward pass)
            let i = at(it, q - 1u);
            dst[i] = fma(ta, src[i], fma(tk, (x4[i] - m) * k, tb));
        }
    }
}

@compute @workgroup_size(WG)
fn image_sums_shifted(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    for (var t = (wid.y * nwg.x + wid.x) * WG + lid; t < p.total; t += grid) {
        let it = item_of(t);
        write_sums(it, shifted_sums(it, shift_of(it)));
    }
}

@compute @workgroup_size(WG)
fn image_sums_normalised(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    for (var t = (wid.y * nwg.x + wid.x) * WG + lid; t < p.total; t += grid) {
        let it = item_of(t);
        let st = statistics_of(it);
        write_sums(it, normalised_sums(it, st[0], st[1]));
    }
}
