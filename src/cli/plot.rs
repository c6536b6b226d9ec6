//! The cost curve as a PNG, like seed 001's plot.

use std::path::Path;

use plotters::prelude::*;

/// Draws `cost` per epoch to `path` (800 x 500), titled with the learning rate.
pub fn loss_curve(path: &Path, cost: &[f64], lr: f64) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = cost.iter().copied().fold(0.0_f64, f64::max).max(1e-6) * 1.05;
    let epochs = cost.len().max(2) - 1;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Learning rate = {lr}"), ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0..epochs, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("cost")
        .draw()?;
    chart.draw_series(LineSeries::new(
        cost.iter().enumerate().map(|(e, &c)| (e, c)),
        BLUE.stroke_width(2),
    ))?;
    root.present()?;
    Ok(())
}
