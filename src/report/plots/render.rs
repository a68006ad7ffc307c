//! Drawing a figure: panels side by side under a title, one legend for the whole figure below
//! them (outside every plotting area), lines told apart by colour, dash and marker, y-ranges
//! fitted to each panel's data. PNG and SVG, text in the embedded DejaVu Sans.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};
use crate::report::table::mean_std;

pub const FONT: &str = "sans-serif";

/// Registers the embedded font once.
pub fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("../../../assets/DejaVuSans.ttf"),
        );
    });
}

/// One line of a panel: per x, the values over seeds; `last`, where set, is the deployed
/// model's score (the table's number), drawn as the line's last point with a large marker.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend entry (index into [`Figure::entries`]) the line belongs to.
    pub row: usize,
    pub points: Vec<(f64, Vec<f64>)>,
    pub last: Option<(f64, Vec<f64>)>,
}

/// `(x, mean, std)` of each point (std 0 for a single value).
fn stats(points: &[(f64, Vec<f64>)]) -> Vec<(f64, f64, f64)> {
    points
        .iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(x, values)| {
            let (mean, std) = mean_std(values);
            (*x, mean, std.unwrap_or(0.0))
        })
        .collect()
}

impl Series {
    /// The mean of the line's last drawn point.
    pub fn last_mean(&self) -> Option<f64> {
        match &self.last {
            Some((_, values)) if !values.is_empty() => Some(mean_std(values).0),
            _ => stats(&self.points).last().map(|p| p.1),
        }
    }

    fn is_empty(&self) -> bool {
        self.points.iter().all(|(_, v)| v.is_empty())
            && self.last.as_ref().is_none_or(|(_, v)| v.is_empty())
    }
}

/// What a legend entry is, which decides its look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The baseline: a thick grey line under every other line, so it shows where another
    /// line coincides with it.
    Baseline,
    /// A table row.
    Row,
    /// A reference level (e.g. the step-time target): thin, dark, dashed, no markers.
    Reference,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub label: String,
    pub kind: Kind,
}

/// How x values are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// Whole numbers (epochs).
    Linear,
    /// x is log2(k); ticks read k = 1, 2, 4, 8, ...
    Log2,
}

impl XAxis {
    fn format(self, x: f64) -> String {
        if (x - x.round()).abs() > 1e-6 {
            return String::new();
        }
        match self {
            XAxis::Linear => format!("{x:.0}"),
            XAxis::Log2 => format!("{:.0}", 2f64.powf(x.round())),
        }
    }
}

pub enum Panel {
    /// Lines over x, each with a ±1 std band.
    Lines {
        title: String,
        y_label: String,
        series: Vec<Series>,
        reference: Option<Reference>,
    },
    /// One dot ± 1 std per legend entry, with its value written above it (the deployed
    /// model's scores: the table's numbers, on a range fitted to them).
    Dots {
        title: String,
        y_label: String,
        dots: Vec<(usize, Vec<f64>)>,
        reference: Option<Reference>,
    },
}

impl Panel {
    /// The panel's title.
    #[cfg(test)]
    pub fn title(&self) -> &str {
        match self {
            Panel::Lines { title, .. } | Panel::Dots { title, .. } => title,
        }
    }
}

/// A horizontal line across a panel at a score that is not a method's (a task's trivial
/// reference), labelled on the panel, in the panel's y units.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub label: String,
    pub value: f64,
}

