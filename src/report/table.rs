//! Markdown tables from stored runs: mean ± std over seeds, with the seed count, and the
//! machines, backends and commits the numbers came from.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::results::RunRecord;

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

/// Renders `runs` (in the order of the experiment's plan) as a markdown table.
pub fn markdown(title: &str, runs: &[RunRecord], planned: usize) -> String {
    let mut rows: Vec<Row> = Vec::new();
    for run in runs {
        let same = |r: &&RunRecord| {
            r.dataset == run.dataset
                && r.model == run.model
                && r.method == run.method
                && r.options == run.options
                && r.k == run.k
        };
        match rows.iter_mut().find(|row| same(&row.runs[0])) {
            Some(row) => row.runs.push(run),
            None => rows.push(Row { runs: vec![run] }),
        }
    }

    let mut out = String::new();
    let _ = writeln!(out, "## {title}\n");
    let _ = writeln!(
        out,
        "| dataset | model | method | k | mixing | test score (%) | test acc (%) | train acc (%) | test loss | deployed params | trained params | step (ms) | seeds |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for row in &rows {
        let first = row.runs[0];
        let ok: Vec<&RunRecord> = row
            .runs
            .iter()
            .copied()
            .filter(|r| r.status == "completed")
            .collect();
        let diverged = row.runs.len() - ok.len();
        let col = |f: fn(&RunRecord) -> f64| ok.iter().map(|r| f(r)).collect::<Vec<f64>>();
        let seeds = if diverged > 0 {
            format!("{} ({diverged} diverged)", ok.len())
        } else {
            ok.len().to_string()
        };
        let mut labels: Vec<String> = first.init.iter().cloned().collect();
        labels.extend(distinguishing_options(first, runs));
        let method = if labels.is_empty() {
            first.method.clone()
        } else {
            format!("{} ({})", first.method, labels.join(", "))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} {} | {} | {} | {} | {} | {} | {} | {} |",
            first.dataset,
            first.model,
            method,
            if first.method == "baseline" || first.method == "baseline_long" {
                "—".into()
            } else {
                first.k.to_string()
            },
            first.mixing.as_deref().unwrap_or("—"),
            first.metric,
            cell(&col(|r| r.test_score), 100.0, 2),
            cell(&col(|r| r.test_acc), 100.0, 2),
            cell(&col(|r| r.train_acc), 100.0, 2),
            cell(&col(|r| r.test_loss), 1.0, 4),
            first.deployed_params,
            first.trained_params,
            cell(&col(|r| r.step_ms), 1.0, 2),
            seeds,
        );
    }
    let distinct = |f: fn(&RunRecord) -> &str| {
        runs.iter()
            .map(f)
            .collect::<BTreeSet<&str>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join("; ")
    };
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Mean ± sample std over seeds (the `seeds` column counts completed runs); the test score is the task's metric \
         (accuracy; Matthews correlation for CoLA; F1 for MRPC), on the test split (GLUE: dev). {} of {planned} planned runs stored.",
        runs.len()
    );
    let _ = writeln!(
        out,
        "Machine: {}. Backend: {}. Code: {}.",
        distinct(|r| &r.device),
        distinct(|r| &r.backend),
        distinct(|r| &r.git_commit)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::store::tests::record;

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
}
