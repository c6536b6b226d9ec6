// Convolution as an implicit GEMM (no im2col buffer), with the filter in a uniform-buffer window:
//
//   Z[p, c] = sum_{t, k} X[p -> t, k] * Wp[t, k, c]  (+ b[c] on the first window)
//
// p = (i, oh, ow) an output pixel, t = (dh, dw) a tap, X[p -> t, k] =
// X[i, oh*s_h + dh - top, ow*s_w + dw - left, k] or 0 in the padding. Used for the forward pass
// (X = A_prev, Wp = W) and for dA_prev (X = dZ, Wp = W flipped in both taps with in/out
// channels swapped, top' = f_h-1-top). At a stride s > 1, dA_prev is one such product per stride
// phase: the rows r, r + s_h, ... (likewise columns) take every s-th tap, and the output map
// (`z_at`, conv_gemm_io.wgsl) writes the phase's pixels into their rows and columns of dA_prev.
// Wp is laid out by conv_pack.wgsl.
//
// Why a uniform window: every thread of a dispatch reads the same weights at the same time, while
// each thread's activations differ; uniform reads at a uniform address are broadcast loads on
// GPUs. Mesa 22.3's llvmpipe makes one only at a constant offset and gathers a scalar per lane
// at the offsets these loops advance, so with SGON = 1 (Quirks::spread_windows) the lanes of a
// subgroup of SG read SG different rows and subgroupBroadcast hands each row to all of them: the
// same values, summed in the same order, with SG times fewer loads. Each thread keeps PX pixels x CB4 vec4 accumulators (4*CB4 output
// channels) in registers and reads its activations as vec4 along channels, so one storage load
// feeds 4*CB4 vec4 FMAs. Long reductions are split over windows: a window after the first
// (`accumulate`) starts its sums from what the one before stored, and the last adds the bias,
// so the sum runs over all the taps in one chain, as in one window (WTEX) or the CPU
// reference: deterministic, no atomics, the same bits however the taps are cut.
//
// With relu = 1 (set on the dispatch of the last window) the epilogue applies ReLU: the fused
// conv + bias + ReLU of `Gpu::conv_relu_forward` writes A = max(0, Z) and never Z.
// Params and bindings: conv_gemm_io.wgsl. Overrides: CB4 (channel vec4s per thread), PX (pixels
// per thread), SG and SGON; all are also unrolled.
//
// `conv_gemm_rows` is the same product for stride 1 along the width, with all the taps in one
// window and few input channels (C4IN = c4_in vec4s of them: an RGB input, or the 8 channels of
// dZ in the first layer's data gradient), summed in conv_gemm's order: a thread owns R
// consecutive output pixels of one output row, so for each row of taps it loads the
// (R + FW - 1) * C4IN input vec4s that those pixels share once, instead of R * FW * C4IN (with 3
// input channels and a 4-wide filter, 7 loads instead of 16 for R = 4). Overrides R, FW (the
// filter width) and C4IN are unrolled too. With V3 = 1 (one output vec4 of 3 channels: an RGB
// input's data gradient) the sums are vec3s: each channel's chain is the same, with a quarter
// fewer FMAs (the fourth was always zero).

override WG: u32 = 64u;
override CB4: u32;
override PX: u32 = 1u;
override R: u32 = 1u;
override FW: u32 = 1u;
override C4IN: u32 = 1u;
override V3: u32 = 0u;
// SGON = 1: the window rows are read spread over the lanes of subgroups of SG lanes (lane l
// reads rows l, l + SG, ...) and handed to every lane by subgroupBroadcast; see conv_gemm.
override SG: u32 = 1u;
override SGON: u32 = 0u;
// TEX = 1: conv_gemm and conv_gemm_rows read X from `xt`, the texture that X's vec4s were
// copied into in order (texture.rs), instead of the buffer `x`; x_off then counts from the
// first image of X.
override TEX: u32 = 0u;
// WTEX = 1 (with TEX = 1): conv_gemm also reads the packed filter from a texture, `wt` (its
// window w at texture row w), and takes all the taps in one dispatch: no window limits its
// taps, so no later dispatch adds to what an earlier one stored.
override WTEX: u32 = 0u;

