//! Figures rendered from stored parquet alone (plotters; PNG and SVG; text drawn with the
//! embedded DejaVu Sans, so no system font is needed). Only the runs the tables report are
//! drawn (`role` `final`, those of the experiment's current plan: `report::reported`; tuning
//! runs never are).
//!
//! For every experiment with stored runs of the profile, per dataset:
//! - `<experiment>-<profile>-<dataset>-curves`: test and train score over training (and the
//!   validation score where runs held a validation slice out), one line per table row (mean
//!   over seeds, ±1 std band where a panel has at most six lines), and a panel of the deployed
//!   models' test scores ± std (the table's numbers, on a range fitted to them). Every line ends at the deployed model's score, the
//!   table's number: after collapse and any BatchNorm re-estimation.
//! - where a proposed method ran at several k *and* ablation rows ran beside it (Table 5), one
//!   figure per question: `-curves` holds the k sweep, and `-mixing-curves`, `-init-curves`
//!   (and `-variants-curves`) the rows that differ from the sweep's row at their k in the
//!   mixing, the initialisation (or otherwise), with that row;
//! - `<experiment>-<profile>-<dataset>-<figure>`: for every extra figure methods name in their
//!   registry facts (e.g. `adversarial`: `adv_only`, `adv_mj` and `mk`), when two or more of
//!   them ran; `generalisation` (`baseline_long`, `mk`, `adv_mj`, `distilled_ensemble`: the
//!   analogue of the paper's figure 4.2) adds a panel of the generalisation gap, train minus
//!   test score, over training;
//! - `<experiment>-<profile>-<dataset>-accuracy-vs-k` and `-overhead-vs-k`: when a proposed
//!   method ran at several k (the Table 5 sweep): test score, and step time over the
//!   baseline's, against k.
//!
//! The baseline is drawn in every comparison figure (a thick grey line under the others, so
//! it shows where a row coincides with it). Legend labels are the table's row labels (method
//! label, mixing and k, as `table::full_label` names rows), below the panels.
//!
//! Methods are found by their registered role and facts, never by name.

mod render;
mod series;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use render::{Entry, Figure, Kind, Panel, Reference, Series, XAxis};
use series::{Curves, Split, read_curves, row_label, row_series, unique_labels};

use super::reported;
use super::table::groups;
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::methods::{self, Role};
use crate::results::{ReferenceRecord, ResultsDir, RunRecord};

/// The extra figure whose curves add the generalisation gap (the paper's figure 4.2: "the
/// generalization gap ... is better ... throughout training").
const GENERALISATION: &str = "generalisation";

