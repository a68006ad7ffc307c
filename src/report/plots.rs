//! Figures rendered from stored parquet alone (plotters; PNG and SVG; text drawn with the
//! embedded DejaVu Sans, so no system font is needed).
//!
//! For every experiment with stored runs of the profile:
//! - `<experiment>-<profile>-<dataset>-curves`: test and train score over training, one line per
//!   table row (mean over seeds) with a ±1 std band;
//! - `<experiment>-<profile>-<dataset>-<figure>`: for every extra figure methods name in their
//!   registry facts (e.g. `adversarial`: `adv_only`, `adv_mj` and `mk`), when two or more of
//!   them ran, with the baseline;
//! - `<experiment>-<profile>-<dataset>-accuracy-vs-k` and `-overhead-vs-k`: when a proposed
//!   method ran at several k (the Table 5 sweep): test score, and step time over the
//!   baseline's, against k.
//!
//! Methods are found by their registered role and facts, never by name.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::*;

use super::table::{groups, mean_std};
use crate::error::{Error, Result};
use crate::methods::{self, Role};
use crate::results::{ResultsDir, RunRecord};

const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 520);
const SMALL: (u32, u32) = (720, 480);

/// Registers the embedded font once.
fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("../../assets/DejaVuSans.ttf"),
        );
    });
}

/// One line of a figure: label, and per x the values over seeds.
struct Series {
    label: String,
    points: BTreeMap<i64, Vec<f64>>,
}

impl Series {
    fn stats(&self) -> Vec<(f64, f64, f64)> {
        self.points
            .iter()
            .map(|(&x, values)| {
                let (mean, std) = mean_std(values);
                (x as f64, mean, std.unwrap_or(0.0))
            })
            .collect()
    }
}

/// A figure's panels: `(panel title, y label, series)`.
type Panels = Vec<(String, String, Vec<Series>)>;

/// Renders every figure of the named experiments (all experiment files when empty) into
/// `plots_dir`; returns the list of files written.
pub fn run(
    results_dir: &Path,
    experiments_dir: &Path,
    plots_dir: &Path,
    names: &[String],
    profile: &str,
) -> Result<String> {
    register_font();
    let names: Vec<String> = if names.is_empty() {
        crate::experiment::list(experiments_dir)
    } else {
        names.to_vec()
    };
    let mut written = Vec::new();
    for name in &names {
        let dir = ResultsDir::new(results_dir, name, profile);
        let runs: Vec<RunRecord> = dir
            .runs()?
            .into_iter()
            .filter(|r| r.status == "completed")
            .collect();
        if runs.is_empty() {
            continue;
        }
        let curves = curve_points(&dir)?;
        let mut datasets: Vec<String> = runs.iter().map(|r| r.dataset.clone()).collect();
        datasets.sort();
        datasets.dedup();
        for dataset in datasets {
            let in_dataset: Vec<RunRecord> = runs
                .iter()
                .filter(|r| r.dataset == dataset)
                .cloned()
                .collect();
            let model = in_dataset[0].model.clone();
            let stem = format!("{name}-{profile}-{dataset}");
            let title =
                |what: &str| format!("{name}: {what}, {dataset}, {model} ({profile} profile)");
            let rows = groups(&in_dataset);
            // Training curves of every row.
            let curve_series = |keep: &dyn Fn(&RunRecord) -> bool, train: bool| -> Vec<Series> {
                rows.iter()
                    .filter(|(_, runs)| keep(runs[0]))
                    .map(|(label, runs)| {
                        let label = if runs[0].k > 1 && uses_k(&runs[0].method) {
                            format!("{label}, k={}", runs[0].k)
                        } else {
                            label.clone()
                        };
                        let mut points: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
                        for run in runs {
                            for &(epoch, train_score, test_score) in
                                curves.get(&run.run_id).into_iter().flatten()
                            {
                                let value = if train { train_score } else { test_score };
                                points.entry(epoch).or_default().push(100.0 * value);
                            }
                        }
                        Series { label, points }
                    })
                    .filter(|s| !s.points.is_empty())
                    .collect()
            };
            let metric = in_dataset[0].metric.clone();
            // Test and train panels of the rows `keep` accepts.
            let score_panels = |keep: &dyn Fn(&RunRecord) -> bool| -> Panels {
                [("test", false), ("train", true)]
                    .into_iter()
                    .map(|(split, train)| {
                        (
                            split.to_string(),
                            format!("{split} {metric} (%)"),
                            curve_series(keep, train),
                        )
                    })
                    .collect()
            };
            let panels = score_panels(&|_| true);
            if panels[0].2.is_empty() {
                continue;
            }
            written.extend(save(
                plots_dir,
                &format!("{stem}-curves"),
                &title("score over training"),
                "epoch",
                panels,
                SIZE,
            )?);
            // The extra figures methods ask for, with the baseline, where two or more ran.
            let mut figures: Vec<&str> = in_dataset
                .iter()
                .flat_map(|r| methods::info(&r.method).map_or(&[][..], |i| i.figures))
                .copied()
                .collect();
            figures.sort();
            figures.dedup();
            for figure in figures {
                let in_figure = |r: &RunRecord| {
                    methods::info(&r.method).is_some_and(|i| i.figures.contains(&figure))
                };
                let mut members: Vec<&str> = in_dataset
                    .iter()
                    .filter(|r| in_figure(r))
                    .map(|r| r.method.as_str())
                    .collect();
                members.sort();
                members.dedup();
                if members.len() < 2 {
                    continue;
                }
                let panels = score_panels(&|r: &RunRecord| in_figure(r) || is_baseline(&r.method));
                written.extend(save(
                    plots_dir,
                    &format!("{stem}-{figure}"),
                    &title(&format!("{} against the baseline", members.join(", "))),
                    "epoch",
                    panels,
                    SIZE,
                )?);
            }
            written.extend(k_sweep(plots_dir, &stem, &title, &in_dataset, &metric)?);
        }
    }
    // The MK overhead figure from the rows `reproduce bench` stored.
    written.extend(overhead_figure(&results_dir.join("bench"), plots_dir)?);
    if written.is_empty() {
        return Err(Error::Usage(format!(
            "no stored runs with curves for profile `{profile}` in {}",
            results_dir.display()
        )));
    }
    let mut out = format!("{} figures in {}:\n", written.len(), plots_dir.display());
    for path in &written {
        out.push_str(&format!("  {}\n", path.display()));
    }
    Ok(out)
}

