// Pooling, vectorised over 4 channels and specialised per shape (every size below is a constant,
// so index arithmetic compiles to multiplies and shifts). Channels C4 = n_C / 4 (n_C % 4 == 0).
//   pool_forward:  A[i, oh, ow, c] = max or mean over the FH x FW window at (oh*SH, ow*SW).
//   pool_backward (windows that do not overlap: SH >= FH and SW >= FW): one thread per window
//     writes every element of its own window, so each dA_prev element has exactly one writer:
//     average: dA / (FH*FW); max, every maximum (TIES = 0): dA where A_prev == max;
//     max, first maximum (TIES = 1): dA at the first maximum in row-major window order.
//     Elements in no window stay zero (fresh buffers are zero-filled). With RELU = 1 the result
//     is also masked by A_prev > 0: the backward of a ReLU whose output A_prev is (`dZ`).
//   pool_forward with FIRST = 1 (max): also writes each window's first maximum (first NaN if
//     any), as its tap's row-major index in the window, to dst2 (shaped like the output);
//   pool_scatter (max, first maximum, windows that do not overlap, dst zeroed): the backward
//     from those indices, which writes only the window's one element that receives the gradient
//     and reads nothing of A_prev but that element (RELU = 1) instead of the whole window; with
//     POOLED = 1 binding 1 holds the pool's output instead (shaped like dA), which is that
//     element (the maximum), for a pool whose input was never stored (conv_lanes with POOL).
// Bindings: 0 params; 1 a_prev (m, IN_H, IN_W, C4) vec4; 2 grad dA (m, OUT_H, OUT_W, C4) vec4
// (backward only); 3 dst (write) vec4; 4 dst2 (write, FIRST), 5 first (read, pool_scatter),
// both shaped like dA. x_off / g_off / d_off: vec4 offsets of the chunk (dst2 at d_off, the
// forward's output offset; first at g_off).

// NaN: a window holding NaN has a NaN maximum (forward gives NaN, as numpy and PyTorch do);
// backward routes nothing from it under TIES = 0 (NaN equals nothing) and routes to the first
// NaN under TIES = 1. NaN is tested on the bits, so no fast-math assumption can drop the test.
// Overrides: every shape constant below; FH and FW are also unrolled.

override WG: u32 = 64u;
override IN_H: u32;
override IN_W: u32;
override C4: u32;
override OUT_H: u32;
override OUT_W: u32;
override FH: u32;
override FW: u32;
override SH: u32;
override SW: u32;
override MAX_MODE: u32;   // 1 max, 0 average
override TIES: u32;       // 0 every maximum, 1 first maximum
override RELU: u32 = 0u;  // backward: 1 also applies the backward of a ReLU before the pool
override FIRST: u32 = 0u; // forward, max: 1 also writes the first maxima's taps (dst2)
override POOLED: u32 = 0u; // pool_scatter: 1 reads the ReLU's mask from the pool's output

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
@group(0) @binding(4) var<storage, read_write> dst2: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> first: array<vec4<f32>>;

fn is_nan4(v: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u);
}

// max(a, b), NaN if either is NaN.
fn max_nan(a: vec4<f32>, b: vec4<f32>) -> vec4<f32> {
    return select(select(max(a, b), a, is_nan4(a)), b, is_nan4(b));
}

// Where the backward of a ReLU before the pool lets the gradient through: A_prev > 0 (A_prev is
// the ReLU's output), everywhere when RELU = 0. Bitwise what relu_backward then gives.
fn relu_mask(v: vec4<f32>) -> vec4<bool> {
    return (v > vec4<f32>(0.0)) | vec4<bool>(RELU == 0u);
}

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
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var idx = items.x; idx < items.y; idx += items.z) {
        let base = p.x_off + window_start(idx);
        var r = a_prev[base];
        let v{i} = a_prev[base + ({i/FW}u * IN_W + {i%FW}u) * C4]; // @unroll(1..FH*FW)
        if (MAX_MODE == 1u && FIRST == 1u) {
            // A tap replaces the running maximum only when strictly greater, or NaN over a number:
            // the first maximum (or first NaN) in row-major order, and the same maximum.
            var t = vec4<u32>(0u);
            let b{i} = (v{i} > r) | (is_nan4(v{i}) & !is_nan4(r)); r = select(r, v{i}, b{i}); t = select(t, vec4<u32>({i}u), b{i}); // @unroll(1..FH*FW)
            dst2[p.d_off + idx] = vec4<f32>(t);
        } else if (MAX_MODE == 1u) {
            r = max_nan(r, v{i}); // @unroll(1..FH*FW)
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
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var idx = items.x; idx < items.y; idx += items.z) {
        let g = grad[p.g_off + idx];
        let base = window_start(idx);
        if (MAX_MODE == 1u) {
            let v{i} = a_prev[p.x_off + base + ({i/FW}u * IN_W + {i%FW}u) * C4]; // @unroll(FH*FW)
            var m = v0;
            m = max_nan(m, v{i}); // @unroll(1..FH*FW)
            let m_nan = is_nan4(m);
            if (TIES == 1u) {
                // `taken` marks the components whose first maximum (or first NaN) has been found.
                var taken = vec4<bool>(false);
                let hit{i} = (((v{i} == m) & !m_nan) | is_nan4(v{i})) & !taken; taken = taken | hit{i}; // @unroll(FH*FW)
                dst[p.d_off + base + ({i/FW}u * IN_W + {i%FW}u) * C4] = select(vec4<f32>(0.0), g, hit{i} & relu_mask(v{i})); // @unroll(FH*FW)
            } else {
                dst[p.d_off + base + ({i/FW}u * IN_W + {i%FW}u) * C4] = select(vec4<f32>(0.0), g, (v{i} == m) & !m_nan & relu_mask(v{i})); // @unroll(FH*FW)
            }
        } else {
            let share = g / f32(FH * FW);
            if (RELU == 1u) {
                let v{i} = a_prev[p.x_off + base + ({i/FW}u * IN_W + {i%FW}u) * C4]; // @unroll(FH*FW)
                dst[p.d_off + base + ({i/FW}u * IN_W + {i%FW}u) * C4] = select(vec4<f32>(0.0), share, relu_mask(v{i})); // @unroll(FH*FW)
            } else {
                dst[p.d_off + base + ({i/FW}u * IN_W + {i%FW}u) * C4] = share; // @unroll(FH*FW)
            }
        }
    }
}

@compute @workgroup_size(WG)
fn pool_scatter(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var idx = items.x; idx < items.y; idx += items.z) {
        var g = grad[p.g_off + idx];
        let t = vec4<u32>(first[p.g_off + idx]);
        // each component's tap, as a vec4 index relative to the chunk
        let o = vec4<u32>(window_start(idx)) + ((t / FW) * IN_W + t % FW) * C4;
        if (RELU == 1u) {
            let x = o + p.x_off;
            var v = vec4<f32>(a_prev[x.x].x, a_prev[x.y].y, a_prev[x.z].z, a_prev[x.w].w);
            if (POOLED == 1u) {
                v = a_prev[p.x_off + idx];
            }
            g = select(vec4<f32>(0.0), g, relu_mask(v));
        }
        let d = o + p.d_off;
        dst[d.x].x = g.x;
        dst[d.y].y = g.y;
        dst[d.z].z = g.z;
        dst[d.w].w = g.w;
    }
}
