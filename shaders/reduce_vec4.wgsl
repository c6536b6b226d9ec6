// reduce.wgsl four columns at a time (columns a multiple of 4, rows contiguous): the same sums in
// a fixed order set by the shape alone (rows to lanes, then the tree over lanes), four columns
// side by side in one vec4, with one vec4 load where the scalar kernel makes four.
//   MODE 0: out = sums of a
//   MODE 3: d = a - shift; out = sums of d, out2 = sums of d^2; the shift the statistic's first
//           element of a itself, bound whole: per column (groups = 0: the first row, read as
//           vec4s from binding 6) or per (segment, group of cg columns, cg a multiple of 4: the
//           segment's first row, the group's first column, one scalar for the four columns,
//           binding 2)
//   MODE 4: out = sums of a, out2 = sums of a * xhat, xhat = (w - mean) * inv (binding 6 w; the
//           statistics per column or per (segment, group of cg columns, any cg), bindings 2, 5)
// One workgroup per (segment, block, tile of CT4 vec4-columns): thread t takes vec4-column
// t % CT4 and row lane t / CT4 (RL = 64 / CT4 lanes).
// Bindings: 0 params; 1 a (vec4), 2 w (scalar; MODE 4: mean), 5 inv (MODE 4), 6 w (vec4): read;
// 3 out, 4 out2 (vec4): write.

const BLOCK: u32 = 4096u;
override CT4: u32 = 2u;
override MODE: u32 = 0u;
// 0: row lane l sums rows l, l + RL, ... of its block (neighbouring threads read neighbouring
// addresses: coalesced on a GPU); G > 0 (CPU adapters, which run a workgroup's lanes eight at a
// time; see Quirks::reduce_spans): the row lanes in groups of G, each group summing its own
// contiguous span of the block's rows with its G lanes interleaved (G * CT4 threads: one SIMD
// group of lanes reading neighbouring addresses, one stream per group). G divides RL.
override SPANS: u32 = 0u;