// The packed filter's texture (X's, `xt`, and `x_texel` are in conv_gemm_io.wgsl).
@group(0) @binding(9) var wt: texture_storage_2d<rgba32float, read>;

// vec4 i of the packed filter, copied into its texture (see `x_texel`).
fn w_texel(i: u32) -> vec4<f32> {
    return textureLoad(wt, texel_at(i));
}

// conv_gemm_tiled: input vec4s per tile step.
const TKC: u32 = 4u;
var<workgroup> tile_x: array<vec4<f32>, 256>; // 64 pixels x TKC input vec4s
var<workgroup> tile_w: array<vec4<f32>, 128>; // 4*TKC input channels x CB4 output vec4s

@compute @workgroup_size(WG)
fn conv_gemm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sl: u32, // @unroll(SGON)
) {
    let grid = nwg.x * nwg.y * WG * PX;
    // A workgroup covers WG * PX consecutive pixels; lane `lid` owns pixels first + lid + j*WG.
    // `first` is the same for the whole workgroup, so the loops below are uniform and the window
    // reads stay broadcast loads; lanes past the end compute on a clamped pixel and store nothing.
    for (var first = (wid.y * nwg.x + wid.x) * WG * PX; first < p.total; first += grid) {
        let pix{i} = min(first + lid + {i}u * WG, p.total - 1u); // @unroll(PX)
        let ow{i} = pix{i} % p.out_w; // @unroll(PX)
        let oh{i} = (pix{i} / p.out_w) % p.out_h; // @unroll(PX)
        let im{i} = pix{i} / (p.out_w * p.out_h); // @unroll(PX)
        var acc{i} = load_z(first + lid + {i/CB4}u * WG, {i%CB4}u); // @unroll(PX*CB4)
        var dh = p.tap_begin / p.f_w;
        var dw = p.tap_begin % p.f_w;
        var wrow = 0u;
        for (var t = p.tap_begin; t < p.tap_end; t++) {
            wrow = (p.win0 + t / p.tpw) * UBO_VEC4 + (t % p.tpw) * p.c4_in * 4u * CB4; // @unroll(WTEX)
            let h{i} = i32(oh{i} * p.s_h + dh) - p.top; // @unroll(PX)
            let w{i} = i32(ow{i} * p.s_w + dw) - p.left; // @unroll(PX)
            let in{i} = h{i} >= 0 && w{i} >= 0 && u32(h{i}) < p.in_h && u32(w{i}) < p.in_w; // @unroll(PX)
            let base{i} = index_x4(im{i}, u32(select(0, h{i}, in{i})), u32(select(0, w{i}, in{i})), 0u); // @unroll(PX)
            for (var k4 = 0u; k4 < p.c4_in; k4++) {
                // Weights of 4 input channels x 4*CB4 output channels, read once for PX pixels.
                let wt{i} = win[wrow + {i}u]; // @unroll(4*CB4*(1-SGON)*(1-WTEX))
                let wt{i} = w_texel(wrow + {i}u); // @unroll(4*CB4*(1-SGON)*WTEX)
                let wl{i} = win[wrow + min({i*SG}u + sl, {4*CB4-1}u)]; // @unroll(SGON*((4*CB4+SG-1)/SG)*(1-WTEX))
                let wl{i} = w_texel(wrow + min({i*SG}u + sl, {4*CB4-1}u)); // @unroll(SGON*((4*CB4+SG-1)/SG)*WTEX)
                let wt{i} = subgroupBroadcast(wl{i/SG}, {i%SG}u); // @unroll(SGON*4*CB4)
                let a{i} = select(vec4<f32>(0.0), x[base{i} + k4], in{i}); // @unroll(PX*(1-TEX))
                let a{i} = select(vec4<f32>(0.0), x_texel(base{i} + k4), in{i}); // @unroll(PX*TEX)
                // Per accumulator its input vec4's 4 channels in a row (one load and one store
                // of a spilled accumulator per 4 FMAs), output vec4 q = i / PX outer so that q's
                // 4 weight rows serve the PX pixels in turn; each sum runs over x, y, z, w as ever.
                acc{(i%PX)*CB4 + i/PX} = fma(vec4<f32>(a{i%PX}.w), wt{3*CB4 + i/PX}, fma(vec4<f32>(a{i%PX}.z), wt{2*CB4 + i/PX}, fma(vec4<f32>(a{i%PX}.y), wt{CB4 + i/PX}, fma(vec4<f32>(a{i%PX}.x), wt{i/PX}, acc{(i%PX)*CB4 + i/PX})))); // @unroll(PX*CB4)
                wrow += 4u * CB4;
            }
            dw += 1u;
            if (dw == p.f_w) {
                dw = 0u;
                dh += 1u;
            }
        }
        store_z(first + lid + {i/CB4}u * WG, {i%CB4}u, acc{i}); // @unroll(PX*CB4)
    }
}

