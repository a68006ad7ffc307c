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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{claims, table};
use crate::error::{Error, Result};
use crate::experiment::{self, RunSpec};
use crate::results::{ResultsDir, RunRecord};

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

/// The blocks of `RESULTS.md`: every experiment's table, the claims, the figure list.
pub fn results_blocks(options: &DocsOptions) -> Result<Vec<Block>> {
    let profile = &options.profile;
    let mut blocks = Vec::new();
    let mut all_claims = Vec::new();
    let mut figures = Vec::new();
    for name in experiment::list(&options.experiments_dir) {
        let dir = ResultsDir::new(&options.results_dir, &name, profile);
        let stored = dir.runs()?;
        if stored.is_empty() {
            continue;
        }
        let path = experiment::locate(&name, &options.experiments_dir)?;
        let resolved = experiment::load(&path, profile, &[])?;
        let specs = planned_specs(&resolved.experiment);
        let rows = planned_rows(&specs, &stored);
        let title = format!("{name} ({profile} profile)");
        let mut text = table::markdown(&title, &rows, specs.len());
        let about = resolved.experiment.description.trim();
        let minutes = rows.iter().map(|r| r.wall_clock_s).sum::<f64>() / 60.0;
        let intro = format!(
            "{}`reproduce report {name} --profile {profile}`; the {} runs shown took {minutes:.1} \
             min of wall clock in all (their `wall_clock_s`, stored in `{}/{name}/{profile}/runs/`).\n\n",
            if about.is_empty() {
                String::new()
            } else {
                format!("{about}. ")
            },
            rows.len(),
            folder_name(&options.results_dir),
        );
        if let Some(at) = text.find("\n\n") {
            text.insert_str(at + 2, &intro);
        }
        blocks.push(Block {
            name: format!("{name}-{profile}"),
            text,
        });
        all_claims.extend(claims::check(&name, &stored));
        figures.extend(figure_files(
            &options.plots_dir,
            &format!("{name}-{profile}-"),
        )?);
    }
    let claims_text = if all_claims.is_empty() {
        "No stored runs to check.\n".to_string()
    } else {
        claims::markdown(&all_claims)
    };
    blocks.push(Block {
        name: format!("claims-{profile}"),
        text: format!(
            "## Claims ({profile} profile)\n\n`reproduce claims --profile {profile}`: every claim \
             the stored runs can speak to (statistics: `docs/METHODS.md`, \"Claims and \
             statistics\").\n\n{claims_text}"
        ),
    });
    let plots = folder_name(&options.plots_dir);
    let mut list = format!(
        "## Figures ({profile} profile)\n\n`reproduce plots --profile {profile}` renders them \
         from the stored runs into `{plots}/` (PNG, each with an SVG twin):\n\n"
    );
    for file in &figures {
        let _ = writeln!(list, "- [`{file}`](../{plots}/{file})");
    }
    if figures.is_empty() {
        list.push_str("(none rendered yet)\n");
    }
    blocks.push(Block {
        name: format!("figures-{profile}"),
        text: list,
    });
    Ok(blocks)
}

/// The plan of `experiment`, built without the data: every entry gets a placeholder
/// fingerprint (the same for entries that load the same data), so the order and count are the
/// plan's and only the ids differ.
fn planned_specs(experiment: &experiment::Experiment) -> Vec<RunSpec> {
    let fingerprints: Vec<String> = experiment
        .datasets
        .iter()
        .map(|e| format!("{}:{:?}", e.dataset, e.load_options(None)))
        .collect();
    experiment::plan(
        experiment,
        &fingerprints,
        crate::results::provenance::NUMERICS_VERSION,
    )
}

/// The stored row of every planned spec, in plan order: the row recording the same dataset,
/// method, options, k and seed (the newest when a rerun stored it twice).
fn planned_rows(specs: &[RunSpec], stored: &[RunRecord]) -> Vec<RunRecord> {
    let mut used = vec![false; stored.len()];
    let mut rows = Vec::new();
    for spec in specs {
        let options = spec.options.to_string();
        let found = stored
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                !used[*i]
                    && r.dataset == spec.dataset
                    && r.method == spec.method
                    && r.options == options
                    && r.k == spec.k as i64
                    && r.seed == spec.seed as i64
            })
            .max_by_key(|(_, r)| r.finished_at);
        if let Some((i, row)) = found {
            used[i] = true;
            rows.push(row.clone());
        }
    }
    rows
}

