// The filter gradient of a convolution, window by window of dZ rows:
//
//   dW[t, k, c] += sum_{p in window} X[p -> t, k] * dZ[p, c];   db[c] += sum_p dZ[p, c]
//
// with X[p -> t, k] as in conv_gemm.wgsl. The window (a uniform binding) holds the dZ rows of
// `pixels` consecutive output pixels; every lane of a workgroup reads the same row at the same
// time (a broadcast load). Windows are accumulated in order (`accumulate`): deterministic.
//
// Params and bindings (conv_filter_io.wgsl): 1 x = A_prev (m, in_h, in_w, c4_in) vec4 (channels
// padded), read; 3 dW (f_h, f_w, k_real, c_out), write; 4 the window of dZ (channels padded to
// 4); 5 db (c_out); 6 dZ in storage; 7 the partial sums of the split kernels.
// Overrides: CB4 (output channel vec4s per lane), RT (consecutive taps per lane), WGF
// (workgroup size); CB4 and RT are also unrolled.
//
// `conv_filter_split` + `filter_sum`: the same sums for a small filter (few (tap, k4) lanes, so
// the windowed kernel would run a workgroup or two while the others idle): the pixels are cut
// into `slices` runs of `pixels` (the last shorter), every (slice, lane) sums its run with dZ
// read from storage (binding 6) into `part` (binding 7: slices x (dW then db)), and `filter_sum`
// adds the slices in order. Deterministic; the order is fixed by the shape, not by the tuning.

override CB4: u32;
override RT: u32;
override WGF: u32;
// SGON = 1 (Quirks::spread_windows): the lanes of a subgroup of SG read the CB4 dZ vec4s of a
// pixel spread over them and subgroupBroadcast hands each to every lane (as conv_gemm.wgsl
// reads its window): the same values, SG times fewer loads. conv_filter_split then pads each
// channel block's lanes to whole subgroups, so that a subgroup shares its slice and block.
override SG: u32 = 1u;
override SGON: u32 = 0u;

// One lane per (channel block, group of RT consecutive taps, k4); lanes of one channel block fill
// whole workgroups of WGF (`lanes_per_cb` rounded up), so each workgroup reads one uniform slice
// of the window. The window holds the dZ rows of `pixels` consecutive pixels (c4_out vec4 each):
// each row read feeds RT * 4 * CB4 vec4 FMAs. Every lane also sums db (uniform work); the lane
// owning tap 0 and k4 == 0 stores it.
// Bindings: x = A_prev (channels padded to c4_in*4), z = dW (f_h, f_w, k_real, c_out),
// db_out = db (c_out).
@compute @workgroup_size(WGF)
fn conv_filter(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sl: u32, // @unroll(SGON)
) {
    let grid = nwg.x * nwg.y * WGF;
    let groups = (p.taps + RT - 1u) / RT;
    let lanes_per_cb = groups * p.c4_in;
    let stride_cb = (lanes_per_cb + WGF - 1u) / WGF * WGF;
    let c4_out = (p.c_out + 3u) / 4u;
    for (var first = (wid.y * nwg.x + wid.x) * WGF; first < p.total; first += grid) {
        let cb = first / stride_cb;
        let r = min(first % stride_cb + lid, lanes_per_cb - 1u);
        let t0 = (r / p.c4_in) * RT;
        let k4 = r % p.c4_in;
        let dh{i} = (t0 + {i}u) / p.f_w; // @unroll(RT)
        let dw{i} = (t0 + {i}u) % p.f_w; // @unroll(RT)
        var acc{i} = vec4<f32>(0.0); // @unroll(RT*4*CB4)
        var db{i} = vec4<f32>(0.0); // @unroll(CB4)
        // Walk the window's pixels with counters (no division per pixel).
        var ow = p.first_pixel % p.out_w;
        var oh = (p.first_pixel / p.out_w) % p.out_h;
        var im = p.first_pixel / (p.out_w * p.out_h);
        var drow = cb * CB4;
        for (var n = 0u; n < p.pixels; n++) {
            let a{i} = tap_input(im, oh, ow, t0 + {i}u, dh{i}, dw{i}, k4, true); // @unroll(RT)
            let d{i} = win[drow + {i}u]; // @unroll(CB4*(1-SGON))
            let dl{i} = win[drow + min({i*SG}u + sl, {CB4-1}u)]; // @unroll(SGON*((CB4+SG-1)/SG))
            let d{i} = subgroupBroadcast(dl{i/SG}, {i%SG}u); // @unroll(SGON*CB4)
            acc{i} = fma(vec4<f32>(a{i/(4*CB4)}[{(i/CB4)%4}]), d{i%CB4}, acc{i}); // @unroll(RT*4*CB4)
            db{i} += d{i}; // @unroll(CB4)
            drow += c4_out;
            next_pixel(&ow, &oh, &im);
        }
        if (first % stride_cb + lid < lanes_per_cb) {
            store_dw(t0 + {i/(4*CB4)}u, k4, cb, {i%(4*CB4)}u, acc{i}); // @unroll(RT*4*CB4)
            if (t0 == 0u && k4 == 0u) {
                store_db(cb, {i}u, db{i}); // @unroll(CB4)
            }
        }
    }
}