/// Renders every figure of the named experiments (all experiment files when empty) into
/// `plots_dir`; returns the list of files written.
pub fn run(
    results_dir: &Path,
    experiments_dir: &Path,
    plots_dir: &Path,
    names: &[String],
    profile: &str,
) -> Result<String> {
    let names: Vec<String> = if names.is_empty() {
        crate::experiment::list(experiments_dir)
    } else {
        names.to_vec()
    };
    let mut written = Vec::new();
    for name in &names {
        let dir = ResultsDir::new(results_dir, name, profile);
        let experiment = if dir.root().join("runs").is_dir() {
            reported::experiment_for(name, experiments_dir, profile)?
        } else {
            None
        };
        for figure in experiment_figures(&dir, name, profile, experiment.as_ref())? {
            written.extend(render::save(plots_dir, &figure)?);
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

/// The figures of the runs one experiment's tables report (tuning runs left out).
fn experiment_figures(
    dir: &ResultsDir,
    name: &str,
    profile: &str,
    experiment: Option<&Experiment>,
) -> Result<Vec<Figure>> {
    let runs: Vec<RunRecord> = reported::reported_runs(&dir.runs()?, experiment)
        .into_iter()
        .filter(|r| r.role == "final")
        .collect();
    let curves = read_curves(dir, &runs)?;
    Ok(figures(name, profile, &runs, &curves, &dir.references()?))
}

fn is_baseline(method: &str) -> bool {
    methods::role_of(method) == Some(Role::Baseline)
}

fn completed(runs: &[&RunRecord]) -> bool {
    runs.iter().any(|r| r.status == "completed")
}

/// A table row: its label and runs (`table::groups`).
type Row<'a> = (String, Vec<&'a RunRecord>);

/// One question a figure answers: its file-name suffix, what its title says, and the rows it
/// draws (indices into the dataset's rows, in table order).
#[derive(Debug, Clone, PartialEq)]
struct Question {
    suffix: String,
    what: String,
    rows: Vec<usize>,
}

/// The rows of the k sweep: the proposed method's rows with one set of options that ran at
/// three or more k (the first such set in table order).
fn sweep_rows(rows: &[Row]) -> Option<Vec<usize>> {
    let mut by_options: Vec<((&str, &str), Vec<usize>)> = Vec::new();
    for (i, (_, runs)) in rows.iter().enumerate() {
        let first = runs[0];
        if methods::role_of(&first.method) != Some(Role::Proposed) || !completed(runs) {
            continue;
        }
        let key = (first.method.as_str(), first.options.as_str());
        match by_options.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => by_options.push((key, vec![i])),
        }
    }
    by_options
        .into_iter()
        .map(|(_, members)| members)
        .find(|members| {
            let mut ks: Vec<i64> = members.iter().map(|&i| rows[i].1[0].k).collect();
            ks.sort();
            ks.dedup();
            ks.len() > 2
        })
}

/// The questions the rows of one dataset answer, one figure each (see the module docs).
fn questions(rows: &[Row]) -> Vec<Question> {
    let baseline: Vec<usize> = (0..rows.len())
        .filter(|&i| is_baseline(&rows[i].1[0].method))
        .collect();
    // The baseline first, then the members in the order given.
    let with_baseline = |members: &[usize]| -> Vec<usize> {
        let mut out: Vec<usize> = baseline.clone();
        for &i in members {
            if !out.contains(&i) {
                out.push(i);
            }
        }
        out
    };
    let mut out = Vec::new();
    let sweep = sweep_rows(rows);
    let others: Vec<usize> = (0..rows.len())
        .filter(|i| !baseline.contains(i) && !sweep.as_ref().is_some_and(|s| s.contains(i)))
        .collect();
    match sweep {
        Some(sweep) if !others.is_empty() => {
            out.push(Question {
                suffix: "curves".into(),
                what: "score over training for each k".into(),
                rows: with_baseline(&sweep),
            });
            // Each other row against the sweep's row at its k: which table column differs.
            let mut classes: BTreeMap<&str, (Vec<usize>, Vec<i64>)> = BTreeMap::new();
            for &i in &others {
                let run = rows[i].1[0];
                let reference = sweep.iter().copied().find(|&s| rows[s].1[0].k == run.k);
                let class = match reference.map(|s| rows[s].1[0]) {
                    Some(r) if r.mixing != run.mixing && r.init == run.init => "mixing",
                    Some(r) if r.mixing == run.mixing && r.init != run.init => "init",
                    _ => "variants",
                };
                let (members, ks) = classes.entry(class).or_default();
                members.push(i);
                ks.push(run.k);
            }
            for class in ["mixing", "init", "variants"] {
                let Some((members, mut ks)) = classes.remove(class) else {
                    continue;
                };
                // The sweep's rows at the members' k first: what the members differ from.
                let references = sweep
                    .iter()
                    .copied()
                    .filter(|&s| ks.contains(&rows[s].1[0].k));
                let members: Vec<usize> = references.chain(members).collect();
                ks.sort();
                ks.dedup();
                let ks: Vec<String> = ks.iter().map(i64::to_string).collect();
                let what = match class {
                    "mixing" => "mixing distributions",
                    "init" => "initialisation of the copies",
                    _ => "variants",
                };
                out.push(Question {
                    suffix: format!("{class}-curves"),
                    what: format!("{what} at k = {}", ks.join(", ")),
                    rows: with_baseline(&members),
                });
            }
        }
        _ => out.push(Question {
            suffix: "curves".into(),
            what: "score over training".into(),
            rows: with_baseline(&(0..rows.len()).collect::<Vec<_>>()),
        }),
    }
    // The extra figures methods ask for, with the baseline, where two or more of them ran.
    let mut extra: Vec<&str> = rows
        .iter()
        .flat_map(|(_, runs)| methods::info(&runs[0].method).map_or(&[][..], |i| i.figures))
        .copied()
        .collect();
    extra.sort();
    extra.dedup();
    for figure in extra {
        let members: Vec<usize> = (0..rows.len())
            .filter(|&i| {
                completed(&rows[i].1)
                    && methods::info(&rows[i].1[0].method)
                        .is_some_and(|info| info.figures.contains(&figure))
            })
            .collect();
        let mut names: Vec<&str> = members
            .iter()
            .map(|&i| rows[i].1[0].method.as_str())
            .collect();
        names.sort();
        names.dedup();
        if names.len() < 2 {
            continue;
        }
        out.push(Question {
            suffix: figure.to_string(),
            what: format!("{} against the baseline", names.join(", ")),
            rows: with_baseline(&members),
        });
    }
    out
}

/// Every figure of the final runs `runs` of experiment `name` (see the module docs).
fn figures(
    name: &str,
    profile: &str,
    runs: &[RunRecord],
    curves: &Curves,
    references: &[ReferenceRecord],
) -> Vec<Figure> {
    let mut datasets: Vec<&str> = runs.iter().map(|r| r.dataset.as_str()).collect();
    datasets.sort();
    datasets.dedup();
    let mut out = Vec::new();
    for dataset in datasets {
        let in_dataset: Vec<RunRecord> = runs
            .iter()
            .filter(|r| r.dataset == dataset)
            .cloned()
            .collect();
        let rows = groups(&in_dataset);
        if !rows.iter().any(|(_, runs)| completed(runs)) {
            continue;
        }
        let firsts: Vec<&RunRecord> = rows.iter().map(|(_, runs)| runs[0]).collect();
        let labels = unique_labels(
            rows.iter()
                .map(|(label, runs)| row_label(label, runs[0]))
                .collect(),
            &firsts,
        );
        let model = &in_dataset[0].model;
        let metric = &in_dataset[0].metric;
        let stem = format!("{name}-{profile}-{dataset}");
        let title = |what: &str| format!("{name}: {what}, {dataset}, {model} ({profile} profile)");
        // The task's trivial score, drawn across the test panels (GLUE).
        let task = Task {
            metric,
            reference: references
                .iter()
                .find(|r| r.dataset == dataset && r.metric == *metric)
                .map(|r| Reference {
                    label: "trivial (majority class)".into(),
                    value: 100.0 * r.test_score,
                }),
        };
        for question in questions(&rows) {
            let figure = curves_figure(
                format!("{stem}-{}", question.suffix),
                title(&question.what),
                &question,
                &rows,
                &labels,
                curves,
                &task,
            );
            if !figure.drawn_labels().is_empty() {
                out.push(figure);
            }
        }
        out.extend(k_sweep(&stem, &title, &rows, &labels, metric));
    }
    out
}

/// What a dataset's figures plot: its task's metric, and its trivial score if one is stored.
struct Task<'a> {
    metric: &'a str,
    reference: Option<Reference>,
}

