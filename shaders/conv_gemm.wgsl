// Convolution as an implicit GEMM (no im2col buffer), with one operand in a uniform-buffer window.
//
//   conv_gemm:   Z[p, c] = sum_{t, k} X[p -> t, k] * Wp[t, k, c]  (+ b[c] on the first window)
//                p = (i, oh, ow) an output pixel, t = (dh, dw) a tap, X[p -> t, k] =
//                X[i, oh*s_h + dh - top, ow*s_w + dw - left, k] or 0 in the padding.
//                Used for the forward pass (X = A_prev, Wp = W) and, at stride 1, for dA_prev
//                (X = dZ, Wp = W flipped in both taps with in/out channels swapped, top' = f_h-1-top).
//   conv_filter: dW[t, k, c] += sum_{p in window} X[p -> t, k] * dZ[p, c];  db[c] += sum_p dZ[p, c]
//   pack:        lays W out in uniform windows: [window][t][k][c4] (vec4 over 4 output channels)
//   pad_channels: copies (m, h, w, c) into (m, h, w, c4*4) with zero channels, for vec4 loads.
//
// Why a uniform window: every thread of a dispatch reads the same weights (conv_gemm) or the same
// dZ row (conv_filter) at the same time, while each thread's activations differ. Uniform reads
// are broadcast loads on GPUs and on CPU-emulated adapters alike (lavapipe turns a uniform-buffer
// read at a uniform address into one scalar load; a storage read is one load per lane).
// Each thread keeps CB4 vec4 accumulators (4*CB4 output channels) in registers and reads its
// activations as vec4 along channels, so one storage load feeds 4*CB4 vec4 FMAs.
//
// Windows hold UBO_VEC4 vec4s; long reductions are split over windows and accumulated in order
// (`accumulate`), so results are deterministic. No atomics.

const WG: u32 = 64u;
const CB4: u32 = {{CB4}}u;
const PX: u32 = {{PX}}u;
const RT: u32 = {{RT}}u;
const WGF: u32 = {{WGF}}u;
const UBO_VEC4: u32 = {{UBO_VEC4}}u;

