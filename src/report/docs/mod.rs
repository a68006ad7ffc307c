//! The generated parts of `docs/RESULTS.md` and `docs/MEASUREMENTS.md`, rendered from what is
//! stored under `results/` alone: no training, no dataset, no device.
//!
//! A docs file mixes hand-written text with generated blocks, each between
//! `<!-- BEGIN GENERATED name ... -->` and `<!-- END GENERATED name -->`. `reproduce docs`
//! rewrites the blocks and keeps every line outside them, so notes written beside a table
//! survive a refresh. The test `tests/docs.rs` regenerates the blocks from the committed results
//! and fails when a committed doc differs: a stale doc names the command that refreshes it.
//!
//! Tables are [`table::markdown`] of the stored rows in the order of the experiment's plan, as
//! `reproduce report` renders them. A run id includes the dataset's content fingerprint, which
//! only the data can give, so stored rows are matched to the plan here by what the row records
//! (dataset, method, options, k, seed); for the same reason these tables do not say which
//! numerics version stored a row (`reproduce report` and `reproduce plan` do, with the data).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

mod measurements;
mod results;

pub use measurements::measurements_blocks;
pub use results::results_blocks;

use crate::error::{Error, Result};

/// The command that rewrites the generated blocks (named in staleness messages).
pub const REFRESH: &str = "cargo run --release --bin reproduce -- docs";
/// File names inside the docs folder.
pub const RESULTS: &str = "RESULTS.md";
pub const MEASUREMENTS: &str = "MEASUREMENTS.md";

/// Where the stored results are and where the docs go.
#[derive(Debug, Clone)]
pub struct DocsOptions {
    pub results_dir: PathBuf,
    pub experiments_dir: PathBuf,
    pub plots_dir: PathBuf,
    pub docs_dir: PathBuf,
    /// The profile whose stored runs `RESULTS.md` shows.
    pub profile: String,
}

impl DocsOptions {
    /// Rows of `reproduce bench`: `<results>/bench`.
    pub fn bench_dir(&self) -> PathBuf {
        self.results_dir.join("bench")
    }
}

/// One generated block of a docs file.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub name: String,
    pub text: String,
}

fn begin(name: &str) -> String {
    format!("<!-- BEGIN GENERATED {name}: rewritten by `reproduce docs`, edit outside -->")
}

fn end(name: &str) -> String {
    format!("<!-- END GENERATED {name} -->")
}

/// `existing` (or `skeleton` when there is no file yet) with every block of `blocks` rewritten
/// in place, missing blocks appended, and blocks that `owned` claims but `blocks` no longer has
/// removed. Text outside the markers is kept byte for byte.
pub fn merge(
    existing: Option<&str>,
    skeleton: &str,
    blocks: &[Block],
    owned: impl Fn(&str) -> bool,
) -> String {
    let mut text = existing.unwrap_or(skeleton).to_string();
    // Blocks that are no longer generated (an experiment without stored runs any more).
    let present: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("<!-- BEGIN GENERATED "))
        .filter_map(|rest| rest.split(':').next())
        .map(String::from)
        .collect();
    for name in present {
        if owned(&name)
            && !blocks.iter().any(|b| b.name == name)
            && let Some((start, stop)) = span(&text, &name)
        {
            let stop = if text[stop..].starts_with('\n') {
                stop + 1
            } else {
                stop
            };
            text.replace_range(start..stop, "");
        }
    }
    for block in blocks {
        let body = format!(
            "{}\n{}\n{}",
            begin(&block.name),
            block.text.trim_end(),
            end(&block.name)
        );
        match span(&text, &block.name) {
            Some((start, stop)) => text.replace_range(start..stop, &body),
            None => {
                if !text.is_empty() && !text.ends_with("\n\n") {
                    text.push_str(if text.ends_with('\n') { "\n" } else { "\n\n" });
                }
                text.push_str(&body);
                text.push('\n');
            }
        }
    }
    text
}

/// Byte range of block `name`, from its begin marker to the end of its end marker.
fn span(text: &str, name: &str) -> Option<(usize, usize)> {
    let open = format!("<!-- BEGIN GENERATED {name}:");
    let start = text.find(&open)?;
    let close = end(name);
    let stop = start + text[start..].find(&close)? + close.len();
    Some((start, stop))
}

/// The last component of a folder, for links and labels that must not depend on where the
/// checkout lives.
fn folder_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(".")
        .to_string()
}

const RESULTS_SKELETON: &str = "# Results\n\nGenerated from the stored runs by `reproduce docs`.\n";
const MEASUREMENTS_SKELETON: &str = "# Measurements\n\nGenerated from `results/bench/` by `reproduce bench` and `reproduce docs`.\n";

/// Which blocks of `RESULTS.md` a refresh for `profile` owns (others' profiles are kept).
fn results_owned(profile: &str) -> impl Fn(&str) -> bool + '_ {
    move |name: &str| name.ends_with(&format!("-{profile}"))
}

fn measurements_owned(name: &str) -> bool {
    name == "bench" || name == "bench-reference"
}

/// Both docs files as a refresh would write them: `(path, current text, refreshed text)`.
fn refreshed(options: &DocsOptions) -> Result<Vec<(PathBuf, Option<String>, String)>> {
    let read = |path: &Path| std::fs::read_to_string(path).ok();
    let results_path = options.docs_dir.join(RESULTS);
    let current = read(&results_path);
    let results = merge(
        current.as_deref(),
        RESULTS_SKELETON,
        &results_blocks(options)?,
        results_owned(&options.profile),
    );
    let measurements_path = options.docs_dir.join(MEASUREMENTS);
    let current_m = read(&measurements_path);
    let measurements = merge(
        current_m.as_deref(),
        MEASUREMENTS_SKELETON,
        &measurements_blocks(&options.bench_dir(), &options.plots_dir)?,
        measurements_owned,
    );
    Ok(vec![
        (results_path, current, results),
        (measurements_path, current_m, measurements),
    ])
}

