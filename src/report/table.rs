//! Markdown tables from stored runs: mean ± std over seeds, with the seed count, and the
//! machines, backends and commits the numbers came from.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::stats::{Verdict, paired};
use crate::experiment::tune::{GridEdge, grid_edge};
use crate::results::{ReferenceRecord, RunRecord};

/// Mean and sample standard deviation (n - 1); the deviation is `None` for one value.
pub fn mean_std(values: &[f64]) -> (f64, Option<f64>) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, None);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, Some(var.sqrt()))
}

fn cell(values: &[f64], scale: f64, decimals: usize) -> String {
    if values.is_empty() {
        return "—".into();
    }
    let scaled: Vec<f64> = values.iter().map(|v| v * scale).collect();
    match mean_std(&scaled) {
        (mean, Some(std)) => format!("{mean:.decimals$} ± {std:.decimals$}"),
        (mean, None) => format!("{mean:.decimals$}"),
    }
}

/// The `key: value` options of `run` that differ between the rows of the same method (e.g. the
/// teacher of two `distilled_ensemble` rows), so that such rows can be told apart. Options
/// already shown in their own columns (mixing, init) are left out.
fn distinguishing_options(run: &RunRecord, runs: &[RunRecord]) -> Vec<String> {
    let parse = |r: &RunRecord| {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&r.options)
            .unwrap_or_default()
    };
    let own = parse(run);
    let siblings: Vec<serde_json::Map<String, serde_json::Value>> = runs
        .iter()
        .filter(|r| r.method == run.method && r.dataset == run.dataset)
        .map(parse)
        .collect();
    own.iter()
        .filter(|(key, _)| !matches!(key.as_str(), "mixing" | "init"))
        .filter(|(key, value)| siblings.iter().any(|other| other.get(*key) != Some(value)))
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => format!("{key}: {text}"),
            other => format!("{key}: {other}"),
        })
        .collect()
}

/// One row of the table: the runs of one (dataset, model, method, options, k).
struct Row<'a> {
    runs: Vec<&'a RunRecord>,
}

impl<'a> Row<'a> {
    fn first(&self) -> &'a RunRecord {
        self.runs[0]
    }

    fn completed(&self) -> Vec<&'a RunRecord> {
        self.runs
            .iter()
            .copied()
            .filter(|r| r.status == "completed")
            .collect()
    }

    fn values(&self, f: fn(&RunRecord) -> f64) -> Vec<f64> {
        self.completed().iter().map(|r| f(r)).collect()
    }

    /// `(seed, test score)` of the completed runs.
    fn scores(&self) -> Vec<(i64, f64)> {
        self.completed()
            .iter()
            .map(|r| (r.seed, r.test_score))
            .collect()
    }

    fn seeds(&self) -> String {
        let ok = self.completed().len();
        let diverged = self.runs.len() - ok;
        if diverged > 0 {
            format!("{ok} ({diverged} diverged)")
        } else {
            ok.to_string()
        }
    }

    fn method_label(&self, all: &[RunRecord]) -> String {
        let first = self.first();
        let mut labels: Vec<String> = first.init.iter().cloned().collect();
        labels.extend(distinguishing_options(first, all));
        if labels.is_empty() {
            first.method.clone()
        } else {
            format!("{} ({})", first.method, labels.join(", "))
        }
    }

    fn k(&self) -> String {
        let first = self.first();
        // Methods that do not depend on k ran once per seed, whatever the k list was.
        if crate::methods::info(&first.method).is_some_and(|i| !i.uses_k) {
            "—".into()
        } else {
            first.k.to_string()
        }
    }
}

/// A row's full name for comparisons: its label, mixing and k, e.g.
/// `mk (identical) [dirichlet(1), k = 4]`.
pub fn full_label(label: &str, run: &RunRecord) -> String {
    match &run.mixing {
        Some(mixing) => format!("{label} [{mixing}, k = {}]", run.k),
        None if run.k > 1 => format!("{label} [k = {}]", run.k),
        None => label.to_string(),
    }
}

/// The rows of a table: a label (method and the options that tell it apart) and the runs.
pub fn groups(runs: &[RunRecord]) -> Vec<(String, Vec<&RunRecord>)> {
    group(runs)
        .into_iter()
        .map(|row| (row.method_label(runs), row.runs))
        .collect()
}

