// conv_backward, in gather form (each thread owns one element of the gradient it writes):
//   backward_data:   dA_prev[i, h, x, k] = sum over (dh, dw, c) with h + top = oh*s_h + dh and
//                    x + left = ow*s_w + dw for some output (oh, ow):  W[dh, dw, k, c] * dZ[i, oh, ow, c]
//                    (this is dA_pad with the padding cut off: padded positions are never computed)
//   backward_filter: dW[dh, dw, k, c] = sum_{i, oh, ow} A_pad[i, oh*s_h + dh, ow*s_w + dw, k] * dZ[i, oh, ow, c]
// (db is a deterministic reduction of dZ, reduce.wgsl.) dW reduces over the batch. Each dispatch covers the output rows oh_begin .. oh_end of the
// images of its chunk (the host keeps every thread's loop within the adapter's loop budget);
// `accumulate` = 1 adds the dispatch's sum to what earlier ones wrote, in order: deterministic.
//
// Bindings: 0 params; backward_data: 1 w, 2 dz (m, out_h, out_w, c_out), 3 da_prev (write);
// backward_filter: 1 a_prev, 2 dz, 3 dw (write).

override WG: u32 = 64u;

struct Params {
    total: u32,
    images: u32,
    in_h: u32,
    in_w: u32,
    c_in: u32,
    out_h: u32,
    out_w: u32,
    c_out: u32,
    f_h: u32,
    f_w: u32,
    s_h: u32,
    s_w: u32,
    top: u32,
    left: u32,
    a_off: u32,
    dz_off: u32,
    accumulate: u32,
    oh_begin: u32,    // backward_filter: the band of output rows
    oh_end: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src0: array<f32>;
@group(0) @binding(2) var<storage, read> src1: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn index_a(i: u32, h: u32, x: u32, k: u32) -> u32 {
    return p.a_off + ((i * p.in_h + h) * p.in_w + x) * p.c_in + k;
}

fn index_dz(i: u32, oh: u32, ow: u32, c: u32) -> u32 {
    return p.dz_off + ((i * p.out_h + oh) * p.out_w + ow) * p.c_out + c;
}

fn index_w(dh: u32, dw: u32, k: u32, c: u32) -> u32 {
    return ((dh * p.f_w + dw) * p.c_in + k) * p.c_out + c;
}

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// One thread per dA_prev element; bindings: src0 = W, src1 = dZ, dst = dA_prev (a_off = its offset).
@compute @workgroup_size(WG)
fn backward_data(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    for (var idx = linear_id(wid, nwg, lid); idx < p.total; idx += grid) {
        let k = idx % p.c_in;
        let x = (idx / p.c_in) % p.in_w;
        let h = (idx / (p.c_in * p.in_w)) % p.in_h;
        let i = idx / (p.c_in * p.in_w * p.in_h);
        let hp = h + p.top;
        let xp = x + p.left;
        var acc = 0.0;
        for (var dh = 0u; dh < p.f_h; dh++) {
            if (hp < dh || (hp - dh) % p.s_h != 0u) {
                continue;
            }
            let oh = (hp - dh) / p.s_h;
            if (oh >= p.out_h) {
                continue;
            }
            for (var dw = 0u; dw < p.f_w; dw++) {
                if (xp < dw || (xp - dw) % p.s_w != 0u) {
                    continue;
                }
                let ow = (xp - dw) / p.s_w;
                if (ow >= p.out_w) {
                    continue;
                }
                for (var c = 0u; c < p.c_out; c++) {
                    acc = fma(src0[index_w(dh, dw, k, c)], src1[index_dz(i, oh, ow, c)], acc);
                }
            }
        }
        dst[p.a_off + idx] = acc;
    }
}

// One thread per dW element; bindings: src0 = A_prev, src1 = dZ, dst = dW.
@compute @workgroup_size(WG)
fn backward_filter(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    for (var idx = linear_id(wid, nwg, lid); idx < p.total; idx += grid) {
        let c = idx % p.c_out;
        let k = (idx / p.c_out) % p.c_in;
        let dw = (idx / (p.c_out * p.c_in)) % p.f_w;
        let dh = idx / (p.c_out * p.c_in * p.f_w);
        var acc = 0.0;
        for (var i = 0u; i < p.images; i++) {
            for (var oh = p.oh_begin; oh < p.oh_end; oh++) {
                let hp = oh * p.s_h + dh;
                if (hp < p.top || hp - p.top >= p.in_h) {
                    continue;
                }
                for (var ow = 0u; ow < p.out_w; ow++) {
                    let xp = ow * p.s_w + dw;
                    if (xp < p.left || xp - p.left >= p.in_w) {
                        continue;
                    }
                    acc = fma(src0[index_a(i, hp - p.top, xp - p.left, k)], src1[index_dz(i, oh, ow, c)], acc);
                }
            }
        }
        if (p.accumulate != 0u) {
            acc += dst[idx];
        }
        dst[idx] = acc;
    }
}
