// The params, bindings and input indexing that the implicit-GEMM convolutions share
// (`conv_gemm.wgsl`, `conv_lanes.wgsl`; the host appends this file to each).
// Bindings: 0 params; 1 x (m, in_h, in_w, c4_in) vec4, read (5 xs: the same unpadded); 2 bias (c_out), read (any buffer
// when has_bias = 0); 3 z (m, o_h, o_w, c_out), write; 4 the window of the packed filter Wp
// (conv_pack.wgsl): for tap t (from tap_begin) and input vec4 k4, the rows
// (t * c4_in + k4) * 4 * CB4 + j * CB4 + q hold channel 4*k4 + j of output vec4 q of the block.

const UBO_VEC4: u32 = 4096u;

struct Params {
    total: u32,       // output pixels in the chunk
    in_h: u32,
    in_w: u32,
    c4_in: u32,       // input channels / 4 (padded)
    out_h: u32,
    out_w: u32,
    c_out: u32,       // real output channels
    f_w: u32,
    s_h: u32,
    s_w: u32,
    top: i32,
    left: i32,
    tap_begin: u32,   // taps of this window: tap_begin .. tap_end
    tap_end: u32,
    c_begin: u32,     // first output channel of the block
    accumulate: u32,  // 0: start fresh; 1: start from what is there (conv_gemm.wgsl)
    has_bias: u32,    // 1 on the last window: add the bias
    x_off: u32,       // element offset of the chunk's first image in x
    z_off: u32,       // element offset of the chunk's first image in z
    relu: u32,        // 1 on the last window of a fused conv + ReLU: z = max(0, z)
    // Where output pixel (i, oh, ow) goes: z pixel (i, o_rh + oh*o_sh, o_rw + ow*o_sw) of an
    // (o_h, o_w) grid: one stride phase of a strided data gradient, or with o_sh = o_sw = 1 the
    // identity (then o_rh = o_rw = 0 and the grid is out_h x out_w).
    o_h: u32,
    o_w: u32,
    o_sh: u32,
    o_sw: u32,
    o_rh: u32,
    o_rw: u32,
    // conv_lanes with POOL = 1: the pool's strides.
    pool_sh: u32,
    pool_sw: u32,
    // conv_gemm with WTEX = 1: taps per window of the packed filter, and this block's first
    // window (the filter's rows are read from a texture, all taps in one dispatch).
    tpw: u32,
    win0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> z: array<f32>;
@group(0) @binding(4) var<uniform> win: array<vec4<f32>, UBO_VEC4>;
// conv_lanes reads the input unpadded: (m, in_h, in_w, k_real) floats.
@group(0) @binding(5) var<storage, read> xs: array<f32>;
// TEX = 1: X's vec4s copied in order into a texture (texture.rs).
@group(0) @binding(8) var xt: texture_storage_2d<rgba32float, read>;

// @splice(texel.wgsl)

// vec4 i of X copied into its texture. (A function per texture, not one taking the texture:
// GLSL takes no image as a function parameter.)
fn x_texel(i: u32) -> vec4<f32> {
    return textureLoad(xt, texel_at(i));
}

// Element offset in z of output pixel `pix` (counted over the chunk's out_h x out_w grids):
// pixels along a row are o_sw * c_out floats apart.
fn z_at(pix: u32) -> u32 {
    if (p.o_sh == 1u && p.o_sw == 1u) {
        return p.z_off + pix * p.c_out; // the identity, without the divisions
    }
    let ow = pix % p.out_w;
    let r = pix / p.out_w;
    let oh = r % p.out_h;
    let im = r / p.out_h;
    return p.z_off + ((im * p.o_h + p.o_rh + oh * p.o_sh) * p.o_w + p.o_rw + ow * p.o_sw) * p.c_out;
}

// vec4 index of X[i, h, w, 4*k4 .. 4*k4+3] (x_off is in floats, a multiple of 4).
fn index_x4(i: u32, h: u32, w: u32, k4: u32) -> u32 {
    return p.x_off / 4u + ((i * p.in_h + h) * p.in_w + w) * p.c4_in + k4;
}
