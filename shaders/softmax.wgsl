// Softmax cross-entropy, one thread per row of scores (N, K), computed stably:
//   q = scores[row] - max(scores[row]);  log p = q - log(sum exp q)
//   row_loss[row] = -sum_k y[row, k] * log p[k] / N      (the mean's share of the row)
//   dscores[row, k] = (p[k] - y[row, k]) / N
// The loss is then the deterministic sum of row_loss (reduce.wgsl). y: the targets (one-hot
// rows, or any probability rows).
// Bindings: 0 params; 1 scores, read; 2 y, read; 3 dscores, write; 4 row_loss, write.

override WG: u32 = 64u;

struct Params {
    rows: u32,
    k: u32,
    inv_n: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> scores: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> dscores: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_loss: array<f32>;

@compute @workgroup_size(WG)
fn softmax_loss(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let grid = nwg.x * nwg.y * WG;
    for (var row = (wid.y * nwg.x + wid.x) * WG + lid; row < p.rows; row += grid) {
        let base = row * p.k;
        var top = scores[base];
        for (var k = 1u; k < p.k; k++) {
            top = max(top, scores[base + k]);
        }
        var total = 0.0;
        for (var k = 0u; k < p.k; k++) {
            total += exp(scores[base + k] - top);
        }
        let log_total = log(total);
        var loss = 0.0;
        for (var k = 0u; k < p.k; k++) {
            let log_p = scores[base + k] - top - log_total;
            let want = y[base + k];
            if (want != 0.0) {
                loss -= want * log_p;
            }
            dscores[base + k] = (exp(log_p) - want) * p.inv_n;
        }
        row_loss[row] = loss * p.inv_n;
    }
}
