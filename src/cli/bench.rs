//! `wgpu-cnn bench` (with the `bench` feature): the roofline, then every op of the suite.

use std::path::PathBuf;

use wgpu_cnn::bench::{self, ConvCase, Options, Record};
use wgpu_cnn::Gpu;

fn print_record(r: &Record) {
    let rate = match (r.gflops, r.gbps) {
        (Some(g), _) => format!("{g:8.2} GFLOP/s"),
        (_, Some(b)) => format!("{b:8.2} GB/s   "),
        _ => String::new(),
    };
    let opt = |v: Option<f64>, fmt: &dyn Fn(f64) -> String| v.map_or("-".to_string(), fmt);
    println!(
        "{:<26} {:>10.3} ms {:>23} {:>17} {:>7} {:>11} {:>10} {:>10}  {}",
        r.name,
        r.median_ms,
        format!("[{:.3} .. {:.3}]", r.min_ms, r.max_ms),
        rate,
        opt(r.roofline_pct, &|p| format!("{p:.1}%")),
        opt(r.cpu_ms, &|c| format!("{c:.1} ms")),
        opt(r.max_err, &|e| format!("{e:.1e}")),
        r.bytes_allocated
            .map_or("-".to_string(), |b| format!("{:.2} MB", b as f64 / 1e6)),
        r.dims,
    );
}

/// Which ops run: those whose `op/shape` contains `filter`, of the shape named `shape`.
pub struct Select {
    pub filter: Option<String>,
    pub shape: Option<String>,
}

pub fn run_bench(
    json: Option<PathBuf>,
    select: Select,
    reps: usize,
    check: bool,
    kernels: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let Select { filter, shape } = select;
    let gpu = Gpu::new()?;
    let info = gpu.adapter_info();
    println!(
        "adapter: {} ({:?}, driver {} {})",
        info.name, info.backend, info.driver, info.driver_info
    );
    if gpu
        .device()
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY)
    {
        println!(
            "timing: GPU timestamps (first pass start to last pass end), median of {reps} runs \
             after one warm-up; wall clock is in the JSON (wall_ms); the roofline rates (and every \
             roof %) use the fastest of its probes' runs"
        );
    } else {
        println!(
            "timing: wall clock from submit to completion (the adapter has no timestamp queries), \
             median of {reps} runs after one warm-up"
        );
    }
    println!(
        "{:<26} {:>13} {:>23} {:>17} {:>7} {:>11} {:>10} {:>10}  shape",
        "op/shape", "median", "[min .. max] ms", "rate", "roof", "cpu ref", "max err", "peak mem"
    );
    let [fma, copy, floor] = bench::roofline(&gpu, reps.max(7))?;
    for r in [&fma, &copy, &floor] {
        print_record(r);
    }
    let o = Options {
        reps,
        check,
        fma_peak: fma.gflops.unwrap_or(f64::NAN) * 1e9,
        copy_peak: copy.gbps.unwrap_or(f64::NAN) * 1e9,
    };
    let mut records = vec![fma, copy, floor];
    let wanted = |op: &str, shape_name: &str| {
        filter
            .as_deref()
            .is_none_or(|f| format!("{op}/{shape_name}").contains(f))
            && shape.as_deref().is_none_or(|s| s == shape_name)
    };
    let mut push = |r: Record| {
        print_record(&r);
        if kernels {
            for k in &r.kernels {
                println!("    {:<22} {:>10.3} ms", k.kernel, k.ms);
            }
        }
        records.push(r);
    };
    for c in bench::conv_cases() {
        if wanted("conv_forward", c.name) {
            push(bench::conv_forward(&gpu, &c, &o)?);
        }
        if wanted("conv_backward", c.name) {
            push(bench::conv_backward(&gpu, &c, &o)?);
        }
    }
    for c in bench::pool_cases() {
        for pooling in bench::POOLINGS {
            let m = bench::pooling_name(pooling.0, pooling.1);
            if wanted(&format!("pool_{m}_forward"), c.name) {
                push(bench::pool_forward(&gpu, &c, pooling, &o)?);
            }
            if wanted(&format!("pool_{m}_backward"), c.name) {
                push(bench::pool_backward(&gpu, &c, pooling, &o)?);
            }
        }
    }
    for r in bench::layer_records(&gpu, &o, wanted)? {
        push(r);
    }
    // Cost per image as the batch grows, on the "cifar" convolution.
    let cifar = bench::conv_cases()[0];
    for m in [1, 8, 64, 256] {
        let name: &'static str = match m {
            1 => "cifar_m1",
            8 => "cifar_m8",
            64 => "cifar_m64",
            _ => "cifar_m256",
        };
        if !wanted("conv_forward", name) && shape.as_deref() != Some("batch") {
            continue;
        }
        let case = ConvCase {
            name,
            input: [m, cifar.input[1], cifar.input[2], cifar.input[3]],
            ..cifar
        };
        let batch_options = Options { check: false, ..o };
        push(bench::conv_forward(&gpu, &case, &batch_options)?);
    }
    if let Some(path) = json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&records)?)?;
        println!("wrote {} records to {}", records.len(), path.display());
    }
    Ok(())
}
