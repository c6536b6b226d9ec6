
// ---- stream.wgsl (appended to the element-wise kernels) ----
// The grid-stride loop of an element-wise kernel: the items of `total` that thread `id` of
// `threads` visits, as (start, end, step).
//   STREAM = 0: items id, id + threads, ... (neighbouring threads on neighbouring items at every
//               step: coalesced on a GPU).
//   STREAM = L > 0: the threads in groups of L consecutive ids, each group streaming through a
//               contiguous chunk of the items with its L lanes interleaved. CPU adapters run L
//               lanes in one SIMD register and a group's whole loop before the next group's, so
//               a chunk per group keeps each group's loads and stores in a few pages and
//               prefetch streams (see Quirks::stream_lanes).
override STREAM: u32 = 0u;

fn stream_range(id: u32, threads: u32, total: u32) -> vec3<u32> {
    if (STREAM == 0u || threads <= STREAM) {
        return vec3<u32>(id, total, threads);
    }
    let l = max(STREAM, 1u); // (a constant divisor of 0 does not compile, even where unused)
    let group = id / l;
    let groups = (threads + l - 1u) / l;
    let chunk = (total + groups - 1u) / groups;
    let start = min(group * chunk, total);
    return vec3<u32>(start + id % l, min(start + chunk, total), min(l, threads - group * l));
}