// Stores acc[j * CB4 + q] = dW[t, 4*k4 + j, channels of vec4 q of block cb].
fn store_dw(t: u32, k4: u32, cb: u32, slot: u32, v: vec4<f32>) {
    let k = k4 * 4u + slot / CB4;
    if (k >= p.k_real || t >= p.taps) {
        return;
    }
    for (var e = 0u; e < 4u; e++) {
        let c = (cb * CB4 + slot % CB4) * 4u + e;
        if (c < p.c_out) {
            let o = (t * p.k_real + k) * p.c_out + c;
            var s = v[e];
            if (p.accumulate != 0u) {
                s += z[o];
            }
            z[o] = s;
        }
    }
}

fn store_db(cb: u32, q: u32, v: vec4<f32>) {
    for (var e = 0u; e < 4u; e++) {
        let c = (cb * CB4 + q) * 4u + e;
        if (c < p.c_out) {
            var s = v[e];
            if (p.accumulate != 0u) {
                s += db_out[c];
            }
            db_out[c] = s;
        }
    }
}

@compute @workgroup_size(WGF)
fn conv_filter_split(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) sl: u32, // @unroll(SGON)
) {
    let grid = nwg.x * nwg.y * WGF;
    let groups = (p.taps + RT - 1u) / RT;
    let real_per_cb = groups * p.c4_in;
    // With SGON, a block's lanes in whole subgroups; the padding lanes sum lane
    // real_per_cb - 1's terms again and store nothing.
    let lanes_per_cb = (real_per_cb + SG - 1u) / SG * SG;
    let lanes_per_slice = p.n_cb * lanes_per_cb;
    let c4_out = (p.c_out + 3u) / 4u;
    let outputs = p.taps * p.k_real * p.c_out + p.c_out; // dW, then db
    for (var lane = (wid.y * nwg.x + wid.x) * WGF + lid; lane < p.total; lane += grid) {
        let s = lane / lanes_per_slice;
        let cb = (lane % lanes_per_slice) / lanes_per_cb;
        let r = min(lane % lanes_per_cb, real_per_cb - 1u);
        let t0 = (r / p.c4_in) * RT;
        let k4 = r % p.c4_in;
        let dh{i} = (t0 + {i}u) / p.f_w; // @unroll(RT)
        let dw{i} = (t0 + {i}u) % p.f_w; // @unroll(RT)
        var acc{i} = vec4<f32>(0.0); // @unroll(RT*4*CB4)
        var db{i} = vec4<f32>(0.0); // @unroll(CB4)
        let begin = s * p.pixels;
        let end = min(begin + p.pixels, p.all_pixels);
        var ow = begin % p.out_w;
        var oh = (begin / p.out_w) % p.out_h;
        var im = begin / (p.out_w * p.out_h);
        var drow = begin * c4_out + cb * CB4;
        // Two pixels per step (the second absent, its terms zeros, on the last step of an odd
        // run): each accumulator takes both terms in a row, one load and one store of a spilled
        // accumulator per two FMAs; the sums still run over the pixels in order.
        for (var n = begin; n < end; n += 2u) {
            let two = n + 1u < end;
            let a{i} = tap_input(im, oh, ow, t0 + {i}u, dh{i}, dw{i}, k4, true); // @unroll(RT)
            let d{i} = dz[drow + {i}u]; // @unroll(CB4*(1-SGON))
            let dl{i} = dz[drow + min({i*SG}u + sl, {CB4-1}u)]; // @unroll(SGON*((CB4+SG-1)/SG))
            let d{i} = subgroupBroadcast(dl{i/SG}, {i%SG}u); // @unroll(SGON*CB4)
            next_pixel(&ow, &oh, &im);
            let erow = select(drow, drow + c4_out, two);
            let b{i} = tap_input(im, oh, ow, t0 + {i}u, dh{i}, dw{i}, k4, two); // @unroll(RT)
            let e{i} = select(vec4<f32>(0.0), dz[erow + {i}u], two); // @unroll(CB4*(1-SGON))
            let el{i} = dz[erow + min({i*SG}u + sl, {CB4-1}u)]; // @unroll(SGON*((CB4+SG-1)/SG))
            let e{i} = select(vec4<f32>(0.0), subgroupBroadcast(el{i/SG}, {i%SG}u), two); // @unroll(SGON*CB4)
            next_pixel(&ow, &oh, &im);
            acc{i} = fma(vec4<f32>(b{i/(4*CB4)}[{(i/CB4)%4}]), e{i%CB4}, fma(vec4<f32>(a{i/(4*CB4)}[{(i/CB4)%4}]), d{i%CB4}, acc{i})); // @unroll(RT*4*CB4)
            db{i} = (db{i} + d{i}) + e{i}; // @unroll(CB4)
            drow += 2u * c4_out;
        }
        if (lane % lanes_per_cb < real_per_cb) {
            store_part(s * outputs, t0 + {i/(4*CB4)}u, k4, cb, {i%(4*CB4)}u, acc{i}); // @unroll(RT*4*CB4)
            if (t0 == 0u && k4 == 0u) {
                store_part_db(s * outputs + p.taps * p.k_real * p.c_out, cb, {i}u, db{i}); // @unroll(CB4)
            }
        }
    }
}

