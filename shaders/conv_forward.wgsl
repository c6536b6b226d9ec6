// conv_forward: Z[i, h, w, c] = sum_{dh, dw, k} A_pad[i, h*s_h + dh, w*s_w + dw, k] * W[dh, dw, k, c] + b[c]
// where A_pad is A_prev with `top` rows above and `left` columns to the left of zeros (the padding
// is never materialised: taps that land in it are skipped).
//
// Bindings: 0 params; 1 a_prev (m, in_h, in_w, c_in), read; 2 w (f_h, f_w, c_in, c_out), read;
// 3 b (c_out), read; 4 z (m, out_h, out_w, c_out), write.
// One thread per element of z. a_off / z_off: element offsets of the chunk's first image.

override WG: u32 = 64u;

struct Params {
    total: u32,
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
    z_off: u32,
    relu: u32,   // 1: write max(0, Z) (the fused conv + ReLU)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a_prev: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> z: array<f32>;

fn index_a(i: u32, h: u32, x: u32, k: u32) -> u32 {
    return p.a_off + ((i * p.in_h + h) * p.in_w + x) * p.c_in + k;
}

fn index_w(dh: u32, dw: u32, k: u32, c: u32) -> u32 {
    return ((dh * p.f_w + dw) * p.c_in + k) * p.c_out + c;
}

@compute @workgroup_size(WG)
fn conv_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    for (var idx = (wid.y * nwg.x + wid.x) * WG + lid; idx < p.total; idx += grid) {
        let c = idx % p.c_out;
        let ow = (idx / p.c_out) % p.out_w;
        let oh = (idx / (p.c_out * p.out_w)) % p.out_h;
        let i = idx / (p.c_out * p.out_w * p.out_h);
        var acc = 0.0;
        for (var dh = 0u; dh < p.f_h; dh++) {
            let h = oh * p.s_h + dh - p.top; // wraps below zero, then fails h < in_h
            if (oh * p.s_h + dh < p.top || h >= p.in_h) {
                continue;
            }
            for (var dw = 0u; dw < p.f_w; dw++) {
                let x = ow * p.s_w + dw - p.left;
                if (ow * p.s_w + dw < p.left || x >= p.in_w) {
                    continue;
                }
                for (var k = 0u; k < p.c_in; k++) {
                    acc = fma(a_prev[index_a(i, h, x, k)], w[index_w(dh, dw, k, c)], acc);
                }
            }
        }
        let v = acc + b[c];
        z[p.z_off + idx] = select(v, select(v, 0.0, v < 0.0), p.relu != 0u); // fused ReLU
    }
}