/// Whether runs of `method` depend on k (unknown names are assumed to).
fn uses_k(method: &str) -> bool {
    methods::info(method).is_none_or(|i| i.uses_k)
}

fn is_baseline(method: &str) -> bool {
    methods::role_of(method) == Some(Role::Baseline)
}

/// Accuracy and step-time overhead against k, for the rows of the proposed method that ran at
/// several k with otherwise equal options.
fn k_sweep(
    plots_dir: &Path,
    stem: &str,
    title: &dyn Fn(&str) -> String,
    runs: &[RunRecord],
    metric: &str,
) -> Result<Vec<PathBuf>> {
    let mut by_options: BTreeMap<(String, String), Vec<&RunRecord>> = BTreeMap::new();
    for run in runs
        .iter()
        .filter(|r| methods::role_of(&r.method) == Some(Role::Proposed))
    {
        by_options
            .entry((run.method.clone(), run.options.clone()))
            .or_default()
            .push(run);
    }
    let Some(((method, _), sweep)) = by_options.into_iter().find(|(_, rs)| {
        let mut ks: Vec<i64> = rs.iter().map(|r| r.k).collect();
        ks.sort();
        ks.dedup();
        ks.len() > 2
    }) else {
        return Ok(Vec::new());
    };
    let baseline: Vec<&RunRecord> = runs.iter().filter(|r| is_baseline(&r.method)).collect();
    let mut accuracy = Series {
        label: method.clone(),
        points: BTreeMap::new(),
    };
    let mut overhead = Series {
        label: format!("{method} step time / baseline step time (same seed)"),
        points: BTreeMap::new(),
    };
    for run in &sweep {
        accuracy
            .points
            .entry(run.k)
            .or_default()
            .push(100.0 * run.test_score);
        if let Some(base) = baseline.iter().find(|b| b.seed == run.seed) {
            overhead
                .points
                .entry(run.k)
                .or_default()
                .push(run.step_ms / base.step_ms);
        }
    }
    let mut series = vec![accuracy];
    if !baseline.is_empty() {
        let values: Vec<f64> = baseline.iter().map(|b| 100.0 * b.test_score).collect();
        let ks: Vec<i64> = series[0].points.keys().copied().collect();
        series.push(Series {
            label: baseline[0].method.clone(),
            points: ks.iter().map(|&k| (k, values.clone())).collect(),
        });
    }
    let mut out = save(
        plots_dir,
        &format!("{stem}-accuracy-vs-k"),
        &title("test score against k"),
        "k (copies per kernel)",
        vec![(String::new(), format!("test {metric} (%)"), series)],
        SMALL,
    )?;
    if !overhead.points.is_empty() {
        out.extend(save(
            plots_dir,
            &format!("{stem}-overhead-vs-k"),
            &title("step-time overhead against k"),
            "k (copies per kernel)",
            vec![(String::new(), "step time ratio".into(), vec![overhead])],
            SMALL,
        )?);
    }
    Ok(out)
}

