// Copies X (m, h, w, c_src) into (m, h, w, c4*4) with zero channels, so that the fast
// convolution kernels read whole vec4s. One thread per float of the padded copy.
// Bindings: 0 params; 1 src, read; 2 dst, write.

override WG: u32 = 64u;

struct Params {
    total: u32,   // floats of the padded copy in this chunk
    c4: u32,      // channels / 4, rounded up
    c_src: u32,   // channels of the source
    x_off: u32,   // element offsets of the chunk's first image
    y_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn pad_channels(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    let c_pad = p.c4 * 4u;
    for (var idx = linear_id(wid, nwg, lid); idx < p.total; idx += grid) {
        let c = idx % c_pad;
        let pix = idx / c_pad;
        var v = 0.0;
        if (c < p.c_src) {
            v = src[p.x_off + pix * p.c_src + c];
        }
        dst[p.y_off + idx] = v;
    }
}