fn group(runs: &[RunRecord]) -> Vec<Row<'_>> {
    let mut rows: Vec<Row> = Vec::new();
    for run in runs {
        match rows.iter_mut().find(|row| same_row(row.first(), run)) {
            Some(row) => row.runs.push(run),
            None => rows.push(Row { runs: vec![run] }),
        }
    }
    rows
}

/// Whether two runs belong to one row: the same dataset, model, method, options and k (seeds,
/// learning rates and roles may differ).
fn same_row(a: &RunRecord, b: &RunRecord) -> bool {
    a.dataset == b.dataset
        && a.model == b.model
        && a.method == b.method
        && a.options == b.options
        && a.k == b.k
}

/// Rows marked best: in each dataset, among the rows at the smallest deployed size (k-fold
/// references such as `wide` do not compete), the row with the highest mean test score, when
/// a paired t-test over seeds puts it above every other competing row (the 95% interval of the
/// difference excludes 0). Without that support no row is marked.
fn best_rows(rows: &[Row]) -> Vec<bool> {
    let mut best = vec![false; rows.len()];
    let mut datasets: Vec<&str> = rows.iter().map(|r| r.first().dataset.as_str()).collect();
    datasets.dedup();
    for dataset in datasets {
        let members: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].first().dataset == dataset && !rows[i].scores().is_empty())
            .collect();
        let Some(smallest) = members
            .iter()
            .map(|&i| rows[i].first().deployed_params)
            .min()
        else {
            continue;
        };
        let competing: Vec<usize> = members
            .into_iter()
            .filter(|&i| rows[i].first().deployed_params == smallest)
            .collect();
        let mean = |i: usize| mean_std(&rows[i].values(|r| r.test_score)).0;
        let Some(&top) = competing
            .iter()
            .max_by(|&&a, &&b| mean(a).total_cmp(&mean(b)))
        else {
            continue;
        };
        let beats_all = competing.len() > 1
            && competing.iter().filter(|&&i| i != top).all(|&i| {
                paired(&rows[top].scores(), &rows[i].scores())
                    .is_some_and(|p| Verdict::of(&p, true) == Verdict::Supported)
            });
        best[top] = beats_all;
    }
    best
}

/// Training cost: the run's steps plus those of the teachers/members it trained.
fn total_steps(r: &RunRecord) -> f64 {
    (r.steps + r.teacher_steps) as f64
}

/// The base learning rates of a row's runs (`—` for runs stored before the column existed).
/// A single rate at the smallest or largest rate its tuning runs tried is marked `(grid
/// bottom)` / `(grid top)`: the best value may lie beyond the grid.
fn lr_cell(row: &Row, tuning: &[RunRecord]) -> String {
    let mut lrs: Vec<String> = row
        .runs
        .iter()
        .map(|r| {
            r.lr.map_or("—".into(), |lr| format!("{}", round_significant(lr, 6)))
        })
        .collect();
    lrs.sort();
    lrs.dedup();
    let mut cell = lrs.join(" / ");
    let tried: Vec<f64> = tuning_runs(row, tuning).filter_map(|r| r.lr).collect();
    let chosen: Vec<f64> = row.runs.iter().filter_map(|r| r.lr).collect();
    if chosen.len() == row.runs.len() {
        match grid_edge(&chosen, &tried) {
            Some(GridEdge::Top) => cell.push_str(" (grid top)"),
            Some(GridEdge::Bottom) => cell.push_str(" (grid bottom)"),
            None => {}
        }
    }
    cell
}

fn round_significant(value: f64, digits: i32) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let scale = 10f64.powi(digits - 1 - value.abs().log10().floor() as i32);
    (value * scale).round() / scale
}

/// The runs the tables report and the tuning runs, apart.
fn split_roles(runs: &[RunRecord]) -> (Vec<RunRecord>, Vec<RunRecord>) {
    runs.iter().cloned().partition(|r| r.role != "tune")
}

