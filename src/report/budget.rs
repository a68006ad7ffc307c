//! Whether a claim about generalisation is testable at the budget the runs trained with.
//!
//! MK is argued to act as a regulariser, which can only show once the small model fits its
//! training set. A claim about the test score is therefore *not testable at this budget* when
//! the baseline's fit had not saturated when training stopped: its final train accuracy is
//! below the experiment's `claims.saturated_train_acc` and was still rising by at least
//! `claims.rising_points` points over the last `claims.last_fraction` of training (mean over
//! seeds of the evaluations in the stored curves; from the last evaluation at or before that
//! part's start when the recipe evaluates every few epochs). Without a stored curve the rise
//! cannot be measured and a baseline below the threshold counts as not testable
//! (docs/METHODS.md, "Claims and statistics").

use polars::prelude::*;
use std::collections::BTreeMap;

use crate::error::Result;
use crate::experiment::ClaimsConfig;
use crate::results::ResultsDir;

/// One evaluation of a run (after every epoch, or every `eval_every` epochs): the training
/// step it was taken at and the train accuracy (a fraction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitPoint {
    pub epoch: i64,
    pub step: i64,
    pub train_acc: f64,
}

/// How far the baseline's fit had come when training stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// Mean over seeds of the final train accuracy (a fraction).
    pub final_train_acc: f64,
    /// Rise of the mean train accuracy over the last `last_fraction` of training, in points;
    /// `None` when it cannot be measured (no stored curve, or no evaluation that early).
    pub rise_points: Option<f64>,
    /// The part of training the rise spans: from the last evaluation at or before the start
    /// of the last `last_fraction`, so more than it when the recipe evaluates every few
    /// epochs (`eval_every`).
    pub rise_fraction: Option<f64>,
    /// Baseline seeds the figures are a mean over.
    pub seeds: usize,
    /// Whether the figures come from the stored curves (else from the run rows' final train
    /// accuracy alone).
    pub from_curve: bool,
    /// Whether claims about generalisation can be judged.
    pub testable: bool,
    /// The thresholds applied.
    pub config: ClaimsConfig,
}

impl Fit {
    /// One line for the report, e.g. `train accuracy 37.12% at the end, +4.10 points over
    /// the last 20% of training (curves, 3 seeds): not testable at this budget`.
    pub fn describe(&self) -> String {
        let rise = match self.rise_points {
            Some(rise) => format!(
                ", {} points over the last {:.0}% of training",
                // A rise that rounds to zero reads +0.00, whatever its sign.
                format!("{rise:+.2}").replace("-0.00", "+0.00"),
                100.0 * self.rise_fraction.unwrap_or(self.config.last_fraction)
            ),
            None if self.from_curve => ", rise over the end of training not measurable".into(),
            None => String::new(),
        };
        let source = if self.from_curve {
            "curves"
        } else {
            "no curve stored: final train accuracy only"
        };
        let status = if self.testable {
            if self.final_train_acc >= self.config.saturated_train_acc {
                "saturated: testable"
            } else {
                "not saturated but no longer rising: testable"
            }
        } else {
            "not testable at this budget"
        };
        format!(
            "train accuracy {:.2}% at the end{rise} ({source}, {} seeds): {status}",
            100.0 * self.final_train_acc,
            self.seeds
        )
    }
}

