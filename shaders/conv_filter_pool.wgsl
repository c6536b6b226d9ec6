// The filter gradient of a convolution and the ReLU after it, under a max pool with the
// first-maximum rule whose windows do not overlap, straight from the pool's output gradient.
// Below such a pool dZ is zero except at each window's first maximum, where it is the window's
// gradient if the ReLU let it through (A > 0, A the pool's input and the ReLU's output). So for
// each output channel c:
//   dW[dh, dw, k, c] = sum over windows of X_pad[i, h * S_H + dh, x * S_W + dw, k] * g
//   db[c]            = sum over windows of g
// over the windows whose first maximum (h, x) for channel c (`first`, from pool_vec4.wgsl's
// forward) has A > 0, g the window's gradient: for 8x8 windows, 64 times fewer terms than the
// dense filter gradient. The zero terms are skipped, so an Inf or NaN input element where dZ is
// zero stays out of dW (the dense sum would add Inf * 0 = NaN).
// Thread (part, c) adds the windows of its part in order into FH*FW*K + 1 registers and writes
// them to out[part, j, c] (j = (dh * FW + dw) * K + k) and out_b[part, c]; the host adds the
// parts in order: a fixed order set by the shape, bitwise the same on every run.
// Bindings: 0 params; 1 x (m, in_h, in_w, K), 2 first, 3 grad (m, POH, POW, C), 4 act
// (m, conv_oh, conv_ow, C), or with POOLED = 1 the pool's output (m, POH, POW, C), which holds A
// at each window's first maximum (for a pool whose input was never stored: conv_lanes with
// POOL): read; 5 out (parts, FH*FW*K, C), 6 out_b (parts, C): write.
// V4 = 1 (rows of x whole vec4s: in_w * K a multiple of 4): the patches' rows are read as vec4s
// from binding 7 (the same x), about half the cost of their floats on lavapipe; with TEX = 1
// too, from the texture that x's vec4s were copied into (binding 8, texture.rs), whose loads
// lavapipe makes straight-line code where each lane's storage load is a loop over the lanes.
// Overrides: the filter (FH, FW, K; unrolled), the channels C, the pool's output grid POH x POW
// and its window width PFW: constant divisors, which compile to multiplies where a CPU adapter
// would divide lane by lane.

override FH: u32;
override FW: u32;
override K: u32;
override POOLED: u32 = 0u;
override C: u32;
override POH: u32;
override POW: u32;
override PFW: u32;
override V4: u32 = 0u;
override TEX: u32 = 0u;

@group(0) @binding(7) var<storage, read> xs4: array<vec4<f32>>;
@group(0) @binding(8) var xt: texture_storage_2d<rgba32float, read>;

// @splice(texel.wgsl)

// vec4 i of x, copied into its texture.
fn x_texel(i: u32) -> vec4<f32> {
    return textureLoad(xt, texel_at(i));
}

struct Params {
    windows: u32,    // m * POH * POW
    per_part: u32,
    threads: u32,    // parts * C
    pool_sh: u32,
    pool_sw: u32,
    conv_oh: u32,
    conv_ow: u32,
    in_h: u32,
    in_w: u32,
    s_h: u32,
    s_w: u32,
    top: u32,
    left: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> first: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read> act: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> out_b: array<f32>;

@compute @workgroup_size(64)
fn filter_from_pool(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let id = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (id >= p.threads) {
        return;
    }
    let c = id % C;
    let part = id / C;
    var acc{i} = 0.0; // @unroll(FH*FW*K)
    var bias = 0.0;
    let w1 = min((part + 1u) * p.per_part, p.windows);
    for (var wi = part * p.per_part; wi < w1; wi++) {
        let q = wi * C + c;
        let t = u32(first[q]);
        let ox = wi % POW;
        let rest = wi / POW;
        let h = (rest % POH) * p.pool_sh + t / PFW;
        let x = ox * p.pool_sw + t % PFW;
        let im = rest / POH;
        // The ReLU's mask at the maximum (NaN: masked, as relu_backward does).
        let at = select(((im * p.conv_oh + h) * p.conv_ow + x) * C + c, q, POOLED == 1u);
        if (!(act[at] > 0.0)) {
            continue;
        }
        let g = grad[q];
        bias += g;
        let y0 = i32(h * p.s_h) - i32(p.top);
        let x0 = i32(x * p.s_w) - i32(p.left);
        let yok{i} = y0 + {i} >= 0 && y0 + {i} < i32(p.in_h); // @unroll(FH)
        let xok{i} = x0 + {i} >= 0 && x0 + {i} < i32(p.in_w); // @unroll(FW)
        let base = (i32(im * p.in_h) + y0) * i32(p.in_w) + x0;
        let v{i} = select(0.0, xs[u32(max(base + {i/(FW*K)} * i32(p.in_w) + {(i/K)%FW}, 0)) * K + {i%K}u], yok{i/(FW*K)} && xok{(i/K)%FW}); // @unroll(FH*FW*K*(1-V4))
        // V4: each row's FW*K floats start e = x0*K floats into its row (a multiple of 4 floats
        // from the start of x): vec4s floor(e/4) .. of the row, and float j of the patch row is
        // float j + sh of them, sh = e mod 4 (this lane's own: the maxima differ by channel).
        let e = x0 * i32(K);
        let eq = select(e / 4, (e - 3) / 4, e < 0); // floor(e / 4)
        let sh = u32(e - 4 * eq);
        let rq{i} = i32((im * p.in_h + u32(clamp(y0 + {i}, 0, i32(p.in_h) - 1))) * p.in_w * K / 4u) + eq; // @unroll(FH*V4)
        let q{i} = xs4[u32(max(rq{i/((FW*K+3)/4+1)} + {i%((FW*K+3)/4+1)}, 0))]; // @unroll(FH*((FW*K+3)/4+1)*V4*(1-TEX))
        let q{i} = x_texel(u32(max(rq{i/((FW*K+3)/4+1)} + {i%((FW*K+3)/4+1)}, 0))); // @unroll(FH*((FW*K+3)/4+1)*V4*TEX)
        let v{i} = select(0.0, pick(vec4<f32>(q{(i/(FW*K))*((FW*K+3)/4+1) + (i%(FW*K))/4}[{(i%(FW*K))%4}], q{(i/(FW*K))*((FW*K+3)/4+1) + (i%(FW*K)+1)/4}[{(i%(FW*K)+1)%4}], q{(i/(FW*K))*((FW*K+3)/4+1) + (i%(FW*K)+2)/4}[{(i%(FW*K)+2)%4}], q{(i/(FW*K))*((FW*K+3)/4+1) + (i%(FW*K)+3)/4}[{(i%(FW*K)+3)%4}]), sh), yok{i/(FW*K)} && xok{(i/K)%FW}); // @unroll(FH*FW*K*V4)
        acc{i} = fma(v{i}, g, acc{i}); // @unroll(FH*FW*K)
    }
    let o = part * FH * FW * K * C + c;
    out[o + {i}u * C] = acc{i}; // @unroll(FH*FW*K)
    out_b[part * C + c] = bias;
}

// The float `sh` (0..3) places past the first of four in a row: pick(vec4(a, b, c, d), sh).
// @splice(pick.wgsl)