/// The tuning runs of `row`'s (dataset, model, method, options, k): every grid point and
/// tuning seed.
fn tuning_runs<'t>(row: &Row<'t>, tuning: &'t [RunRecord]) -> impl Iterator<Item = &'t RunRecord> {
    let first = row.first();
    tuning.iter().filter(move |r| same_row(first, r))
}

/// Steps of every tuning run of `row` (all grid points and tuning seeds, teachers included).
fn tuning_steps(row: &Row, tuning: &[RunRecord]) -> Option<f64> {
    let steps: Vec<f64> = tuning_runs(row, tuning).map(total_steps).collect();
    (!steps.is_empty()).then(|| steps.iter().sum())
}

/// Renders `runs` (in the order of the experiment's plan) as a markdown table. Tuning runs
/// (`role` `tune`) among them are not rows: their steps are the rows' tuning cost.
pub fn markdown(title: &str, all: &[RunRecord], planned: usize) -> String {
    markdown_with_references(title, all, planned, &[])
}

/// The reference of `dataset` to show above its first row, if one is stored.
fn reference_of<'r>(
    references: &'r [ReferenceRecord],
    dataset: &str,
) -> Option<&'r ReferenceRecord> {
    references.iter().find(|r| r.dataset == dataset)
}

/// [`markdown`], with each dataset's trivial reference (e.g. GLUE's majority class) as an
/// italic row above the dataset's first row.
pub fn markdown_with_references(
    title: &str,
    all: &[RunRecord],
    planned: usize,
    references: &[ReferenceRecord],
) -> String {
    let (finals, tuning) = split_roles(all);
    let runs = &finals[..];
    let rows = group(runs);
    let best = best_rows(&rows);
    let mut out = String::new();
    let _ = writeln!(out, "## {title}\n");
    let _ = writeln!(
        out,
        "| dataset | model | method | k | mixing | lr | test score (%) | validation score (%) | test acc (%) | train acc (%) | test loss | deployed params | trained params | train steps (+teachers) | tuning steps | step (ms) | seeds |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut previous: Option<&str> = None;
    let mut shown_references = 0;
    for (row, &is_best) in rows.iter().zip(&best) {
        let first = row.first();
        if previous != Some(first.dataset.as_str())
            && let Some(reference) = reference_of(references, &first.dataset)
        {
            shown_references += 1;
            let _ = writeln!(
                out,
                "| {} | — | *trivial: {}* | — | — | — | *{} {:.2}* | — | *{:.2}* | — | — | — | — | 0 | — | — | — |",
                reference.dataset,
                reference.rule,
                reference.metric,
                100.0 * reference.test_score,
                100.0 * reference.test_acc,
            );
        }
        previous = Some(&first.dataset);
        let score = cell(&row.values(|r| r.test_score), 100.0, 2);
        let score = if is_best {
            format!("**{} {score}**", first.metric)
        } else {
            format!("{} {score}", first.metric)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            first.dataset,
            first.model,
            row.method_label(runs),
            row.k(),
            first.mixing.as_deref().unwrap_or("—"),
            lr_cell(row, &tuning),
            score,
            cell(
                &row.values(|r| r.validation_score.unwrap_or(f64::NAN))
                    .into_iter()
                    .filter(|v| !v.is_nan())
                    .collect::<Vec<f64>>(),
                100.0,
                2
            ),
            cell(&row.values(|r| r.test_acc), 100.0, 2),
            cell(&row.values(|r| r.train_acc), 100.0, 2),
            cell(&row.values(|r| r.test_loss), 1.0, 4),
            first.deployed_params,
            first.trained_params,
            cell(&row.values(total_steps), 1.0, 0),
            tuning_steps(row, &tuning).map_or("—".into(), |s| format!("{s:.0}")),
            cell(&row.values(|r| r.step_ms), 1.0, 2),
            row.seeds(),
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Mean ± sample std over seeds (the `seeds` column counts completed runs); the test score is the task's metric \
         (accuracy; Matthews correlation for CoLA; F1 for MRPC), on the test split (GLUE: dev). Bold: the best test score \
         of its dataset among rows of the smallest deployed size, above every other such row by a paired t-test over \
         seeds (95% interval of the difference excludes 0); no row is bold without that support. \
         lr: the base learning rate the row trained at; with a `tune` block, the value chosen on the validation \
         score (a fixed held-out slice of the training set) of every grid point's tuning runs, whose steps are the \
         tuning cost (all grid points and tuning seeds); \"(grid top)\" / \"(grid bottom)\": the chosen value is the \
         largest / smallest the grid tried, so the best may lie beyond it. {} of {planned} planned runs stored{}.",
        runs.len(),
        if tuning.is_empty() {
            String::new()
        } else {
            format!(", and {} tuning runs", tuning.len())
        }
    );
    if shown_references > 0 {
        let _ = writeln!(
            out,
            "Rows in italics: the trivial reference of the task, the training set's majority \
             class (its label in brackets) predicted for every example of the whole test split; \
             a method must beat it to have learned anything."
        );
    }
    let _ = writeln!(out, "{}", provenance(runs));
    out
}

/// Where the table's runs were measured; a table without runs says so instead of naming
/// nothing.
fn provenance(runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return "No final run stored yet.".into();
    }
    let distinct = |f: fn(&RunRecord) -> &str| {
        runs.iter()
            .map(f)
            .collect::<BTreeSet<&str>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join("; ")
    };
    format!(
        "Machine: {}. Backend: {}. Code: {}.",
        distinct(|r| &r.device),
        distinct(|r| &r.backend),
        distinct(|r| &r.git_commit)
    )
}

/// Escapes LaTeX's special characters in table text.
fn tex(text: &str) -> String {
    text.replace('\\', "\\textbackslash{}")
        .replace('_', "\\_")
        .replace('%', "\\%")
        .replace('&', "\\&")
        .replace('#', "\\#")
        .replace('±', "$\\pm$")
        .replace('—', "--")
}

/// Renders `runs` as a LaTeX table (booktabs), the same rows and marks as
/// [`markdown_with_references`], trivial references included.
pub fn latex(
    title: &str,
    all: &[RunRecord],
    planned: usize,
    references: &[ReferenceRecord],
) -> String {
    let (finals, tuning) = split_roles(all);
    let runs = &finals[..];
    let rows = group(runs);
    let best = best_rows(&rows);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "% {title}: generated by `reproduce` from stored runs; needs \\usepackage{{booktabs}}"
    );
    let _ = writeln!(out, "\\begin{{tabular}}{{lllrlrrrrrr}}");
    let _ = writeln!(out, "\\toprule");
    let _ = writeln!(
        out,
        "Dataset & Model & Method & $k$ & Mixing & lr & Test score (\\%) & Train acc. (\\%) & Deployed params & Train steps (+tuning) & Seeds \\\\"
    );
    let _ = writeln!(out, "\\midrule");
    let mut previous: Option<&str> = None;
    for (row, &is_best) in rows.iter().zip(&best) {
        let first = row.first();
        if previous.is_some_and(|p| p != first.dataset) {
            let _ = writeln!(out, "\\midrule");
        }
        if previous != Some(first.dataset.as_str())
            && let Some(reference) = reference_of(references, &first.dataset)
        {
            let _ = writeln!(
                out,
                "{} & -- & \\textit{{trivial: {}}} & -- & -- & -- & {} \\textit{{{:.2}}} & -- & -- & 0 & -- \\\\",
                tex(&reference.dataset),
                tex(&reference.rule),
                tex(&reference.metric),
                100.0 * reference.test_score,
            );
        }
        previous = Some(&first.dataset);
        let score = tex(&cell(&row.values(|r| r.test_score), 100.0, 2));
        let score = if is_best {
            format!("\\textbf{{{score}}}")
        } else {
            score
        };
        let _ = writeln!(
            out,
            "{} & {} & {} & {} & {} & {} & {} {} & {} & {} & {}{} & {} \\\\",
            tex(&first.dataset),
            tex(&first.model),
            tex(&row.method_label(runs)),
            tex(&row.k()),
            tex(first.mixing.as_deref().unwrap_or("—")),
            tex(&lr_cell(row, &tuning)),
            tex(&first.metric),
            score,
            tex(&cell(&row.values(|r| r.train_acc), 100.0, 2)),
            first.deployed_params,
            tex(&cell(&row.values(total_steps), 1.0, 0)),
            tuning_steps(row, &tuning).map_or(String::new(), |s| format!(" (+{s:.0})")),
            tex(&row.seeds()),
        );
    }
    let _ = writeln!(out, "\\bottomrule");
    let _ = writeln!(out, "\\end{{tabular}}");
    let _ = writeln!(
        out,
        "% Mean $\\pm$ sample std over seeds; bold as in the markdown table (paired t-test, 95%). {} of {planned} planned runs stored. {}",
        runs.len(),
        tex(&provenance(runs))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::store::tests::record;

    #[test]
    fn a_table_names_its_runs_machine_or_says_it_has_none() {
        let runs = vec![record("baseline", 0, 0.9)];
        let table = markdown("t", &runs, 1);
        let line = table.lines().last().unwrap();
        assert!(
            line.starts_with("Machine: ") && !line.contains("Machine: ."),
            "{table}"
        );
        let empty = markdown("t", &[], 1);
        assert!(
            empty.ends_with("No final run stored yet.\n") && !empty.contains("Machine:"),
            "{empty}"
        );
        assert!(latex("t", &[], 1, &[]).contains("No final run stored yet."));
    }

    #[test]
    fn rows_of_one_method_are_told_apart_by_the_options_that_differ() {
        let with = |teacher: &str, seed: i64| RunRecord {
            options: format!("{{\"alpha\":0.9,\"teacher\":\"{teacher}\"}}"),
            ..record("distilled_ensemble", seed, 0.9)
        };
        let runs = vec![
            with("ensemble", 0),
            with("ensemble", 1),
            with("wide", 0),
            record("mk", 0, 0.9),
        ];
        let table = markdown("t", &runs, 4);
        assert!(
            table.contains("| distilled_ensemble (teacher: ensemble) |"),
            "{table}"
        );
        assert!(
            table.contains("| distilled_ensemble (teacher: wide) |"),
            "{table}"
        );
        assert!(
            table.contains("| mk |"),
            "options shared by every row are not repeated: {table}"
        );
    }

    #[test]
    fn a_stored_trivial_reference_is_an_italic_row_above_its_dataset() {
        let runs = vec![record("baseline", 0, 0.90), record("mk", 0, 0.95)];
        let reference = |dataset: &str| ReferenceRecord {
            dataset: dataset.into(),
            rule: "majority class of the training set (1)".into(),
            metric: "f1".into(),
            test_score: 0.8122,
            test_acc: 0.6838,
            data: "abc".into(),
        };
        let table = markdown_with_references("t", &runs, 2, &[reference("mnist")]);
        let lines: Vec<&str> = table.lines().filter(|l| l.starts_with("| mnist")).collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(
            lines[0].contains("| *trivial: majority class of the training set (1)* |")
                && lines[0].contains("| *f1 81.22* |")
                && lines[0].contains("| *68.38* |"),
            "{table}"
        );
        let columns = |line: &str| line.matches('|').count();
        let header = table.lines().find(|l| l.starts_with("| dataset")).unwrap();
        assert_eq!(columns(lines[0]), columns(header));
        assert!(table.contains("Rows in italics: the trivial reference"));
        // Another dataset's reference is not shown, and nothing is said about one.
        let other = markdown_with_references("t", &runs, 2, &[reference("cola")]);
        assert!(
            !other.contains("trivial") && !other.contains("italics"),
            "{other}"
        );

        let tex = latex("t", &runs, 2, &[reference("mnist")]);
        let row = tex.lines().find(|l| l.contains("trivial")).unwrap();
        assert!(row.contains("\\textit{trivial: majority class of the training set (1)}"));
        assert!(row.contains("f1 \\textit{81.22}"), "{row}");
        assert_eq!(
            row.matches(" & ").count(),
            10,
            "11 columns as the header: {row}"
        );
    }

    #[test]
    fn a_learning_rate_chosen_at_the_edge_of_its_grid_is_marked() {
        let tuned = |method: &str, lr: f64, role: &str, seed: i64| RunRecord {
            lr: Some(lr),
            role: role.into(),
            ..record(method, seed, 0.9)
        };
        let mut runs = Vec::new();
        for lr in [0.05, 0.1, 0.2] {
            runs.push(tuned("baseline", lr, "tune", 100));
            runs.push(tuned("mk", lr, "tune", 100));
            runs.push(tuned("lr_over_k", lr, "tune", 100));
        }
        for seed in 0..2 {
            runs.push(tuned("baseline", 0.2, "final", seed));
            runs.push(tuned("mk", 0.05, "final", seed));
            runs.push(tuned("lr_over_k", 0.1, "final", seed));
        }
        // Untuned: no grid, no mark.
        runs.push(tuned("wide", 0.2, "final", 0));
        let table = markdown("t", &runs, 7);
        let line = |method: &str| {
            table
                .lines()
                .find(|l| l.contains(&format!("| {method} |")))
                .unwrap()
                .to_string()
        };
        assert!(line("baseline").contains("| 0.2 (grid top) |"), "{table}");
        assert!(line("mk").contains("| 0.05 (grid bottom) |"), "{table}");
        assert!(line("lr_over_k").contains("| 0.1 |"), "{table}");
        assert!(line("wide").contains("| 0.2 |"), "{table}");
        assert!(
            table.contains("\"(grid top)\""),
            "the legend says what it means"
        );
    }

    #[test]
    fn mean_std_matches_hand_computation() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s.unwrap() - 1.290_994_448_7).abs() < 1e-9);
        assert_eq!(mean_std(&[3.0]), (3.0, None));
    }

    #[test]
    fn table_groups_seeds_and_counts_them() {
        let mut runs = vec![
            record("baseline", 0, 0.90),
            record("baseline", 1, 0.92),
            record("mk", 0, 0.95),
        ];
        runs.push(RunRecord {
            status: "diverged".into(),
            ..record("mk", 1, f64::NAN)
        });
        let table = markdown("t", &runs, 4);
        let columns = |line: &str| line.matches('|').count();
        let header = table.lines().find(|l| l.starts_with("| dataset")).unwrap();
        assert!(
            table
                .lines()
                .filter(|l| l.starts_with('|'))
                .all(|l| columns(l) == columns(header)),
            "{table}"
        );
        let baseline = table.lines().find(|l| l.contains("| baseline |")).unwrap();
        assert!(
            baseline.contains("91.00 ± 1.41") && baseline.ends_with("| 2 |"),
            "{baseline}"
        );
        let mk = table.lines().find(|l| l.contains("| mk |")).unwrap();
        assert!(
            mk.contains("| 95.00 |") && mk.contains("1 (1 diverged)"),
            "{mk}"
        );
        assert!(table.contains("4 of 4 planned runs"));
    }

    #[test]
    fn best_is_marked_only_when_a_paired_test_supports_it() {
        let runs = |mk: [f64; 3]| -> Vec<RunRecord> {
            let mut out: Vec<RunRecord> = (0..3)
                .map(|s| record("baseline", s, 0.90 + 0.01 * s as f64))
                .collect();
            out.extend((0..3).map(|s| RunRecord {
                test_score: mk[s as usize],
                ..record("mk", s, mk[s as usize])
            }));
            // A k-fold reference with a higher score does not compete.
            out.push(RunRecord {
                deployed_params: 10 * out[0].deployed_params,
                test_score: 0.99,
                ..record("wide", 0, 0.99)
            });
            out
        };
        let clear = runs([0.93, 0.94, 0.95]); // +3 points on every seed
        let table = markdown("t", &clear, 7);
        let mk = table.lines().find(|l| l.contains("| mk |")).unwrap();
        assert!(mk.contains("**accuracy 94.00 ± 1.00**"), "{table}");
        assert!(
            !table
                .lines()
                .any(|l| l.contains("| wide |") && l.contains("**"))
        );
        let tex = latex("t", &clear, 7, &[]);
        assert!(tex.contains("\\textbf{94.00 $\\pm$ 1.00}"), "{tex}");
        assert!(tex.contains("\\toprule") && tex.contains("\\bottomrule"));
        // Higher mean, but not on every seed: not marked.
        let noisy = runs([0.99, 0.88, 0.95]);
        assert!(!markdown("t", &noisy, 7).contains("**"));
    }
}