/// The curves figure of the question's rows (indices into `rows`): test, train (and
/// validation) score over training, the generalisation gap in the `generalisation` figure,
/// and the deployed test scores.
fn curves_figure(
    name: String,
    title: String,
    question: &Question,
    rows: &[Row],
    labels: &[String],
    curves: &Curves,
    task: &Task,
) -> Figure {
    let members = &question.rows[..];
    let gap = question.suffix == GENERALISATION;
    let (metric, reference) = (task.metric, task.reference.as_ref());
    let entries: Vec<Entry> = members
        .iter()
        .map(|&i| Entry {
            label: labels[i].clone(),
            kind: if is_baseline(&rows[i].1[0].method) {
                Kind::Baseline
            } else {
                Kind::Row
            },
        })
        .collect();
    let lines = |split: Split| -> Vec<Series> {
        members
            .iter()
            .enumerate()
            .map(|(entry, &i)| row_series(entry, &rows[i].1, curves, split))
            .collect()
    };
    let mut panels = Vec::new();
    for split in [Split::Test, Split::Train, Split::Validation] {
        let series = lines(split);
        // Validation only where some run held a validation slice out.
        if split == Split::Validation && series.iter().all(|s| s.last_mean().is_none()) {
            continue;
        }
        panels.push(Panel::Lines {
            title: format!("{} {metric} over training", split.name()),
            y_label: format!("{} {metric} (%)", split.name()),
            series,
            reference: reference.filter(|_| split == Split::Test).cloned(),
        });
    }
    if gap {
        panels.push(Panel::Lines {
            title: format!("generalisation gap over training (train - test {metric})"),
            y_label: format!("train - test {metric} (points)"),
            series: lines(Split::Gap),
            reference: None,
        });
    }
    panels.push(Panel::Dots {
        reference: reference.cloned(),
        title: format!("deployed model: test {metric}"),
        y_label: format!("test {metric} (%), mean ± std over seeds"),
        dots: members
            .iter()
            .enumerate()
            .map(|(entry, &i)| {
                let values = rows[i]
                    .1
                    .iter()
                    .filter(|r| r.status == "completed")
                    .map(|r| 100.0 * r.test_score)
                    .collect();
                (entry, values)
            })
            .collect(),
    });
    let notes = members
        .iter()
        .filter(|&&i| !completed(&rows[i].1))
        .map(|&i| {
            format!(
                "not drawn: {} (no completed run: {} of {} seeds diverged)",
                labels[i],
                rows[i].1.iter().filter(|r| r.status == "diverged").count(),
                rows[i].1.len()
            )
        })
        .collect();
    Figure {
        name,
        title,
        x_label: "epoch".into(),
        x_axis: XAxis::Linear,
        entries,
        panels,
        notes,
        deployed_points: true,
    }
}