struct Params {
    total: u32,       // conv_gemm: output pixels in the chunk; conv_filter: lanes; pack/pad: elements
    in_h: u32,
    in_w: u32,
    c4_in: u32,       // input channels / 4 (padded)
    out_h: u32,
    out_w: u32,
    c_out: u32,       // real output channels
    f_w: u32,
    s_h: u32,
    s_w: u32,
    top: i32,
    left: i32,
    tap_begin: u32,
    tap_end: u32,
    c_begin: u32,     // first output channel of the block (conv_gemm)
    accumulate: u32,  // 0: start fresh (+ bias if has_bias); 1: add to what is there
    has_bias: u32,
    x_off: u32,       // element offset of the chunk's first image in x
    z_off: u32,       // element offset in z / dW
    pixels: u32,      // conv_filter: pixels in this window; pack: windows per channel block
    first_pixel: u32, // conv_filter: first pixel (flat within the chunk) of the window
    n_cb: u32,        // conv_filter: channel blocks
    // pack: strides of W and flags
    k_real: u32,
    c_real: u32,
    k_stride: u32,
    c_stride: u32,
    tap_stride: u32,
    taps: u32,
    flip: u32,
    taps_per_window: u32,
    c_src: u32,       // pad_channels: channels of the source
    pad_: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> z: array<f32>;
@group(0) @binding(4) var<uniform> win: array<vec4<f32>, UBO_VEC4>;
@group(0) @binding(5) var<storage, read_write> db_out: array<f32>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// vec4 index of X[i, h, w, 4*k4 .. 4*k4+3] (x_off is in floats, a multiple of 4).
fn index_x4(i: u32, h: u32, w: u32, k4: u32) -> u32 {
    return p.x_off / 4u + ((i * p.in_h + h) * p.in_w + w) * p.c4_in + k4;
}

@compute @workgroup_size(WG)
fn conv_gemm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
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
        var acc{i} = vec4<f32>(0.0); // @unroll(PX*CB4)
        var dh = p.tap_begin / p.f_w;
        var dw = p.tap_begin % p.f_w;
        var wrow = 0u;
        for (var t = p.tap_begin; t < p.tap_end; t++) {
            let h{i} = i32(oh{i} * p.s_h + dh) - p.top; // @unroll(PX)
            let w{i} = i32(ow{i} * p.s_w + dw) - p.left; // @unroll(PX)
            let in{i} = h{i} >= 0 && w{i} >= 0 && u32(h{i}) < p.in_h && u32(w{i}) < p.in_w; // @unroll(PX)
            let base{i} = index_x4(im{i}, u32(select(0, h{i}, in{i})), u32(select(0, w{i}, in{i})), 0u); // @unroll(PX)
            for (var k4 = 0u; k4 < p.c4_in; k4++) {
                // Weights of 4 input channels x 4*CB4 output channels, read once for PX pixels.
                let wt{i} = win[wrow + {i}u]; // @unroll(4*CB4)
                let a{i} = select(vec4<f32>(0.0), x[base{i} + k4], in{i}); // @unroll(PX)
                acc{i} = fma(vec4<f32>(a{i/CB4}.x), wt{i%CB4}, acc{i}); // @unroll(PX*CB4)
                acc{i} = fma(vec4<f32>(a{i/CB4}.y), wt{CB4+i%CB4}, acc{i}); // @unroll(PX*CB4)
                acc{i} = fma(vec4<f32>(a{i/CB4}.z), wt{2*CB4+i%CB4}, acc{i}); // @unroll(PX*CB4)
                acc{i} = fma(vec4<f32>(a{i/CB4}.w), wt{3*CB4+i%CB4}, acc{i}); // @unroll(PX*CB4)
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

// Stores one vec4 of output channels (those below c_out) of pixel `pix` (if it exists), adding
// the bias or what is there.
fn store_z(pix: u32, q: u32, v: vec4<f32>) {
    if (pix >= p.total) {
        return;
    }
    let zbase = p.z_off + pix * p.c_out;
    for (var e = 0u; e < 4u; e++) {
        let c = p.c_begin + q * 4u + e;
        if (c < p.c_out) {
            var s = v[e];
            if (p.accumulate != 0u) {
                s += z[zbase + c];
            } else if (p.has_bias != 0u) {
                s += aux[c];
            }
            z[zbase + c] = s;
        }
    }
}

// One lane per (channel block, group of RT consecutive taps, k4); lanes of one channel block fill
// whole workgroups of WGF (`lanes_per_cb` rounded up), so each workgroup reads one uniform slice
// of the window. The window holds the dZ rows of `pixels` consecutive pixels (c4_out vec4 each):
// each row read feeds RT * 4 * CB4 vec4 FMAs. Every lane also sums db (uniform work); the lane
// owning tap 0 and k4 == 0 stores it.
// Bindings: x = A_prev (channels padded to c4_in*4), z = dW (f_h, f_w, k_real, c_out),
// db_out = db (c_out).
@compute @workgroup_size(WGF)
fn conv_filter(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WGF;
    let groups = (p.taps + RT - 1u) / RT;
    let lanes_per_cb = groups * p.c4_in;
    let stride_cb = (lanes_per_cb + WGF - 1u) / WGF * WGF;
    let c4_out = (p.c_out + 3u) / 4u;
    for (var first = (wid.y * nwg.x + wid.x) * WGF; first < p.total; first += grid) {
        let cb = first / stride_cb;
        let r = min(first % stride_cb + lid, lanes_per_cb - 1u);
        let t0 = (r / p.c4_in) * RT;
        let k4 = r % p.c4_in;
        let dh{i} = (t0 + {i}u) / p.f_w; // @unroll(RT)
        let dw{i} = (t0 + {i}u) % p.f_w; // @unroll(RT)
        var acc{i} = vec4<f32>(0.0); // @unroll(RT*4*CB4)
        var db{i} = vec4<f32>(0.0); // @unroll(CB4)
        // Walk the window's pixels with counters (no division per pixel).
        var ow = p.first_pixel % p.out_w;
        var oh = (p.first_pixel / p.out_w) % p.out_h;
        var im = p.first_pixel / (p.out_w * p.out_h);
        var drow = cb * CB4;
        for (var n = 0u; n < p.pixels; n++) {
            let h{i} = i32(oh * p.s_h + dh{i}) - p.top; // @unroll(RT)
            let w{i} = i32(ow * p.s_w + dw{i}) - p.left; // @unroll(RT)
            let in{i} = t0 + {i}u < p.taps && h{i} >= 0 && w{i} >= 0 && u32(h{i}) < p.in_h && u32(w{i}) < p.in_w; // @unroll(RT)
            let a{i} = select(vec4<f32>(0.0), x[index_x4(im, u32(select(0, h{i}, in{i})), u32(select(0, w{i}, in{i})), k4)], in{i}); // @unroll(RT)
            let d{i} = win[drow + {i}u]; // @unroll(CB4)
            acc{i} = fma(vec4<f32>(a{i/(4*CB4)}[{(i/CB4)%4}]), d{i%CB4}, acc{i}); // @unroll(RT*4*CB4)
            db{i} += d{i}; // @unroll(CB4)
            drow += c4_out;
            ow += 1u;
            if (ow == p.out_w) {
                ow = 0u;
                oh += 1u;
                if (oh == p.out_h) {
                    oh = 0u;
                    im += 1u;
                }
            }
        }
        if (first % stride_cb + lid < lanes_per_cb) {
            store_dw(t0 + {i/(4*CB4)}u, k4, cb, {i%(4*CB4)}u, acc{i}); // @unroll(RT*4*CB4)
            if (t0 == 0u && k4 == 0u) {
                store_db(cb, {i}u, db{i}); // @unroll(CB4)
            }
        }
    }
}

// Stores acc[j * CB4 + q] = dW[t, 4*k4 + j, channels of vec4 q of block cb].
fn store_dw(t: u32, k4: u32, cb: u32, slot: u32, v: vec4<f32>) {
    let k = k4 * 4u + slot / CB4;
    if (k >= p.k_real || t >= p.taps) {
        return;
    }
    for (var e = 0u; e < 4u; e++) {
        let c = (cb * CB4 + slot % CB4) * 4u + e;
        if (c < p.c_out) {
            let o = (t * p.k_real + k) * p.c_out + c;
            var s = v[e];
            if (p.accumulate != 0u) {
                s += z[o];
            }
            z[o] = s;
        }
    }
}

fn store_db(cb: u32, q: u32, v: vec4<f32>) {
    for (var e = 0u; e < 4u; e++) {
        let c = (cb * CB4 + q) * 4u + e;
        if (c < p.c_out) {
            var s = v[e];
            if (p.accumulate != 0u) {
                s += db_out[c];
            }
            db_out[c] = s;
        }
    }
}

// One thread per float of the packed buffer: window wi = cb * pixels + tc (pixels = windows per
// channel block), inside it [t][k][q][e] with k < c4_in*4, q < CB4.
// Source W: value(tap, k, c) = aux[tap_src * tap_stride + k * k_stride + c * c_stride], tap_src =
// flip ? taps-1-tap : tap; zero where k >= k_real or c >= c_real or tap >= taps.
@compute @workgroup_size(WG)
fn pack(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    let per_window = UBO_VEC4 * 4u;
    let k_pad = p.c4_in * 4u;
    for (var idx = linear_id(wid, nwg, lid); idx < p.total; idx += grid) {
        let wi = idx / per_window;
        let r = idx % per_window;
        let cb = wi / p.pixels;
        let tc = wi % p.pixels;
        let e = r % 4u;
        let q = (r / 4u) % CB4;
        let k = (r / (4u * CB4)) % k_pad;
        let tl = r / (4u * CB4 * k_pad);
        let tap = tc * p.taps_per_window + tl;
        let c = (cb * CB4 + q) * 4u + e;
        var v = 0.0;
        if (tl < p.taps_per_window && tap < p.taps && k < p.k_real && c < p.c_real) {
            let tap_src = select(tap, p.taps - 1u - tap, p.flip != 0u);
            v = aux[tap_src * p.tap_stride + k * p.k_stride + c * p.c_stride];
        }
        z[idx] = v;
    }
}

// One thread per float of the padded copy (m, h, w, c4_in*4).
@compute @workgroup_size(WG)
fn pad_channels(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    let c_pad = p.c4_in * 4u;
    for (var idx = linear_id(wid, nwg, lid); idx < p.total; idx += grid) {
        let c = idx % c_pad;
        let pix = idx / c_pad;
        var v = 0.0;
        if (c < p.c_src) {
            v = aux[p.x_off + pix * p.c_src + c];
        }
        z[p.z_off + idx] = v;
    }
}
