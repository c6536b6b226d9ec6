// Deterministic sums along one axis, the reduction every layer shares:
//
//   out[s, b, c] = sum over the rows r of block b of  a[s, r, c]            (MODE 0)
//                                                  or a[s, r, c] * w[s, r, c] (MODE 1)
//                                                  or a[s, r, c]^2            (MODE 2)
//   MODE 3: with d = a[s, r, c] - shift, out gets the sums of d and out2 the sums of d^2, in one
//           pass: the statistics of a shifted by a value of its own, so that mean and variance
//           come from one read without cancellation. The shift is the statistic's first element,
//           read from w, which is a bound whole: w[c] (groups = 0: the first row's), or
//           w[(seg0 + s) * stride_s + (c / cg) * cg] (the segment's first row, the group's first
//           column).
//   MODE 4: out gets the sums of a and out2 the sums of a * xhat, in one pass, with
//           xhat = (w[s, r, c] - mean[k]) * inv[k] (k as in MODE 3): the normalised input of a
//           norm layer, recomputed from its input as the forward pass computed it.
//
// for s < segments, c < cols, blocks of BLOCK consecutive rows (the last one shorter). Element
// (s, r, c) is at s * stride_s + r * stride_r + c * stride_c (+ a_off, or w_off for w). One
// workgroup per (s, b, tile of CT columns): thread t takes column c0 + t % CT and row lane
// t / CT, sums rows r0 + lane, r0 + lane + RL, ... in order (neighbouring threads read
// neighbouring columns; with SPANS, a contiguous span of rows each), then a fixed tree in
// workgroup memory adds the RL lanes of each column.
// The host applies it again to the block sums until one block is left: the order of every
// addition is fixed by the shape alone, so the result is bitwise the same on every run and
// whatever the batch chunking (blocks never cross a segment, and chunks split at segments).
// No atomics.
//
// Bindings: 0 params; 1 a, read; 2 w, read (a again when unused); 3 out (segments, blocks,
// cols), write; 4 out2 (MODE 3 and 4; out again otherwise), write; 5 mean, 6 inv (MODE 4; a
// again otherwise), read.

const CT: u32 = 8u;      // columns per workgroup
const RL: u32 = 8u;      // row lanes per column
const BLOCK: u32 = 4096u;
override MODE: u32 = 0u;
// 0: row lane l sums rows l, l + RL, ... of its block (neighbouring threads read neighbouring
// addresses: coalesced on a GPU); 1: each row lane sums its own contiguous span of BLOCK / RL
// rows (CPU adapters, which run a workgroup's lanes eight at a time; see Quirks::reduce_spans).
override SPANS: u32 = 0u;

struct Params {
    total: u32,      // workgroups of work: segments * blocks * tiles
    rows: u32,
    cols: u32,
    blocks: u32,     // ceil(rows / BLOCK)
    tiles: u32,      // ceil(cols / CT)
    stride_s: u32,
    stride_r: u32,
    stride_c: u32,
    a_off: u32,
    w_off: u32,
    out_off: u32,
    groups: u32,     // MODE 3, 4: 0 (a statistic per column) or groups per segment
    cg: u32,         // MODE 3, 4: columns per group
    seg0: u32,       // MODE 3, 4: the first segment of this dispatch
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> out2: array<f32>;
@group(0) @binding(5) var<storage, read> mean: array<f32>;
@group(0) @binding(6) var<storage, read> inv: array<f32>;

var<workgroup> part: array<f32, 64>;
var<workgroup> part2: array<f32, 64>;

@compute @workgroup_size(64)
fn reduce_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let groups = nwg.x * nwg.y;
    let lane = t / CT;
    for (var g = wid.y * nwg.x + wid.x; g < p.total; g += groups) {
        let tile = g % p.tiles;
        let b = (g / p.tiles) % p.blocks;
        let s = g / (p.tiles * p.blocks);
        let c = tile * CT + t % CT;
        let r_end = min((b + 1u) * BLOCK, p.rows);
        var acc = 0.0;
        var acc2 = 0.0;
        if (c < p.cols) {
            let base = s * p.stride_s + c * p.stride_c;
            // The statistic of column c (MODE 3, 4).
            let k = select(c, (p.seg0 + s) * p.groups + c / p.cg, p.groups > 0u);
            var shift = 0.0;
            var m = 0.0;
            var inv_k = 0.0;
            if (MODE == 3u) {
                shift = w[select(c, (p.seg0 + s) * p.stride_s + (c / p.cg) * p.cg, p.groups > 0u)];
            } else if (MODE == 4u) {
                m = mean[k];
                inv_k = inv[k];
            }
            // Row lane `lane` sums rows r0, r0 + dr, ... below r1 (see SPANS).
            var r0 = b * BLOCK + lane;
            var r1 = r_end;
            var dr = RL;
            if (SPANS != 0u) {
                r0 = b * BLOCK + lane * (BLOCK / RL);
                r1 = min(r0 + BLOCK / RL, r_end);
                dr = 1u;
            }
            for (var r = r0; r < r1; r += dr) {
                let i = base + r * p.stride_r;
                let v = a[p.a_off + i];
                if (MODE == 1u) {
                    acc = fma(v, w[p.w_off + i], acc);
                } else if (MODE == 2u) {
                    acc = fma(v, v, acc);
                } else if (MODE == 4u) {
                    acc += v;
                    acc2 = fma(v, (w[p.w_off + i] - m) * inv_k, acc2);
                } else if (MODE == 3u) {
                    let d = v - shift;
                    acc += d;
                    acc2 = fma(d, d, acc2);
                } else {
                    acc += v;
                }
            }
        }
        part[t] = acc;
        part2[t] = acc2;
        workgroupBarrier();
        for (var half = RL / 2u; half > 0u; half /= 2u) {
            if (lane < half) {
                part[t] += part[t + half * CT];
                part2[t] += part2[t + half * CT];
            }
            workgroupBarrier();
        }
        if (lane == 0u && c < p.cols) {
            let o = p.out_off + (s * p.blocks + b) * p.cols + c;
            out[o] = part[t];
            if (MODE == 3u || MODE == 4u) {
                out2[o] = part2[t];
            }
        }
        workgroupBarrier();
    }
}

// One thread per (segment, column): the column's rows added one after the other, in order, with
// no barrier; out (segments, cols). CPU adapters finish a short run of partial sums with it
// (a kernel with barriers runs as coroutines there, each workgroup paying for the switches).
@compute @workgroup_size(64)
fn fold_rows(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let grid = nwg.x * nwg.y * 64u;
    for (var g = (wid.y * nwg.x + wid.x) * 64u + t; g < p.total; g += grid) {
        let s = g / p.cols;
        let c = g % p.cols;
        let base = p.a_off + s * p.stride_s + c * p.stride_c;
        var acc = 0.0;
        for (var r = 0u; r < p.rows; r++) {
            acc += a[base + r * p.stride_r];
        }
        out[p.out_off + g] = acc;
    }
}
