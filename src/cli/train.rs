//! `wgpu-cnn train`, `evaluate` and `predict`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use wgpu_cnn::data::Dataset;
use wgpu_cnn::nn::{accuracy, GpuNet, Progress, TrainConfig};
use wgpu_cnn::weights::Weights;
use wgpu_cnn::{AdamConfig, Gpu};

use super::models::{self, ModelName, ThreeLayerArgs};
use super::plot;

type Failure = Box<dyn std::error::Error>;

/// Images and epochs of the built-in data set (used when no `--data` is given).
const BUILT_IN: (usize, usize, usize) = (600, 120, 10);
const BUILT_IN_SEEDS: (u64, u64) = (1, 2);

/// The built-in synthetic test set.
fn built_in_test() -> Dataset {
    Dataset::synthetic(BUILT_IN.1, 64, BUILT_IN_SEEDS.1)
}

/// `wgpu-cnn train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The network.
    #[arg(long, value_enum, default_value_t = ModelName::Signs)]
    pub model: ModelName,
    /// Training set, an HDF5 file in the course's format (`train_set_x`, `train_set_y`,
    /// `list_classes`); without it, a built-in synthetic set of 64x64 images.
    #[arg(long, requires = "test")]
    pub data: Option<PathBuf>,
    /// Test set, same format (`test_set_x`, `test_set_y`).
    #[arg(long, requires = "data")]
    pub test: Option<PathBuf>,
    /// Epochs [default: 100 with --data, 10 on the built-in set].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Adam's learning rate [default: 0.009 for signs (seed 001's), 0.001 for three-layer
    /// (cs231n's)].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Minibatch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Seed of the initial weights and of the shuffles.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write weights.h5, loss.png and metrics.json.
    #[arg(long, default_value = "run")]
    pub out: PathBuf,
    /// Print the cost every this many epochs (as seed 001: "Cost after epoch 5: ...").
    #[arg(long, default_value_t = 5)]
    pub print_every: usize,
    #[command(flatten)]
    pub three: ThreeLayerArgs,
}

/// What `metrics.json` holds.
#[derive(Debug, Serialize)]
struct Metrics {
    model: String,
    adapter: String,
    backend: String,
    data: String,
    train_images: usize,
    test_images: usize,
    epochs: usize,
    batch: usize,
    lr: f64,
    seed: u64,
    hyper: Vec<(String, f64)>,
    per_epoch: Vec<EpochMetrics>,
    train_accuracy: f64,
    test_accuracy: f64,
    train_seconds: f64,
    total_seconds: f64,
}

#[derive(Debug, Serialize)]
struct EpochMetrics {
    epoch: usize,
    cost: f64,
    seconds: f64,
}

fn adapter_line(gpu: &Gpu) -> String {
    let info = gpu.adapter_info();
    format!(
        "{} ({:?}, {} {})",
        info.name, info.backend, info.driver, info.driver_info
    )
}

/// The training and test sets, and a description of where they came from.
fn data_sets(a: &TrainArgs) -> Result<(Dataset, Dataset, String), Failure> {
    match (&a.data, &a.test) {
        (Some(train), Some(test)) => Ok((
            Dataset::read(train)?,
            Dataset::read(test)?,
            format!("{} / {}", train.display(), test.display()),
        )),
        _ => {
            let (n_train, n_test, _) = BUILT_IN;
            Ok((
                Dataset::synthetic(n_train, 64, BUILT_IN_SEEDS.0),
                built_in_test(),
                format!(
                    "built-in synthetic set ({n_train} train, {n_test} test, 64x64x3, 6 classes)"
                ),
            ))
        }
    }
}

fn image_of(d: &Dataset) -> (usize, usize, usize) {
    let (_, h, w, c) = d.x.dim();
    (h, w, c)
}