struct Params {
    total: u32,      // workgroups of work: segments * blocks * tiles
    rows: u32,
    cols4: u32,      // columns / 4
    blocks: u32,
    tiles: u32,      // ceil(cols4 / CT4)
    a_off: u32,      // vec4 offsets
    w_off: u32,
    out_off: u32,
    groups: u32,
    cg: u32,
    seg0: u32,
    parts: u32,      // reduce_rows4_flat: row lanes written per block (the others have no rows)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out2: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> inv: array<f32>;
@group(0) @binding(6) var<storage, read> w4: array<vec4<f32>>;

var<workgroup> part: array<vec4<f32>, 64>;
var<workgroup> part2: array<vec4<f32>, 64>;

// Work item g of the grid: its segment, block and vec4 column for thread t.
struct Item {
    s: u32,
    b: u32,
    c4: u32,
}

fn item_of(g: u32, t: u32) -> Item {
    let tile = g % p.tiles;
    return Item(g / (p.tiles * p.blocks), (g / p.tiles) % p.blocks, tile * CT4 + t % CT4);
}

// MODE 4: the w element at a's index i (the others read no w).
fn w_row(i: u32) -> vec4<f32> {
    if (MODE == 4u) {
        return w4[p.w_off + i];
    }
    return vec4<f32>(0.0);
}

// One row's element v of a (and u of w, MODE 4) added into the sums as MODE says.
fn add_row(acc: ptr<function, vec4<f32>>, acc2: ptr<function, vec4<f32>>, v: vec4<f32>, u: vec4<f32>, shift: vec4<f32>, m: vec4<f32>, inv_k: vec4<f32>) {
    if (MODE == 3u) {
        let d = v - shift;
        *acc += d;
        *acc2 = fma(d, d, *acc2);
    } else if (MODE == 4u) {
        *acc += v;
        *acc2 = fma(v, (u - m) * inv_k, *acc2);
    } else {
        *acc += v;
    }
}

// Row lane `lane`'s sums of its rows of block it.b of column it.c4 (zero past the columns).
fn lane_sums(it: Item, lane: u32) -> array<vec4<f32>, 2> {
    let rl = 64u / CT4;
    var acc = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    if (it.c4 < p.cols4) {
        let base = it.s * p.rows * p.cols4 + it.c4;
        var shift = vec4<f32>(0.0);
        var m = vec4<f32>(0.0);
        var inv_k = vec4<f32>(0.0);
        if (MODE == 3u) {
            if (p.groups == 0u) {
                shift = w4[it.c4];
            } else {
                let first = (p.seg0 + it.s) * p.rows * p.cols4 * 4u + ((it.c4 * 4u) / p.cg) * p.cg;
                shift = vec4<f32>(w[first]);
            }
        } else if (MODE == 4u) {
            // The four columns' statistics: their own (groups = 0), or their groups' (any cg).
            var k = vec4<u32>(it.c4 * 4u) + vec4<u32>(0u, 1u, 2u, 3u);
            if (p.groups != 0u) {
                k = vec4<u32>((p.seg0 + it.s) * p.groups) + k / vec4<u32>(p.cg);
            }
            m = vec4<f32>(w[k.x], w[k.y], w[k.z], w[k.w]);
            inv_k = vec4<f32>(inv[k.x], inv[k.y], inv[k.z], inv[k.w]);
        }
        // Row lane `lane` sums rows r0, r0 + dr, ... below r1 (see SPANS).
        let r_end = min((it.b + 1u) * BLOCK, p.rows);
        var r0 = it.b * BLOCK + lane;
        var r1 = r_end;
        var dr = rl;
        if (SPANS != 0u) {
            let g = max(SPANS, 1u); // (a constant divisor of 0 does not compile)
            let span = BLOCK / (rl / g);
            r0 = it.b * BLOCK + (lane / g) * span + lane % g;
            r1 = min(it.b * BLOCK + (lane / g + 1u) * span, r_end);
            dr = g;
        }
        // Four rows a step, their loads first, then added in row order (the same sums as one
        // row a step: on lavapipe each load is a loop over the lanes, and four independent ones
        // overlap better than four that wait on the previous row's adds).
        let step = p.cols4 * dr;
        var r = r0;
        for (; r + 3u * dr < r1; r += 4u * dr) {
            let i = base + r * p.cols4;
            let v0 = a[p.a_off + i];
            let v1 = a[p.a_off + i + step];
            let v2 = a[p.a_off + i + 2u * step];
            let v3 = a[p.a_off + i + 3u * step];
            let u0 = w_row(i);
            let u1 = w_row(i + step);
            let u2 = w_row(i + 2u * step);
            let u3 = w_row(i + 3u * step);
            add_row(&acc, &acc2, v0, u0, shift, m, inv_k);
            add_row(&acc, &acc2, v1, u1, shift, m, inv_k);
            add_row(&acc, &acc2, v2, u2, shift, m, inv_k);
            add_row(&acc, &acc2, v3, u3, shift, m, inv_k);
        }
        for (; r < r1; r += dr) {
            let i = base + r * p.cols4;
            add_row(&acc, &acc2, a[p.a_off + i], w_row(i), shift, m, inv_k);
        }
    }
    return array<vec4<f32>, 2>(acc, acc2);
}

// The row lanes' sums of a block added by a fixed tree in workgroup memory: out (segments,
// blocks, cols4).
@compute @workgroup_size(64)
fn reduce_rows4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let rl = 64u / CT4;
    let lane = t / CT4;
    for (var g = wid.y * nwg.x + wid.x; g < p.total; g += nwg.x * nwg.y) {
        let it = item_of(g, t);
        let sums = lane_sums(it, lane);
        part[t] = sums[0];
        part2[t] = sums[1];
        workgroupBarrier();
        for (var half = rl / 2u; half > 0u; half /= 2u) {
            if (lane < half) {
                part[t] += part[t + half * CT4];
                part2[t] += part2[t + half * CT4];
            }
            workgroupBarrier();
        }
        if (lane == 0u && it.c4 < p.cols4) {
            let o = p.out_off + (it.s * p.blocks + it.b) * p.cols4 + it.c4;
            out[o] = part[t];
            if (MODE != 0u) {
                out2[o] = part2[t];
            }
        }
        workgroupBarrier();
    }
}

// The row lanes' sums written as they are, with no barrier: out (segments, blocks * parts,
// cols4), which the next pass sums (the lanes past `parts` have no rows). Lavapipe runs a
// kernel with barriers as coroutines, one per group of lanes, and their loops ran 2.4x slower
// (batch norm's statistics of a 64x64x64x8 tensor: 4.4 against 1.8 ms).
@compute @workgroup_size(64)
fn reduce_rows4_flat(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let lane = t / CT4;
    for (var g = wid.y * nwg.x + wid.x; g < p.total; g += nwg.x * nwg.y) {
        let it = item_of(g, t);
        let sums = lane_sums(it, lane);
        if (it.c4 < p.cols4 && lane < p.parts) {
            let o = p.out_off + ((it.s * p.blocks + it.b) * p.parts + lane) * p.cols4 + it.c4;
            out[o] = sums[0];
            if (MODE != 0u) {
                out2[o] = sums[1];
            }
        }
    }
}