/// Draws `reference` as a dotted black line across the plotting area, its label and value
/// written above the line's left end. The panel's range fits the methods' values, not the
/// reference: one outside it is written at the panel's bottom or top edge instead
/// ("below: ..."), so the differences between methods keep the panel's height.
fn reference_line<DB: DrawingBackend>(
    screen: &DrawingArea<DB, Shift>,
    pixel: impl Fn(f64, f64) -> (f64, f64),
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    reference: &Reference,
) -> Drawing {
    let (left, _) = pixel(x0, y0);
    let (right, _) = pixel(x1, y0);
    let style = TextStyle::from((FONT, TICK_FONT).into_font()).color(&BLACK);
    if !(y0..=y1).contains(&reference.value) {
        let (side, y, pos) = if reference.value < y0 {
            ("below", pixel(x0, y0).1 - 4.0, VPos::Bottom)
        } else {
            ("above", pixel(x0, y1).1 + 4.0, VPos::Top)
        };
        let text = format!("{side}: {} {:.2}", reference.label, reference.value);
        return screen
            .draw(&Text::new(
                text,
                (left.round() as i32 + 4, y.round() as i32),
                style.pos(Pos::new(HPos::Left, pos)),
            ))
            .map_err(failed);
    }
    let y = pixel(x0, reference.value).1.round() as i32;
    let mut x = left.round() as i32;
    while x < right.round() as i32 {
        let end = (x + 4).min(right.round() as i32);
        screen
            .draw(&PathElement::new(
                vec![(x, y), (end, y)],
                BLACK.stroke_width(2),
            ))
            .map_err(failed)?;
        x += 9;
    }
    // The label's first word alone where the whole label does not fit (a narrow dots panel).
    let mut text = format!("{}: {:.2}", reference.label, reference.value);
    if text_width(&text, TICK_FONT) as f64 + 8.0 > right - left {
        let word = reference.label.split_whitespace().next().unwrap_or("");
        text = format!("{word}: {:.2}", reference.value);
    }
    screen
        .draw(&Text::new(
            text,
            (left.round() as i32 + 4, y - 3),
            style.pos(Pos::new(HPos::Left, VPos::Bottom)),
        ))
        .map_err(failed)
}

/// Panels with more lines than this are drawn without ±1 std bands (they would cover each
/// other).
const MAX_BANDS: usize = 6;

pub struct Figure {
    /// File name without extension.
    pub name: String,
    pub title: String,
    pub x_label: String,
    pub x_axis: XAxis,
    pub entries: Vec<Entry>,
    pub panels: Vec<Panel>,
    /// Lines of text under the legend.
    pub notes: Vec<String>,
    /// Whether the lines end at a deployed point (explained under the legend).
    pub deployed_points: bool,
}

impl Figure {
    /// Whether some panel has more lines than [`MAX_BANDS`] (drawn without bands).
    fn crowded(&self) -> bool {
        self.panels.iter().any(|p| match p {
            Panel::Lines { series, .. } => {
                series.iter().filter(|s| !s.is_empty()).count() > MAX_BANDS
            }
            Panel::Dots { .. } => false,
        })
    }

    /// The notes under the legend: the figure's, then what the drawing left out.
    fn all_notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        if self.crowded() {
            notes.push(format!(
                "±1 std bands are left out of panels with more than {MAX_BANDS} lines (the deployed scores show theirs)"
            ));
        }
        notes
    }

    /// The legend labels of the entries drawn in some panel, in legend order.
    pub fn drawn_labels(&self) -> Vec<&str> {
        self.drawn()
            .into_iter()
            .map(|i| self.entries[i].label.as_str())
            .collect()
    }

    /// Indices of the entries some panel draws.
    fn drawn(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| {
                self.panels.iter().any(|p| match p {
                    Panel::Lines { series, .. } => {
                        series.iter().any(|s| s.row == i && !s.is_empty())
                    }
                    Panel::Dots { dots, .. } => dots.iter().any(|(r, v)| *r == i && !v.is_empty()),
                })
            })
            .collect()
    }
}

const PALETTE: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const BASELINE_LINE: RGBColor = RGBColor(185, 185, 185);
const BASELINE_MARK: RGBColor = RGBColor(110, 110, 110);
const REFERENCE: RGBColor = RGBColor(60, 60, 60);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Circle,
    Square,
    TriangleUp,
    Diamond,
    TriangleDown,
    None,
}

/// Dash patterns in pixels: on, off, on, off, ...; empty is solid.
const DASHES: [&[f64]; 4] = [&[], &[11.0, 6.0], &[2.5, 4.5], &[12.0, 5.0, 2.5, 5.0]];
const SHAPES: [Shape; 5] = [
    Shape::Circle,
    Shape::Square,
    Shape::TriangleUp,
    Shape::Diamond,
    Shape::TriangleDown,
];

