//! PNG line charts of loss curves.
//!
//! Text is drawn with a TrueType font found on the system (DejaVu Sans, Liberation Sans, Arial,
//! Helvetica, or any `.ttf` under the usual font folders); without one the chart is drawn without text.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use scratch::train::FitReport;

use crate::engine::Engine;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// `(x, y)` points, in order of `x`.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series from `(x, y)` points.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series { name: name.into(), points }
    }

    /// `values[i]` plotted at `x = i + 1`, averaged over windows of `window` points to show the trend of
    /// noisy per-batch losses.
    pub fn smoothed(name: impl Into<String>, values: &[f64], window: usize) -> Self {
        let window = window.max(1);
        let points = values
            .chunks(window)
            .enumerate()
            .map(|(i, c)| (((i * window) + c.len()) as f64, c.iter().sum::<f64>() / c.len() as f64))
            .collect();
        Series::new(name, points)
    }
}

/// A chart: title, axis labels, series, and whether the y axis is logarithmic.
#[derive(Clone, Debug)]
pub struct Chart {
    /// The caption.
    pub title: String,
    /// The x axis label.
    pub x_label: String,
    /// The y axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Logarithmic y axis.
    pub log_y: bool,
}

const FONT_DIRS: [&str; 4] = ["/usr/share/fonts", "/usr/local/share/fonts", "/System/Library/Fonts", "/Library/Fonts"];
const PREFERRED: [&str; 5] =
    ["DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf", "Helvetica.ttf", "FreeSans.ttf"];

fn find_font() -> Option<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>, depth: usize) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && depth < 4 {
                walk(&path, found, depth + 1);
            } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf")) {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    for dir in FONT_DIRS {
        walk(Path::new(dir), &mut found, 0);
    }
    PREFERRED
        .iter()
        .find_map(|name| found.iter().find(|p| p.file_name().is_some_and(|f| f == *name)).cloned())
        .or_else(|| found.into_iter().min())
}

/// Registers a system font as `sans-serif` once; false when there is none.
fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let Some(bytes) = find_font().and_then(|p| std::fs::read(p).ok()) else {
            eprintln!("note: no TrueType font found; charts are drawn without text");
            return false;
        };
        register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice())).is_ok()
    })
}

fn bounds(series: &[Series], log_y: bool) -> (f64, f64, f64, f64) {
    let pts = || series.iter().flat_map(|s| s.points.iter()).filter(|(_, y)| y.is_finite() && (!log_y || *y > 0.0));
    let (x0, x1) = pts().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(*x), b.max(*x)));
    let (y0, y1) = pts().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
    if x0 > x1 {
        return (0.0, 1.0, 0.1, 1.0);
    }
    let (x1, y1) = (if x1 > x0 { x1 } else { x0 + 1.0 }, if y1 > y0 { y1 } else { y0 * 1.1 + 1e-9 });
    if log_y {
        (x0, x1, y0 / 1.2, y1 * 1.2)
    } else {
        let pad = (y1 - y0) * 0.05;
        (x0, x1, y0 - pad, y1 + pad)
    }
}

