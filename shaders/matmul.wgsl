// A tiled matrix product, the fully connected layer's forward and backward passes:
//
//   C[i, j] = sum_k A[i, k] * B[k, j]  (+ bias[j] when has_bias)  (+ C[i, j] when accumulate)
//
// for i < m, j < n, k < kk, where A[i, k] = a[a_off + i * sa_row + k * sa_k] and B[k, j] =
// b[b_off + k * sb_k + j * sb_col]: transposed operands are strides, not copies (x @ w,
// dout @ w.T, x.T @ dout). A workgroup of 8 x 8 threads computes a 32 x 32 tile of C, each thread
// a 4 x 4 block of it in registers; the 32 x 16 slice of A and the 16 x 32 slice of B that the
// tile needs next are loaded into workgroup memory together (each thread loads 8 + 8 elements,
// neighbouring threads neighbouring elements), then read 4 times each from there. k runs in
// order: the same bits on every run.
// matmul_dot, for products too small to fill a GPU or to pay for barriers (a CPU adapter runs a
// workgroup with barriers as coroutines): one thread per four columns of a row of C, which loads
// the row's element of A once for the four (a CPU adapter loads lane by lane: 5 loads a step where
// four threads made 8), each column the same fma chain over k in order and the same epilogue, so
// the same bits as matmul.
// Bindings: 0 params; 1 a, read; 2 b, read; 3 bias, read (any buffer when has_bias = 0); 4 c, write.

const TM: u32 = 32u;
const TN: u32 = 32u;
const TK: u32 = 16u;

struct Params {
    m: u32,
    n: u32,
    kk: u32,
    tiles_n: u32,
    tiles: u32,
    a_off: u32,
    sa_row: u32,
    sa_k: u32,
    b_off: u32,
    sb_k: u32,
    sb_col: u32,
    c_off: u32,
    has_bias: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

var<workgroup> tile_a: array<f32, 512>; // [TM][TK]
var<workgroup> tile_b: array<f32, 512>; // [TK][TN]

@compute @workgroup_size(8, 8)
fn matmul(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    for (var tile = wid.y * nwg.x + wid.x; tile < p.tiles; tile += nwg.x * nwg.y) {
        let row0 = (tile / p.tiles_n) * TM;
        let col0 = (tile % p.tiles_n) * TN;
        var acc: array<f32, 16>;
        for (var k0 = 0u; k0 < p.kk; k0 += TK) {
            for (var e = 0u; e < 8u; e++) {
                let idx = t + e * 64u;
                let r = row0 + idx / TK;
                let k = k0 + idx % TK;
                var v = 0.0;
                if (r < p.m && k < p.kk) {
                    v = a[p.a_off + r * p.sa_row + k * p.sa_k];
                }
                tile_a[idx] = v;
                let kb = k0 + idx / TN;
                let col = col0 + idx % TN;
                var u = 0.0;
                if (kb < p.kk && col < p.n) {
                    u = b[p.b_off + kb * p.sb_k + col * p.sb_col];
                }
                tile_b[idx] = u;
            }
            workgroupBarrier();
            for (var k = 0u; k < TK; k++) {
                let a0 = tile_a[(lid.y * 4u + 0u) * TK + k];
                let a1 = tile_a[(lid.y * 4u + 1u) * TK + k];
                let a2 = tile_a[(lid.y * 4u + 2u) * TK + k];
                let a3 = tile_a[(lid.y * 4u + 3u) * TK + k];
                let bv = vec4<f32>(
                    tile_b[k * TN + lid.x * 4u + 0u],
                    tile_b[k * TN + lid.x * 4u + 1u],
                    tile_b[k * TN + lid.x * 4u + 2u],
                    tile_b[k * TN + lid.x * 4u + 3u],
                );
                for (var j = 0u; j < 4u; j++) {
                    acc[j] = fma(a0, bv[j], acc[j]);
                    acc[4u + j] = fma(a1, bv[j], acc[4u + j]);
                    acc[8u + j] = fma(a2, bv[j], acc[8u + j]);
                    acc[12u + j] = fma(a3, bv[j], acc[12u + j]);
                }
            }
            workgroupBarrier();
        }
        for (var i = 0u; i < 4u; i++) {
            let r = row0 + lid.y * 4u + i;
            for (var j = 0u; j < 4u; j++) {
                let col = col0 + lid.x * 4u + j;
                if (r < p.m && col < p.n) {
                    store(r, col, acc[i * 4u + j]);
                }
            }
        }
    }
}

// C[i, j] written by one thread (grid-stride over the elements of C).
fn store(r: u32, col: u32, acc: f32) {
    var v = acc;
    if (p.has_bias != 0u) {
        v += bias[col];
    }
    let o = p.c_off + r * p.n + col;
    if (p.accumulate != 0u) {
        v += c[o];
    }
    c[o] = v;
}

@compute @workgroup_size(64)
fn matmul_dot(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let grid = nwg.x * nwg.y * 64u;
    let n4 = (p.n + 3u) / 4u;
    for (var e = (wid.y * nwg.x + wid.x) * 64u + t; e < p.m * n4; e += grid) {
        let r = e / n4;
        let col0 = (e % n4) * 4u;
        // The four columns' offsets in b, past the last column clamped to it (loaded, unused).
        let last = p.n - 1u;
        let cb = vec4<u32>(min(col0, last), min(col0 + 1u, last), min(col0 + 2u, last), min(col0 + 3u, last)) * p.sb_col + vec4<u32>(p.b_off);
        var acc = vec4<f32>(0.0);
        for (var k = 0u; k < p.kk; k++) {
            let av = a[p.a_off + r * p.sa_row + k * p.sa_k];
            let kb = k * p.sb_k;
            let bv = vec4<f32>(b[cb.x + kb], b[cb.y + kb], b[cb.z + kb], b[cb.w + kb]);
            acc = fma(vec4<f32>(av), bv, acc);
        }
        for (var j = 0u; j < min(4u, p.n - col0); j++) {
            store(r, col0 + j, acc[j]);
        }
    }
}