/// The PNG figures in `plots_dir` whose names start with `prefix`, sorted.
fn figure_files(plots_dir: &Path, prefix: &str) -> Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(plots_dir) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| n.starts_with(prefix) && n.ends_with(".png"))
        .collect();
    names.sort();
    Ok(names)
}

/// The last component of a folder, for links and labels that must not depend on where the
/// checkout lives.
fn folder_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(".")
        .to_string()
}

/// One stored bench row, as the docs show it.
struct BenchRow {
    family: String,
    model: String,
    dataset: String,
    optimizer: String,
    k: i64,
    baseline_ms: f64,
    mk_ms: f64,
    first_step_s: f64,
    steps: i64,
    /// Everything else that says where and how it was measured.
    setting: String,
    host: String,
}

fn bench_rows(path: &Path) -> Result<Vec<BenchRow>> {
    Ok(crate::results::bench::read(path)?
        .into_iter()
        .map(|r| BenchRow {
            setting: format!(
                "machine {}, backend {}, {} worker threads, batch {}, median of {} repeats, code {}",
                r.device, r.backend, r.threads, r.batch, r.repeats, r.git_commit
            ),
            host: r.device.split(" (").next().unwrap_or_default().to_string(),
            family: r.family,
            model: r.model,
            dataset: r.dataset,
            optimizer: r.optimizer,
            k: r.k,
            baseline_ms: r.baseline_ms,
            mk_ms: r.mk_ms,
            first_step_s: r.first_step_s,
            steps: r.steps,
        })
        .collect())
}

/// Files in `dir` with extension `ext`, sorted.
fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string()
}

/// The blocks of `MEASUREMENTS.md`: the step times `reproduce bench` stored in `bench_dir`
/// (per file: baseline ms/step and the MK/baseline ratio per k), and the PyTorch reference
/// CSVs beside the rows of the same machine.
pub fn measurements_blocks(bench_dir: &Path, plots_dir: &Path) -> Result<Vec<Block>> {
    let bench = match bench_dir.parent().map(folder_name) {
        Some(parent) if parent != "." => format!("{parent}/{}", folder_name(bench_dir)),
        _ => folder_name(bench_dir),
    };
    let mut text = format!(
        "## MK overhead: `reproduce bench`\n\nFull training steps of the plain model and of its \
         MK twin, from the rows `reproduce bench` stored in `{bench}/`; ratio = MK step / \
         baseline step.\n\n"
    );
    let mut all = Vec::new();
    let files = files_with(bench_dir, "parquet");
    for path in &files {
        let rows = bench_rows(path)?;
        let mut settings: Vec<&str> = rows.iter().map(|r| r.setting.as_str()).collect();
        settings.sort_unstable();
        settings.dedup();
        let mut ks: Vec<i64> = rows.iter().map(|r| r.k).collect();
        ks.sort_unstable();
        ks.dedup();
        let _ = writeln!(text, "`{}`: {}.\n", file_name(path), settings.join("; "));
        let _ = write!(
            text,
            "| family | model | data | optimiser | timed steps | baseline ms/step | first step (s) |"
        );
        for k in &ks {
            let _ = write!(text, " k = {k} |");
        }
        let _ = write!(text, "\n|---|---|---|---|---:|---:|---:|");
        text.push_str(&"---:|".repeat(ks.len()));
        text.push('\n');
        // One line per benchmarked model, in the order measured.
        let mut models: Vec<(&str, &str)> = Vec::new();
        for r in &rows {
            if !models.contains(&(r.family.as_str(), r.model.as_str())) {
                models.push((&r.family, &r.model));
            }
        }
        for (family, model) in models {
            let of: Vec<&BenchRow> = rows
                .iter()
                .filter(|r| r.family == family && r.model == model)
                .collect();
            let first = of[0];
            let _ = write!(
                text,
                "| {family} | {model} | {} | {} | {} | {:.2} | {:.2} |",
                first.dataset, first.optimizer, first.steps, first.baseline_ms, first.first_step_s
            );
            for k in &ks {
                match of.iter().find(|r| r.k == *k) {
                    Some(r) => {
                        let _ = write!(text, " {:.3} |", r.mk_ms / r.baseline_ms);
                    }
                    None => text.push_str(" — |"),
                }
            }
            text.push('\n');
        }
        text.push('\n');
        all.extend(rows);
    }
    if files.is_empty() {
        text.push_str("No stored bench rows yet.\n");
    }
    let figure = plots_dir.join("overhead-vs-k.png");
    if figure.is_file() {
        let _ = writeln!(
            text,
            "![MK step-time overhead against k](../{}/overhead-vs-k.png)",
            folder_name(plots_dir)
        );
    }
    let mut blocks = vec![Block {
        name: "bench".into(),
        text,
    }];
    let csvs = files_with(bench_dir, "csv");
    if !csvs.is_empty() {
        let mut text = String::from(
            "## Against PyTorch on the same machine\n\nThe CSVs of \
             `benches/reference/pytorch_step.py` beside the stored rows of the same host \
             (family and k matched); ratio = MK step / baseline step.\n\n",
        );
        for path in &csvs {
            reference_table(path, &all, &mut text)?;
        }
        blocks.push(Block {
            name: "bench-reference".into(),
            text,
        });
    }
    Ok(blocks)
}

