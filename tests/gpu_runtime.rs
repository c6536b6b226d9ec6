//! The runtime that carries a whole network: memory reused from step to step, ops that write
//! into tensors the caller provides, host arrays written into existing tensors, live and peak
//! bytes. Each test makes its own `Gpu`, so that other tests running in parallel do not move
//! its counters.

mod common;

use common::{assert_close, randn_f32};
use ndarray::{Array1, Array4, Ix4};
use wgpu_cnn::{
    cpu, ConvGrads, ConvParams, Gpu, GpuOptions, MemoryStats, Padding, PoolMode, PoolParams,
};

fn own_gpu() -> Gpu {
    Gpu::with_options(GpuOptions {
        no_autotune: true,
        ..Default::default()
    })
    .expect("a wgpu adapter")
}

/// A small network's step: conv (SAME, 3 input channels: the channel-padded fast path) ->
/// max pool -> conv (stride 2: direct backward data) -> average pool, then every backward.
struct Step {
    x: Array4<f32>,
    w1: Array4<f32>,
    w2: Array4<f32>,
}

impl Step {
    fn new(seed: u32) -> Self {
        let mut rng = common::numpy_rng::NumpyRng::seed(seed);
        Self {
            x: randn_f32(&mut rng, [4, 16, 16, 3]),
            w1: randn_f32(&mut rng, [3, 3, 3, 8]),
            w2: randn_f32(&mut rng, [2, 2, 8, 6]),
        }
    }

    /// Runs forward and backward; returns dW1 (downloaded when `read`).
    fn run(
        &self,
        gpu: &Gpu,
        x: &wgpu_cnn::Tensor,
        w1: &wgpu_cnn::Tensor,
        w2: &wgpu_cnn::Tensor,
        read: bool,
    ) -> Option<Array4<f32>> {
        let b1 = gpu.zeros(&[8]).unwrap();
        let b2 = gpu.zeros(&[6]).unwrap();
        let same = ConvParams::new(1, 0).with_padding(Padding::same((16, 16), (3, 3), (1, 1)));
        let (z1, c1) = gpu.conv_forward(x, w1, &b1, same).unwrap();
        let (a1, p1) = gpu
            .pool_forward(&z1, PoolParams::new(2, 2, PoolMode::Max))
            .unwrap();
        let (z2, c2) = gpu
            .conv_forward(&a1, w2, &b2, ConvParams::new(2, 1))
            .unwrap();
        let (a2, p2) = gpu
            .pool_forward(&z2, PoolParams::new(2, 1, PoolMode::Average))
            .unwrap();
        let da2 = gpu.pool_backward(&a2, &p2).unwrap();
        let g2 = gpu.conv_backward(&da2, &c2).unwrap();
        let dz1 = gpu.pool_backward(&g2.da_prev, &p1).unwrap();
        let g1 = gpu.conv_backward(&dz1, &c1).unwrap();
        read.then(|| gpu.download::<Ix4>(&g1.dw).unwrap())
    }
}

fn created(m: &MemoryStats) -> (u64, u64, u64) {
    (
        m.buffers_created,
        m.bind_groups_created,
        m.pipelines_created,
    )
}

#[test]
fn a_repeated_step_creates_no_buffer_bind_group_or_pipeline_after_the_first() {
    let gpu = own_gpu();
    let step = Step::new(7);
    let mut x = gpu.upload(&step.x).unwrap();
    let w1 = gpu.upload(&step.w1).unwrap();
    let w2 = gpu.upload(&step.w2).unwrap();
    let first = step.run(&gpu, &x, &w1, &w2, true).unwrap();
    let after_first = gpu.memory();
    assert!(after_first.buffers_created > 0 && after_first.bind_groups_created > 0);
    for i in 0..4 {
        // A new minibatch goes into the same input tensor.
        gpu.write(&mut x, &step.x).unwrap();
        let dw1 = step.run(&gpu, &x, &w1, &w2, i == 3);
        if let Some(dw1) = dw1 {
            assert_eq!(dw1, first, "the same step gives the same bits");
        }
        assert_eq!(
            created(&gpu.memory()),
            created(&after_first),
            "step {} created device objects (buffers, bind groups, pipelines)",
            i + 2
        );
    }
    println!(
        "first step: {} buffers, {} bind groups, {} pipelines; later steps: none",
        after_first.buffers_created, after_first.bind_groups_created, after_first.pipelines_created
    );
}

