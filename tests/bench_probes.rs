//! The benchmark's probes refuse sizes they cannot run, before allocating anything (they used
//! to panic on `usize::MAX` and abort on 2^40 bytes).
#![cfg(feature = "bench")]

mod common;

use wgpu_cnn::bench::{probe_copy, probe_fma};
use wgpu_cnn::Error;

#[test]
fn probes_refuse_sizes_beyond_a_binding_with_a_typed_error() {
    let gpu = common::gpu();
    for bytes in [usize::MAX, 1 << 40, gpu.max_binding_bytes() as usize] {
        match probe_copy(gpu, bytes, 1) {
            Err(Error::TooLarge {
                bytes: b, limit, ..
            }) => {
                assert_eq!(b, bytes as u64);
                assert_eq!(limit, gpu.max_binding_bytes());
            }
            other => panic!("probe_copy({bytes}): expected TooLarge, got {other:?}"),
        }
    }
    assert!(matches!(
        probe_fma(gpu, usize::MAX, 1, 1),
        Err(Error::TooLarge { .. })
    ));
    // A size that fits runs and reports a positive rate.
    let p = probe_copy(gpu, 1 << 16, 1).expect("a 64 KiB copy");
    assert!(p.rate() > 0.0 && p.rate().is_finite());
}
