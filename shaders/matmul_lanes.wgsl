// matmul_lanes: matmul.wgsl's product for adapters that run a workgroup as the SIMD lanes of one
// CPU core (lavapipe, where a storage load is a loop over the lanes, one scalar load each, and
// barriers make a kernel run as coroutines: there the tiled kernel took 0.5-0.7 s for the
// 64 x 32768 x 100 product of seed 002's convnet on 64x64 images). Appended to matmul.wgsl (its
// params, bindings and `store`); its own module, since it needs subgroup operations.
//
// A workgroup is one subgroup of SG lanes and takes tiles of R rows x 4 * SG columns of C, columns
// fastest. Lane l owns four columns of the tile (4 * l .. 4 * l + 3) and its R rows, the R x 4
// sums in registers. For SG values of k at a time, lane l loads the R rows' elements of A at
// k0 + l, and `subgroupBroadcast` hands each to every lane: one load of A per lane where each
// lane loading every element made SG. Each element of C is the fma chain over k in order from 0
// and the same epilogue as matmul's and matmul_dot's: the same bits. Overrides SG and R are
// unrolled.

override SG: u32;
override R: u32;
// V4B = 1: B's four columns of a row are one aligned vec4 of b4 (columns contiguous, n, b_off
// and sb_k multiples of 4): one load where four were.
override V4B: u32 = 0u;

@group(0) @binding(5) var<storage, read> b4: array<vec4<f32>>;

@compute @workgroup_size(SG)
fn matmul_lanes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) sl: u32,
) {
    let col_tiles = (p.n + 4u * SG - 1u) / (4u * SG);
    let tiles = ((p.m + R - 1u) / R) * col_tiles;
    // The k that whole groups of SG cover; the rest is the tail below.
    let full = p.kk - p.kk % SG;
    for (var tile = wid.y * nwg.x + wid.x; tile < tiles; tile += nwg.x * nwg.y) {
        let i0 = (tile / col_tiles) * R;
        let j0 = ((tile % col_tiles) * SG + sl) * 4u;
        // The four columns' offsets in b and the rows' in a, past the last clamped to it (loaded,
        // unused).
        let last = p.n - 1u;
        let cb = vec4<u32>(min(j0, last), min(j0 + 1u, last), min(j0 + 2u, last), min(j0 + 3u, last)) * p.sb_col + vec4<u32>(p.b_off);
        let ar{i} = p.a_off + min(i0 + {i}u, p.m - 1u) * p.sa_row; // @unroll(R)
        var acc{i} = vec4<f32>(0.0); // @unroll(R)
        for (var k0 = 0u; k0 < full; k0 += SG) {
            let ka = (k0 + sl) * p.sa_k;
            let av{i} = a[ar{i} + ka]; // @unroll(R)
            let bv{i} = b_row(cb, (k0 + {i}u) * p.sb_k); // @unroll(SG)
            acc{i%R} = fma(vec4<f32>(subgroupBroadcast(av{i%R}, {i/R}u)), bv{i/R}, acc{i%R}); // @unroll(SG*R)
        }
        if (full < p.kk) {
            // Values of k past kk are loaded as its last (unused); their steps keep the sums as
            // they are, not adding a product with zero (0 * inf is NaN, and -0 + 0 is +0).
            let ka = min(full + sl, p.kk - 1u) * p.sa_k;
            let av{i} = a[ar{i} + ka]; // @unroll(R)
            let bv{i} = b_row(cb, min(full + {i}u, p.kk - 1u) * p.sb_k); // @unroll(SG)
            acc{i%R} = select(acc{i%R}, fma(vec4<f32>(subgroupBroadcast(av{i%R}, {i/R}u)), bv{i/R}, acc{i%R}), full + {i/R}u < p.kk); // @unroll(SG*R)
        }
        store_if(i0 + {i/4}u, j0 + {i%4}u, acc{i/4}[{i%4}]); // @unroll(R*4)
    }
}

// C[r, col] = v (with matmul's epilogue) where (r, col) is inside C.
fn store_if(r: u32, col: u32, v: f32) {
    if (r < p.m && col < p.n) {
        store(r, col, v);
    }
}

// B's elements at row offset kb of the four columns whose offsets are cb.
fn b_row(cb: vec4<u32>, kb: u32) -> vec4<f32> {
    if (V4B == 1u) {
        return b4[(cb.x + kb) / 4u];
    }
    return vec4<f32>(b[cb.x + kb], b[cb.y + kb], b[cb.z + kb], b[cb.w + kb]);
}