#[test]
fn ops_write_into_tensors_the_caller_provides() {
    let gpu = own_gpu();
    let step = Step::new(11);
    let x = gpu.upload(&step.x).unwrap();
    let w = gpu.upload(&step.w1).unwrap();
    let b = gpu.upload(&Array1::<f32>::linspace(-1.0, 1.0, 8)).unwrap();
    let params = ConvParams::new(1, 1);
    let (z, cache) = gpu.conv_forward(&x, &w, &b, params).unwrap();
    let dz = gpu.upload(&Array4::<f32>::ones((4, 16, 16, 8))).unwrap();
    let grads = gpu.conv_backward(&dz, &cache).unwrap();

    // The same into tensors full of garbage: every element must be overwritten.
    let fill = |shape: &[usize]| {
        gpu.upload(&ndarray::ArrayD::from_elem(shape, 7.5f32))
            .unwrap()
    };
    let mut z_into = fill(z.shape());
    let cache_into = gpu
        .conv_forward_into(&x, &w, &b, params, &mut z_into)
        .unwrap();
    let mut grads_into = ConvGrads {
        da_prev: fill(grads.da_prev.shape()),
        dw: fill(grads.dw.shape()),
        db: fill(grads.db.shape()),
    };
    gpu.conv_backward_into(&dz, &cache_into, &mut grads_into)
        .unwrap();
    let d = |t: &wgpu_cnn::Tensor| gpu.download::<ndarray::IxDyn>(t).unwrap();
    assert_eq!(d(&z_into), d(&z));
    assert_eq!(d(&grads_into.da_prev), d(&grads.da_prev));
    assert_eq!(d(&grads_into.dw), d(&grads.dw));
    assert_eq!(d(&grads_into.db), d(&grads.db));

    for (params, shape) in [
        (PoolParams::new(2, 2, PoolMode::Max), [4, 8, 8, 8]),
        (PoolParams::new(3, 3, PoolMode::Max), [4, 5, 5, 8]), // windows leave a border
        (PoolParams::new(3, 2, PoolMode::Average), [4, 7, 7, 8]),
    ] {
        let (a, pc) = gpu.pool_forward(&z, params).unwrap();
        let mut a_into = fill(&shape);
        gpu.pool_forward_into(&z, params, &mut a_into).unwrap();
        assert_eq!(d(&a_into), d(&a));
        let back = gpu.pool_backward(&a, &pc).unwrap();
        let mut back_into = fill(z.shape());
        gpu.pool_backward_into(&a, &pc, &mut back_into).unwrap();
        assert_eq!(d(&back_into), d(&back), "{params:?}");
    }
    let mut padded = fill(&[4, 18, 19, 3]);
    gpu.zero_pad_into(&x, Padding::explicit(1, 1, 2, 1), &mut padded)
        .unwrap();
    assert_eq!(
        d(&padded),
        d(&gpu.zero_pad(&x, Padding::explicit(1, 1, 2, 1)).unwrap())
    );
    // A wrong output shape is an error that names both shapes.
    let mut wrong = fill(&[4, 16, 16, 7]);
    let e = gpu
        .conv_forward_into(&x, &w, &b, params, &mut wrong)
        .unwrap_err();
    assert!(matches!(e, wgpu_cnn::Error::ShapeMismatch { .. }), "{e}");
}

#[test]
fn work_recorded_before_a_write_sees_the_old_contents() {
    let gpu = own_gpu();
    let mut x = gpu.upload(&Array4::<f32>::ones((2, 4, 4, 4))).unwrap();
    let (old_sum, _) = gpu
        .pool_forward(&x, PoolParams::new(4, 4, PoolMode::Average))
        .unwrap();
    gpu.write(&mut x, &Array4::<f32>::from_elem((2, 4, 4, 4), 3.0))
        .unwrap();
    let (new_sum, _) = gpu
        .pool_forward(&x, PoolParams::new(4, 4, PoolMode::Average))
        .unwrap();
    assert!(gpu
        .download::<Ix4>(&old_sum)
        .unwrap()
        .iter()
        .all(|&v| v == 1.0));
    assert!(gpu
        .download::<Ix4>(&new_sum)
        .unwrap()
        .iter()
        .all(|&v| v == 3.0));
    // A write of the wrong shape is an error.
    let e = gpu
        .write(&mut x, &Array4::<f32>::zeros((2, 4, 4, 3)))
        .unwrap_err();
    assert!(matches!(e, wgpu_cnn::Error::ShapeMismatch { .. }), "{e}");
}