/// The look of one legend entry, the same in every panel.
#[derive(Debug, Clone, Copy)]
struct Look {
    line: RGBColor,
    mark: RGBColor,
    width: u32,
    dash: &'static [f64],
    shape: Shape,
    hollow: bool,
    band: f64,
}

/// Rows are numbered among their kind; rows alternate between solid lines with filled
/// markers and patterned (dashed, dotted, dash-dot) lines with hollow markers, drawn after
/// every solid one, so two adjacent rows (often the ones that coincide, e.g. MK with and
/// without BatchNorm re-estimation) differ in colour, dash and marker at once and both stay
/// visible where they coincide.
/// Entries no panel draws (e.g. rows whose every seed diverged) are not counted.
fn look(figure: &Figure, i: usize) -> Look {
    let entries = &figure.entries;
    let nth = figure
        .drawn()
        .into_iter()
        .filter(|&j| j < i && entries[j].kind == entries[i].kind)
        .count();
    match entries[i].kind {
        Kind::Baseline => Look {
            line: BASELINE_LINE,
            mark: BASELINE_MARK,
            width: 7,
            dash: DASHES[nth % DASHES.len()],
            shape: Shape::Circle,
            hollow: false,
            band: 0.18,
        },
        Kind::Row => {
            let patterned = nth % 2 == 1;
            Look {
                line: PALETTE[nth % PALETTE.len()],
                mark: PALETTE[nth % PALETTE.len()],
                width: if patterned { 2 } else { 3 },
                dash: if patterned {
                    DASHES[1 + (nth / 2) % 3]
                } else {
                    DASHES[0]
                },
                shape: SHAPES[nth % SHAPES.len()],
                hollow: patterned,
                band: 0.10,
            }
        }
        Kind::Reference => Look {
            line: REFERENCE,
            mark: REFERENCE,
            width: 1,
            dash: DASHES[1],
            shape: Shape::None,
            hollow: false,
            band: 0.0,
        },
    }
}

/// Drawing order: the baseline under everything, then solid lines, then patterned ones.
fn layer(look: &Look, kind: Kind) -> u8 {
    match kind {
        Kind::Baseline => 0,
        _ if look.dash.is_empty() => 1,
        _ => 2,
    }
}

/// The "on" pieces of the polyline `points` under the dash `pattern` (whole when solid).
pub fn dash_runs(points: &[(f64, f64)], pattern: &[f64]) -> Vec<Vec<(f64, f64)>> {
    if pattern.is_empty() || points.len() < 2 {
        return vec![points.to_vec()];
    }
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut index = 0;
    let mut left = pattern[0];
    let mut current: Vec<(f64, f64)> = vec![points[0]];
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let length = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        let mut done = 0.0;
        while length - done > left {
            done += left;
            let t = done / length;
            let at = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
            if index % 2 == 0 {
                current.push(at);
                runs.push(std::mem::take(&mut current));
            } else {
                current = vec![at];
            }
            index = (index + 1) % pattern.len();
            left = pattern[index];
        }
        left -= length - done;
        if index % 2 == 0 {
            current.push(b);
        }
    }
    if index % 2 == 0 && current.len() > 1 {
        runs.push(current);
    }
    runs
}

/// The band between `upper` and `lower` (same xs) clipped to `y0..=y1`: points where either
/// edge crosses a limit are inserted, so clamping the rest is exact.
pub fn clip_band(upper: &[(f64, f64)], lower: &[(f64, f64)], y0: f64, y1: f64) -> Vec<(f64, f64)> {
    let clip = |line: &[(f64, f64)]| -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for (i, &(x, y)) in line.iter().enumerate() {
            if i > 0 {
                let (px, py) = line[i - 1];
                let mut crossings: Vec<(f64, f64)> = [y0, y1]
                    .iter()
                    .filter(|&&limit| (py - limit) * (y - limit) < 0.0)
                    .map(|&limit| {
                        let t = (limit - py) / (y - py);
                        (px + t * (x - px), limit)
                    })
                    .collect();
                crossings.sort_by(|a, b| a.0.total_cmp(&b.0));
                out.extend(crossings);
            }
            out.push((x, y.clamp(y0, y1)));
        }
        out
    };
    let mut band = clip(upper);
    let mut bottom = clip(lower);
    bottom.reverse();
    band.extend(bottom);
    band
}

