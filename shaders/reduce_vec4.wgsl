// reduce.wgsl four columns at a time (columns a multiple of 4, rows contiguous): the same sums in
// a fixed order set by the shape alone (rows to lanes, then the tree over lanes), four columns
// side by side in one vec4, with one vec4 load where the scalar kernel makes four.
//   MODE 0: out = sums of a
//   MODE 3: d = a - shift; out = sums of d, out2 = sums of d^2; shift per column (groups = 0,
//           read as vec4s from binding 6) or per (segment, group of cg columns, cg a multiple
//           of 4: one scalar for the four columns, binding 2)
//   MODE 4: out = sums of a, out2 = sums of a * w
// One workgroup per (segment, block, tile of CT4 vec4-columns): thread t takes vec4-column
// t % CT4 and row lane t / CT4 (RL = 64 / CT4 lanes).
// Bindings: 0 params; 1 a (vec4), 2 w (scalar), 6 w (vec4): read; 3 out, 4 out2 (vec4): write.

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
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out2: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> w4: array<vec4<f32>>;

var<workgroup> part: array<vec4<f32>, 64>;
var<workgroup> part2: array<vec4<f32>, 64>;

@compute @workgroup_size(64)
fn reduce_rows4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let rl = 64u / CT4;
    let groups = nwg.x * nwg.y;
    let lane = t / CT4;
    for (var g = wid.y * nwg.x + wid.x; g < p.total; g += groups) {
        let tile = g % p.tiles;
        let b = (g / p.tiles) % p.blocks;
        let s = g / (p.tiles * p.blocks);
        let c4 = tile * CT4 + t % CT4;
        let r_end = min((b + 1u) * BLOCK, p.rows);
        var acc = vec4<f32>(0.0);
        var acc2 = vec4<f32>(0.0);
        if (c4 < p.cols4) {
            let base = s * p.rows * p.cols4 + c4;
            var shift = vec4<f32>(0.0);
            if (MODE == 3u) {
                if (p.groups == 0u) {
                    shift = w4[c4];
                } else {
                    shift = vec4<f32>(w[(p.seg0 + s) * p.groups + (c4 * 4u) / p.cg]);
                }
            }
            // Row lane `lane` sums rows r0, r0 + dr, ... below r1 (see SPANS).
            var r0 = b * BLOCK + lane;
            var r1 = r_end;
            var dr = rl;
            if (SPANS != 0u) {
                let g = max(SPANS, 1u); // (a constant divisor of 0 does not compile)
                let span = BLOCK / (rl / g);
                r0 = b * BLOCK + (lane / g) * span + lane % g;
                r1 = min(b * BLOCK + (lane / g + 1u) * span, r_end);
                dr = g;
            }
            for (var r = r0; r < r1; r += dr) {
                let i = base + r * p.cols4;
                let v = a[p.a_off + i];
                if (MODE == 3u) {
                    let d = v - shift;
                    acc += d;
                    acc2 = fma(d, d, acc2);
                } else if (MODE == 4u) {
                    acc += v;
                    acc2 = fma(v, w4[p.w_off + i], acc2);
                } else {
                    acc += v;
                }
            }
        }
        part[t] = acc;
        part2[t] = acc2;
        workgroupBarrier();
        for (var half = rl / 2u; half > 0u; half /= 2u) {
            if (lane < half) {
                part[t] += part[t + half * CT4];
                part2[t] += part2[t + half * CT4];
            }
            workgroupBarrier();
        }
        if (lane == 0u && c4 < p.cols4) {
            let o = p.out_off + (s * p.blocks + b) * p.cols4 + c4;
            out[o] = part[t];
            if (MODE != 0u) {
                out2[o] = part2[t];
            }
        }
        workgroupBarrier();
    }
}
