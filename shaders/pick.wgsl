// Component e (0..3) of v, without indexing a vector by a lane's value (selects, which a CPU
// adapter runs as blends where a dynamic index would go through memory).
fn pick(v: vec4<f32>, e: u32) -> f32 {
    return select(select(v.x, v.y, e == 1u), select(v.z, v.w, e == 3u), e >= 2u);
}