/// `(low, high)` of `values` widened by a small margin (6% of the span, at least `floor`).
fn fitted(values: impl Iterator<Item = f64>, floor: f64) -> Option<(f64, f64)> {
    let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        low = low.min(v);
        high = high.max(v);
    }
    if low > high {
        return None;
    }
    let pad = ((high - low) * 0.06).max(floor);
    Some((low - pad, high + pad))
}

/// Tick labels with as many decimals as the range needs.
fn y_format(span: f64) -> impl Fn(&f64) -> String {
    let decimals = if span >= 20.0 {
        0
    } else if span >= 2.0 {
        1
    } else if span >= 0.2 {
        2
    } else {
        3
    };
    move |y: &f64| format!("{y:.decimals$}")
}

// Sizes in pixels.
const PANEL_W: u32 = 560;
const PANEL_H: u32 = 440;
const TITLE_FONT: u32 = 22;
const CAPTION_FONT: u32 = 18;
const TICK_FONT: u32 = 15;
const AXIS_FONT: u32 = 16;
const LEGEND_FONT: u32 = 16;
const NOTE_FONT: u32 = 14;
const LEGEND_LINE: u32 = 26;
const GLYPH_W: i32 = 48;

/// Where everything goes: computed once, with the font's real text widths.
struct Layout {
    size: (u32, u32),
    title_font: u32,
    widths: Vec<u32>,
    legend_top: u32,
    columns: usize,
    lines: usize,
    column_w: u32,
}

fn text_width(text: &str, size: u32) -> u32 {
    let mut pixels = vec![0u8; 3 * 4 * 4];
    let area = BitMapBackend::with_buffer(&mut pixels, (4, 4)).into_drawing_area();
    area.estimate_text_size(text, &(FONT, size).into_text_style(&area))
        .map_or(text.chars().count() as u32 * size * 6 / 10, |(w, _)| w)
}

fn dots_width(dots: usize) -> u32 {
    (150 + 44 * dots as u32).clamp(330, 560)
}

fn layout(figure: &Figure) -> Layout {
    let line_panels = figure
        .panels
        .iter()
        .filter(|p| matches!(p, Panel::Lines { .. }))
        .count();
    // Three panels of lines (validation beside test and train) are a little narrower.
    let panel_w = if line_panels > 2 {
        PANEL_W - 80
    } else {
        PANEL_W
    };
    let widths: Vec<u32> = figure
        .panels
        .iter()
        .map(|p| match p {
            Panel::Lines { .. } => panel_w,
            Panel::Dots { dots, .. } => dots_width(dots.len()),
        })
        .collect();
    let width = widths.iter().sum::<u32>().max(900) + 20;
    let widths: Vec<u32> = {
        // Spread any extra width (narrow figures) over the line panels.
        let extra = width - 20 - widths.iter().sum::<u32>();
        let lines = line_panels.max(1) as u32;
        widths
            .iter()
            .zip(&figure.panels)
            .map(|(&w, p)| match p {
                Panel::Lines { .. } => w + extra / lines,
                Panel::Dots { .. } => w,
            })
            .collect()
    };
    let mut title_font = TITLE_FONT;
    while title_font > 14 && text_width(&figure.title, title_font) + 40 > width {
        title_font -= 1;
    }
    let drawn = figure.drawn();
    let column_w = drawn
        .iter()
        .map(|&i| text_width(&figure.entries[i].label, LEGEND_FONT))
        .max()
        .unwrap_or(0)
        + GLYPH_W as u32
        + 44;
    let columns = (((width - 40) / column_w) as usize).clamp(1, drawn.len().max(1));
    let lines = drawn.len().div_ceil(columns);
    let notes = figure.all_notes().len() + usize::from(figure.deployed_points);
    let legend_h = 14 + LEGEND_LINE * lines as u32 + 24 * notes as u32 + 18;
    let title_h = title_font * 2 + 8;
    Layout {
        size: (width, title_h + PANEL_H + legend_h),
        title_font,
        widths,
        legend_top: title_h + PANEL_H,
        columns,
        lines,
        column_w,
    }
}

