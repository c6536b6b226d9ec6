// `conv_lanes`: the product of conv_gemm.wgsl with lanes on output channels instead of pixels,
// for adapters that run a workgroup as SIMD lanes of one CPU core (lavapipe):
//
//   Z[p, c] = sum_{t, k} X[p -> t, k] * Wp[t, k, c]  (+ b[c])
//
// A workgroup of WG = 4*CB4/CPL threads (CPL = 1, 2 or 4 output channels each, in subgroups of
// SG) owns R consecutive output pixels of one output row at a time, segment after segment of its
// run. Each thread keeps its channels' FH*FW*K weights for the whole dispatch (in registers, or
// on the stack where they do not fit: either way a plain vector load on a CPU, unlike a storage
// load). With CPL > 1 each broadcast input value feeds CPL multiply-adds and fewer subgroups
// load the same rows: cifar's layer (16 input channels, 32 outputs) 21 -> 10 ms on lavapipe.
// The activations that the R pixels share (FH rows of R + FW - 1 input pixels, K floats each,
// read unpadded from `xs`) are loaded once per subgroup: lane l loads floats l, l + SG, ... of
// each row and `subgroupBroadcast` hands every value to all lanes. On lavapipe a storage load
// costs one scalar load per lane however many lanes want the same address, so this cuts the
// loads by SG against one load of each value by every lane, and the input needs no copy with
// its channels padded to 4.
//
// Stride 1 along the width, all the taps in one window (tap_begin = 0, accumulate = 0), K input
// channels (the window's rows padded to c4_in = (K + 3) / 4 vec4s per tap; the host bounds K and
// the unrolled FH*FW*K*R*CPL multiply-adds); x_off counts floats of xs. Per pixel the sum runs
// over taps, then channels, as in conv_gemm, so both give the same bits. Overrides FH, FW, K, R,
// SG and CPL are unrolled. CPL = 1 with POOL.
//
// POOL = 1: a max pool of PH x PW windows (strides pool_sh, pool_sw, windows inside the output)
// of the ReLU'd outputs instead of the outputs themselves: the segments are the rows of groups
// of NW = R / PW windows side by side (pool_sw = PW when NW > 1, and NW divides POW), group
// after group, PH rows each. Each lane keeps its channel's running first maximum per window (a
// value replaces it only when strictly greater, or NaN over a number: pool_vec4.wgsl's rule, so
// the same maximum and tap) and writes it to z and its tap's row-major index in the window
// (as f32) to zf, both (m, POH, POW, c_out); the outputs themselves are never stored.
// `total` counts the chunk's window groups then. POOL = 0: zf is not written.
// V4 = 1 (rows of whole vec4s: in_w * K and the segments' first columns times K multiples of
// 4): lane l loads vec4s l, l + SG, ... (MV of them) of each row instead of floats, from binding 7
// (the same input as vec4s): on lavapipe a lane's vec4 load costs about half what its four float
// loads do. The row's first float then sits S0 = (-left * K) mod 4 floats into its first vec4, the
// same for every segment, so the broadcasts still take constant lanes and components.
// Params and bindings: conv_gemm_io.wgsl; 6 zf, write; 7 xs4, read (V4). Overrides OH x OW (the output grid) and
// POH x POW (the pool's) are the divisors of the segment arithmetic: constants, which compile to
// multiplies where CPU adapters divide lane by lane (seed 001's first layer: 12% faster).

override WG: u32;
override CB4: u32;
override R: u32;
override FW: u32;
override FH: u32;
override K: u32;
override SG: u32;
override POOL: u32 = 0u;
override PH: u32 = 1u;
override PW: u32 = 1u;
override OH: u32;
override OW: u32;
override POH: u32 = 1u;
override POW: u32 = 1u;
override V4: u32 = 0u;
override S0: u32 = 0u;
override MV: u32 = 0u;
override CPL: u32 = 1u;
// TEX = 1 (with V4): the rows are read from the texture that X's vec4s were copied into
// (x_texel, conv_gemm_io.wgsl); x_off then counts from X's first image.
override TEX: u32 = 0u;

@group(0) @binding(7) var<storage, read> xs4: array<vec4<f32>>;

@group(0) @binding(6) var<storage, read_write> zf: array<f32>;