/// Judges the baseline's fit from its seeds' evaluation `curves` (any order; only epochs
/// every curve has are used) or, when there are none, from the seeds' final train
/// accuracies `final_accs`. `None` without either.
pub fn fit(curves: &[Vec<FitPoint>], final_accs: &[f64], config: &ClaimsConfig) -> Option<Fit> {
    let curves: Vec<&Vec<FitPoint>> = curves.iter().filter(|c| !c.is_empty()).collect();
    // Mean over seeds per epoch, over the epochs every seed's curve has.
    let mut by_epoch: BTreeMap<i64, (i64, f64, usize)> = BTreeMap::new();
    for curve in &curves {
        for point in curve.iter() {
            let entry = by_epoch.entry(point.epoch).or_insert((point.step, 0.0, 0));
            entry.1 += point.train_acc;
            entry.2 += 1;
        }
    }
    let mean_curve: Vec<(i64, f64)> = by_epoch
        .values()
        .filter(|(_, _, count)| *count == curves.len())
        .map(|&(step, sum, count)| (step, sum / count as f64))
        .filter(|(_, acc)| acc.is_finite())
        .collect();
    let (final_train_acc, rise, seeds, from_curve) = match mean_curve.last() {
        Some(&(last_step, last_acc)) => {
            let start = (1.0 - config.last_fraction) * last_step as f64;
            let reference = mean_curve
                .iter()
                .rev()
                .find(|(step, _)| (*step as f64) <= start && *step < last_step);
            let rise = reference.map(|&(step, acc)| {
                (
                    100.0 * (last_acc - acc),
                    1.0 - step as f64 / last_step as f64,
                )
            });
            (last_acc, rise, curves.len(), true)
        }
        None => {
            let finite: Vec<f64> = final_accs
                .iter()
                .copied()
                .filter(|a| a.is_finite())
                .collect();
            if finite.is_empty() {
                return None;
            }
            let mean = finite.iter().sum::<f64>() / finite.len() as f64;
            (mean, None, finite.len(), false)
        }
    };
    let (rise_points, rise_fraction) = (rise.map(|r| r.0), rise.map(|r| r.1));
    let saturated = final_train_acc >= config.saturated_train_acc;
    // Below the threshold, a fit that cannot be shown to have stopped rising counts as
    // still rising.
    let testable = saturated || rise_points.is_some_and(|rise| rise < config.rising_points);
    Some(Fit {
        final_train_acc,
        rise_points,
        rise_fraction,
        seeds,
        from_curve,
        testable,
        config: config.clone(),
    })
}

/// The evaluation points of the stored curve of run `run_id` (`kind = epoch`; curve files
/// written before the column existed hold epoch points only). `Ok(None)` when no curve is
/// stored or it lacks the columns this needs; an unreadable file is an error.
pub fn stored_curve(dir: &ResultsDir, run_id: &str) -> Result<Option<Vec<FitPoint>>> {
    let path = dir.root().join("curves").join(format!("{run_id}.parquet"));
    if !path.is_file() {
        return Ok(None);
    }
    let frame = crate::results::schema::read_frame(&path)?;
    Ok(points(&frame))
}

