// Lays the filter out in uniform windows for conv_gemm.wgsl: [window][t][k][q][e], window
// wi = cb * windows_per_cb + tc, with k < c4_in*4 and q < CB4 (a vec4 over 4 output channels).
//
//   packed[...] = W[dh, dw, k, c] = src[(dh * f_w_src + dw) * tap_stride + k * k_stride + c * c_stride],
//   (dh, dw) = (dh0 + a * dh_step, dw0 + b * dw_step) for tap t = a * sub_fw + b,
//   zero where k >= k_real, c >= c_real or t >= taps.
//
// The forward pass takes every tap as it is (dh0 = dw0 = 0, steps 1, sub_fw = f_w_src). The
// backward data pass flips the taps (dh0 = f_h - 1, steps -1) and transposes the channels
// ((k_stride, c_stride) = (1, c_out)); at stride s it packs one phase's sub-filter, every s-th
// tap flipped (steps -s_h, -s_w). One thread per row of 4*CB4 floats (one input channel k of one
// tap, every output channel of the block) of the rows that the kernels read (taps_per_window *
// c4_in * 4 of each 64 KiB window): the index arithmetic, integer divisions that CPU adapters
// run lane by lane, is paid once a row instead of once a float.
// Bindings: 0 params; 2 src W (f_h, f_w, c_in, c_out), read; 3 packed, write.
// Overrides: CB4 (channel vec4s per block).

override WG: u32 = 64u;
override CB4: u32;
const UBO_VEC4: u32 = 4096u;

struct Params {
    total: u32,           // rows written: `rows` of each window
    rows: u32,            // rows of a window the kernels read (its taps'); the rest is never
                          // read and not written
    c4_in: u32,
    k_real: u32,
    c_real: u32,
    k_stride: u32,
    c_stride: u32,
    tap_stride: u32,
    taps: u32,
    taps_per_window: u32,
    windows_per_cb: u32,
    sub_fw: u32,
    f_w_src: u32,
    dh0: i32,
    dh_step: i32,
    dw0: i32,
    dw_step: i32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> z: array<f32>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

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
        let wi = idx / p.rows;
        let r = idx % p.rows;
        let cb = wi / p.windows_per_cb;
        let tc = wi % p.windows_per_cb;
        let k = r % k_pad;
        let tl = r / k_pad;
        let tap = tc * p.taps_per_window + tl;
        let live = tl < p.taps_per_window && tap < p.taps && k < p.k_real;
        // Source offset of (tap, k, channel 0); only read when live.
        let dh = p.dh0 + i32(tap / p.sub_fw) * p.dh_step;
        let dw = p.dw0 + i32(tap % p.sub_fw) * p.dw_step;
        let at = u32((dh * i32(p.f_w_src) + dw) * i32(p.tap_stride)) + k * p.k_stride;
        let out = wi * per_window + r * 4u * CB4;
        let c0 = cb * CB4 * 4u;
        for (var j = 0u; j < 4u * CB4; j++) {
            let c = c0 + j;
            var v = 0.0;
            if (live && c < p.c_real) {
                v = src[at + c * p.c_stride];
            }
            z[out + j] = v;
        }
    }
}