@compute @workgroup_size(WG)
fn conv_lanes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sl: u32,
) {
    let segs_per_row = (OW + R - 1u) / R;
    var segs = (p.total / OW) * segs_per_row;
    if (POOL == 1u) {
        segs = p.total * PH;
    }
    // This lane's CPL channels: c + j, j < CPL (window channels lid * CPL + j).
    let c = p.c_begin + lid * CPL;
    let wt{i} = win[{i/CPL} * CB4 + (lid * CPL + {i%CPL}u) / 4u][(lid * CPL + {i%CPL}u) % 4u]; // @unroll(FH*FW*((K+3)/4)*4*CPL)
    // This lane's biases, read once (any element in range when there is none).
    let bl{i} = select(0.0, bias[min(c + {i}u, p.c_out - 1u)], p.has_bias != 0u); // @unroll(CPL)
    let lane_live{i} = c + {i}u < p.c_out; // @unroll(CPL)
    // Segments are uniform over the workgroup: `seg` comes from the workgroup id alone. Each
    // workgroup takes a contiguous run of them: neighbouring segments read the same input rows,
    // which then stay in this core's cache (a stride of the grid between a workgroup's segments
    // was 10-15% slower on seed 001's first layer).
    let wgs = nwg.x * nwg.y;
    let per_wg = ((segs / PH + wgs - 1u) / wgs) * PH; // whole windows (PH = 1 unpooled)
    let seg_begin = (wid.y * nwg.x + wid.x) * per_wg;
    let seg_end = min(seg_begin + per_wg, segs);
    // POOL = 1: each window's running maximum and its tap.
    var pm{i} = 0.0; // @unroll(R/PW)
    var pt{i} = 0u; // @unroll(R/PW)
    for (var seg = seg_begin; seg < seg_end; seg++) {
        var row = seg / segs_per_row; // (image, output row)
        var ow0 = (seg % segs_per_row) * R;
        if (POOL == 1u) {
            let gw = max(POW / (R / PW), 1u); // window groups per pool row (a constant divisor of 0 does not compile)
            let w = seg / PH; // window group (image, pool row, group)
            let pr = w / gw;
            row = (pr / POH) * OH + (pr % POH) * p.pool_sh + seg % PH;
            ow0 = (w % gw) * (R / PW) * p.pool_sw;
        }
        let oh = row % OH;
        let im = row / OH;
        let c0 = i32(ow0) - p.left; // the segment's first input column
        let h{i} = i32(oh * p.s_h + {i}u) - p.top; // @unroll(FH)
        let hin{i} = h{i} >= 0 && u32(h{i}) < p.in_h; // @unroll(FH)
        let hrow{i} = p.x_off + (im * p.in_h + u32(select(0, h{i}, hin{i}))) * p.in_w * K; // @unroll(FH)
        // a{...}: the rows of taps, loaded once per subgroup (lanes_rows.wgsl).
        // @splice(lanes_rows.wgsl)
        var acc{i} = 0.0; // @unroll(R*CPL)
        // Line i: output channel j = i % CPL, pixel r = (i / CPL) % R, input channel
        // k = (i / (CPL*R)) % K, tap t = i / (CPL*R*K) = (dh, dw); acc{r * CPL + j}.
        acc{i%(R*CPL)} = fma(a{((i/(CPL*R*K*FW))*(R+FW-1) + (i/CPL)%R + (i/(CPL*R*K))%FW)*K + (i/(CPL*R))%K}, wt{((i/(CPL*R*K))*((K+3)/4)*4 + (i/(CPL*R))%K)*CPL + i%CPL}, acc{i%(R*CPL)}); // @unroll(FH*FW*K*R*CPL)
        if (POOL == 0u) {
            let zb = z_at(row * OW + ow0) + c;
            put(zb + {i/CPL}u * p.o_sw * p.c_out + {i%CPL}u, lane_live{i%CPL} && ow0 + {i/CPL}u < OW, acc{i} + bl{i%CPL}); // @unroll(R*CPL)
        } else {
            let dh = seg % PH;
            // -inf: the first tap always replaces it.
            pm{i} = select(pm{i}, bitcast<f32>(0xff800000u), dh == 0u); pt{i} = select(pt{i}, 0u, dh == 0u); // @unroll(R/PW)
            let pv{i} = relu_of(acc{i} + bl0); let pb{i} = (pv{i} > pm{i/PW}) | (is_nan(pv{i}) & !is_nan(pm{i/PW})); pm{i/PW} = select(pm{i/PW}, pv{i}, pb{i}); pt{i/PW} = select(pt{i/PW}, dh * PW + {i%PW}u, pb{i}); // @unroll(R)
            if (dh == PH - 1u && lane_live0) {
                let o = p.z_off + (seg / PH) * (R / PW) * p.c_out + c;
                z[o + {i}u * p.c_out] = pm{i}; zf[o + {i}u * p.c_out] = f32(pt{i}); // @unroll(R/PW)
            }
        }
    }
}

// v, or max(0, v) with the fused ReLU (as conv_gemm's store_z).
fn relu_of(v: f32) -> f32 {
    return select(v, select(v, 0.0, v < 0.0), p.relu != 0u);
}

fn is_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// z[at] = relu_of(v), if `live`.
fn put(at: u32, live: bool, v: f32) {
    if (live) {
        z[at] = relu_of(v);
    }
}
