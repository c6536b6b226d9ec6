//! GPU timestamps for the benchmark: while a measurement is on, every dispatch runs in its own
//! compute pass that writes a timestamp at its start and end; an op's GPU time is the last end
//! minus the first start. Adapters without `TIMESTAMP_QUERY` report no GPU time (the benchmark
//! says it used the wall clock instead).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::recorder::Timestamps;
use crate::gpu::Gpu;

/// Query slots per measurement (two per pass).
const QUERIES: u32 = 4096;

/// The device time of one run of an op.
#[derive(Debug, Clone, Default)]
pub struct GpuTime {
    /// Seconds from the first pass's start to the last pass's end.
    pub seconds: f64,
    /// Each pass's kernel entry point and seconds, in the order recorded.
    pub passes: Vec<(&'static str, f64)>,
}

/// Runs `record` once and returns the device time of the passes it recorded, in seconds:
/// `None` when the device has no timestamps or the op recorded too many passes to time.
///
/// # Errors
/// Whatever `record` or the device reports.
pub fn gpu_seconds(gpu: &Gpu, record: impl FnOnce() -> Result<()>) -> Result<Option<f64>> {
    Ok(gpu_time(gpu, record)?.map(|t| t.seconds))
}

/// [`gpu_seconds`] with each pass's time.
///
/// # Errors
/// Whatever `record` or the device reports.
pub fn gpu_time(gpu: &Gpu, record: impl FnOnce() -> Result<()>) -> Result<Option<GpuTime>> {
    let device = gpu.device();
    if !device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
        record()?;
        gpu.synchronize()?;
        return Ok(None);
    }
    gpu.synchronize()?;
    let set = device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("op timestamps"),
        ty: wgpu::QueryType::Timestamp,
        count: QUERIES,
    });
    gpu.with_recorder(|r| {
        r.timestamps = Some(Timestamps {
            set: Arc::new(set),
            used: 0,
            capacity: QUERIES,
            overflow: false,
            labels: Vec::new(),
        })
    });
    let recorded = record();
    let stamps = gpu.with_recorder(|r| r.timestamps.take());
    recorded?;
    let Some(t) = stamps.filter(|t| t.used > 0 && !t.overflow) else {
        gpu.synchronize()?;
        return Ok(None);
    };
    let bytes = u64::from(t.used) * 8;
    let resolve = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("timestamps"),
        size: bytes,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("timestamps read"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.with_encoder(|encoder| {
        encoder.resolve_query_set(&t.set, 0..t.used, &resolve, 0);
        encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
    });
    gpu.submit();
    let (tx, rx) = std::sync::mpsc::channel();
    staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    gpu.synchronize()?;
    rx.recv()
        .map_err(|e| Error::Gpu(e.to_string()))?
        .map_err(|e| Error::Gpu(e.to_string()))?;
    let ticks: Vec<u64> = {
        let view = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(e.to_string()))?;
        bytemuck::cast_slice(&view).to_vec()
    };
    let start = ticks.iter().step_by(2).min().copied().unwrap_or(0);
    let end = ticks.iter().skip(1).step_by(2).max().copied().unwrap_or(0);
    let period = f64::from(gpu.queue().get_timestamp_period()) * 1e-9;
    let passes = t
        .labels
        .iter()
        .zip(ticks.chunks_exact(2))
        .map(|(&l, ab)| (l, ab[1].saturating_sub(ab[0]) as f64 * period))
        .collect();
    Ok(Some(GpuTime {
        seconds: end.saturating_sub(start) as f64 * period,
        passes,
    }))
}