#[test]
fn a_recycled_buffer_never_leaks_old_values_into_a_zero_filled_result() {
    // Pool backward with windows that leave a border relies on zeros; a pooled buffer holds the
    // previous tensor's values, so the op must clear it.
    let gpu = own_gpu();
    let mut rng = common::numpy_rng::NumpyRng::seed(3);
    let x = randn_f32(&mut rng, [2, 7, 7, 4]);
    let params = PoolParams::new(3, 3, PoolMode::Max);
    let t = gpu.upload(&x).unwrap();
    let (a, cache) = gpu.pool_forward(&t, params).unwrap();
    for _ in 0..3 {
        // Garbage of the same size, dropped: its buffer is the next one handed out.
        drop(
            gpu.upload(&Array4::<f32>::from_elem((2, 7, 7, 4), 9.0))
                .unwrap(),
        );
        let dx = gpu
            .download::<Ix4>(&gpu.pool_backward(&a, &cache).unwrap())
            .unwrap();
        let (_, cpu_cache) = cpu::pool_forward(x.view(), params).unwrap();
        let a_host = gpu.download::<Ix4>(&a).unwrap();
        let reference = cpu::pool_backward(a_host.view(), &cpu_cache).unwrap();
        assert_close("pool backward into a recycled buffer", &dx, &reference, 0.0);
    }
}

#[test]
fn memory_reports_live_and_peak_bytes_and_returns_to_zero() {
    let gpu = own_gpu();
    assert_eq!(gpu.memory().live_bytes, 0);
    let x = gpu.upload(&Array4::<f32>::zeros((8, 32, 32, 4))).unwrap();
    let live = gpu.memory().live_bytes;
    assert!(live >= x.byte_len(), "live {live} < {}", x.byte_len());
    let (y, _) = gpu
        .pool_forward(&x, PoolParams::new(2, 2, PoolMode::Max))
        .unwrap();
    let both = gpu.memory();
    assert!(both.live_bytes >= live + y.byte_len());
    assert!(both.peak_bytes >= both.live_bytes);
    drop(y);
    let after = gpu.memory();
    assert_eq!(
        after.live_bytes, live,
        "dropping a tensor gives its bytes back"
    );
    assert_eq!(after.peak_bytes, both.peak_bytes, "the peak stays");
    assert!(after.pooled_bytes > 0, "the freed buffer is kept for reuse");
    gpu.reset_peak();
    assert_eq!(gpu.memory().peak_bytes, live);
    drop(x);
    assert_eq!(gpu.memory().live_bytes, 0);
    let pooled = gpu.memory().pooled_bytes;
    assert_eq!(gpu.trim(), pooled);
    assert_eq!(gpu.memory().pooled_bytes, 0);
    // After a trim, new tensors work (fresh buffers, no stale bind groups).
    let z = gpu.upload(&Array4::<f32>::ones((8, 32, 32, 4))).unwrap();
    let (m, _) = gpu
        .pool_forward(&z, PoolParams::new(2, 2, PoolMode::Max))
        .unwrap();
    assert!(gpu.download::<Ix4>(&m).unwrap().iter().all(|&v| v == 1.0));
}

/// A convolution whose implicit GEMM reads its input through a texture (the default on CPU
/// adapters for 40 input channels, too many for the channel-lane kernels): the texture counts
/// in `texture_bytes` and the peak, `trim` frees it, and the next convolution makes a new one.
#[test]
fn input_textures_count_in_the_peak_and_trim_frees_them() {
    let gpu = own_gpu();
    let mut rng = common::numpy_rng::NumpyRng::seed(3);
    let x = gpu.upload(&randn_f32(&mut rng, [2, 8, 8, 40])).unwrap();
    let w = gpu.upload(&randn_f32(&mut rng, [3, 3, 40, 8])).unwrap();
    let b = gpu.upload(&Array1::<f32>::zeros(8)).unwrap();
    let params = ConvParams::new(1, 1);
    let (z, _) = gpu.conv_forward(&x, &w, &b, params).unwrap();
    let first = gpu.download::<Ix4>(&z).unwrap();
    let m = gpu.memory();
    if gpu.adapter_info().device_type == wgpu::DeviceType::Cpu {
        // 2 * 8 * 8 * 10 vec4s: one row of 4096 texels of 16 bytes.
        assert_eq!(m.texture_bytes, 4096 * 16, "{m:?}");
    }
    assert!(m.peak_bytes >= m.live_bytes + m.texture_bytes, "{m:?}");
    assert_eq!(gpu.trim(), m.pooled_bytes + m.texture_bytes);
    assert_eq!(gpu.memory().texture_bytes, 0);
    let (again, _) = gpu.conv_forward(&x, &w, &b, params).unwrap();
    assert_eq!(gpu.download::<Ix4>(&again).unwrap(), first, "after a trim");
    assert_eq!(gpu.memory().texture_bytes, m.texture_bytes);
}