type Drawing = std::result::Result<(), String>;

fn failed<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Draws `points` (pixels) as a polyline in the look's width and dash.
fn stroke<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    points: &[(f64, f64)],
    look: &Look,
    color: RGBColor,
) -> Drawing {
    for run in dash_runs(points, look.dash) {
        let pixels: Vec<(i32, i32)> = run
            .iter()
            .map(|&(x, y)| (x.round() as i32, y.round() as i32))
            .collect();
        area.draw(&PathElement::new(pixels, color.stroke_width(look.width)))
            .map_err(failed)?;
    }
    Ok(())
}

/// Draws a marker of `shape` centred at `at` (pixels): filled, or hollow (white inside).
fn mark<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    shape: Shape,
    r: i32,
    color: RGBColor,
    hollow: bool,
    stroke_w: u32,
) -> Drawing {
    let (x, y) = at;
    let outline: Vec<(i32, i32)> = match shape {
        Shape::None => return Ok(()),
        Shape::Circle => {
            if hollow {
                area.draw(&Circle::new(at, r, WHITE.filled()))
                    .map_err(failed)?;
                return area
                    .draw(&Circle::new(at, r, color.stroke_width(stroke_w)))
                    .map_err(failed);
            }
            return area
                .draw(&Circle::new(at, r, color.filled()))
                .map_err(failed);
        }
        Shape::Square => {
            let s = r * 9 / 10;
            vec![
                (x - s, y - s),
                (x + s, y - s),
                (x + s, y + s),
                (x - s, y + s),
            ]
        }
        Shape::TriangleUp => {
            let s = r * 6 / 5;
            vec![(x, y - s), (x + s, y + s * 3 / 4), (x - s, y + s * 3 / 4)]
        }
        Shape::TriangleDown => {
            let s = r * 6 / 5;
            vec![(x, y + s), (x + s, y - s * 3 / 4), (x - s, y - s * 3 / 4)]
        }
        Shape::Diamond => {
            let s = r * 13 / 10;
            vec![(x, y - s), (x + s, y), (x, y + s), (x - s, y)]
        }
    };
    if hollow {
        area.draw(&Polygon::new(outline.clone(), WHITE.filled()))
            .map_err(failed)?;
        let mut closed = outline.clone();
        closed.push(outline[0]);
        area.draw(&PathElement::new(closed, color.stroke_width(stroke_w)))
            .map_err(failed)
    } else {
        area.draw(&Polygon::new(outline, color.filled()))
            .map_err(failed)
    }
}

/// Marker radius of epoch points, and of the deployed (last) point.
fn radius(look: &Look) -> (i32, i32) {
    match (look.hollow, look.shape) {
        (_, Shape::None) => (0, 0),
        (true, _) => (5, 8),
        (false, _) => (4, 7),
    }
}

/// A line as drawn: its legend entry, `(x, mean, std)` of its points, `(x, mean)` of its
/// last point.
struct Line {
    row: usize,
    points: Vec<(f64, f64, f64)>,
    last: Option<(f64, f64)>,
}

