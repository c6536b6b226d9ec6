// The texel holding vec4 i of a tensor copied into an input texture (texture.rs, its
// TEXTURE_WIDTH of 4096): (i % 4096, i / 4096).
fn texel_at(i: u32) -> vec2<u32> {
    return vec2<u32>(i & 4095u, i >> 12u);
}