/// Accuracy and step-time overhead against k, for the k sweep's rows (see [`sweep_rows`]).
fn k_sweep(
    stem: &str,
    title: &dyn Fn(&str) -> String,
    rows: &[Row],
    labels: &[String],
    metric: &str,
) -> Vec<Figure> {
    let Some(sweep) = sweep_rows(rows) else {
        return Vec::new();
    };
    let done = |runs: &[&RunRecord]| -> Vec<RunRecord> {
        runs.iter()
            .filter(|r| r.status == "completed")
            .map(|r| (*r).clone())
            .collect()
    };
    let baseline: Option<(String, Vec<RunRecord>)> = (0..rows.len())
        .find(|&i| is_baseline(&rows[i].1[0].method) && completed(&rows[i].1))
        .map(|i| (labels[i].clone(), done(&rows[i].1)));
    let first = rows[sweep[0]].1[0];
    // The sweep's label: its table label and mixing, without k (the x axis).
    let label = match &first.mixing {
        Some(mixing) => format!("{} [{mixing}]", rows[sweep[0]].0),
        None => rows[sweep[0]].0.clone(),
    };
    let x = |k: i64| (k as f64).log2();
    let mut ks: Vec<i64> = sweep.iter().map(|&i| rows[i].1[0].k).collect();
    ks.sort();
    let mut accuracy: Vec<(f64, Vec<f64>)> = Vec::new();
    let mut overhead: Vec<(f64, Vec<f64>)> = Vec::new();
    for &i in &sweep {
        let runs = done(&rows[i].1);
        let k = rows[i].1[0].k;
        accuracy.push((x(k), runs.iter().map(|r| 100.0 * r.test_score).collect()));
        if let Some((_, base)) = &baseline {
            let ratios: Vec<f64> = runs
                .iter()
                .filter_map(|r| {
                    let b = base.iter().find(|b| b.seed == r.seed)?;
                    Some(r.step_ms / b.step_ms)
                })
                .collect();
            if !ratios.is_empty() {
                overhead.push((x(k), ratios));
            }
        }
    }
    accuracy.sort_by(|a, b| a.0.total_cmp(&b.0));
    overhead.sort_by(|a, b| a.0.total_cmp(&b.0));
    let level = |values: Vec<f64>| -> Vec<(f64, Vec<f64>)> {
        ks.iter().map(|&k| (x(k), values.clone())).collect()
    };
    let line = |row: usize, points: Vec<(f64, Vec<f64>)>| Series {
        row,
        points,
        last: None,
    };
    let figure = |suffix: &str, what: &str, y_label: String, entries, series| Figure {
        name: format!("{stem}-{suffix}"),
        title: title(what),
        x_label: "k (copies per kernel, log scale)".into(),
        x_axis: XAxis::Log2,
        entries,
        panels: vec![Panel::Lines {
            title: String::new(),
            y_label,
            series,
            reference: None,
        }],
        notes: Vec::new(),
        deployed_points: false,
    };
    let mut entries = vec![Entry {
        label: label.clone(),
        kind: Kind::Row,
    }];
    let mut series = vec![line(0, accuracy)];
    if let Some((base_label, base)) = &baseline {
        entries.insert(
            0,
            Entry {
                label: base_label.clone(),
                kind: Kind::Baseline,
            },
        );
        series[0].row = 1;
        series.insert(
            0,
            line(
                0,
                level(base.iter().map(|r| 100.0 * r.test_score).collect()),
            ),
        );
    }
    let mut out = vec![figure(
        "accuracy-vs-k",
        "deployed test score against k",
        format!("test {metric} (%)"),
        entries,
        series,
    )];
    if !overhead.is_empty() {
        let limit = crate::report::claims::OVERHEAD_LIMIT;
        let entries = vec![
            Entry {
                label: "baseline (ratio 1)".into(),
                kind: Kind::Baseline,
            },
            Entry {
                label: format!("{label}: step time / baseline's (same seed)"),
                kind: Kind::Row,
            },
            Entry {
                label: format!("claimed limit {limit}"),
                kind: Kind::Reference,
            },
        ];
        let series = vec![
            line(0, level(vec![1.0])),
            line(1, overhead),
            line(2, level(vec![limit])),
        ];
        out.push(figure(
            "overhead-vs-k",
            "step-time overhead against k",
            "step time ratio".into(),
            entries,
            series,
        ));
    }
    out
}