// Input vec4 k4 of tap t = (dh, dw) under output pixel (im, oh, ow): zero in the padding, for a
// tap past the filter's, or when not `live`.
fn tap_input(im: u32, oh: u32, ow: u32, t: u32, dh: u32, dw: u32, k4: u32, live: bool) -> vec4<f32> {
    let h = i32(oh * p.s_h + dh) - p.top;
    let w = i32(ow * p.s_w + dw) - p.left;
    let inside = live && t < p.taps && h >= 0 && w >= 0 && u32(h) < p.in_h && u32(w) < p.in_w;
    return select(vec4<f32>(0.0), x[index_x4(im, u32(select(0, h, inside)), u32(select(0, w, inside)), k4)], inside);
}

// The output pixel after (ow, oh, im), in (image, row, column) order.
fn next_pixel(ow: ptr<function, u32>, oh: ptr<function, u32>, im: ptr<function, u32>) {
    *ow += 1u;
    if (*ow == p.out_w) {
        *ow = 0u;
        *oh += 1u;
        if (*oh == p.out_h) {
            *oh = 0u;
            *im += 1u;
        }
    }
}

// part[base + dW index of (t, 4*k4 + j, channels of vec4 q of block cb)] = acc[j * CB4 + q].
fn store_part(base: u32, t: u32, k4: u32, cb: u32, slot: u32, v: vec4<f32>) {
    let k = k4 * 4u + slot / CB4;
    if (k >= p.k_real || t >= p.taps) {
        return;
    }
    for (var e = 0u; e < 4u; e++) {
        let c = (cb * CB4 + slot % CB4) * 4u + e;
        if (c < p.c_out) {
            part[base + (t * p.k_real + k) * p.c_out + c] = v[e];
        }
    }
}

fn store_part_db(base: u32, cb: u32, q: u32, v: vec4<f32>) {
    for (var e = 0u; e < 4u; e++) {
        let c = (cb * CB4 + q) * 4u + e;
        if (c < p.c_out) {
            part[base + c] = v[e];
        }
    }
}

// One thread per output of conv_filter_split (dW, then db): the sum of its slices, in order.
@compute @workgroup_size(WGF)
fn filter_sum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WGF;
    let dw_len = p.taps * p.k_real * p.c_out;
    let outputs = dw_len + p.c_out;
    for (var o = (wid.y * nwg.x + wid.x) * WGF + lid; o < outputs; o += grid) {
        var sum = part[o];
        for (var s = 1u; s < p.slices; s++) {
            sum += part[s * outputs + o];
        }
        if (o < dw_len) {
            z[o] = sum;
        } else {
            db_out[o - dw_len] = sum;
        }
    }
}

// `conv_filter_tiled` and `conv_filter_split_tiled`: the same sums tiled through workgroup
// memory, the shape of a GPU kernel. A workgroup of 64 threads owns a tile of FT_ROWS (tap, k4)
// rows x FT_COLS output vec4s; for each step of FT_PIX pixels its threads load the tile's input
// vec4s (neighbouring threads on neighbouring pixels) and dZ vec4s into workgroup memory, then
// thread (row, q) adds the step's pixels in order. Per output the sum runs over the pixels in
// order, as in conv_filter and conv_filter_split (the windowed kernel accumulates window after
// window, the split kernel writes each slice to `part`), so every variant gives the same bits.
// dZ is read from storage (binding 6, channels padded to 4) in both. Consts as for the other
// kernels with CB4 = RT = 1 (the stores reuse theirs).
const FT_ROWS: u32 = 16u;
const FT_COLS: u32 = 4u;
const FT_PIX: u32 = 16u;
var<workgroup> ft_x: array<vec4<f32>, 256>; // FT_ROWS x FT_PIX
var<workgroup> ft_d: array<vec4<f32>, 64>;  // FT_PIX x FT_COLS

struct TileSums {
    acc: array<vec4<f32>, 4>, // channel j of the thread's row x its output vec4
    db: vec4<f32>,
}

