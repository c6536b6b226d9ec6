// The element-wise steps of norm.wgsl, four channels per thread (channels a multiple of 4), for
// the memory-bound passes: one vec4 load or store where the scalar kernels make four.
//   apply4:   y = gamma[c] * xhat + beta[c], xhat = (x - mean[s]) * inv_std[s] (not kept)
//   norm_dx4: train: dx = inv_std[s] / n * (n * gamma[c] * dout - sd[s] - xhat * sdx[s]),
//             computed as a * dout + k * xhat + b with per-statistic a, k, b (see DxTerms), xhat
//             recomputed from x as apply4 computed it;
//             test:  dx = gamma[c] * inv_std[s] * dout
// with s the statistic of each channel, as in norm.wgsl (c4 = index of the vec4 of channels).
// Bindings: 0 params; 1 src (x or dout), 2 aux (apply4: inv_std), 6 gamma, 7 beta, 8 sd (apply4:
// the means), 9 sdx, 10 inv, 11 x, 12 mean (norm_dx4): read; 3 dst: write.

override WG: u32 = 64u;
// 0: batch norm (statistics per channel); 1: group norm (per image and group of channels).
override GROUPED: u32 = 0u;

// @splice(norm_params.wgsl)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> gamma: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> beta: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> sd: array<f32>;
@group(0) @binding(9) var<storage, read> sdx: array<f32>;
@group(0) @binding(10) var<storage, read> inv: array<f32>;
@group(0) @binding(11) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read> mean: array<f32>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
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

fn gather_mean(s: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(mean[s.x], mean[s.y], mean[s.z], mean[s.w]);
}

// Each thread keeps one vec4 of channels (cv) for the whole pass, so gamma, beta and the
// statistics are read once per thread (batch norm) or once per image it visits (group norm),
// and nothing in the loops divides integers: on CPU adapters an integer division costs one
// scalar division per lane, and a divergent branch runs for every element. Consecutive lanes
// take consecutive channels, then consecutive pixels.
//   GROUPED = 0: one loop over all the pixels.
//   GROUPED = 1: images outside, pixels inside: `per` pixel lanes per image, and each image lane
//                takes every `k`-th image (`per` and `k` from the grid and the image count).
// The batch-norm loop is the plainer of the two on purpose: with fewer live values it ran 20%
// faster on lavapipe than the grouped loop with one image.
struct Lane {
    ok: bool,
    cv: u32,     // vec4 of channels
    first: u32,  // first pixel (in the image)
    per: u32,    // pixel lanes (per image)
}

struct Images {
    first: u32,  // first image
    k: u32,      // image lanes
    count: u32,
    pix: u32,    // pixels per image
}

// Images in the pass: 1 for batch norm (its statistics span all of them).
fn image_count() -> u32 {
    if (GROUPED == 0u) {
        return 1u;
    }
    return (p.total * 4u) / p.per_image;
}

// Pixel lanes of the grid: its threads, a vec4 of channels each.
fn pixel_lanes(nwg: vec3<u32>) -> u32 {
    return (nwg.x * nwg.y * WG) / (p.c / 4u);
}

fn lane_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Lane {
    let c4 = p.c / 4u;
    let g = linear_id(wid, nwg, lid);
    let lanes = pixel_lanes(nwg);
    let per = max(lanes / image_count(), 1u);
    let pl = g / c4;
    return Lane(pl < (lanes / per) * per, g % c4, pl % per, per);
}

fn images_of(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, l: Lane) -> Images {
    let pl = linear_id(wid, nwg, lid) / (p.c / 4u);
    return Images(pl / l.per, pixel_lanes(nwg) / l.per, image_count(), p.per_image / p.c);
}

// The statistic of each of the thread's four channels in image 0 (add img * groups for others).
fn channel_stats(cv: u32) -> vec4<u32> {
    let c = vec4<u32>(cv * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
    if (GROUPED == 0u) {
        return c;
    }
    return c / vec4<u32>(p.cg);
}

@compute @workgroup_size(WG)
fn apply4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let l = lane_of(wid, nwg, lid);
    if (!l.ok) {
        return;
    }
    let c4 = p.c / 4u;
    let gm = gamma[l.cv];
    let bt = beta[l.cv];
    let s0 = channel_stats(l.cv);
    if (GROUPED == 0u) {
        let mean = gather_sd(s0);
        let inv_std = gather_aux(s0);
        let r = stream_range(l.first, l.per, p.total / c4);
        for (var q = r.x; q < r.y; q += r.z) {
            let i = q * c4 + l.cv;
            let xhat = (src[i] - mean) * inv_std;
            dst[i] = fma(gm, xhat, bt);
        }
        return;
    }
    let im = images_of(wid, nwg, lid, l);
    for (var img = im.first; img < im.count; img += im.k) {
        let s = vec4<u32>(img * p.groups) + s0;
        let mean = gather_sd(s);
        let inv_std = gather_aux(s);
        let base = img * im.pix;
        let r = stream_range(l.first, l.per, im.pix);
        for (var q = r.x; q < r.y; q += r.z) {
            let i = (base + q) * c4 + l.cv;
            let xhat = (src[i] - mean) * inv_std;
            dst[i] = fma(gm, xhat, bt);
        }
    }
}

// dx = a * dout + k * xhat + b per statistic: a = gamma * inv_std and, in train mode,
// k = -inv_std / n * sdx, b = -inv_std / n * sd (test mode: k = b = 0); xhat = (x - mean) * inv.
struct DxTerms {
    a: vec4<f32>,
    k: vec4<f32>,
    b: vec4<f32>,
    mean: vec4<f32>,
    inv: vec4<f32>,
}

fn dx_terms(s: vec4<u32>, gm: vec4<f32>) -> DxTerms {
    let inv_std = gather_inv(s);
    let m = gather_mean(s);
    if (p.train == 0u) {
        return DxTerms(inv_std * gm, vec4<f32>(0.0), vec4<f32>(0.0), m, inv_std);
    }
    let f = -inv_std / p.n;
    return DxTerms(inv_std * gm, f * gather_sdx(s), f * gather_sd(s), m, inv_std);
}

fn dx_at(t: DxTerms, i: u32) -> vec4<f32> {
    return fma(t.a, src[i], fma(t.k, (x4[i] - t.mean) * t.inv, t.b));
}

@compute @workgroup_size(WG)
fn norm_dx4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let l = lane_of(wid, nwg, lid);
    if (!l.ok) {
        return;
    }
    let c4 = p.c / 4u;
    let gm = gamma[l.cv];
    let s0 = channel_stats(l.cv);
    if (GROUPED == 0u) {
        let t = dx_terms(s0, gm);
        let r = stream_range(l.first, l.per, p.total / c4);
        for (var q = r.x; q < r.y; q += r.z) {
            let i = q * c4 + l.cv;
            dst[i] = dx_at(t, i);
        }
        return;
    }
    let im = images_of(wid, nwg, lid, l);
    for (var img = im.first; img < im.count; img += im.k) {
        let t = dx_terms(vec4<u32>(img * p.groups) + s0, gm);
        let base = img * im.pix;
        let r = stream_range(l.first, l.per, im.pix);
        for (var q = r.x; q < r.y; q += r.z) {
            let i = (base + q) * c4 + l.cv;
            dst[i] = dx_at(t, i);
        }
    }
}
