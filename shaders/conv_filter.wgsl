// The filter gradient of a convolution, window by window of dZ rows:
//
//   dW[t, k, c] += sum_{p in window} X[p -> t, k] * dZ[p, c];   db[c] += sum_p dZ[p, c]
//
// with X[p -> t, k] as in conv_gemm.wgsl. The window (a uniform binding) holds the dZ rows of
// `pixels` consecutive output pixels; every lane of a workgroup reads the same row at the same
// time (a broadcast load). Windows are accumulated in order (`accumulate`): deterministic.
//
// Bindings: 0 params; 1 x = A_prev (m, in_h, in_w, c4_in) vec4 (channels padded), read;
// 3 dW (f_h, f_w, k_real, c_out), write; 4 the window of dZ (channels padded to 4); 5 db (c_out).
// Overrides: CB4 (output channel vec4s per lane), RT (consecutive taps per lane), WGF
// (workgroup size); CB4 and RT are also unrolled.

override CB4: u32;
override RT: u32;
override WGF: u32;
const UBO_VEC4: u32 = 4096u;

struct Params {
    total: u32,       // lanes
    in_h: u32,
    in_w: u32,
    c4_in: u32,       // input channels / 4 (padded)
    out_h: u32,
    out_w: u32,
    c_out: u32,
    f_w: u32,
    s_h: u32,
    s_w: u32,
    top: i32,
    left: i32,
    k_real: u32,      // real input channels
    taps: u32,        // f_h * f_w
    n_cb: u32,        // channel blocks
    pixels: u32,      // pixels in this window
    first_pixel: u32, // first pixel (flat over the batch) of the window
    accumulate: u32,  // 0: first window, store; 1: add to what is there
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> z: array<f32>;
@group(0) @binding(4) var<uniform> win: array<vec4<f32>, UBO_VEC4>;
@group(0) @binding(5) var<storage, read_write> db_out: array<f32>;

// vec4 index of X[i, h, w, 4*k4 .. 4*k4+3].
fn index_x4(i: u32, h: u32, w: u32, k4: u32) -> u32 {
    return ((i * p.in_h + h) * p.in_w + w) * p.c4_in + k4;
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