/// Draws one panel of lines.
fn lines_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    figure: &Figure,
    title: &str,
    y_label: &str,
    series: &[Series],
    reference: Option<&Reference>,
) -> Drawing {
    let drawn: Vec<Line> = series
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| Line {
            row: s.row,
            points: stats(&s.points),
            last: s
                .last
                .as_ref()
                .filter(|(_, v)| !v.is_empty())
                .map(|(x, v)| (*x, mean_std(v).0)),
        })
        .collect();
    let xs = || {
        drawn
            .iter()
            .flat_map(|l| l.points.iter().map(|q| q.0).chain(l.last.map(|q| q.0)))
    };
    let Some((mut x0, mut x1)) = fitted(xs(), 0.0) else {
        return Ok(());
    };
    if x1 - x0 < 1.0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let span = x1 - x0;
    let (x0, x1) = (x0 - 0.02 * span, x1 + 0.03 * span);
    // The range fits the lines (means and last points) and their bands, but in curves over
    // training a band widens it by at most a tenth of the lines' span either way (an early
    // epoch's wide spread would hide the differences at the end); bands are clipped to it.
    let means = || {
        drawn
            .iter()
            .flat_map(|l| l.points.iter().map(|q| q.1).chain(l.last.map(|q| q.1)))
    };
    let Some((low, high)) = fitted(means(), 0.0) else {
        return Ok(());
    };
    let reach = if figure.deployed_points {
        (high - low) * 0.10
    } else {
        // A handful of points (against k): every band whole.
        f64::INFINITY
    };
    let with_bands = drawn.len() <= MAX_BANDS;
    let bands = drawn.iter().filter(|_| with_bands).flat_map(|l| {
        l.points
            .iter()
            .flat_map(|&(_, m, d)| [(m - d).max(low - reach), (m + d).min(high + reach)])
    });
    let Some((y0, y1)) = fitted(means().chain(bands), 0.05) else {
        return Ok(());
    };
    let format_y = y_format(y1 - y0);
    let format_x = |x: &f64| figure.x_axis.format(*x);
    let mut builder = ChartBuilder::on(area);
    if !title.is_empty() {
        builder.caption(title, (FONT, CAPTION_FONT));
    }
    let mut chart = builder
        .margin(10)
        .margin_right(22)
        .x_label_area_size(50)
        .y_label_area_size(74)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(failed)?;
    let ticks = ((x1 - x0).round() as usize + 1).clamp(2, 11);
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .x_labels(ticks)
        .y_labels(8)
        .x_label_formatter(&format_x)
        .y_label_formatter(&format_y)
        .x_desc(figure.x_label.as_str())
        .y_desc(y_label)
        .label_style((FONT, TICK_FONT))
        .axis_desc_style((FONT, AXIS_FONT))
        .draw()
        .map_err(failed)?;
    // Bands first (under every line), then the baseline's thick line, then the other rows in
    // legend order, each with its markers.
    for Line { row, points, .. } in &drawn {
        let look = look(figure, *row);
        if !with_bands || look.band == 0.0 || points.len() < 2 || points.iter().all(|p| p.2 == 0.0)
        {
            continue;
        }
        let upper: Vec<(f64, f64)> = points.iter().map(|&(x, m, d)| (x, m + d)).collect();
        let lower: Vec<(f64, f64)> = points.iter().map(|&(x, m, d)| (x, m - d)).collect();
        chart
            .draw_series(std::iter::once(Polygon::new(
                clip_band(&upper, &lower, y0, y1),
                look.line.mix(look.band).filled(),
            )))
            .map_err(failed)?;
    }
    let plot = chart.plotting_area();
    let screen = plot.use_screen_coord();
    let pixel = |x: f64, y: f64| {
        let (a, b) = plot.map_coordinate(&(x, y));
        (a as f64, b as f64)
    };
    if let Some(reference) = reference {
        reference_line(&screen, pixel, (x0, x1), (y0, y1), reference)?;
    }
    let mut order: Vec<&Line> = drawn.iter().collect();
    order.sort_by_key(|l| layer(&look(figure, l.row), figure.entries[l.row].kind));
    for Line { row, points, last } in order {
        let look = look(figure, *row);
        let mut line: Vec<(f64, f64)> = points.iter().map(|&(x, m, _)| pixel(x, m)).collect();
        if let Some((x, m)) = last {
            line.push(pixel(*x, *m));
        }
        stroke(&screen, &line, &look, look.line)?;
        let (r, big) = radius(&look);
        // At most about 12 markers a line, always the first and last epoch.
        let stride = points.len().div_ceil(12).max(1);
        for (i, &(x, m, _)) in points.iter().enumerate() {
            if i % stride == 0 || i + 1 == points.len() {
                let (a, b) = pixel(x, m);
                let at = (a.round() as i32, b.round() as i32);
                mark(&screen, at, look.shape, r, look.mark, look.hollow, 2)?;
            }
        }
        if let Some((x, m)) = last {
            let (a, b) = pixel(*x, *m);
            let at = (a.round() as i32, b.round() as i32);
            mark(&screen, at, look.shape, big, look.mark, true, 3)?;
        }
    }
    Ok(())
}