/// Rewrites the generated blocks of `RESULTS.md` and `MEASUREMENTS.md`; says what changed.
pub fn write(options: &DocsOptions) -> Result<String> {
    let mut out = String::new();
    for (path, current, text) in refreshed(options)? {
        if current.as_deref() == Some(text.as_str()) {
            let _ = writeln!(out, "{}: up to date", path.display());
        } else {
            crate::atomic::write(&path, text.as_bytes())?;
            let _ = writeln!(out, "{}: written", path.display());
        }
    }
    Ok(out)
}

/// The docs files whose generated blocks differ from the stored results (empty: all current).
pub fn stale(options: &DocsOptions) -> Result<Vec<PathBuf>> {
    Ok(refreshed(options)?
        .into_iter()
        .filter(|(_, current, text)| current.as_deref() != Some(text.as_str()))
        .map(|(path, _, _)| path)
        .collect())
}

/// `reproduce docs --check`: an error naming the stale files and the refreshing command.
pub fn check(options: &DocsOptions) -> Result<String> {
    let stale = stale(options)?;
    if stale.is_empty() {
        return Ok("docs match the stored results\n".into());
    }
    let names: Vec<String> = stale.iter().map(|p| p.display().to_string()).collect();
    Err(Error::Usage(format!(
        "{} differ from the stored results: run `{REFRESH}` and commit them",
        names.join(", ")
    )))
}

/// `reproduce docs`: rewrites the docs, or with `check` only compares them.
pub fn run(options: &DocsOptions, check_only: bool) -> Result<String> {
    if check_only {
        check(options)
    } else {
        write(options)
    }
}

/// After `reproduce bench` stored rows: rewrites the generated part of `MEASUREMENTS.md` in
/// `docs_dir` from every row in `bench_dir` (nothing when `docs_dir` does not exist, e.g.
/// outside a checkout). Returns the file written.
pub fn write_measurements(
    bench_dir: &Path,
    plots_dir: &Path,
    docs_dir: &Path,
) -> Result<Option<PathBuf>> {
    if !docs_dir.is_dir() {
        return Ok(None);
    }
    let path = docs_dir.join(MEASUREMENTS);
    let current = std::fs::read_to_string(&path).ok();
    let text = merge(
        current.as_deref(),
        MEASUREMENTS_SKELETON,
        &measurements_blocks(bench_dir, plots_dir)?,
        measurements_owned,
    );
    crate::atomic::write(&path, text.as_bytes())?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::RunSpec;
    use crate::report::reported::planned_rows;
    use crate::results::RunRecord;

    fn block(name: &str, text: &str) -> Block {
        Block {
            name: name.into(),
            text: text.into(),
        }
    }

    #[test]
    fn merge_rewrites_blocks_and_keeps_hand_written_text() {
        let first = merge(None, "# Doc\n", &[block("a-quick", "one\n")], |_| true);
        assert_eq!(
            first,
            format!("# Doc\n\n{}\none\n{}\n", begin("a-quick"), end("a-quick"))
        );
        let edited = format!("{first}\nA note by hand.\n");
        let again = merge(
            Some(&edited),
            "",
            &[block("a-quick", "two"), block("b-quick", "three")],
            |_| true,
        );
        assert!(
            again.contains("\ntwo\n") && !again.contains("one"),
            "{again}"
        );
        assert!(again.contains("A note by hand.\n\n<!-- BEGIN GENERATED b-quick"));
        assert_eq!(
            merge(
                Some(&again),
                "",
                &[block("a-quick", "two"), block("b-quick", "three")],
                |_| true
            ),
            again,
            "a refresh of a current doc changes nothing"
        );
        // A block no longer generated goes, unless another profile owns it.
        let dropped = merge(Some(&again), "", &[block("a-quick", "two")], |n| {
            n.ends_with("-quick")
        });
        assert!(!dropped.contains("three") && dropped.contains("A note by hand."));
        let kept = merge(Some(&again), "", &[block("a-quick", "two")], |n| {
            n.ends_with("-paper")
        });
        assert!(kept.contains("three"));
    }

    #[test]
    fn rows_follow_the_plan_and_prefer_the_newest() {
        use crate::results::store::tests::record;
        let stored = vec![
            RunRecord {
                finished_at: 1,
                ..record("mk", 0, 0.5)
            },
            RunRecord {
                finished_at: 2,
                ..record("mk", 0, 0.6)
            },
            record("baseline", 0, 0.4),
        ];
        let recipe: crate::train::Recipe =
            serde_norway::from_str("{epochs: 1, batch_size: 8, optimizer: {name: sgd, lr: 0.1}}")
                .unwrap();
        let spec = |method: &str, row: &RunRecord| RunSpec {
            experiment: row.experiment.clone(),
            dataset: row.dataset.clone(),
            model: crate::models::ModelSpec::Mlp {
                hidden: vec![8],
                bias: true,
            },
            recipe: recipe.clone(),
            method: method.into(),
            options: serde_json::from_str(&row.options).unwrap(),
            k: row.k as usize,
            seed: 0,
            phase: crate::experiment::Phase::Final,
            data: "x".into(),
            code_version: 2,
            dataset_index: 0,
            method_index: 0,
        };
        let specs = [spec("baseline", &stored[2]), spec("mk", &stored[0])];
        let rows = planned_rows(&specs, &[], &stored);
        let scores: Vec<f64> = rows.iter().map(|r| r.test_acc).collect();
        assert_eq!(scores, [0.4, 0.6]);
    }
}
