// Pooling over f_h x f_w windows with stride (s_h, s_w), padded by (top, left) and as much below
// and to the right as the output size implies; windows are clipped to the input, so padding never
// wins a maximum and is not counted in an average (TensorFlow's SAME pooling).
//   pool_forward:  A[i, oh, ow, c] = max or mean of A_prev[i, oh*s_h .. oh*s_h+f_h, ow*s_w .. ow*s_w+f_w, c]
//   pool_backward: dA_prev[i, h, x, c] = sum over the outputs (oh, ow) whose window covers (h, x) of
//                  average: dA[i, oh, ow, c] / (f_h*f_w)
//                  max, every maximum (ties = 0): dA[i, oh, ow, c] if A_prev[i, h, x, c] == max(window)
//                  max, first maximum (ties = 1): dA[i, oh, ow, c] if (h, x) is the window's first
//                  maximum in row-major order
//                  (each output gradient dA[i, oh, ow, c] flows into its own window; gather form:
//                  one thread per dA_prev element, no atomics).
//
// Bindings: 0 params; pool_forward: 1 a_prev (m, in_h, in_w, c), 2 unused (a_prev again), 3 a (m, out_h, out_w, c);
// pool_backward: 1 a_prev, 2 da (m, out_h, out_w, c), 3 da_prev (m, in_h, in_w, c).

override WG: u32 = 64u;
override RELU: u32 = 0u; // backward: 1 also applies the backward of a ReLU before the pool
const MODE_MAX: u32 = 0u;

struct Params {
    total: u32,
    in_h: u32,
    in_w: u32,
    c: u32,
    out_h: u32,
    out_w: u32,
    f_h: u32,
    f_w: u32,
    s_h: u32,
    s_w: u32,
    mode: u32,   // 0 max, 1 average
    ties: u32,   // 0 every maximum, 1 first maximum
    top: u32,    // padding above and to the left (never wins a max, not counted in an average)
    left: u32,
    in_off: u32,
    out_off: u32,
    dst_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a_prev: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn index_in(i: u32, h: u32, x: u32, c: u32) -> u32 {
    return p.in_off + ((i * p.in_h + h) * p.in_w + x) * p.c + c;
}

fn index_out(i: u32, oh: u32, ow: u32, c: u32) -> u32 {
    return p.out_off + ((i * p.out_h + oh) * p.out_w + ow) * p.c + c;
}

// NaN tested on the bits (no fast-math assumption can drop the test).
fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// The input rows (x) and columns (y) window (oh, ow) covers, clipped to the input: the window
// starts at (oh*s_h - top, ow*s_w - left) in input coordinates.
fn window_span(oh: u32, ow: u32) -> vec4<u32> {
    let hs = oh * p.s_h;
    let ws = ow * p.s_w;
    let h0 = max(hs, p.top) - p.top;
    let h1 = min(hs + p.f_h, p.top + p.in_h) - p.top;
    let w0 = max(ws, p.left) - p.left;
    let w1 = min(ws + p.f_w, p.left + p.in_w) - p.left;
    return vec4<u32>(h0, h1, w0, w1);
}

// The maximum of one window (its part inside the input: padding never wins), and the flat
// position of its first occurrence in the padded window, row-major.
fn window_max(i: u32, oh: u32, ow: u32, c: u32) -> vec2<f32> {
    let span = window_span(oh, ow);
    var best = a_prev[index_in(i, span.x, span.z, c)];
    var first = (span.x + p.top - oh * p.s_h) * p.f_w + (span.z + p.left - ow * p.s_w);
    for (var h = span.x; h < span.y; h++) {
        for (var x = span.z; x < span.w; x++) {
            let v = a_prev[index_in(i, h, x, c)];
            // NaN wins and stays: a window holding NaN has a NaN maximum at its first NaN.
            if (!is_nan(best) && (is_nan(v) || v > best)) {
                best = v;
                first = (h + p.top - oh * p.s_h) * p.f_w + (x + p.left - ow * p.s_w);
            }
        }
    }
    return vec2<f32>(best, f32(first));
}

// Elements of window (oh, ow) inside the input (what an average counts).
fn window_count(oh: u32, ow: u32) -> f32 {
    let span = window_span(oh, ow);
    return f32((span.y - span.x) * (span.w - span.z));
}

@compute @workgroup_size(WG)
fn pool_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var idx = items.x; idx < items.y; idx += items.z) {
        let c = idx % p.c;
        let ow = (idx / p.c) % p.out_w;
        let oh = (idx / (p.c * p.out_w)) % p.out_h;
        let i = idx / (p.c * p.out_w * p.out_h);
        var v: f32;
        if (p.mode == MODE_MAX) {
            v = window_max(i, oh, ow, c).x;
        } else {
            let span = window_span(oh, ow);
            var sum = 0.0;
            for (var h = span.x; h < span.y; h++) {
                for (var x = span.z; x < span.w; x++) {
                    sum += a_prev[index_in(i, h, x, c)];
                }
            }
            v = sum / window_count(oh, ow);
        }
        dst[p.dst_off + idx] = v;
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
        let c = idx % p.c;
        let x = (idx / p.c) % p.in_w;
        let h = (idx / (p.c * p.in_w)) % p.in_h;
        let i = idx / (p.c * p.in_w * p.in_h);
        // In padded coordinates (hp, xp), the outputs whose window covers hp:
        // oh*s_h <= hp < oh*s_h + f_h.
        let hp = h + p.top;
        let xp = x + p.left;
        let oh_lo = select(0u, (hp + 1u - p.f_h + p.s_h - 1u) / p.s_h, hp + 1u > p.f_h);
        let oh_hi = min(hp / p.s_h + 1u, p.out_h);
        let ow_lo = select(0u, (xp + 1u - p.f_w + p.s_w - 1u) / p.s_w, xp + 1u > p.f_w);
        let ow_hi = min(xp / p.s_w + 1u, p.out_w);
        let mine = a_prev[index_in(i, h, x, c)];
        var acc = 0.0;
        for (var oh = oh_lo; oh < oh_hi; oh++) {
            for (var ow = ow_lo; ow < ow_hi; ow++) {
                let g = grad[index_out(i, oh, ow, c)];
                if (p.mode == MODE_MAX) {
                    let m = window_max(i, oh, ow, c);
                    let pos = (hp - oh * p.s_h) * p.f_w + (xp - ow * p.s_w);
                    let hit = select(mine == m.x && !is_nan(m.x), u32(m.y) == pos, p.ties == 1u);
                    if (hit) {
                        acc += g;
                    }
                } else {
                    acc += g / window_count(oh, ow);
                }
            }
        }
        // With RELU, the backward of the ReLU whose output A_prev is: as relu_backward.
        dst[p.dst_off + idx] = select(acc, select(0.0, acc, mine > 0.0), RELU == 1u);
    }
}