/// Runs `wgpu-cnn train`.
pub fn train(a: &TrainArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let gpu = Gpu::new()?;
    println!("adapter: {}", adapter_line(&gpu));
    let (train, test, source) = data_sets(a)?;
    let epochs = a
        .epochs
        .unwrap_or(if a.data.is_some() { 100 } else { BUILT_IN.2 });
    println!(
        "data: {source}: {} training and {} test images {:?}, {} classes",
        train.y.len(),
        test.y.len(),
        image_of(&train),
        train.classes.len()
    );
    if image_of(&test) != image_of(&train) || test.classes.len() != train.classes.len() {
        return Err(format!(
            "the test set's images {:?} and {} classes differ from the training set's {:?} and {}",
            image_of(&test),
            test.classes.len(),
            image_of(&train),
            train.classes.len()
        )
        .into());
    }
    let net = models::build(a.model, image_of(&train), train.classes.len(), &a.three);
    let weights = net.init(a.seed)?;
    let lr = a.lr.unwrap_or(a.model.default_lr());
    let mut model = GpuNet::new(&gpu, &net, &weights, AdamConfig::new(lr))?;
    println!(
        "model: {} ({}), Adam lr {}, minibatch {}, {epochs} epochs, seed {}",
        net.name,
        net.plan()?.names().join(" "),
        lr,
        a.batch,
        a.seed
    );

    let steps = train.y.len().div_ceil(a.batch.max(1));
    let bar = ProgressBar::new(steps as u64).with_style(
        ProgressStyle::with_template("epoch {prefix:>4} [{bar:30}] {pos}/{len} {msg}")?
            .progress_chars("=> "),
    );
    let mut last_cost = None;
    let config = TrainConfig {
        epochs,
        batch: a.batch,
        seed: a.seed,
    };
    let fit_start = Instant::now();
    let history = model.fit(&train, &config, |p| match p {
        Progress::Step { epoch, step, .. } => {
            if step == 0 {
                bar.reset();
                bar.set_prefix(epoch.to_string());
                if let Some(c) = last_cost {
                    bar.set_message(format!("previous cost {c:.4}"));
                }
            }
            bar.inc(1);
        }
        Progress::Epoch(e) => {
            last_cost = Some(e.cost);
            if a.print_every > 0 && e.epoch % a.print_every == 0 {
                bar.suspend(|| println!("Cost after epoch {}: {:.6}", e.epoch, e.cost));
            }
        }
    })?;
    bar.finish_and_clear();
    let train_seconds = fit_start.elapsed().as_secs_f64();
    let train_accuracy = model.accuracy(&train, a.batch)?;
    let test_accuracy = model.accuracy(&test, a.batch)?;
    println!("Train Accuracy: {train_accuracy:.4}");
    println!("Test Accuracy: {test_accuracy:.4}");
    println!(
        "training: {train_seconds:.1} s for {epochs} epochs ({:.0} ms per epoch); total {:.1} s",
        1e3 * train_seconds / epochs.max(1) as f64,
        started.elapsed().as_secs_f64()
    );

    std::fs::create_dir_all(&a.out)?;
    let weights_path = a.out.join("weights.h5");
    model.weights()?.save(&weights_path)?;
    let cost: Vec<f64> = history.iter().map(|e| e.cost).collect();
    let plot_path = a.out.join("loss.png");
    if let Err(e) = plot::loss_curve(&plot_path, &cost, lr) {
        // The weights and metrics are what matter; a machine without fonts still gets them.
        eprintln!("warning: could not draw {}: {e}", plot_path.display());
    }
    let info = gpu.adapter_info();
    let metrics = Metrics {
        model: net.name.clone(),
        adapter: info.name.clone(),
        backend: format!("{:?}", info.backend),
        data: source,
        train_images: train.y.len(),
        test_images: test.y.len(),
        epochs,
        batch: a.batch,
        lr,
        seed: a.seed,
        hyper: net.hyper.clone(),
        per_epoch: history
            .iter()
            .map(|e| EpochMetrics {
                epoch: e.epoch,
                cost: e.cost,
                seconds: e.seconds,
            })
            .collect(),
        train_accuracy,
        test_accuracy,
        train_seconds,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    let metrics_path = a.out.join("metrics.json");
    std::fs::write(&metrics_path, serde_json::to_string_pretty(&metrics)?)?;
    println!(
        "wrote {}, {}, {}",
        weights_path.display(),
        plot_path.display(),
        metrics_path.display()
    );
    Ok(())
}

/// `wgpu-cnn evaluate`.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Weights written by `wgpu-cnn train`.
    #[arg(long)]
    pub weights: PathBuf,
    /// Images to classify, an HDF5 file in the course's format; without it, the built-in
    /// synthetic test set.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

fn load_model(gpu: &Gpu, weights: &Path, data: &Dataset) -> Result<GpuNet, Failure> {
    let w = Weights::read(weights)?;
    let net = models::from_weights(&w, image_of(data))?;
    Ok(GpuNet::new(gpu, &net, &w, AdamConfig::new(0.0))?)
}

fn data_or_built_in(path: Option<&Path>) -> Result<Dataset, Failure> {
    Ok(match path {
        Some(p) => Dataset::read(p)?,
        None => built_in_test(),
    })
}

/// Runs `wgpu-cnn evaluate`: accuracy and the confusion matrix.
pub fn evaluate(a: &EvaluateArgs) -> Result<(), Failure> {
    let gpu = Gpu::new()?;
    println!("adapter: {}", adapter_line(&gpu));
    let data = data_or_built_in(a.data.as_deref())?;
    let mut model = load_model(&gpu, &a.weights, &data)?;
    let k = data.classes.len();
    let classes = model.network().classes()?;
    if classes != k {
        return Err(format!(
            "the weights give {classes} class scores, the data set has {k} classes"
        )
        .into());
    }
    let predicted = model.predict_all(&data.x, a.batch)?;
    println!(
        "accuracy: {:.4} ({} images)",
        accuracy(&predicted, &data.y),
        data.y.len()
    );
    let mut confusion = vec![vec![0usize; k]; k];
    for (&p, &t) in predicted.iter().zip(&data.y) {
        if p < k {
            confusion[t][p] += 1;
        }
    }
    println!("confusion matrix (rows: true class, columns: predicted)");
    let width = data
        .classes
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(1)
        .max(5);
    print!("{:>width$} ", "");
    for c in &data.classes {
        print!("{c:>width$} ");
    }
    println!();
    for (t, row) in confusion.iter().enumerate() {
        print!("{:>width$} ", data.classes[t]);
        for v in row {
            print!("{v:>width$} ");
        }
        println!();
    }
    Ok(())
}

/// `wgpu-cnn predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Weights written by `wgpu-cnn train`.
    #[arg(long)]
    pub weights: PathBuf,
    /// An HDF5 file of images in the course's format.
    pub images: PathBuf,
    /// Only this image of the file (from 0).
    #[arg(long)]
    pub index: Option<usize>,
}

/// Runs `wgpu-cnn predict`: the class of each image (or of one).
pub fn predict(a: &PredictArgs) -> Result<(), Failure> {
    let gpu = Gpu::new()?;
    let data = Dataset::read(&a.images)?;
    let mut model = load_model(&gpu, &a.weights, &data)?;
    let m = data.y.len();
    let range = match a.index {
        Some(i) if i < m => i..i + 1,
        Some(i) => {
            return Err(format!("--index {i}: {} holds {m} images", a.images.display()).into())
        }
        None => 0..m,
    };
    let x = data
        .x
        .slice_axis(ndarray::Axis(0), range.clone().into())
        .to_owned();
    let predicted = model.predict_all(&x, 64)?;
    // The file's class names name the model's classes only when they are as many.
    let named = model.network().classes()? == data.classes.len();
    for (i, p) in range.zip(predicted) {
        match data.classes.get(p).filter(|_| named) {
            Some(name) => println!("image {i}: class {p} ({name})"),
            None => println!("image {i}: class {p}"),
        }
    }
    Ok(())
}
