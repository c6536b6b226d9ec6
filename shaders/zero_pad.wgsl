// zero_pad: X_pad[i, h, w, c] = X[i, h - top, w - left, c] inside the input, 0 outside.
//
// Bindings: 0 params; 1 x (m, in_h, in_w, c), read; 2 y (m, in_h+top+bottom, in_w+left+right, c), write.
// One thread per element of y (gather). The host binds a window of whole images; x_off and y_off
// are the element offsets of the chunk's first image inside the windows.

override WG: u32 = 64u;

struct Params {
    total: u32,   // elements of y in this chunk
    in_h: u32,
    in_w: u32,
    c: u32,
    out_h: u32,
    out_w: u32,
    top: u32,
    left: u32,
    x_off: u32,
    y_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn index_nhwc(i: u32, h: u32, w: u32, c: u32, n_h: u32, n_w: u32, n_c: u32) -> u32 {
    return ((i * n_h + h) * n_w + w) * n_c + c;
}

@compute @workgroup_size(WG)
fn zero_pad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    for (var idx = (wid.y * nwg.x + wid.x) * WG + lid; idx < p.total; idx += grid) {
        let c = idx % p.c;
        let w = (idx / p.c) % p.out_w;
        let h = (idx / (p.c * p.out_w)) % p.out_h;
        let i = idx / (p.c * p.out_w * p.out_h);
        var v = 0.0;
        // Unsigned wrap-around makes rows above / columns left of the input fail the bound test.
        let hs = h - p.top;
        let ws = w - p.left;
        if (h >= p.top && w >= p.left && hs < p.in_h && ws < p.in_w) {
            v = x[p.x_off + index_nhwc(i, hs, ws, c, p.in_h, p.in_w, p.c)];
        }
        y[p.y_off + idx] = v;
    }
}