fn points(frame: &DataFrame) -> Option<Vec<FitPoint>> {
    let int = |name: &str| -> Option<Vec<Option<i64>>> {
        let column = frame.column(name).ok()?.cast(&DataType::Int64).ok()?;
        Some(column.i64().ok()?.iter().collect())
    };
    let (epochs, steps) = (int("epoch")?, int("step")?);
    let train = frame
        .column("train_acc")
        .ok()?
        .cast(&DataType::Float64)
        .ok()?;
    let train: Vec<Option<f64>> = train.f64().ok()?.iter().collect();
    let kinds: Option<Vec<Option<String>>> = frame.column("kind").ok().and_then(|c| {
        c.str()
            .ok()
            .map(|s| s.iter().map(|v| v.map(String::from)).collect())
    });
    if frame.column("kind").is_ok() && kinds.is_none() {
        // A `kind` column of another type: not a layout this code wrote.
        return None;
    }
    let mut out = Vec::new();
    for i in 0..frame.height() {
        let is_epoch = kinds
            .as_ref()
            .is_none_or(|k| k[i].as_deref().is_none_or(|kind| kind == "epoch"));
        if let (true, Some(epoch), Some(step), Some(train_acc)) =
            (is_epoch, epochs[i], steps[i], train[i])
        {
            out.push(FitPoint {
                epoch,
                step,
                train_acc,
            });
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{CurvePoint, RunRecord};

    fn curve(accs: &[f64], steps_per_epoch: i64) -> Vec<FitPoint> {
        accs.iter()
            .enumerate()
            .map(|(i, &train_acc)| FitPoint {
                epoch: i as i64 + 1,
                step: (i as i64 + 1) * steps_per_epoch,
                train_acc,
            })
            .collect()
    }

    #[test]
    fn a_rising_unsaturated_baseline_is_not_testable() {
        let config = ClaimsConfig::default();
        // 10 epochs; the last 20% of training starts at epoch 8. Seeds' mean at epoch 8:
        // 0.80, at epoch 10: 0.84: +4 points, final 84% < 99%.
        let a = curve(
            &[0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.78, 0.79, 0.81, 0.83],
            100,
        );
        let b = curve(
            &[0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.78, 0.81, 0.83, 0.85],
            100,
        );
        let fit = fit(&[a, b], &[], &config).unwrap();
        assert!((fit.final_train_acc - 0.84).abs() < 1e-12, "{fit:?}");
        assert!((fit.rise_points.unwrap() - 4.0).abs() < 1e-9, "{fit:?}");
        assert!(fit.from_curve && !fit.testable && fit.seeds == 2);
        assert!(fit.describe().contains("not testable at this budget"));
    }

    #[test]
    fn a_plateaued_or_saturated_baseline_is_testable() {
        let config = ClaimsConfig::default();
        // Below the threshold but flat over the last 20%: +0.2 points < 0.5.
        let flat = curve(&[0.5, 0.8, 0.9, 0.93, 0.932], 50);
        let fit_flat = fit(&[flat], &[], &config).unwrap();
        assert!((fit_flat.rise_points.unwrap() - 0.2).abs() < 1e-9);
        assert!(fit_flat.testable, "{fit_flat:?}");
        // Still rising fast but saturated.
        let saturated = curve(&[0.5, 0.8, 0.9, 0.95, 0.995], 50);
        assert!(fit(&[saturated], &[], &config).unwrap().testable);
        // Configurable: a lower threshold makes the rising curve above testable.
        let rising = curve(&[0.5, 0.6, 0.7, 0.8, 0.9], 50);
        assert!(
            !fit(std::slice::from_ref(&rising), &[], &config)
                .unwrap()
                .testable
        );
        let lenient = ClaimsConfig {
            saturated_train_acc: 0.85,
            ..config
        };
        assert!(fit(&[rising], &[], &lenient).unwrap().testable);
    }

    #[test]
    fn with_sparse_evaluations_the_rise_spans_from_the_last_one_before_the_window() {
        let config = ClaimsConfig::default();
        // 40 epochs evaluated every 5 (`eval_every: 5`): the last 20% starts at epoch 32, so
        // the rise runs from epoch 30, the last 25% of training, and says so.
        let points: Vec<FitPoint> = [0.5, 0.7, 0.8, 0.86, 0.9, 0.93, 0.95, 0.96]
            .iter()
            .enumerate()
            .map(|(i, &train_acc)| FitPoint {
                epoch: 5 * (i as i64 + 1),
                step: 50 * (i as i64 + 1),
                train_acc,
            })
            .collect();
        let fit = fit(&[points], &[], &config).unwrap();
        assert!((fit.rise_points.unwrap() - 3.0).abs() < 1e-9, "{fit:?}");
        assert!((fit.rise_fraction.unwrap() - 0.25).abs() < 1e-12, "{fit:?}");
        assert!(
            fit.describe()
                .contains("+3.00 points over the last 25% of training"),
            "{}",
            fit.describe()
        );
    }

    #[test]
    fn without_a_measurable_rise_the_final_accuracy_decides() {
        let config = ClaimsConfig::default();
        // No curve: below the threshold is not testable, at or above it is.
        let low = fit(&[], &[0.95, 0.97], &config).unwrap();
        assert!(!low.testable && !low.from_curve && low.rise_points.is_none());
        assert!((low.final_train_acc - 0.96).abs() < 1e-12);
        assert!(fit(&[], &[0.99, 1.0], &config).unwrap().testable);
        // One epoch: nothing before the last 20% of training to compare with.
        let single = fit(&[curve(&[0.9], 10)], &[], &config).unwrap();
        assert!(single.from_curve && single.rise_points.is_none() && !single.testable);
        assert!(fit(&[], &[], &config).is_none());
    }

    #[test]
    fn stored_curves_are_read_with_their_epoch_points_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ResultsDir::new(tmp.path(), "t", "smoke");
        let point = |epoch: i64, acc: f64, kind: &str| CurvePoint {
            epoch,
            step: 10 * epoch,
            lr: 0.1,
            train_acc: acc,
            train_loss: 0.3,
            test_acc: 0.9,
            test_loss: 0.35,
            train_score: acc,
            test_score: 0.9,
            validation_score: f64::NAN,
            train_seconds: 1.0,
            kind: kind.into(),
        };
        let run: RunRecord = crate::results::store::tests::record("baseline", 0, 0.9);
        dir.store(
            &run,
            &[
                point(1, 0.5, "epoch"),
                point(2, 0.7, "epoch"),
                point(2, 0.1, "deployed"),
            ],
        )
        .unwrap();
        let stored = stored_curve(&dir, &run.run_id).unwrap().unwrap();
        assert_eq!(stored.len(), 2, "{stored:?}");
        assert_eq!(stored[1].step, 20);
        assert!((stored[1].train_acc - 0.7).abs() < 1e-12);
        assert!(stored_curve(&dir, "absent").unwrap().is_none());
    }
}
