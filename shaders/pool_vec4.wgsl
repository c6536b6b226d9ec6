// Pooling, vectorised over 4 channels and specialised per shape (every size below is a constant,
// so index arithmetic compiles to multiplies and shifts). Channels C4 = n_C / 4 (n_C % 4 == 0).
//   pool_forward:  A[i, oh, ow, c] = max or mean over the FH x FW window at (oh*SH, ow*SW).
//   pool_backward (windows that do not overlap: SH >= FH and SW >= FW): one thread per window
//     writes every element of its own window, so each dA_prev element has exactly one writer:
//     average: dA / (FH*FW); max, every maximum (TIES = 0): dA where A_prev == max;
//     max, first maximum (TIES = 1): dA at the first maximum in row-major window order.
//     Elements in no window stay zero (fresh buffers are zero-filled).
// Bindings: 0 params; 1 a_prev (m, IN_H, IN_W, C4) vec4; 2 grad dA (m, OUT_H, OUT_W, C4) vec4
// (backward only); 3 dst (write) vec4. x_off / g_off / d_off: vec4 offsets of the chunk.

const WG: u32 = 64u;
const IN_H: u32 = {{IN_H}}u;
const IN_W: u32 = {{IN_W}}u;
const C4: u32 = {{C4}}u;
const OUT_H: u32 = {{OUT_H}}u;
const OUT_W: u32 = {{OUT_W}}u;
const FH: u32 = {{FH}}u;
const FW: u32 = {{FW}}u;
const SH: u32 = {{SH}}u;
const SW: u32 = {{SW}}u;
const MAX_MODE: bool = {{MAX_MODE}}u == 1u;
const FIRST_MAX: bool = {{TIES}}u == 1u;

struct Params {
    total: u32,   // windows (i, oh, ow, c4) in this chunk
    x_off: u32,
    g_off: u32,
    d_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a_prev: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec4<f32>>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// vec4 index of A_prev[i, h, w, 4*c4 ..] relative to the chunk.
fn index_in(i: u32, h: u32, w: u32, c4: u32) -> u32 {
    return ((i * IN_H + h) * IN_W + w) * C4 + c4;
}

// Index of the first element (top-left, its 4 channels) of window idx = (i, oh, ow, c4) of the
// chunk, relative to the chunk.
fn window_start(idx: u32) -> u32 {
    let c4 = idx % C4;
    let ow = (idx / C4) % OUT_W;
    let oh = (idx / (C4 * OUT_W)) % OUT_H;
    let i = idx / (C4 * OUT_W * OUT_H);
    return index_in(i, oh * SH, ow * SW, c4);
}

@compute @workgroup_size(WG)
fn pool_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    for (var idx = linear_id(wid, nwg, lid); idx < p.total; idx += grid) {
        let base = p.x_off + window_start(idx);
        var r = a_prev[base];
        let v{i} = a_prev[base + ({i/FW}u * IN_W + {i%FW}u) * C4]; // @unroll(1..FH*FW)
        if (MAX_MODE) {
            r = max(r, v{i}); // @unroll(1..FH*FW)
        } else {
            r += v{i}; // @unroll(1..FH*FW)
            r /= f32(FH * FW);
        }
        dst[p.d_off + idx] = r;
    }
}

@compute @workgroup_size(WG)
fn pool_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    for (var idx = linear_id(wid, nwg, lid); idx < p.total; idx += grid) {
        let g = grad[p.g_off + idx];
        let base = window_start(idx);
        if (MAX_MODE) {
            let v{i} = a_prev[p.x_off + base + ({i/FW}u * IN_W + {i%FW}u) * C4]; // @unroll(FH*FW)
            var m = v0;
            m = max(m, v{i}); // @unroll(1..FH*FW)
            if (FIRST_MAX) {
                // `taken` marks the components whose first maximum has been found.
                var taken = vec4<bool>(false);
                let hit{i} = (v{i} == m) & !taken; taken = taken | hit{i}; // @unroll(FH*FW)
                dst[p.d_off + base + ({i/FW}u * IN_W + {i%FW}u) * C4] = select(vec4<f32>(0.0), g, hit{i}); // @unroll(FH*FW)
            } else {
                dst[p.d_off + base + ({i/FW}u * IN_W + {i%FW}u) * C4] = select(vec4<f32>(0.0), g, v{i} == m); // @unroll(FH*FW)
            }
        } else {
            let share = g / f32(FH * FW);
            dst[p.d_off + base + ({i/FW}u * IN_W + {i%FW}u) * C4] = share; // @unroll(FH*FW)
        }
    }
}
