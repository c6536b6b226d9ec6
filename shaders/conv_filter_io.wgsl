// The params, bindings and input indexing that the filter-gradient kernels share
// (`conv_filter.wgsl`, `conv_filter_lanes.wgsl`; the host appends this file to each).

const UBO_VEC4: u32 = 4096u;

struct Params {
    total: u32,       // lanes
    in_h: u32,
    in_w: u32,
    c4_in: u32,       // input channels / 4 (padded)
    out_h: u32,
    out_w: u32,
    c_out: u32,
    f_w: u32,
    s_h: u32,
    s_w: u32,
    top: i32,
    left: i32,
    k_real: u32,      // real input channels
    taps: u32,        // f_h * f_w
    n_cb: u32,        // channel blocks
    pixels: u32,      // pixels in this window
    first_pixel: u32, // first pixel (flat over the batch) of the window
    accumulate: u32,  // 0: first window, store; 1: add to what is there
    slices: u32,      // conv_filter_split: runs of pixels
    all_pixels: u32,  // conv_filter_split: pixels in the batch
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
// conv_filter_lanes reads A_prev unpadded: (m, in_h, in_w, k_real) floats.
@group(0) @binding(2) var<storage, read> xs: array<f32>;
@group(0) @binding(3) var<storage, read_write> z: array<f32>;
@group(0) @binding(4) var<uniform> win: array<vec4<f32>, UBO_VEC4>;
@group(0) @binding(5) var<storage, read_write> db_out: array<f32>;
@group(0) @binding(6) var<storage, read> dz: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> part: array<f32>;
// conv_filter_lanes with TEX = 1: A_prev's and dZ's (channels padded to 4) vec4s copied in
// order into textures (texture.rs).
@group(0) @binding(10) var xt: texture_storage_2d<rgba32float, read>;
@group(0) @binding(11) var dt: texture_storage_2d<rgba32float, read>;

// @splice(texel.wgsl)

// vec4 i of A_prev (`x_texel`) or of dZ (`dz_texel`), copied into its texture.
fn x_texel(i: u32) -> vec4<f32> {
    return textureLoad(xt, texel_at(i));
}

fn dz_texel(i: u32) -> vec4<f32> {
    return textureLoad(dt, texel_at(i));
}

// vec4 index of X[i, h, w, 4*k4 .. 4*k4+3].
fn index_x4(i: u32, h: u32, w: u32, k4: u32) -> u32 {
    return ((i * p.in_h + h) * p.in_w + w) * p.c4_in + k4;
}
