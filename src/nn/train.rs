//! The training loop: shuffled minibatches, one recorded step each, the loss read back once per
//! epoch; accuracy in batches.

use std::time::Instant;

use ndarray::{Array4, Axis, Ix1};

use super::GpuNet;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// How [`GpuNet::fit`] trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per minibatch (the last one of an epoch may be smaller).
    pub batch: usize,
    /// Seed of the shuffles (epoch `e` uses `seed` and `e`).
    pub seed: u64,
}

/// What one epoch did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Epoch {
    /// Its index, from 0.
    pub epoch: usize,
    /// The mean over its minibatches of their mean loss (seed 001's "cost"), plus the L2 term
    /// `0.5 * reg * sum(W^2)` at the epoch's end when `reg > 0`.
    pub cost: f64,
    /// Wall time of the epoch, including the read-back of its losses.
    pub seconds: f64,
}

/// The order of `n` examples in epoch `epoch`: a Fisher-Yates shuffle from `seed` and `epoch`.
pub fn shuffled(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ epoch as u64);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

impl GpuNet {
    /// Trains on `data` for `cfg.epochs` epochs of shuffled minibatches. Each step is
    /// recorded on the GPU without a round trip; the losses of an epoch are read back once, at
    /// its end. `progress` is called after each step is recorded (`step` of `steps`) and with
    /// each finished epoch.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when the data's images or class count do not fit the network;
    /// [`Error::Setting`] for a batch of 0; [`Error::LabelOutOfRange`]; device errors.
    pub fn fit(
        &mut self,
        data: &Dataset,
        cfg: &TrainConfig,
        mut progress: impl FnMut(Progress<'_>),
    ) -> Result<Vec<Epoch>> {
        let n = data.y.len();
        self.network().check_images(data.x.shape())?;
        let classes = self.network().classes()?;
        if cfg.batch == 0 {
            return Err(Error::Setting {
                what: "training: batch",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if data.classes.len() != classes {
            return Err(Error::ShapeMismatch {
                what: "training data: classes of the data, then of the network's scores",
                expected: vec![classes],
                got: vec![data.classes.len()],
            });
        }
        let steps = n.div_ceil(cfg.batch);
        let mut history = Vec::with_capacity(cfg.epochs);
        for epoch in 0..cfg.epochs {
            let start = Instant::now();
            let order = shuffled(n, cfg.seed, epoch);
            let mut losses = Vec::with_capacity(steps);
            for (step, idx) in order.chunks(cfg.batch).enumerate() {
                let x = data.x.select(Axis(0), idx);
                let y: Vec<usize> = idx.iter().map(|&i| data.y[i]).collect();
                losses.push(self.step(&x, &y)?);
                progress(Progress::Step { epoch, step, steps });
            }
            self.gpu().submit();
            let mut sum = 0.0;
            for l in &losses {
                sum += f64::from(self.gpu().download::<Ix1>(l)?[0]);
            }
            let mut cost = sum / losses.len().max(1) as f64;
            let reg = self.network().reg();
            if reg > 0.0 {
                cost += 0.5 * reg * self.decayed_square_sum()?;
            }
            let e = Epoch {
                epoch,
                cost,
                seconds: start.elapsed().as_secs_f64(),
            };
            progress(Progress::Epoch(&e));
            history.push(e);
        }
        Ok(history)
    }

    /// Predicted classes of every image of `x` `(m, H, W, C)`, in batches of `batch`.
    ///
    /// # Errors
    /// As [`GpuNet::predict`]; a batch of 0 is [`Error::ShapeMismatch`].
    pub fn predict_all(&mut self, x: &Array4<f32>, batch: usize) -> Result<Vec<usize>> {
        if batch == 0 {
            return Err(Error::ShapeMismatch {
                what: "prediction batch size (at least 1)",
                expected: vec![1],
                got: vec![0],
            });
        }
        let m = x.shape()[0];
        let mut out = Vec::with_capacity(m);
        for start in (0..m).step_by(batch) {
            let part = x.slice_axis(Axis(0), (start..(start + batch).min(m)).into());
            out.extend(self.predict(&part.to_owned())?);
        }
        Ok(out)
    }

    /// The fraction of `data` classified right, in batches of `batch`.
    ///
    /// # Errors
    /// As [`GpuNet::predict_all`].
    pub fn accuracy(&mut self, data: &Dataset, batch: usize) -> Result<f64> {
        let predicted = self.predict_all(&data.x, batch)?;
        Ok(accuracy(&predicted, &data.y))
    }
}

/// The fraction of `predicted` equal to `labels` (0 for none).
pub fn accuracy(predicted: &[usize], labels: &[usize]) -> f64 {
    let right = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    right as f64 / labels.len().max(1) as f64
}

/// What [`GpuNet::fit`] reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A step was recorded (the device may still be running it).
    Step {
        /// The epoch, from 0.
        epoch: usize,
        /// The step in the epoch, from 0.
        step: usize,
        /// Steps per epoch.
        steps: usize,
    },
    /// An epoch ended and its losses were read.
    Epoch(&'a Epoch),
}
