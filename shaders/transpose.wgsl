// A 4 x 4 tile transpose for permutations that move the input's last axis (extent a multiple of
// 4): thread t owns 4 consecutive outputs along the last output axis and 4 along output axis
// AX (the input's last axis). It reads 4 vec4s along the input's last axis and writes 4 vec4s
// along the output's (NHWC <-> NCHW with channels and widths in fours). Every index is computed
// with the input strides `s` of each output axis and the output strides `t`; the tile extents
// along output axes 1, 2, 3 (E1, E2, E3) and the axis AX are override constants, so that the
// index arithmetic divides by constants (a division by a uniform value costs one scalar
// division per lane on CPU adapters).
// Bindings: 0 params; 1 x (vec4s), read; 2 y (vec4s), write.

override WG: u32 = 64u;
override E1: u32 = 1u;
override E2: u32 = 1u;
override E3: u32 = 1u;
override AX: u32 = 0u;
struct Params {
    s: vec4<u32>,
    t: vec4<u32>,
    total: u32,   // tiles
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> q: Params;
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4<f32>>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn transpose4x4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Tile coordinates (the last axis and axis AX step by 4).
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, q.total);
    let ts = q.t[AX] / 4u; // output vec4s between the tile's rows
    let ss = q.s[3] / 4u;  // input vec4s between the tile's columns
    for (var i = items.x; i < items.y; i += items.z) {
        var o = vec4<u32>(0u);
        var r = i;
        o[3] = (r % E3) * 4u;
        r = r / E3;
        o[2] = r % E2;
        r = r / E2;
        o[1] = r % E1;
        o[0] = r / E1;
        o[AX] = o[AX] * 4u;
        let src = dot(o, q.s) / 4u;
        let dst = dot(o, q.t) / 4u;
        let r0 = x4[src];
        let r1 = x4[src + ss];
        let r2 = x4[src + 2u * ss];
        let r3 = x4[src + 3u * ss];
        y4[dst] = vec4<f32>(r0.x, r1.x, r2.x, r3.x);
        y4[dst + ts] = vec4<f32>(r0.y, r1.y, r2.y, r3.y);
        y4[dst + 2u * ts] = vec4<f32>(r0.z, r1.z, r2.z, r3.z);
        y4[dst + 3u * ts] = vec4<f32>(r0.w, r1.w, r2.w, r3.w);
    }
}
