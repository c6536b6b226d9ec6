// `conv_filter_lanes`: the sums of `conv_filter_split` (conv_filter.wgsl) with lanes on output
// channels, for adapters that run a workgroup as SIMD lanes of one CPU core (lavapipe):
//
//   part[s, t, k, c] = sum_{p in slice s} X[p -> t, k] * dZ[p, c];   part[s, db, c] = sum dZ[p, c]
//
// A workgroup of WG = c4_out*4/CPL threads (CPL = 1, 2 or 4 output channels each, in subgroups
// of SG) sums one slice of consecutive pixels at a time, row by row: R pixels of a row at once,
// then the row's last pixels one by one. Each thread keeps its channels' FH*FW*K sums (in
// registers, or on the stack: a plain vector load and store on a CPU). The activations
// that R pixels share (FH rows of R + FW - 1 input pixels, K floats each, read unpadded from
// `xs`) are loaded once per subgroup (lane l loads floats l, l + SG, ...) and handed to every
// lane with `subgroupBroadcast`; each lane reads its own channel of dZ, as a float (binding 8: the
// same dZ, channels padded to 4): a vec4 load and a pick of its component is four loads on CPU
// adapters, which load lane by lane. With CPL = 4 a lane's channels are one vec4 of dZ (binding
// 6), read at once (cifar's filter gradient on lavapipe: 12.97 -> 12.22 ms, medians of 5
// alternated runs). With CPL > 1 each broadcast input value feeds CPL multiply-adds. Every sum
// runs over the slice's pixels in order, as in conv_filter_split, so both give the same bits
// and `filter_sum` finishes either.
//
// Stride 1 along the width, K input channels (the host bounds K and the unrolled FH*FW*K*R*CPL
// multiply-adds), all output channels in one workgroup. Overrides FH, FW, K, R, SG and CPL are
// unrolled.
// V4 = 1 (rows of whole vec4s: in_w * K, out_w and the slices' pixel counts multiples of 4, so
// that every run of R pixels starts at a multiple of 4 floats): the runs' rows are loaded as
// vec4s from binding 9 (the same input), as conv_lanes.wgsl does (S0, MV: as there); the
// pixels after the last whole run of a row still load floats.
// Params and bindings: conv_filter_io.wgsl (xs, part; dz with CPL = 4); 8 dzs, 9 xs4 (V4): read.

override WG: u32;
override R: u32;
override FW: u32;
override FH: u32;
override K: u32;
override SG: u32;
override V4: u32 = 0u;
override S0: u32 = 0u;
override MV: u32 = 0u;
override CPL: u32 = 1u;
// TEX = 1 (with V4): the runs' rows and dZ are read from the textures that A_prev's vec4s and
// dZ4's (channels padded to 4) were copied into (`xt`, `dt`; conv_filter_io.wgsl): a lane
// fetches its pixels' vec4 of dZ (CPL = 4: its channels; else the vec4 holding them, and picks
// its channel). The pixels after the last run of a row read the buffers.
override TEX: u32 = 0u;