#[test]
fn copy_zeros_and_reshape_share_or_move_data_as_documented() {
    let gpu = own_gpu();
    let x = gpu
        .upload(&Array4::from_shape_fn((2, 3, 4, 5), |(i, h, w, c)| {
            (i * 60 + h * 20 + w * 5 + c) as f32
        }))
        .unwrap();
    // reshape shares the buffer: no copy, the same bits in another shape.
    let flat = x.reshape(&[120]).unwrap();
    assert!(flat.same_buffer(&x));
    let back: ndarray::Array1<f32> = gpu.download(&flat).unwrap();
    assert_eq!(back, ndarray::Array1::from_iter((0..120).map(|v| v as f32)));
    assert!(matches!(
        x.reshape(&[7, 17]).unwrap_err(),
        wgpu_cnn::Error::ShapeMismatch { .. }
    ));
    // copy moves the data into another tensor of as many elements, in order with the ops.
    let mut z = gpu.zeros(&[6, 20]).unwrap();
    assert!(gpu
        .download::<ndarray::Ix2>(&z)
        .unwrap()
        .iter()
        .all(|&v| v == 0.0));
    gpu.copy(&x, &mut z).unwrap();
    let z_host: ndarray::Array2<f32> = gpu.download(&z).unwrap();
    assert_eq!(z_host.iter().copied().collect::<Vec<_>>(), back.to_vec());
    let mut wrong = gpu.zeros(&[119]).unwrap();
    assert!(matches!(
        gpu.copy(&x, &mut wrong).unwrap_err(),
        wgpu_cnn::Error::ShapeMismatch { .. }
    ));
    // A tensor of another Gpu is refused.
    let other = own_gpu();
    let mut foreign = other.zeros(&[120]).unwrap();
    assert!(matches!(
        gpu.copy(&x, &mut foreign).unwrap_err(),
        wgpu_cnn::Error::ForeignTensor { .. }
    ));
}

/// The autotune's choices persist in the tuning cache file: a shape large enough to be timed
/// leaves its choice there, keyed by the adapter; a later `Gpu` on the same file gives the same
/// result; a file that is not JSON is ignored and replaced.
#[test]
fn the_tuning_cache_keeps_choices_and_survives_a_broken_file() {
    use wgpu_cnn::TuningCache;
    let path = std::env::temp_dir().join(format!("wgpu-cnn-tuning-{}.json", std::process::id()));
    std::fs::write(&path, b"{ not json").unwrap();
    let mut rng = common::numpy_rng::NumpyRng::seed(3);
    // 37.7 million multiply-adds: above the autotune's threshold.
    let x = randn_f32(&mut rng, [8, 32, 32, 16]);
    let w = randn_f32(&mut rng, [3, 3, 16, 32]);
    let b = Array1::<f32>::zeros(32);
    let run = || {
        let g = Gpu::with_options(GpuOptions {
            tuning_cache: TuningCache::File(path.clone()),
            ..Default::default()
        })
        .expect("a Gpu");
        let (tx, tw, tb) = common::upload_conv(&g, &x, &w, &b);
        let (z, _) = g
            .conv_forward(&tx, &tw, &tb, ConvParams::new(1, 1))
            .unwrap();
        let z: Array4<f32> = g.download(&z).unwrap();
        (z, g.adapter_info().name.clone())
    };
    let (first, adapter) = run();
    let text = std::fs::read_to_string(&path).expect("the cache was written");
    let cache: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&text).expect("the cache is JSON");
    assert!(
        cache
            .keys()
            .any(|k| k.starts_with(&adapter) && k.contains("Gemm")),
        "no choice for the convolution on {adapter}: {text}"
    );
    let (second, _) = run();
    assert!(first
        .iter()
        .zip(&second)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    let _ = std::fs::remove_file(&path);
}
