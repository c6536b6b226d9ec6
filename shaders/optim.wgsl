// Optimizer steps, in place, one thread per parameter (cs231n's optim.py):
//   sgd:          g = dw + wd * w;  w -= lr * g
//   sgd_momentum: g = dw + wd * w;  v = momentum * v - lr * g;  w += v
//   adam:         g = dw + wd * w;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
//                 w -= lr * (m * c1) / (sqrt(v * c2) + eps),  c1 = 1/(1-b1^t), c2 = 1/(1-b2^t)
// Bindings: 0 params; 1 dw, read; 2 w, write; 3 m (adam) or v (momentum), write; 4 v (adam), write.
// The *4 entries do the same four parameters at a time through bindings 5 to 8 (dw, w, m or v,
// v); `total` is then in vec4s.

override WG: u32 = 64u;

struct Params {
    total: u32,
    lr: f32,
    weight_decay: f32,
    momentum: f32,   // sgd_momentum; adam: beta1
    beta2: f32,
    eps: f32,
    c1: f32,
    c2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dw: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> s1: array<f32>;
@group(0) @binding(4) var<storage, read_write> s2: array<f32>;
@group(0) @binding(5) var<storage, read> dw4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> w4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> s14: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> s24: array<vec4<f32>>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn sgd(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        let g = dw[i] + p.weight_decay * w[i];
        w[i] = w[i] - p.lr * g;
    }
}

@compute @workgroup_size(WG)
fn sgd_momentum(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        let g = dw[i] + p.weight_decay * w[i];
        let v = p.momentum * s1[i] - p.lr * g;
        s1[i] = v;
        w[i] = w[i] + v;
    }
}

@compute @workgroup_size(WG)
fn adam(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        let g = dw[i] + p.weight_decay * w[i];
        let m = p.momentum * s1[i] + (1.0 - p.momentum) * g;
        let v = p.beta2 * s2[i] + (1.0 - p.beta2) * g * g;
        s1[i] = m;
        s2[i] = v;
        w[i] = w[i] - p.lr * (m * p.c1) / (sqrt(v * p.c2) + p.eps);
    }
}

@compute @workgroup_size(WG)
fn sgd4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        let g = dw4[i] + p.weight_decay * w4[i];
        w4[i] = w4[i] - p.lr * g;
    }
}

@compute @workgroup_size(WG)
fn sgd_momentum4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        let g = dw4[i] + p.weight_decay * w4[i];
        let v = p.momentum * s14[i] - p.lr * g;
        s14[i] = v;
        w4[i] = w4[i] + v;
    }
}

@compute @workgroup_size(WG)
fn adam4(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let items = stream_range(linear_id(wid, nwg, lid), nwg.x * nwg.y * WG, p.total);
    for (var i = items.x; i < items.y; i += items.z) {
        let g = dw4[i] + p.weight_decay * w4[i];
        let m = p.momentum * s14[i] + (1.0 - p.momentum) * g;
        let v = p.beta2 * s24[i] + (1.0 - p.beta2) * g * g;
        s14[i] = m;
        s24[i] = v;
        w4[i] = w4[i] - p.lr * (m * p.c1) / (sqrt(v * p.c2) + p.eps);
    }
}