/// The MK training-step overhead against k, one line per benchmarked model, backend and
/// machine, from the rows `reproduce bench` stored in `bench_dir`: `overhead-vs-k.{png,svg}`.
pub fn overhead_figure(bench_dir: &Path, plots_dir: &Path) -> Result<Vec<PathBuf>> {
    register_font();
    let rows = crate::results::bench::stored_ratios(bench_dir)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut series: Vec<Series> = Vec::new();
    for (label, k, ratio) in rows {
        match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.entry(k).or_default().push(ratio),
            None => series.push(Series {
                label,
                points: BTreeMap::from([(k, vec![ratio])]),
            }),
        }
    }
    let ks: Vec<i64> = series
        .iter()
        .flat_map(|s| s.points.keys().copied())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    series.push(Series {
        label: format!("target {}", crate::report::claims::OVERHEAD_LIMIT),
        points: ks
            .iter()
            .map(|&k| (k, vec![crate::report::claims::OVERHEAD_LIMIT]))
            .collect(),
    });
    save(
        plots_dir,
        "overhead-vs-k",
        "MK training step / baseline training step (reproduce bench)",
        "k (copies per kernel)",
        vec![(String::new(), "step time ratio".into(), series)],
        SIZE,
    )
}

/// `(epoch, train score, test score)` of every stored curve point, by run id.
type Curves = HashMap<String, Vec<(i64, f64, f64)>>;

fn curve_points(dir: &ResultsDir) -> Result<Curves> {
    let mut out = Curves::new();
    let Some(frame) = dir.curves()? else {
        return Ok(out);
    };
    let bad = |what: &str| Error::Results {
        path: dir.root().join("curves"),
        message: format!("curves lack a readable `{what}` column"),
    };
    let ids = frame
        .column("run_id")
        .and_then(|c| c.str().cloned())
        .map_err(|_| bad("run_id"))?;
    let float = |name: &str| -> Result<Vec<f64>> {
        let column = frame
            .column(name)
            .and_then(|c| c.cast(&DataType::Float64))
            .map_err(|_| bad(name))?;
        let values = column.f64().map_err(|_| bad(name))?;
        Ok(values.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let epochs = float("epoch")?;
    let (train, test) = (float("train_score")?, float("test_score")?);
    for (i, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            out.entry(id.to_string())
                .or_default()
                .push((epochs[i] as i64, train[i], test[i]));
        }
    }
    Ok(out)
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Draws `panels` side by side under `title`.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    x_label: &str,
    panels: &Panels,
) -> std::result::Result<(), String> {
    let failed = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(failed)?;
    let root = root.titled(title, (FONT, 20)).map_err(failed)?;
    let areas = root.split_evenly((1, panels.len()));
    for (area, (panel, y_label, series)) in areas.iter().zip(panels) {
        let stats: Vec<Vec<(f64, f64, f64)>> = series.iter().map(Series::stats).collect();
        let all = stats.iter().flatten();
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, mean, std) in all {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(mean - std);
            y1 = y1.max(mean + std);
        }
        if x0 > x1 {
            continue;
        }
        if x0 == x1 {
            x1 = x0 + 1.0;
        }
        let pad = ((y1 - y0) * 0.08).max(0.5);
        let mut chart = ChartBuilder::on(area)
            .caption(panel, (FONT, 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .map_err(failed)?;
        let ticks = ((x1 - x0) as usize + 1).clamp(2, 12);
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_labels(ticks)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(failed)?;
        for (i, (line, points)) in series.iter().zip(&stats).enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let band: Vec<(f64, f64)> = points
                .iter()
                .map(|&(x, m, s)| (x, m + s))
                .chain(points.iter().rev().map(|&(x, m, s)| (x, m - s)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(band, color.mix(0.15))))
                .map_err(failed)?;
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|&(x, m, _)| (x, m)),
                    color.stroke_width(2),
                ))
                .map_err(failed)?
                .label(line.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&(x, m, _)| Circle::new((x, m), 3, color.filled())),
                )
                .map_err(failed)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(failed)?;
    }
    root.present().map_err(failed)
}

/// Writes `<name>.png` and `<name>.svg` atomically; returns their paths.
fn save(
    dir: &Path,
    name: &str,
    title: &str,
    x_label: &str,
    panels: Panels,
    size: (u32, u32),
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let png_path = dir.join(format!("{name}.png"));
    let svg_path = dir.join(format!("{name}.svg"));
    let failed = |path: &Path, e: String| Error::data(path, format!("cannot render figure: {e}"));

    let mut pixels = vec![0u8; (size.0 * size.1 * 3) as usize];
    draw(
        BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area(),
        title,
        x_label,
        &panels,
    )
    .map_err(|e| failed(&png_path, e))?;
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, size.0, size.1);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .and_then(|mut w| w.write_image_data(&pixels))
            .map_err(|e| failed(&png_path, e.to_string()))?;
    }
    crate::atomic::write(&png_path, &png_bytes)?;

    let mut svg = String::new();
    draw(
        SVGBackend::with_string(&mut svg, size).into_drawing_area(),
        title,
        x_label,
        &panels,
    )
    .map_err(|e| failed(&svg_path, e))?;
    crate::atomic::write(&svg_path, svg.as_bytes())?;
    Ok(vec![png_path, svg_path])
}