/// The MK training-step overhead against k, one line per benchmarked model, backend and
/// machine, from the rows `reproduce bench` stored in `bench_dir`: `overhead-vs-k.{png,svg}`.
pub fn overhead_figure(bench_dir: &Path, plots_dir: &Path) -> Result<Vec<PathBuf>> {
    let rows = crate::results::bench::stored_ratios(bench_dir)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let x = |k: i64| (k as f64).log2();
    let mut entries = vec![Entry {
        label: "baseline (ratio 1)".into(),
        kind: Kind::Baseline,
    }];
    let mut lines: Vec<BTreeMap<i64, Vec<f64>>> = vec![BTreeMap::new()];
    for (label, k, ratio) in rows {
        let i = match entries.iter().position(|e| e.label == label) {
            Some(i) => i,
            None => {
                entries.push(Entry {
                    label,
                    kind: Kind::Row,
                });
                lines.push(BTreeMap::new());
                entries.len() - 1
            }
        };
        lines[i].entry(k).or_default().push(ratio);
        lines[0].insert(k, vec![1.0]);
    }
    let ks: Vec<i64> = lines[0].keys().copied().collect();
    let limit = crate::report::claims::OVERHEAD_LIMIT;
    entries.push(Entry {
        label: format!("claimed limit {limit}"),
        kind: Kind::Reference,
    });
    lines.push(ks.iter().map(|&k| (k, vec![limit])).collect());
    let series = lines
        .into_iter()
        .enumerate()
        .map(|(row, points)| Series {
            row,
            points: points.into_iter().map(|(k, v)| (x(k), v)).collect(),
            last: None,
        })
        .collect();
    render::save(
        plots_dir,
        &Figure {
            name: "overhead-vs-k".into(),
            title: "MK training step / baseline training step (reproduce bench)".into(),
            x_label: "k (copies per kernel, log scale)".into(),
            x_axis: XAxis::Log2,
            entries,
            panels: vec![Panel::Lines {
                title: String::new(),
                y_label: "step time ratio".into(),
                series,
                reference: None,
            }],
            notes: Vec::new(),
            deployed_points: false,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::series::Curve;
    use super::*;
    use crate::results::CurvePoint;
    use crate::results::store::tests::record;

    fn point(epoch: i64, step: i64, test: f64, kind: &str) -> CurvePoint {
        CurvePoint {
            epoch,
            step,
            lr: 0.1,
            train_acc: test + 0.01,
            train_loss: 0.3,
            test_acc: test,
            test_loss: 0.35,
            train_score: test + 0.01,
            test_score: test,
            validation_score: f64::NAN,
            train_seconds: 1.0,
            kind: kind.into(),
        }
    }

    /// A run of `method` (k = 4, 3 epochs of 10 steps) whose deployed test score is `test`.
    fn run(method: &str, seed: i64, test: f64) -> RunRecord {
        RunRecord {
            run_id: format!("mnist-{method}-s{seed}-{test}"),
            epochs: 3,
            steps: 30,
            test_score: test,
            test_acc: test,
            train_score: test + 0.01,
            k: if method == "baseline" { 1 } else { 4 },
            ..record(method, seed, test)
        }
    }

    fn epochs() -> Vec<CurvePoint> {
        vec![
            point(1, 10, 0.20, "epoch"),
            point(2, 20, 0.25, "epoch"),
            point(3, 30, 0.296, "epoch"),
        ]
    }

    #[test]
    fn last_point_is_the_run_rows_test_score_without_a_stored_deployed_point() {
        // An old-style curve: epoch points only, the last one before BatchNorm re-estimation.
        let run = run("mk", 0, 0.321);
        let curves = Curves::from([(run.run_id.clone(), Curve::new(epochs()))]);
        let line = row_series(0, &[&run], &curves, Split::Test);
        assert_eq!(line.points.len(), 3);
        assert_eq!(line.points[2], (3.0, vec![100.0 * 0.296]));
        let (x, values) = line.last.clone().unwrap();
        assert_eq!((x, values), (3.0, vec![100.0 * 0.321]));
        assert_eq!(line.last_mean(), Some(100.0 * 0.321));
        let train = row_series(0, &[&run], &curves, Split::Train);
        assert_eq!(train.last.unwrap().1, vec![100.0 * run.train_score]);
    }

    #[test]
    fn last_point_is_the_run_rows_test_score_with_a_stored_deployed_point() {
        let runs = [run("mk", 0, 0.321), run("mk", 1, 0.335)];
        let curves: Curves = runs
            .iter()
            .map(|r| {
                let mut points = epochs();
                points.push(point(3, 30, r.test_score, "deployed"));
                (r.run_id.clone(), Curve::new(points))
            })
            .collect();
        let refs: Vec<&RunRecord> = runs.iter().collect();
        let line = row_series(0, &refs, &curves, Split::Test);
        assert_eq!(
            line.points.len(),
            3,
            "the deployed point is not an epoch point"
        );
        assert!(line.points.iter().all(|(_, v)| v.len() == 2));
        let mean = 100.0 * (0.321 + 0.335) / 2.0;
        assert!((line.last_mean().unwrap() - mean).abs() < 1e-12);
        assert_eq!(line.last.unwrap().0, 3.0);
    }

    #[test]
    fn curve_files_of_both_layouts_read_back_with_their_deployed_point() {
        use crate::results::schema::{Table, read_frame, write_frame};
        let tmp = tempfile::tempdir().unwrap();
        let dir = ResultsDir::new(tmp.path(), "t", "smoke");
        let new = run("mk", 0, 0.33);
        let mut points = epochs();
        points.push(point(3, 30, 0.33, "deployed"));
        dir.store(&new, &points).unwrap();
        // A file written before the `kind` and `validation_score` columns existed.
        let old = run("mk", 1, 0.34);
        dir.store(&old, &epochs()).unwrap();
        let path = dir
            .root()
            .join("curves")
            .join(format!("{}.parquet", old.run_id));
        let frame = read_frame(&path).unwrap();
        let mut frame = frame
            .drop("kind")
            .unwrap()
            .drop("validation_score")
            .unwrap();
        write_frame(&path, &mut frame).unwrap();
        assert!(CurvePoint::from_frame(&path, &frame).is_ok());

        let curves = read_curves(&dir, &[new.clone(), old.clone()]).unwrap();
        assert_eq!(curves[&new.run_id].epochs.len(), 3);
        assert_eq!(
            curves[&new.run_id].deployed.as_ref().unwrap().test_score,
            0.33
        );
        assert_eq!(curves[&old.run_id].epochs.len(), 3);
        assert!(curves[&old.run_id].deployed.is_none());
        let line = row_series(0, &[&new, &old], &curves, Split::Test);
        assert!((line.last_mean().unwrap() - 33.5).abs() < 1e-12);
        // No validation slice: no validation line.
        let validation = row_series(0, &[&new, &old], &curves, Split::Validation);
        assert!(validation.points.is_empty() && validation.last.is_none());
    }

    #[test]
    fn validation_scores_are_drawn_where_they_exist() {
        let mut run = run("mk", 0, 0.33);
        run.validation_score = Some(0.31);
        let points: Vec<CurvePoint> = epochs()
            .into_iter()
            .map(|p| CurvePoint {
                validation_score: p.test_score - 0.02,
                ..p
            })
            .collect();
        let curves = Curves::from([(run.run_id.clone(), Curve::new(points))]);
        let figures = figures("t", "smoke", std::slice::from_ref(&run), &curves, &[]);
        let Panel::Lines { title, series, .. } = &figures[0].panels[2] else {
            panic!("a validation panel");
        };
        assert!(title.starts_with("validation"), "{title}");
        assert_eq!(series[0].last_mean(), Some(31.0));
    }

    #[test]
    fn tuning_runs_are_not_drawn() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ResultsDir::new(tmp.path(), "t", "smoke");
        for r in [run("baseline", 0, 0.30), run("mk", 0, 0.32)] {
            dir.store(&r, &epochs()).unwrap();
        }
        let tune = RunRecord {
            role: "tune".into(),
            run_id: "mnist-mk-tune".into(),
            lr: Some(0.5),
            ..run("mk", 0, 0.77)
        };
        dir.store(&tune, &[point(1, 10, 0.77, "epoch")]).unwrap();
        let figures = experiment_figures(&dir, "t", "smoke", None).unwrap();
        assert!(!figures.is_empty());
        for figure in &figures {
            for panel in &figure.panels {
                let values: Vec<f64> = match panel {
                    Panel::Lines { series, .. } => series
                        .iter()
                        .flat_map(|s| s.points.iter().chain(&s.last).flat_map(|p| p.1.clone()))
                        .collect(),
                    Panel::Dots { dots, .. } => dots.iter().flat_map(|d| d.1.clone()).collect(),
                };
                assert!(
                    values.iter().all(|&v| v < 70.0),
                    "{}: a tuning run's score is drawn: {values:?}",
                    figure.name
                );
            }
            assert_eq!(figure.drawn_labels().len(), 2, "{}", figure.name);
        }
    }

    /// The Table 5 layout: a k sweep, mixing and init ablations at k = 4, one diverged row.
    fn table5() -> Vec<RunRecord> {
        let mk = |k: i64, mixing: &str, init: &str, seed: i64, test: f64| RunRecord {
            run_id: format!("mnist-mk-{k}-{mixing}-{init}-{seed}"),
            k,
            mixing: Some(mixing.into()),
            init: Some(init.into()),
            options: format!(
                "{{\"init\":\"{init}\",\"lr_compensation\":\"auto\",\"mixing\":\"{mixing}\"}}"
            ),
            ..run("mk", seed, test)
        };
        let mut runs = Vec::new();
        for seed in 0..2 {
            runs.push(run("baseline", seed, 0.97));
            for k in [1, 2, 4, 8] {
                runs.push(mk(k, "dirichlet(1)", "identical", seed, 0.96));
            }
            runs.push(mk(4, "uniform", "identical", seed, 0.97));
            runs.push(mk(4, "majority(3)", "identical", seed, 0.965));
            runs.push(RunRecord {
                status: "diverged".into(),
                ..mk(4, "one_hot", "identical", seed, 0.098)
            });
            runs.push(mk(4, "dirichlet(1)", "independent", seed, 0.963));
        }
        runs
    }

    fn curves_of(runs: &[RunRecord]) -> Curves {
        runs.iter()
            .filter(|r| r.status == "completed")
            .map(|r| (r.run_id.clone(), Curve::new(epochs())))
            .collect()
    }

    #[test]
    fn legend_labels_are_the_table_row_labels_and_unique_per_figure() {
        let runs = table5();
        let figures = figures("table5", "smoke", &runs, &curves_of(&runs), &[]);
        let names: Vec<&str> = figures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "table5-smoke-mnist-curves",
                "table5-smoke-mnist-mixing-curves",
                "table5-smoke-mnist-init-curves",
                "table5-smoke-mnist-accuracy-vs-k",
                "table5-smoke-mnist-overhead-vs-k",
            ]
        );
        for figure in &figures {
            let labels = figure.drawn_labels();
            let mut unique = labels.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), labels.len(), "{}: {labels:?}", figure.name);
            assert!(labels.contains(&"baseline") || labels.contains(&"baseline (ratio 1)"));
        }
        assert_eq!(
            figures[1].drawn_labels(),
            [
                "baseline",
                "mk (identical) [dirichlet(1), k = 4]",
                "mk (identical) [uniform, k = 4]",
                "mk (identical) [majority(3), k = 4]",
            ]
        );
        assert_eq!(
            figures[1].notes,
            [
                "not drawn: mk (identical) [one_hot, k = 4] (no completed run: 2 of 2 seeds diverged)"
            ]
        );
        assert_eq!(
            figures[2].drawn_labels(),
            [
                "baseline",
                "mk (identical) [dirichlet(1), k = 4]",
                "mk (independent) [dirichlet(1), k = 4]",
            ]
        );
        assert_eq!(figures[0].drawn_labels().len(), 5);
        // The table's rows, labelled as the table labels them.
        let rows = groups(&runs);
        let table = crate::report::table::markdown("t", &runs, runs.len());
        for (label, members) in &rows {
            let first = members[0];
            let mixing = first.mixing.as_deref().unwrap_or("—");
            let k = if first.method == "baseline" {
                "—".to_string()
            } else {
                first.k.to_string()
            };
            assert!(
                table.contains(&format!("| {label} | {k} | {mixing} |")),
                "{label} {k} {mixing}: {table}"
            );
        }
    }

    #[test]
    fn every_comparison_figure_draws_the_baseline() {
        let runs: Vec<RunRecord> = (0..2)
            .flat_map(|seed| {
                [
                    run("baseline", seed, 0.30),
                    RunRecord {
                        mixing: Some("dirichlet(1) + ascent(1)".into()),
                        ..run("adv_mj", seed, 0.29)
                    },
                    RunRecord {
                        mixing: Some("uniform + ascent(1)".into()),
                        ..run("adv_only", seed, 0.30)
                    },
                    run("mk", seed, 0.28),
                ]
            })
            .collect();
        let figures = figures("table2", "smoke", &runs, &curves_of(&runs), &[]);
        let names: Vec<&str> = figures.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "table2-smoke-mnist-curves",
                "table2-smoke-mnist-adversarial",
                "table2-smoke-mnist-generalisation"
            ]
        );
        // The figure 4.2 analogue (adv_mj and mk here, with the baseline) adds the gap panel:
        // train minus test score over training, ending at the deployed models' gap.
        let general = &figures[2];
        assert!(
            figures[..2]
                .iter()
                .all(|f| f.panels.iter().all(|p| !p.title().contains("gap")))
        );
        let gap = general.panels.iter().find(|p| p.title().contains("gap"));
        let Some(Panel::Lines { title, series, .. }) = gap else {
            panic!(
                "no gap panel: {:?}",
                general.panels.iter().map(Panel::title).collect::<Vec<_>>()
            );
        };
        assert!(title.starts_with("generalisation gap"), "{title}");
        assert_eq!(series.len(), 3, "baseline, adv_mj and mk");
        for line in series {
            for (_, values) in &line.points {
                assert!(values.iter().all(|v| (v - 1.0).abs() < 1e-9), "{values:?}");
            }
            let (_, last) = line.last.as_ref().unwrap();
            assert!(last.iter().all(|v| (v - 1.0).abs() < 1e-9), "{last:?}");
        }
        for figure in &figures {
            assert!(
                figure.drawn_labels().contains(&"baseline"),
                "{}",
                figure.name
            );
            assert!(
                figure
                    .entries
                    .iter()
                    .any(|e| e.label == "baseline" && e.kind == Kind::Baseline)
            );
        }
    }

    #[test]
    fn dashes_and_clipped_bands_are_exact() {
        let line = [(0.0, 0.0), (30.0, 0.0)];
        assert_eq!(
            render::dash_runs(&line, &[10.0, 5.0]),
            [
                vec![(0.0, 0.0), (10.0, 0.0)],
                vec![(15.0, 0.0), (25.0, 0.0)]
            ]
        );
        assert_eq!(render::dash_runs(&line, &[]), [line.to_vec()]);
        // A bend inside a dash keeps the corner.
        let bent = [(0.0, 0.0), (4.0, 0.0), (4.0, 4.0)];
        assert_eq!(
            render::dash_runs(&bent, &[6.0, 100.0]),
            [vec![(0.0, 0.0), (4.0, 0.0), (4.0, 2.0)]]
        );
        let band = render::clip_band(
            &[(0.0, 5.0), (2.0, 15.0)],
            &[(0.0, 0.0), (2.0, 10.0)],
            0.0,
            10.0,
        );
        assert_eq!(
            band,
            [
                (0.0, 5.0),
                (1.0, 10.0),
                (2.0, 10.0),
                (2.0, 10.0),
                (0.0, 0.0)
            ]
        );
    }

    /// The markdown table line of the row `(label, runs)` of `table`.
    fn table_line<'t>(table: &'t str, label: &str, first: &RunRecord) -> &'t str {
        let k = if methods::info(&first.method).is_some_and(|i| !i.uses_k) {
            "—".to_string()
        } else {
            first.k.to_string()
        };
        let mixing = first.mixing.as_deref().unwrap_or("—");
        let start = format!(
            "| {} | {} | {label} | {k} | {mixing} |",
            first.dataset, first.model
        );
        table
            .lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("no table row {start}:\n{table}"))
    }

    #[test]
    fn the_committed_figures_end_at_the_table_numbers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        let mut checked = 0;
        for name in ["table1", "table2", "table3", "table4", "table5"] {
            let dir = ResultsDir::new(&root, name, "quick");
            if !dir.root().is_dir() {
                continue;
            }
            let runs = dir.runs().unwrap();
            let table = crate::report::table::markdown(name, &runs, runs.len());
            let finals: Vec<RunRecord> = runs.into_iter().filter(|r| r.role == "final").collect();
            for figure in experiment_figures(&dir, name, "quick", None).unwrap() {
                if !figure.deployed_points {
                    continue;
                }
                let dataset = figure.name.rsplit("quick-").next().unwrap();
                let dataset = &dataset[..dataset.find('-').unwrap()];
                let in_dataset: Vec<RunRecord> = finals
                    .iter()
                    .filter(|r| r.dataset == dataset)
                    .cloned()
                    .collect();
                let rows = groups(&in_dataset);
                let Panel::Lines { series, .. } = &figure.panels[0] else {
                    panic!("the test panel comes first");
                };
                for line in series.iter().filter(|s| s.last.is_some()) {
                    let label = &figure.entries[line.row].label;
                    let (table_label, members) = rows
                        .iter()
                        .find(|(l, runs)| row_label(l, runs[0]) == *label)
                        .unwrap_or_else(|| panic!("{}: {label} is no table row", figure.name));
                    let row = table_line(&table, table_label, members[0]);
                    let drawn = format!("{} {:.2}", members[0].metric, line.last_mean().unwrap());
                    assert!(
                        row.contains(&drawn),
                        "{}: the line of {label} ends at {drawn}; the table says {row}",
                        figure.name
                    );
                    checked += 1;
                }
            }
        }
        eprintln!("{checked} committed lines end at their table number");
    }
}
