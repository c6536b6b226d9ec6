// ReLU, element by element (any shape; one thread per element):
//   relu_forward:  y = max(0, x)            (NaN stays NaN, as numpy's np.maximum(0, x))
//   relu_backward: dx = dout * (x > 0)      (0 where x is 0, negative or NaN)
// Bindings: 0 params; forward: 1 x, read; 3 y, write. backward: 1 x, 2 dout, read; 3 dx, write.
// The *4 entries do the same four elements at a time (vec4 loads and stores) through bindings
// 4, 5, 6 (x, dout, y); offsets and totals are then in vec4s.

override WG: u32 = 64u;

struct Params {
    total: u32,
    x_off: u32,
    g_off: u32,
    y_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> dout4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y4: array<vec4<f32>>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn relu_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        let v = x[p.x_off + i];
        y[p.y_off + i] = select(v, 0.0, v < 0.0);
    }
}

@compute @workgroup_size(WG)
fn relu_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        y[p.y_off + i] = select(0.0, dout[p.g_off + i], x[p.x_off + i] > 0.0);
    }
}

@compute @workgroup_size(WG)
fn relu_forward4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        let v = x4[p.x_off + i];
        y4[p.y_off + i] = select(v, vec4<f32>(0.0), v < vec4<f32>(0.0));
    }
}

@compute @workgroup_size(WG)
fn relu_backward4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        y4[p.y_off + i] = select(vec4<f32>(0.0), dout4[p.g_off + i], x4[p.x_off + i] > vec4<f32>(0.0));
    }
}