/// One reference CSV (`family`, `k`, `baseline_ms`, `mk_ms`, `torch`, `dtype`, `host`) as a
/// table beside `ours`, the stored rows of its host.
fn reference_table(path: &Path, ours: &[BenchRow], out: &mut String) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            Error::data(
                path,
                format!("no `{name}` column (expected benches/reference/pytorch_step.py's CSV)"),
            )
        })
    };
    let (family, k, baseline, mk) = (
        column("family")?,
        column("k")?,
        column("baseline_ms")?,
        column("mk_ms")?,
    );
    let (torch, dtype, host) = (column("torch")?, column("dtype")?, column("host")?);
    // family -> (reference baseline, k -> reference ratio); first seen order kept.
    let mut order: Vec<String> = Vec::new();
    let mut reference: BTreeMap<String, (f64, BTreeMap<i64, f64>)> = BTreeMap::new();
    let (mut about, mut csv_host) = (String::new(), String::new());
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or_default();
        let number = |i: usize| -> Result<f64> {
            field(i).parse().map_err(|_| {
                Error::data(
                    path,
                    format!("line {}: column {} is not a number", n + 2, i + 1),
                )
            })
        };
        let name = field(family).to_string();
        let entry = reference.entry(name.clone()).or_insert_with(|| {
            order.push(name);
            (0.0, BTreeMap::new())
        });
        entry.0 = number(baseline)?;
        entry
            .1
            .insert(number(k)? as i64, number(mk)? / number(baseline)?);
        csv_host = field(host).to_string();
        about = format!("PyTorch {} {}, host {csv_host}", field(torch), field(dtype));
    }
    if ours.iter().all(|r| r.host != csv_host) {
        about.push_str(" (no stored rows of ours on that host)");
    }
    let mut ks: Vec<i64> = reference
        .values()
        .flat_map(|(_, by_k)| by_k.keys().copied())
        .collect();
    ks.sort_unstable();
    ks.dedup();
    let _ = writeln!(out, "`{}`: {about}.\n", file_name(path));
    let _ = write!(
        out,
        "| family | ours baseline ms | PyTorch baseline ms | ours / PyTorch |"
    );
    for k in &ks {
        let _ = write!(out, " MK ratio k = {k}: ours / PyTorch |");
    }
    let _ = write!(out, "\n|---|---:|---:|---:|");
    out.push_str(&"---|".repeat(ks.len()));
    out.push('\n');
    for name in &order {
        let (base, by_k) = &reference[name];
        let mine: Vec<&BenchRow> = ours
            .iter()
            .filter(|r| r.family == *name && r.host == csv_host)
            .collect();
        let ours_base = mine.first().map(|r| r.baseline_ms);
        let _ = write!(
            out,
            "| {name} | {} | {base:.2} | {} |",
            ours_base.map_or("—".into(), |b| format!("{b:.2}")),
            ours_base.map_or("—".into(), |b| format!("{:.2}", b / base)),
        );
        for k in &ks {
            let ours_ratio = mine
                .iter()
                .find(|r| r.k == *k)
                .map_or("—".into(), |r| format!("{:.3}", r.mk_ms / r.baseline_ms));
            let theirs = by_k.get(k).map_or("—".into(), |v| format!("{v:.3}"));
            let _ = write!(out, " {ours_ratio} / {theirs} |");
        }
        out.push('\n');
    }
    out.push('\n');
    Ok(())
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
            data: "x".into(),
            code_version: 2,
            dataset_index: 0,
            method_index: 0,
        };
        let specs = [spec("baseline", &stored[2]), spec("mk", &stored[0])];
        let rows = planned_rows(&specs, &stored);
        let scores: Vec<f64> = rows.iter().map(|r| r.test_acc).collect();
        assert_eq!(scores, [0.4, 0.6]);
    }
}
