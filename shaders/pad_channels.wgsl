// Copies X (m, h, w, c_src) into (m, h, w, c4*4) with zero channels, so that the fast
// convolution kernels read whole vec4s. One thread per pixel, writing its c4 vec4s: no integer
// division per element (on lavapipe a vector division runs lane by lane, and a thread per float
// with `idx / c_pad`, `idx % c_pad` cost five times the copy itself).
// Bindings: 0 params; 1 src, read; 2 dst, write.

override WG: u32 = 64u;

struct Params {
    total: u32,   // pixels in this chunk
    c4: u32,      // channels / 4, rounded up
    c_src: u32,   // channels of the source
    x_off: u32,   // element offsets of the chunk's first image
    y_off: u32,   // a multiple of 4
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn pad_channels(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var pix = items.x; pix < items.y; pix += items.z) {
        let src_at = p.x_off + pix * p.c_src;
        let dst_at = p.y_off / 4u + pix * p.c4;
        for (var q = 0u; q < p.c4; q++) {
            var v = vec4<f32>(0.0);
            for (var e = 0u; e < 4u; e++) {
                if (q * 4u + e < p.c_src) {
                    v[e] = src[src_at + q * 4u + e];
                }
            }
            dst[dst_at + q] = v;
        }
    }
}
