//! GPU timestamps for the benchmark: while a measurement is on, every compute pass writes a
//! timestamp at its start and end; an op's GPU time is the last end minus the first start.
//! Adapters without `TIMESTAMP_QUERY` report no GPU time (the benchmark says it used the wall
//! clock instead).

use std::sync::Arc;

use super::Gpu;
use crate::error::{Error, Result};

/// Query slots per measurement (two per pass).
const QUERIES: u32 = 4096;

pub(crate) struct Profiler {
    set: Arc<wgpu::QuerySet>,
    used: u32,
    overflow: bool,
}

impl Gpu {
    /// Whether the device can write timestamps.
    pub fn has_timestamps(&self) -> bool {
        self.inner
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The query set and first of two slots for the next pass, while a measurement is on.
    pub(crate) fn next_timestamps(&self) -> Option<(Arc<wgpu::QuerySet>, u32)> {
        let mut profiler = self
            .inner
            .profiler
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let p = profiler.as_mut()?;
        if p.used + 2 > QUERIES {
            p.overflow = true;
            return None;
        }
        p.used += 2;
        Some((Arc::clone(&p.set), p.used - 2))
    }

    /// Runs `record` once and returns the device time of the passes it recorded, in seconds:
    /// `None` when the device has no timestamps or the op recorded too many passes to time.
    ///
    /// # Errors
    /// Whatever `record` or the device reports.
    pub fn gpu_seconds(&self, record: impl FnOnce() -> Result<()>) -> Result<Option<f64>> {
        if !self.has_timestamps() {
            record()?;
            self.synchronize()?;
            return Ok(None);
        }
        self.synchronize()?;
        let set = self
            .inner
            .device
            .create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("op timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: QUERIES,
            });
        *self
            .inner
            .profiler
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Profiler {
            set: Arc::new(set),
            used: 0,
            overflow: false,
        });
        let recorded = record();
        let profiler = self
            .inner
            .profiler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        recorded?;
        let Some(p) = profiler.filter(|p| p.used > 0 && !p.overflow) else {
            self.synchronize()?;
            return Ok(None);
        };
        let bytes = u64::from(p.used) * 8;
        let resolve = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = self.inner.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps read"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut pending = self.pending();
            let encoder = Gpu::encoder(&self.inner.device, &mut pending);
            encoder.resolve_query_set(&p.set, 0..p.used, &resolve, 0);
            encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
        }
        self.submit();
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
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
        let period = f64::from(self.inner.queue.get_timestamp_period());
        Ok(Some(end.saturating_sub(start) as f64 * period * 1e-9))
    }
}