@compute @workgroup_size(WG)
fn conv_gemm_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sl: u32, // @unroll(SGON)
) {
    let segs_per_row = (p.out_w + R - 1u) / R;
    let segs = (p.total / p.out_w) * segs_per_row;
    let grid = nwg.x * nwg.y * WG;
    // As in conv_gemm, `first` is uniform over the workgroup; lanes past the end compute on a
    // clamped segment and store nothing.
    for (var first = (wid.y * nwg.x + wid.x) * WG; first < segs; first += grid) {
        let seg = min(first + lid, segs - 1u);
        let row = seg / segs_per_row; // (image, output row)
        let ow0 = (seg % segs_per_row) * R;
        let oh = row % p.out_h;
        let im = row / p.out_h;
        let c0 = i32(ow0) - p.left;
        var acc{i} = vec4<f32>(0.0); // @unroll(R*CB4*(1-V3))
        var acc{i} = vec3<f32>(0.0); // @unroll(R*CB4*V3)
        for (var dh = 0u; dh * p.f_w < p.tap_end; dh++) {
            let h = i32(oh * p.s_h + dh) - p.top;
            let h_in = h >= 0 && u32(h) < p.in_h;
            let hc = u32(select(0, h, h_in));
            // The row's R + FW - 1 input columns, C4IN vec4s each: a[col * C4IN + k4].
            let in{i} = h_in && c0 + {i} >= 0 && c0 + {i} < i32(p.in_w); // @unroll(R+FW-1)
            let a{i} = select(vec4<f32>(0.0), x[index_x4(im, hc, u32(select(0, c0 + {i/C4IN}, in{i/C4IN})), {i%C4IN}u)], in{i/C4IN}); // @unroll((R+FW-1)*C4IN*(1-TEX))
            let a{i} = select(vec4<f32>(0.0), x_texel(index_x4(im, hc, u32(select(0, c0 + {i/C4IN}, in{i/C4IN})), {i%C4IN}u)), in{i/C4IN}); // @unroll((R+FW-1)*C4IN*TEX)
            let wb = dh * FW * C4IN * 4u * CB4;
            // The row of taps' FW * C4IN * 4 * CB4 filter rows (see conv_gemm for SGON).
            let wt{i} = win[wb + {i}u]; // @unroll(FW*C4IN*4*CB4*(1-SGON))
            let wl{i} = win[wb + min({i*SG}u + sl, {FW*C4IN*4*CB4-1}u)]; // @unroll(SGON*((FW*C4IN*4*CB4+SG-1)/SG))
            let wt{i} = subgroupBroadcast(wl{i/SG}, {i%SG}u); // @unroll(SGON*FW*C4IN*4*CB4)
            // Line i: accumulator j = i % (R*CB4) (pixel j / CB4, output vec4 j % CB4), step
            // s = i / (R*CB4) = (dw, k4) = (s / C4IN, s % C4IN): per accumulator the taps dw in
            // order, the input vec4s k4 of each, channels x, y, z, w of each: the order of
            // conv_gemm, so both kernels give the same bits and the autotune's choice never
            // changes a result.
            acc{i%(R*CB4)} = fma(vec4<f32>(a{((i%(R*CB4))/CB4 + (i/(R*CB4))/C4IN)*C4IN + (i/(R*CB4))%C4IN}.w), wt{(i/(R*CB4))*4*CB4 + 3*CB4 + i%CB4}, fma(vec4<f32>(a{((i%(R*CB4))/CB4 + (i/(R*CB4))/C4IN)*C4IN + (i/(R*CB4))%C4IN}.z), wt{(i/(R*CB4))*4*CB4 + 2*CB4 + i%CB4}, fma(vec4<f32>(a{((i%(R*CB4))/CB4 + (i/(R*CB4))/C4IN)*C4IN + (i/(R*CB4))%C4IN}.y), wt{(i/(R*CB4))*4*CB4 + CB4 + i%CB4}, fma(vec4<f32>(a{((i%(R*CB4))/CB4 + (i/(R*CB4))/C4IN)*C4IN + (i/(R*CB4))%C4IN}.x), wt{(i/(R*CB4))*4*CB4 + i%CB4}, acc{i%(R*CB4)})))); // @unroll(FW*C4IN*R*CB4*(1-V3))
            acc{i%(R*CB4)} = fma(vec3<f32>(a{((i%(R*CB4))/CB4 + (i/(R*CB4))/C4IN)*C4IN + (i/(R*CB4))%C4IN}.w), wt{(i/(R*CB4))*4*CB4 + 3*CB4 + i%CB4}.xyz, fma(vec3<f32>(a{((i%(R*CB4))/CB4 + (i/(R*CB4))/C4IN)*C4IN + (i/(R*CB4))%C4IN}.z), wt{(i/(R*CB4))*4*CB4 + 2*CB4 + i%CB4}.xyz, fma(vec3<f32>(a{((i%(R*CB4))/CB4 + (i/(R*CB4))/C4IN)*C4IN + (i/(R*CB4))%C4IN}.y), wt{(i/(R*CB4))*4*CB4 + CB4 + i%CB4}.xyz, fma(vec3<f32>(a{((i%(R*CB4))/CB4 + (i/(R*CB4))/C4IN)*C4IN + (i/(R*CB4))%C4IN}.x), wt{(i/(R*CB4))*4*CB4 + i%CB4}.xyz, acc{i%(R*CB4)})))); // @unroll(FW*C4IN*R*CB4*V3)
        }
        let live = first + lid < segs;
        store_z(select(p.total, row * p.out_w + ow0 + {i/CB4}u, live && ow0 + {i/CB4}u < p.out_w), {i%CB4}u, acc{i}); // @unroll(R*CB4*(1-V3))
        store_z(select(p.total, row * p.out_w + ow0 + {i/CB4}u, live && ow0 + {i/CB4}u < p.out_w), {i%CB4}u, vec4<f32>(acc{i}, 0.0)); // @unroll(R*CB4*V3)
    }
}

