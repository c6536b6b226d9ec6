//! `wgpu-cnn`: train the exercises' networks on the GPU (`train`, `evaluate`, `predict`), report
//! the adapter (`info`), and, built with the `bench` feature, benchmark every op (`bench`).

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use wgpu_cnn::Gpu;

#[derive(Parser)]
#[command(
    version,
    about = "CNN layers as WGSL kernels on wgpu: train, evaluate, predict, benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a network (seed 001's `signs` or seed 002's `three-layer`) on the GPU; write
    /// weights.h5, loss.png and metrics.json.
    Train(cli::train::TrainArgs),
    /// Accuracy and confusion matrix of saved weights on a data set.
    Evaluate(cli::train::EvaluateArgs),
    /// The predicted class of each image of a file.
    Predict(cli::train::PredictArgs),
    /// Measure the adapter's roofline, then every op of the suite; print a table.
    #[cfg(feature = "bench")]
    Bench {
        /// Also write the records as JSON to this path.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Only ops whose `op/shape` name contains this text (roofline always runs).
        #[arg(long)]
        filter: Option<String>,
        /// Only this shape name (cifar, deep, stem, seed, pool, signs1, signs2, batch).
        #[arg(long)]
        shape: Option<String>,
        /// Timed repetitions per op (the median is reported).
        #[arg(long, default_value_t = 10)]
        reps: usize,
        /// Skip the CPU reference (no cpu_ms, no max_err).
        #[arg(long)]
        no_check: bool,
        /// Under each op, each kernel's median milliseconds per run (GPU timestamps).
        #[arg(long)]
        kernels: bool,
    },
    /// Print the adapter wgpu chooses and its limits.
    Info,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => cli::train::train(&a),
        Command::Evaluate(a) => cli::train::evaluate(&a),
        Command::Predict(a) => cli::train::predict(&a),
        Command::Info => info(),
        #[cfg(feature = "bench")]
        Command::Bench {
            json,
            filter,
            shape,
            reps,
            no_check,
            kernels,
        } => cli::bench::run_bench(
            json,
            cli::bench::Select { filter, shape },
            reps,
            !no_check,
            kernels,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn info() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = Gpu::new()?;
    println!("{:#?}", gpu.adapter_info());
    println!("max binding bytes used: {}", gpu.max_binding_bytes());
    println!("{:#?}", gpu.device().limits());
    Ok(())
}