/// Draws the dots panel: every entry's value ± 1 std, its mean written above it.
fn dots_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    figure: &Figure,
    title: &str,
    y_label: &str,
    dots: &[(usize, Vec<f64>)],
    reference: Option<&Reference>,
) -> Drawing {
    let shown: Vec<(usize, f64, f64)> = dots
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(row, v)| {
            let (mean, std) = mean_std(v);
            (*row, mean, std.unwrap_or(0.0))
        })
        .collect();
    let ends = shown.iter().flat_map(|&(_, m, d)| [m - d, m + d]);
    let Some((y0, y1)) = fitted(ends, 0.25) else {
        return Ok(());
    };
    // Room above for the written values.
    let y1 = y1 + (y1 - y0) * 0.16;
    let n = shown.len() as f64;
    let format_y = y_format(y1 - y0);
    let no_label = |_: &f64| String::new();
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, CAPTION_FONT))
        .margin(10)
        .margin_right(16)
        .x_label_area_size(50)
        .y_label_area_size(74)
        .build_cartesian_2d(-0.6..(n - 0.4), y0..y1)
        .map_err(failed)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(8)
        .x_label_formatter(&no_label)
        .y_label_formatter(&format_y)
        .x_desc("one dot per legend entry, in legend order")
        .y_desc(y_label)
        .label_style((FONT, TICK_FONT))
        .axis_desc_style((FONT, AXIS_FONT - 2))
        .draw()
        .map_err(failed)?;
    let plot = chart.plotting_area();
    let screen = plot.use_screen_coord();
    if let Some(reference) = reference {
        let pixel = |x: f64, y: f64| {
            let (a, b) = plot.map_coordinate(&(x, y));
            (a as f64, b as f64)
        };
        reference_line(&screen, pixel, (-0.6, n - 0.4), (y0, y1), reference)?;
    }
    let spacing = plot.dim_in_pixel().0 as f64 / n.max(1.0);
    for (i, &(row, mean, std)) in shown.iter().enumerate() {
        let look = look(figure, row);
        let color = look.mark;
        let x = i as f64;
        let (px, top) = plot.map_coordinate(&(x, mean + std));
        let (_, bottom) = plot.map_coordinate(&(x, mean - std));
        let (_, middle) = plot.map_coordinate(&(x, mean));
        if std > 0.0 {
            let style = color.stroke_width(2);
            for element in [
                vec![(px, top), (px, bottom)],
                vec![(px - 6, top), (px + 6, top)],
                vec![(px - 6, bottom), (px + 6, bottom)],
            ] {
                screen
                    .draw(&PathElement::new(element, style))
                    .map_err(failed)?;
            }
        }
        let shape = if look.shape == Shape::None {
            Shape::Circle
        } else {
            look.shape
        };
        mark(&screen, (px, middle), shape, 7, color, look.hollow, 3)?;
        // Two decimals, as the tables print them.
        let text = format!("{mean:.2}");
        let style = TextStyle::from((FONT, TICK_FONT).into_font()).color(&BLACK);
        let width = text_width(&text, TICK_FONT) as f64;
        let (style, at) = if width + 6.0 > spacing {
            (
                style
                    .transform(FontTransform::Rotate270)
                    .pos(Pos::new(HPos::Left, VPos::Center)),
                (px, top.min(middle - 9) - 8),
            )
        } else {
            (
                style.pos(Pos::new(HPos::Center, VPos::Bottom)),
                (px, top.min(middle - 9) - 7),
            )
        };
        screen.draw(&Text::new(text, at, style)).map_err(failed)?;
    }
    Ok(())
}