// `conv_gemm_tiled` is the same product tiled through workgroup memory, the shape of a GPU
// kernel: a workgroup of 64 threads owns 64 consecutive output pixels and all 4*CB4 channels of
// the window (64 % CB4 == 0). For each tap and each step of TKC input vec4s, the threads load the
// pixels' input vec4s (one pixel per thread, neighbouring threads on neighbouring pixels) and the
// filter rows from the uniform window into workgroup memory, then thread (pixel group, q) adds
// CB4 pixels x one output vec4 q from there. The sum runs over taps, input vec4s and their 4
// channels in conv_gemm's order, so it gives the same bits.
@compute @workgroup_size(64)
fn conv_gemm_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let q = lid % CB4;             // this thread's output vec4
    let mine = (lid / CB4) * CB4;  // its first pixel in the tile (CB4 pixels)
    // Uniform over the workgroup: `first`, the taps and the steps, so the barriers are too.
    for (var first = (wid.y * nwg.x + wid.x) * 64u; first < p.total; first += nwg.x * nwg.y * 64u) {
        let lp = min(first + lid, p.total - 1u); // the pixel this thread loads
        let ow = lp % p.out_w;
        let oh = (lp / p.out_w) % p.out_h;
        let im = lp / (p.out_w * p.out_h);
        var acc{i} = load_z(first + mine + {i}u, q); // @unroll(CB4)
        for (var t = p.tap_begin; t < p.tap_end; t++) {
            let h = i32(oh * p.s_h + t / p.f_w) - p.top;
            let w = i32(ow * p.s_w + t % p.f_w) - p.left;
            let inb = h >= 0 && w >= 0 && u32(h) < p.in_h && u32(w) < p.in_w;
            let base = index_x4(im, u32(select(0, h, inb)), u32(select(0, w, inb)), 0u);
            for (var k0 = 0u; k0 < p.c4_in; k0 += TKC) {
                let steps = min(TKC, p.c4_in - k0);
                for (var j = 0u; j < TKC; j++) {
                    tile_x[lid * TKC + j] = select(vec4<f32>(0.0), x[base + min(k0 + j, p.c4_in - 1u)], inb && j < steps);
                }
                for (var r = lid; r < 4u * TKC * CB4; r += 64u) {
                    let kk = min(r / (4u * CB4), steps - 1u);
                    tile_w[r] = win[((t - p.tap_begin) * p.c4_in + k0 + kk) * 4u * CB4 + r % (4u * CB4)];
                }
                workgroupBarrier();
                for (var kk = 0u; kk < steps; kk++) {
                    let wx = tile_w[(kk * 4u) * CB4 + q];
                    let wy = tile_w[(kk * 4u + 1u) * CB4 + q];
                    let wz = tile_w[(kk * 4u + 2u) * CB4 + q];
                    let ww = tile_w[(kk * 4u + 3u) * CB4 + q];
                    let a{i} = tile_x[(mine + {i}u) * TKC + kk]; // @unroll(CB4)
                    acc{i} = fma(vec4<f32>(a{i}.w), ww, fma(vec4<f32>(a{i}.z), wz, fma(vec4<f32>(a{i}.y), wy, fma(vec4<f32>(a{i}.x), wx, acc{i})))); // @unroll(CB4)
                }
                workgroupBarrier();
            }
        }
        store_z(first + mine + {i}u, q, acc{i}); // @unroll(CB4)
    }
}

// Where a window's sums start: 0, or after the first window (`accumulate`) what the one
// before stored for output vec4 q of pixel `pix` (0 past the last pixel or channel).
fn load_z(pix: u32, q: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (p.accumulate != 0u && pix < p.total) {
        let zbase = z_at(pix);
        for (var e = 0u; e < 4u; e++) {
            let c = p.c_begin + q * 4u + e;
            if (c < p.c_out) {
                v[e] = z[zbase + c];
            }
        }
    }
    return v;
}

// Stores one vec4 of output channels (those below c_out) of pixel `pix` (if it exists), adding
// the bias (set on the last window only).
fn store_z(pix: u32, q: u32, v: vec4<f32>) {
    if (pix >= p.total) {
        return;
    }
    let zbase = z_at(pix);
    for (var e = 0u; e < 4u; e++) {
        let c = p.c_begin + q * 4u + e;
        if (c < p.c_out) {
            var s = v[e];
            if (p.has_bias != 0u) {
                s += bias[c];
            }
            if (p.relu != 0u) {
                s = select(s, 0.0, s < 0.0); // the fused ReLU, on the last window only
            }
            z[zbase + c] = s;
        }
    }
}