// The sums of tile (row0, q0) over pixels [begin, end) for thread `lid` (row lid / FT_COLS, output
// vec4 lid % FT_COLS of the tile). Called in uniform control flow (it has barriers).
fn tile_sums(row0: u32, q0: u32, lid: u32, begin: u32, end: u32) -> TileSums {
    let c4_out = (p.c_out + 3u) / 4u;
    let rows = p.taps * p.c4_in;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var db = vec4<f32>(0.0);
    for (var n0 = begin; n0 < end; n0 += FT_PIX) {
        for (var j = 0u; j < 4u; j++) {
            let e = lid + 64u * j;
            let r = row0 + e / FT_PIX;
            let n = n0 + e % FT_PIX;
            var v = vec4<f32>(0.0);
            if (r < rows && n < end) {
                let t = r / p.c4_in;
                let ow = n % p.out_w;
                let oh = (n / p.out_w) % p.out_h;
                let im = n / (p.out_w * p.out_h);
                let h = i32(oh * p.s_h + t / p.f_w) - p.top;
                let w = i32(ow * p.s_w + t % p.f_w) - p.left;
                if (h >= 0 && w >= 0 && u32(h) < p.in_h && u32(w) < p.in_w) {
                    v = x[index_x4(im, u32(h), u32(w), r % p.c4_in)];
                }
            }
            ft_x[e] = v;
        }
        let dn = n0 + lid / FT_COLS;
        let dq = q0 + lid % FT_COLS;
        var d = vec4<f32>(0.0);
        if (dn < end && dq < c4_out) {
            d = dz[dn * c4_out + dq];
        }
        ft_d[lid] = d;
        workgroupBarrier();
        let steps = min(FT_PIX, end - n0);
        for (var i = 0u; i < steps; i++) {
            let a = ft_x[(lid / FT_COLS) * FT_PIX + i];
            let dv = ft_d[i * FT_COLS + lid % FT_COLS];
            acc0 = fma(vec4<f32>(a.x), dv, acc0);
            acc1 = fma(vec4<f32>(a.y), dv, acc1);
            acc2 = fma(vec4<f32>(a.z), dv, acc2);
            acc3 = fma(vec4<f32>(a.w), dv, acc3);
            db += dv;
        }
        workgroupBarrier();
    }
    return TileSums(array<vec4<f32>, 4>(acc0, acc1, acc2, acc3), db);
}

// Tiles of the (tap, k4) x output-vec4 grid: (row tiles, column tiles).
fn tile_grid() -> vec2<u32> {
    return vec2<u32>((p.taps * p.c4_in + FT_ROWS - 1u) / FT_ROWS, ((p.c_out + 3u) / 4u + FT_COLS - 1u) / FT_COLS);
}

// The window's pixels [first_pixel, first_pixel + pixels), accumulated into dW and db like
// conv_filter (p.total: tiles).
@compute @workgroup_size(64)
fn conv_filter_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = tile_grid();
    for (var g = wid.y * nwg.x + wid.x; g < p.total; g += nwg.x * nwg.y) {
        let row0 = (g / grid.y) * FT_ROWS;
        let q0 = (g % grid.y) * FT_COLS;
        let sums = tile_sums(row0, q0, lid, p.first_pixel, p.first_pixel + p.pixels);
        let r = row0 + lid / FT_COLS;
        let q = q0 + lid % FT_COLS;
        if (r < p.taps * p.c4_in) {
            store_dw(r / p.c4_in, r % p.c4_in, q, {i}u, sums.acc[{i}]); // @unroll(4)
            if (r == 0u) {
                store_db(q, 0u, sums.db);
            }
        }
    }
}

// Slice s's pixels into `part` like conv_filter_split (p.total: slices x tiles).
@compute @workgroup_size(64)
fn conv_filter_split_tiled(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = tile_grid();
    let tiles = grid.x * grid.y;
    let outputs = p.taps * p.k_real * p.c_out + p.c_out; // dW, then db
    for (var g = wid.y * nwg.x + wid.x; g < p.total; g += nwg.x * nwg.y) {
        let s = g / tiles;
        let row0 = ((g % tiles) / grid.y) * FT_ROWS;
        let q0 = (g % grid.y) * FT_COLS;
        let begin = s * p.pixels;
        let sums = tile_sums(row0, q0, lid, begin, min(begin + p.pixels, p.all_pixels));
        let r = row0 + lid / FT_COLS;
        let q = q0 + lid % FT_COLS;
        if (r < p.taps * p.c4_in) {
            store_part(s * outputs, r / p.c4_in, r % p.c4_in, q, {i}u, sums.acc[{i}]); // @unroll(4)
            if (r == 0u) {
                store_part_db(s * outputs + p.taps * p.k_real * p.c_out, q, 0u, sums.db);
            }
        }
    }
}