@group(0) @binding(8) var<storage, read> dzs: array<f32>;
@group(0) @binding(9) var<storage, read> xs4: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn conv_filter_lanes(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sl: u32,
) {
    let c4_out = (p.c_out + 3u) / 4u;
    // This lane's CPL channels lid * CPL + j; those past c_out repeat the last one and store
    // nothing.
    let ch{i} = min(lid * CPL + {i}u, p.c_out - 1u); // @unroll(CPL)
    let live{i} = lid * CPL + {i}u < p.c_out; // @unroll(CPL)
    let c_pad = c4_out * 4u;
    let outputs = p.taps * p.k_real * p.c_out + p.c_out; // dW, then db
    // Slices are uniform over the workgroup: `s` comes from the workgroup id alone.
    for (var s = wid.y * nwg.x + wid.x; s < p.slices; s += nwg.x * nwg.y) {
        var acc{i} = 0.0; // @unroll(FH*FW*K*CPL)
        var db{i} = 0.0; // @unroll(CPL)
        let begin = s * p.pixels;
        let end = min(begin + p.pixels, p.all_pixels);
        var n = begin;
        var ow = begin % p.out_w;
        var row = begin / p.out_w; // (image, output row)
        while (n < end) {
            let oh = row % p.out_h;
            let im = row / p.out_h;
            let stop = min(end, n + p.out_w - ow); // this row's last pixel in the slice, + 1
            let h{i} = i32(oh * p.s_h + {i}u) - p.top; // @unroll(FH)
            let hin{i} = h{i} >= 0 && u32(h{i}) < p.in_h; // @unroll(FH)
            let hrow{i} = (im * p.in_h + u32(select(0, h{i}, hin{i}))) * p.in_w * K; // @unroll(FH)
            for (; n + R <= stop; n += R) {
                let c0 = i32(ow) - p.left;
                // a{...}: the rows of taps, loaded once per subgroup (lanes_rows.wgsl).
                // @splice(lanes_rows.wgsl)
                // CPL = 4: the lane's channels are one vec4 of dZ (binding 6, the same buffer).
                let d4_{i} = dz[(n + {i}u) * c4_out + lid]; // @unroll(R*(CPL/4)*(1-TEX))
                let d4_{i} = dz_texel((n + {i}u) * c4_out + lid); // @unroll(R*(CPL/4)*TEX)
                let d{i} = d4_{i/4}[{i%4}]; // @unroll(R*(CPL/4)*4)
                let d{i} = dzs[(n + {i/CPL}u) * c_pad + ch{i%CPL}]; // @unroll(R*CPL*(1-CPL/4)*(1-TEX))
                // TEX, CPL < 4: the vec4 holding the lane's channels lid * CPL + j (a lane past
                // c_out reads the padding's zeros and stores nothing), and channel j of it.
                let dv{i} = dz_texel((n + {i}u) * c4_out + lid * CPL / 4u); // @unroll(R*(1-CPL/4)*TEX)
                let d{i} = pick(dv{i/CPL}, (lid * CPL + {i%CPL}u) % 4u); // @unroll(R*CPL*(1-CPL/4)*TEX)
                // Line i: sum (t, k) = i / (R*CPL) of channel j = i % CPL over pixel
                // r = (i / CPL) % R, pixels in order; acc{(t, k) * CPL + j}.
                acc{(i/(R*CPL))*CPL + i%CPL} = fma(a{((i/(CPL*R*K*FW))*(R+FW-1) + (i/CPL)%R + (i/(CPL*R*K))%FW)*K + (i/(CPL*R))%K}, d{((i/CPL)%R)*CPL + i%CPL}, acc{(i/(R*CPL))*CPL + i%CPL}); // @unroll(FH*FW*K*R*CPL)
                db{i%CPL} += d{i}; // @unroll(R*CPL)
                ow += R;
            }
            for (; n < stop; n++) {
                let c1 = i32(ow) - p.left;
                let tcol{i} = c1 + i32((sl + {i*SG}u) / K); // @unroll((FW*K+SG-1)/SG)
                let tok{i} = tcol{i} >= 0 && tcol{i} < i32(p.in_w); // @unroll((FW*K+SG-1)/SG)
                let tat{i} = u32(select(0, tcol{i}, tok{i})) * K + (sl + {i*SG}u) % K; // @unroll((FW*K+SG-1)/SG)
                let u{i} = select(0.0, xs[hrow{i/((FW*K+SG-1)/SG)} + tat{i%((FW*K+SG-1)/SG)}], hin{i/((FW*K+SG-1)/SG)} && tok{i%((FW*K+SG-1)/SG)}); // @unroll(FH*((FW*K+SG-1)/SG))
                let b{i} = subgroupBroadcast(u{(i/(FW*K))*((FW*K+SG-1)/SG) + (i%(FW*K))/SG}, {(i%(FW*K))%SG}u); // @unroll(FH*FW*K)
                let d{i} = dzs[n * c_pad + ch{i}]; // @unroll(CPL)
                acc{i} = fma(b{i/CPL}, d{i%CPL}, acc{i}); // @unroll(FH*FW*K*CPL)
                db{i} += d{i}; // @unroll(CPL)
                ow += 1u;
            }
            ow = 0u;
            row += 1u;
        }
        let base = s * outputs;
        put_part(base + ({(i/CPL)/K}u * p.k_real + {(i/CPL)%K}u) * p.c_out + lid * CPL + {i%CPL}u, live{i%CPL}, acc{i}); // @unroll(FH*FW*K*CPL)
        put_part(base + p.taps * p.k_real * p.c_out + lid * CPL + {i}u, live{i}, db{i}); // @unroll(CPL)
    }
}

// @splice(pick.wgsl)

fn put_part(at: u32, live: bool, v: f32) {
    if (live) {
        part[at] = v;
    }
}
