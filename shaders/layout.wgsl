// Axis permutation of a 4-D tensor (NCHW <-> NHWC, OIHW -> HWIO), one thread per output element:
//   y[o0, o1, o2, o3] = x[o0 * s0 + o1 * s1 + o2 * s2 + o3 * s3]
// where (d0, d1, d2, d3) is the output shape and s_k the input stride of output axis k.
// permute4_vec4 writes four consecutive output elements (along the last output axis, whose
// extent d3 is then a multiple of 4) with one vec4 store; `total` counts vec4s.
// Bindings: 0 params; 1 x, read; 2 y, write (3: y as vec4s, for permute4_vec4).

override WG: u32 = 64u;

struct Params {
    total: u32,
    d1: u32,
    d2: u32,
    d3: u32,
    s0: u32,
    s1: u32,
    s2: u32,
    s3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> y4: array<vec4<f32>>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn permute4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        let o3 = i % p.d3;
        let o2 = (i / p.d3) % p.d2;
        let o1 = (i / (p.d3 * p.d2)) % p.d1;
        let o0 = i / (p.d3 * p.d2 * p.d1);
        y[i] = x[o0 * p.s0 + o1 * p.s1 + o2 * p.s2 + o3 * p.s3];
    }
}

@compute @workgroup_size(WG)
fn permute4_vec4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        let e = i * 4u;
        let o3 = e % p.d3;
        let o2 = (e / p.d3) % p.d2;
        let o1 = (e / (p.d3 * p.d2)) % p.d1;
        let o0 = e / (p.d3 * p.d2 * p.d1);
        let base = o0 * p.s0 + o1 * p.s1 + o2 * p.s2 + o3 * p.s3;
        y4[i] = vec4<f32>(x[base], x[base + p.s3], x[base + 2u * p.s3], x[base + 3u * p.s3]);
    }
}
