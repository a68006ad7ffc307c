//! The numbers a figure draws: every table row's curve over training, read from the stored
//! curve files, ending at the deployed model's score (the table's number), and the rows'
//! legend labels (the table's row labels).

use std::collections::{BTreeMap, HashMap};

use super::render::Series;
use crate::error::Result;
use crate::report::table::full_label;
use crate::results::schema::{Table, read_frame};
use crate::results::{CurvePoint, ResultsDir, RunRecord};

/// Which score a line follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Test,
    Train,
    Validation,
    /// Train minus test score: the generalisation gap.
    Gap,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Test => "test",
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Gap => "generalisation gap",
        }
    }

    /// The score of an evaluation point (NaN where there is none, e.g. no validation slice).
    fn of_point(self, point: &CurvePoint) -> f64 {
        match self {
            Split::Test => point.test_score,
            Split::Train => point.train_score,
            Split::Validation => point.validation_score,
            Split::Gap => point.train_score - point.test_score,
        }
    }

    /// The deployed model's score, as the run row (and so the table) records it.
    fn of_run(self, run: &RunRecord) -> Option<f64> {
        match self {
            Split::Test => Some(run.test_score),
            Split::Train => Some(run.train_score),
            Split::Validation => run.validation_score,
            Split::Gap => Some(run.train_score - run.test_score),
        }
    }
}

/// A run's stored curve: its `epoch` points and its `deployed` point (files written before the
/// `kind` column existed have none).
#[derive(Debug, Clone, Default)]
pub struct Curve {
    pub epochs: Vec<CurvePoint>,
    pub deployed: Option<CurvePoint>,
}

impl Curve {
    pub fn new(points: Vec<CurvePoint>) -> Self {
        let mut curve = Curve::default();
        for point in points {
            if point.kind == "deployed" {
                curve.deployed = Some(point);
            } else {
                curve.epochs.push(point);
            }
        }
        curve.epochs.sort_by_key(|p| (p.epoch, p.step));
        curve
    }
}

/// Curves by run id.
pub type Curves = HashMap<String, Curve>;

/// The curve of every run in `runs` that has a curve file in `dir` (read file by file, so files
/// written before and after a column was added mix).
pub fn read_curves(dir: &ResultsDir, runs: &[RunRecord]) -> Result<Curves> {
    let mut out = Curves::new();
    for run in runs {
        let path = dir
            .root()
            .join("curves")
            .join(format!("{}.parquet", run.run_id));
        if !path.is_file() {
            continue;
        }
        let points = CurvePoint::from_frame(&path, &read_frame(&path)?)?;
        out.insert(run.run_id.clone(), Curve::new(points));
    }
    Ok(out)
}

/// The x (epoch) of a run's deployed point: the stored deployed point's, else the epoch that
/// ended at the run's last step, else the last epoch point's, else the run's epoch count.
fn deployed_epoch(run: &RunRecord, curve: Option<&Curve>) -> i64 {
    let Some(curve) = curve else {
        return run.epochs;
    };
    if let Some(point) = &curve.deployed {
        return point.epoch;
    }
    curve
        .epochs
        .iter()
        .rev()
        .find(|p| p.step == run.steps)
        .or(curve.epochs.last())
        .map_or(run.epochs, |p| p.epoch)
}

/// The line of one table row (`row` is its index in the figure's legend): per epoch, the
/// `split` score (%) of every completed run of the row; then its last point, the deployed
/// model's score at the run's last step, taken from the run row (the table's number) whether
/// or not the curve file stored a deployed point; for validation, the stored deployed point's
/// where the run row has none.
pub fn row_series(row: usize, runs: &[&RunRecord], curves: &Curves, split: Split) -> Series {
    let mut points: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    let mut last_x: Option<i64> = None;
    let mut last: Vec<f64> = Vec::new();
    for run in runs.iter().filter(|r| r.status == "completed") {
        let curve = curves.get(&run.run_id);
        for point in curve.map_or(&[][..], |c| &c.epochs[..]) {
            let value = split.of_point(point);
            if value.is_finite() {
                points.entry(point.epoch).or_default().push(100.0 * value);
            }
        }
        let deployed = split.of_run(run).filter(|v| v.is_finite()).or_else(|| {
            let point = curve?.deployed.as_ref()?;
            Some(split.of_point(point)).filter(|v| v.is_finite())
        });
        if let Some(value) = deployed {
            last.push(100.0 * value);
            let x = deployed_epoch(run, curve);
            last_x = Some(last_x.map_or(x, |l| l.max(x)));
        }
    }
    Series {
        row,
        points: points
            .into_iter()
            .map(|(x, values)| (x as f64, values))
            .collect(),
        last: last_x.map(|x| (x as f64, last)),
    }
}

/// A table row's legend label: the table's method label (`table::groups`) with the row's
/// mixing and k columns, as `table::full_label` names rows (e.g.
/// `mk (identical) [dirichlet(1), k = 4]`); methods that do not depend on k show no k, as the
/// table shows none.
pub fn row_label(label: &str, run: &RunRecord) -> String {
    let uses_k = crate::methods::info(&run.method).is_none_or(|i| i.uses_k);
    if uses_k {
        full_label(label, run)
    } else {
        match &run.mixing {
            Some(mixing) => format!("{label} [{mixing}]"),
            None => label.to_string(),
        }
    }
}

/// `labels` made unique: a label two rows share (rows of different models) gets the model.
pub fn unique_labels(labels: Vec<String>, runs: &[&RunRecord]) -> Vec<String> {
    let count = |label: &String| labels.iter().filter(|l| *l == label).count();
    let mut out: Vec<String> = labels
        .iter()
        .zip(runs)
        .map(|(label, run)| {
            if count(label) > 1 {
                format!("{label} ({})", run.model)
            } else {
                label.clone()
            }
        })
        .collect();
    // Still equal (same model too): number them, so no two legend entries read the same.
    for i in 0..out.len() {
        let same: Vec<usize> = (0..out.len()).filter(|&j| out[j] == out[i]).collect();
        if same.len() > 1 {
            for (n, &j) in same.iter().enumerate() {
                out[j] = format!("{} #{}", out[j], n + 1);
            }
        }
    }
    out
}