/// The legend: every drawn entry with its glyph (line, dash, marker) in columns, then notes.
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    figure: &Figure,
    layout: &Layout,
) -> Drawing {
    let drawn = figure.drawn();
    let left = ((layout.size.0 - layout.column_w * layout.columns as u32) / 2) as i32;
    let top = layout.legend_top as i32 + 12;
    let text_style = |size: u32| {
        TextStyle::from((FONT, size).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center))
    };
    for (n, &i) in drawn.iter().enumerate() {
        let (column, line) = (n / layout.lines, n % layout.lines);
        let x = left + column as i32 * layout.column_w as i32;
        let y = top + line as i32 * LEGEND_LINE as i32 + LEGEND_LINE as i32 / 2;
        let look = look(figure, i);
        let glyph = [(x as f64, y as f64), ((x + GLYPH_W) as f64, y as f64)];
        stroke(area, &glyph, &look, look.line)?;
        let (r, _) = radius(&look);
        mark(
            area,
            (x + GLYPH_W / 2, y),
            look.shape,
            r,
            look.mark,
            look.hollow,
            2,
        )?;
        area.draw(&Text::new(
            figure.entries[i].label.clone(),
            (x + GLYPH_W + 10, y),
            text_style(LEGEND_FONT),
        ))
        .map_err(failed)?;
    }
    let mut y = top + (layout.lines as u32 * LEGEND_LINE) as i32 + 14;
    let x = left.max(20);
    if figure.deployed_points {
        mark(area, (x + GLYPH_W / 2, y), Shape::Circle, 8, BLACK, true, 3)?;
        area.draw(&Text::new(
            "large marker: a line's last point, the deployed model's score (after collapse and any BatchNorm re-estimation): the table's number",
            (x + GLYPH_W + 10, y),
            text_style(NOTE_FONT),
        ))
        .map_err(failed)?;
        y += 24;
    }
    for note in figure.all_notes() {
        area.draw(&Text::new(note, (x + 10, y), text_style(NOTE_FONT)))
            .map_err(failed)?;
        y += 24;
    }
    Ok(())
}

/// Draws `figure` on `root`, laid out by `layout`.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    figure: &Figure,
    layout: &Layout,
) -> Drawing {
    root.fill(&WHITE).map_err(failed)?;
    let screen = root.use_screen_coord();
    let title = TextStyle::from((FONT, layout.title_font).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    screen
        .draw(&Text::new(
            figure.title.clone(),
            ((layout.size.0 / 2) as i32, 8),
            title,
        ))
        .map_err(failed)?;
    let title_h = layout.legend_top - PANEL_H;
    let mut x = 10;
    for (panel, &w) in figure.panels.iter().zip(&layout.widths) {
        let area = root.clone().shrink((x, title_h), (w, PANEL_H));
        match panel {
            Panel::Lines {
                title,
                y_label,
                series,
                reference,
            } => lines_panel(&area, figure, title, y_label, series, reference.as_ref())?,
            Panel::Dots {
                title,
                y_label,
                dots,
                reference,
            } => dots_panel(&area, figure, title, y_label, dots, reference.as_ref())?,
        }
        x += w;
    }
    legend(&screen, figure, layout)?;
    root.present().map_err(failed)
}

/// Writes `<name>.png` and `<name>.svg` of `figure` into `dir` atomically; returns their paths.
pub fn save(dir: &Path, figure: &Figure) -> Result<Vec<PathBuf>> {
    register_font();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let png_path = dir.join(format!("{}.png", figure.name));
    let svg_path = dir.join(format!("{}.svg", figure.name));
    let bad = |path: &Path, e: String| Error::data(path, format!("cannot render figure: {e}"));
    let layout = layout(figure);
    let size = layout.size;

    let mut pixels = vec![0u8; (size.0 * size.1 * 3) as usize];
    draw(
        BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area(),
        figure,
        &layout,
    )
    .map_err(|e| bad(&png_path, e))?;
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, size.0, size.1);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .and_then(|mut w| w.write_image_data(&pixels))
            .map_err(|e| bad(&png_path, e.to_string()))?;
    }
    crate::atomic::write(&png_path, &png_bytes)?;

    let mut svg = String::new();
    draw(
        SVGBackend::with_string(&mut svg, size).into_drawing_area(),
        figure,
        &layout,
    )
    .map_err(|e| bad(&svg_path, e))?;
    crate::atomic::write(&svg_path, svg.as_bytes())?;
    Ok(vec![png_path, svg_path])
}