/// The loss curves of a fit at `path`: each engine's training loss (averaged over windows of batches:
/// an epoch, or fewer batches when there are few epochs, so that a short run still shows a curve) and
/// its validation losses (on a log scale when they span a decade).
///
/// # Errors
/// If the file cannot be written.
pub fn fit_chart(path: &Path, title: &str, runs: &[(Engine, &FitReport)]) -> Result<()> {
    let mut series = Vec::new();
    for (engine, report) in runs {
        let batches = report.batches_per_epoch();
        let window = batches.min(report.batch_losses.len() / 50).max(1);
        let label = if window == batches { "epoch mean".to_string() } else { format!("mean of {window} batches") };
        let train = Series::smoothed("", &report.batch_losses, window).points;
        let train = train.into_iter().map(|(x, y)| (x / batches as f64, y)).collect();
        series.push(Series::new(format!("{engine} training ({label})"), train));
        let val = report.evaluations.iter().map(|v| (report.position(v), v.loss)).collect();
        series.push(Series::new(format!("{engine} validation"), val));
    }
    // A log scale only where the losses span a decade: over less it would show no ticks.
    let losses = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|y| y.is_finite() && *y > 0.0);
    let (lo, hi) = losses.fold((f64::INFINITY, 0.0_f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let log_y = hi > 10.0 * lo;
    let chart = Chart { title: title.into(), x_label: "epoch".into(), y_label: "loss".into(), series, log_y };
    line_chart(path, &chart)
}

/// Draws `chart` into a 900×560 PNG at `path`, creating its folder.
///
/// # Errors
/// If the folder or file cannot be written.
pub fn line_chart(path: &Path, chart: &Chart) -> Result<()> {
    let text = font_available();
    png(path, (900, 560), |root| draw(root, chart, text))
}

/// A tick label: at most three decimals, trailing zeros dropped.
fn tick(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Series with at most this many points also get a marker at each point (a lone point is visible).
const MARKED: usize = 40;

/// The drawing surface of a chart: an RGB buffer, encoded as PNG by [`png`].
type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// What drawing returns: plotters' errors, which [`png`] turns into a message.
type Drawn = Result<(), Box<dyn std::error::Error>>;

/// Draws with `draw` into a `size` RGB buffer and writes it to `path` as a PNG, whole (see
/// [`crate::write::atomically`]).
fn png(path: &Path, size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> Drawn) -> Result<()> {
    let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
        draw(&root).map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
        root.present().map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
    }
    crate::write::atomically(path, |partial| {
        image::save_buffer_with_format(
            partial,
            &pixels,
            size.0,
            size.1,
            image::ColorType::Rgb8,
            image::ImageFormat::Png,
        )
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
    })
}

fn draw(root: &Area<'_>, chart: &Chart, text: bool) -> Drawn {
    let (x0, x1, y0, y1) = bounds(&chart.series, chart.log_y);
    let mut builder = ChartBuilder::on(root);
    builder.margin(16);
    if text {
        builder.caption(&chart.title, ("sans-serif", 22)).x_label_area_size(44).y_label_area_size(70);
    }
    let colours = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];

    macro_rules! finish {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            let mut mesh = ctx.configure_mesh();
            if text {
                mesh.x_desc(chart.x_label.as_str())
                    .y_desc(chart.y_label.as_str())
                    .label_style(("sans-serif", 14))
                    .x_label_formatter(&|x| tick(*x))
                    .y_label_formatter(&|y| tick(*y));
            } else {
                mesh.x_labels(0).y_labels(0);
            }
            if chart.log_y {
                mesh.light_line_style(WHITE);
            }
            mesh.draw()?;
            for (i, s) in chart.series.iter().enumerate() {
                let colour = colours[i % colours.len()];
                let points: Vec<(f64, f64)> =
                    s.points.iter().copied().filter(|(_, y)| y.is_finite() && (!chart.log_y || *y > 0.0)).collect();
                if points.len() <= MARKED {
                    ctx.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
                }
                let line = ctx.draw_series(LineSeries::new(points, colour.stroke_width(2)))?;
                if text {
                    line.label(s.name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
                }
            }
            if text {
                ctx.configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 14))
                    .draw()?;
            }
        }};
    }
    if chart.log_y {
        finish!(builder.build_cartesian_2d(x0..x1, (y0..y1).log_scale())?);
    } else {
        finish!(builder.build_cartesian_2d(x0..x1, y0..y1)?);
    }
    Ok(())
}

/// Draws rows of grayscale images (values in `[-1, 1]`, `side × side` each, row-major) into a PNG, one
/// labelled row per entry of `rows`, each image scaled up `scale` times.
///
/// # Errors
/// If the file cannot be written.
pub fn image_grid(path: &Path, rows: &[(String, Vec<Vec<f64>>)], side: usize, scale: usize) -> Result<()> {
    let text = font_available();
    let label_width = if text { 150 } else { 0 };
    let columns = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let cell = side * scale + 4;
    let size = ((label_width + columns * cell) as u32, (rows.len() * cell) as u32);
    png(path, size, |root| {
        for (r, (label, images)) in rows.iter().enumerate() {
            let top = (r * cell) as i32;
            if text {
                root.draw(&Text::new(label.as_str(), (8, top + cell as i32 / 2 - 8), ("sans-serif", 16)))?;
            }
            for (c, image) in images.iter().enumerate() {
                let left = (label_width + c * cell) as i32 + 2;
                for (i, &v) in image.iter().enumerate() {
                    let level = (((v.clamp(-1.0, 1.0) + 1.0) / 2.0) * 255.0).round() as u8;
                    let (x, y) = (left + ((i % side) * scale) as i32, top + 2 + ((i / side) * scale) as i32);
                    let colour = RGBColor(level, level, level);
                    root.draw(&Rectangle::new([(x, y), (x + scale as i32, y + scale as i32)], colour.filled()))?;
                }
            }
        }
        Ok(())
    })
}

/// A scatter plot of `(x, y, class)` points, one colour per class, with a legend naming the classes.
///
/// # Errors
/// If the file cannot be written.
pub fn scatter(path: &Path, title: &str, points: &[(f64, f64, usize)], classes: &[String]) -> Result<()> {
    let text = font_available();
    let range = |f: fn(&(f64, f64, usize)) -> f64| {
        let (lo, hi) = points.iter().map(f).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let pad = (hi - lo).max(1e-9) * 0.05;
        (lo - pad)..(hi + pad)
    };
    png(path, (900, 760), |root| {
        let mut builder = ChartBuilder::on(root);
        builder.margin(16);
        if text {
            builder.caption(title, ("sans-serif", 22)).x_label_area_size(30).y_label_area_size(50);
        }
        let mut ctx = builder.build_cartesian_2d(range(|p| p.0), range(|p| p.1))?;
        ctx.configure_mesh().draw()?;
        for (class, name) in classes.iter().enumerate() {
            let colour = Palette99::pick(class).to_rgba();
            let series = points.iter().filter(|p| p.2 == class).map(|p| Circle::new((p.0, p.1), 2, colour.filled()));
            let drawn = ctx.draw_series(series)?;
            if text {
                drawn.label(name.as_str()).legend(move |(x, y)| Circle::new((x + 8, y), 4, colour.filled()));
            }
        }
        if text {
            ctx.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
        }
        Ok(())
    })
}
