// Roofline probes for the benchmark.
//   fma:  each thread runs `iters` rounds of 4 x 8 independent vec4 fused multiply-adds (the
//         loop is unrolled by hand: loop overhead is large on CPU-emulated adapters)
//         (acc = fma(acc, x, y)), then writes one number so the work cannot be removed.
//         Flops = threads * iters * 32 * 4 * 2.
//   copy: dst[i] = src[i] over vec4s; bytes moved = 2 * 16 * n.
// Bindings: 0 params; 1 src (read); 2 dst (write).

override WG: u32 = 64u;

struct Params {
    total: u32,   // threads (fma) or vec4 elements (copy)
    iters: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn fma_probe(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = linear_id(wid, nwg, lid);
    if (idx >= p.total) {
        return;
    }
    let x = src[0];
    let y = src[1];
    let s = f32(idx);
    var a{i} = vec4<f32>(s + f32({i})); // @unroll(8)
    for (var i = 0u; i < p.iters; i++) {
        a{i%8} = fma(a{i%8}, x, y); // @unroll(32)
    }
    let sum = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
    dst[idx] = sum;
}

@compute @workgroup_size(WG)
fn copy_probe(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let r = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var idx = r.x; idx < r.y; idx += r.z) {
        dst[idx] = src[idx];
    }
}
