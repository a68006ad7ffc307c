//! Parquet results: one file per finished run (its summary row) and one per run for its
//! curves, under `<results>/<experiment>/<profile>/{runs,curves}/<run_id>.parquet`.
//!
//! Files are written atomically ([`crate::atomic`]), so a reader never sees a partial file,
//! and the run file (written last) marks a finished run. The columns are declared once, with
//! the rows they describe ([`super::schema`]).

use std::fs;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::schema::{Missing, Table, read_frame, table, write_frame};
use crate::atomic::TEMP_PREFIX;
use crate::error::{Error, Result};

table! {
    /// The summary row of one finished run.
    #[derive(Debug, Clone, PartialEq)]
    pub struct RunRecord {
        pub run_id: String,
        pub experiment: String,
        pub profile: String,
        pub dataset: String,
        pub model: String,
        pub method: String,
        /// The method's options as JSON.
        pub options: String,
        pub k: i64,
        pub mixing: Option<String>,
        pub init: Option<String>,
        pub seed: i64,
        pub epochs: i64,
        pub steps: i64,
        /// Steps spent on teachers/members trained for this run (0 when reused; files written
        /// before the column existed had no teachers).
        pub teacher_steps: i64 = Missing::Value(0),
        pub train_acc: f64,
        pub train_loss: f64,
        pub test_acc: f64,
        pub test_loss: f64,
        /// The task's headline metric (`accuracy`, `mcc`, `f1`) and its values (files written
        /// before the task-metric columns existed scored accuracy).
        pub metric: String = Missing::Value("accuracy".into()),
        pub train_score: f64 = Missing::Column("train_acc"),
        pub test_score: f64 = Missing::Column("test_acc"),
        /// The deployed model's headline metric on the held-out validation slice of the
        /// training set (none when the recipe has no `validation` size, and in files written
        /// before validation splits existed).
        pub validation_score: Option<f64> = Missing::Value(None),
        /// `final` (a run the tables report) or `tune` (a run of the tuning grid, only used to
        /// choose the final runs' learning rate; files written before tuning existed hold
        /// final runs).
        pub role: String = Missing::Value("final".into()),
        /// The base learning rate the run trained at (after tuning), and its weight decay
        /// (none in files written before the columns existed).
        pub lr: Option<f64> = Missing::Value(None),
        pub weight_decay: Option<f64> = Missing::Value(None),
        pub deployed_params: i64,
        pub trained_params: i64,
        /// Whole run, evaluation included; a run resumed from a checkpoint adds the time the
        /// earlier processes had spent up to their last checkpoint (`train::RunClock`; runs
        /// stored before 2026-12-02: only the last process's).
        pub wall_clock_s: f64,
        /// Mean training step, evaluation excluded.
        pub step_ms: f64,
        /// Bytes of the trained parameters (k copies for MK) and their optimiser state, f32
        /// (files written before the memory columns existed did not measure it).
        pub state_bytes: Option<i64> = Missing::Value(None),
        /// Peak resident memory of the process during the run (host memory, Linux), bytes.
        pub peak_rss_bytes: Option<i64> = Missing::Value(None),
        /// `completed` or `diverged`.
        pub status: String,
        pub backend: String,
        pub device: String,
        pub burn_version: String,
        pub git_commit: String,
        pub config_hash: String,
        /// Unix seconds.
        pub finished_at: i64,
    }
}

table! {
    /// One evaluation point of a run's curves.
    #[derive(Debug, Clone, PartialEq)]
    pub struct CurvePoint {
        pub epoch: i64,
        pub step: i64,
        pub lr: f64,
        pub train_acc: f64,
        pub train_loss: f64,
        pub test_acc: f64,
        pub test_loss: f64,
        pub train_score: f64,
        pub test_score: f64,
        /// The headline metric on the validation slice (NaN when the recipe has none, and in
        /// files written before validation splits existed).
        pub validation_score: f64 = Missing::Value(f64::NAN),
        pub train_seconds: f64,
        /// `epoch` (the eval-mode model after an epoch) or `deployed` (the deployed model as
        /// the table reports it, after collapse and any BatchNorm re-estimation: the curve's
        /// last point; files written before the column existed have epoch points only).
        pub kind: String = Missing::Value("epoch".into()),
    }
}

table! {
    /// The columns in front of every curve point: which run it belongs to.
    #[derive(Debug, Clone)]
    pub struct CurveKey {
        pub run_id: String,
        pub dataset: String,
        pub method: String,
        pub k: i64,
        pub seed: i64,
    }
}

impl CurveKey {
    fn of(record: &RunRecord) -> Self {
        CurveKey {
            run_id: record.run_id.clone(),
            dataset: record.dataset.clone(),
            method: record.method.clone(),
            k: record.k,
            seed: record.seed,
        }
    }
}

impl CurvePoint {
    /// The curve point of an evaluation, with the task's headline `metric`.
    pub fn new(p: &crate::train::EvalPoint, metric: crate::data::Metric) -> Self {
        CurvePoint {
            train_score: p.train.score(metric),
            test_score: p.test.score(metric),
            validation_score: p.validation.map_or(f64::NAN, |v| v.score(metric)),
            kind: "epoch".into(),
            epoch: p.epoch as i64,
            step: p.step as i64,
            lr: p.lr,
            train_acc: p.train.accuracy,
            train_loss: p.train.loss,
            test_acc: p.test.accuracy,
            test_loss: p.test.loss,
            train_seconds: p.train_seconds,
        }
    }
}

table! {
    /// A dataset's trivial reference: the score of predicting the training set's majority
    /// class for every test example (for MRPC that is "always paraphrase"), so a table shows
    /// what chance is beside the methods' scores.
    #[derive(Debug, Clone, PartialEq)]
    pub struct ReferenceRecord {
        pub dataset: String,
        /// How the constant prediction was chosen, e.g. `majority class of the training set (1)`.
        pub rule: String,
        /// The task's headline metric (`accuracy`, `mcc`, `f1`) and its value on the whole
        /// test split, with the accuracy beside it.
        pub metric: String,
        pub test_score: f64,
        pub test_acc: f64,
        /// The content fingerprint of the data it was computed on.
        pub data: String,
    }
}

/// Age after which a temporary file in a results folder is a killed writer's leftover.
const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The folders of one experiment and profile.
#[derive(Debug, Clone)]
pub struct ResultsDir {
    root: PathBuf,
}

impl ResultsDir {
    /// `<results>/<experiment>/<profile>`.
    pub fn new(results: &Path, experiment: &str, profile: &str) -> Self {
        Self {
            root: results.join(experiment).join(profile),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn run_path(&self, run_id: &str) -> PathBuf {
        self.root.join("runs").join(format!("{run_id}.parquet"))
    }

    fn curve_path(&self, run_id: &str) -> PathBuf {
        self.root.join("curves").join(format!("{run_id}.parquet"))
    }

    /// Whether the run has finished (its run file exists).
    pub fn is_done(&self, run_id: &str) -> bool {
        self.run_path(run_id).is_file()
    }

    /// Stores a finished run: curves first, then the run row that marks it finished.
    pub fn store(&self, record: &RunRecord, curve: &[CurvePoint]) -> Result<()> {
        write_frame(
            &self.curve_path(&record.run_id),
            &mut curves_frame(record, curve)?,
        )?;
        write_frame(
            &self.run_path(&record.run_id),
            &mut RunRecord::frame(std::slice::from_ref(record))?,
        )
    }

    /// Moves the run and curve files of `run_id` (the same run stored by an earlier numerics
    /// version) to `superseded/`, so tables, claims and figures read one row per run; nothing
    /// is deleted. A run that is not stored is left alone.
    pub fn supersede(&self, run_id: &str) -> Result<()> {
        for (path, kind) in [
            (self.run_path(run_id), "runs"),
            (self.curve_path(run_id), "curves"),
        ] {
            if path.is_file() {
                let target_dir = self.root.join("superseded").join(kind);
                fs::create_dir_all(&target_dir).map_err(|e| Error::io(&target_dir, e))?;
                let target = target_dir.join(path.file_name().expect("result files have names"));
                fs::rename(&path, &target).map_err(|e| Error::io(&path, e))?;
            }
        }
        Ok(())
    }

    /// Checks every stored file at start-up: unreadable run or curve files are moved to
    /// `corrupt/` (never silently used, never deleted) and temporary files left by a killed
    /// writer are removed. Returns the files set aside with the reason.
    pub fn audit(&self) -> Result<Vec<(PathBuf, String)>> {
        let mut set_aside = Vec::new();
        for kind in ["runs", "curves"] {
            let dir = self.root.join(kind);
            if !dir.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&dir)
                .map_err(|e| Error::io(&dir, e))?
                .flatten()
            {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().to_string();
                if name.starts_with(TEMP_PREFIX) {
                    // A writer's temporary file: another process may be writing it right now
                    // (shards share the folder), so only old leftovers of killed writers go.
                    let stale = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_TEMP_AGE));
                    if stale {
                        let _ = fs::remove_file(&path);
                    }
                    continue;
                }
                if !name.ends_with(".parquet") {
                    continue;
                }
                let check = read_frame(&path).and_then(|frame| {
                    if kind == "runs" {
                        RunRecord::from_frame(&path, &frame).map(|_| ())
                    } else {
                        Ok(())
                    }
                });
                if let Err(err) = check {
                    let corrupt = self.root.join("corrupt").join(kind);
                    fs::create_dir_all(&corrupt).map_err(|e| Error::io(&corrupt, e))?;
                    let target = corrupt.join(&name);
                    fs::rename(&path, &target).map_err(|e| Error::io(&path, e))?;
                    set_aside.push((path, format!("{err}; moved to {}", target.display())));
                }
            }
        }
        Ok(set_aside)
    }

    fn references_path(&self) -> PathBuf {
        self.root.join("references.parquet")
    }

    /// The stored trivial references, one per dataset (none stored: empty).
    pub fn references(&self) -> Result<Vec<ReferenceRecord>> {
        let path = self.references_path();
        if !path.is_file() {
            return Ok(Vec::new());
        }
        ReferenceRecord::from_frame(&path, &read_frame(&path)?)
    }

    /// Stores `references`, replacing the stored ones of the same datasets and keeping the
    /// others (a `--dataset` invocation computes its own datasets only).
    pub fn store_references(&self, references: &[ReferenceRecord]) -> Result<()> {
        let mut all: Vec<ReferenceRecord> = self
            .references()?
            .into_iter()
            .filter(|old| references.iter().all(|new| new.dataset != old.dataset))
            .collect();
        all.extend(references.iter().cloned());
        if all.is_empty() {
            return Ok(());
        }
        all.sort_by(|a, b| a.dataset.cmp(&b.dataset));
        write_frame(&self.references_path(), &mut ReferenceRecord::frame(&all)?)
    }

    /// Every stored run row, sorted by run id.
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        let mut records = Vec::new();
        for path in parquet_files(&self.root.join("runs"))? {
            records.extend(RunRecord::from_frame(&path, &read_frame(&path)?)?);
        }
        records.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        Ok(records)
    }

    /// Every stored curve row, one frame.
    pub fn curves(&self) -> Result<Option<DataFrame>> {
        let mut all: Option<DataFrame> = None;
        for path in parquet_files(&self.root.join("curves"))? {
            let frame = read_frame(&path)?;
            match &mut all {
                None => all = Some(frame),
                Some(acc) => {
                    acc.vstack_mut_owned(frame)
                        .map_err(|source| Error::Parquet {
                            path: path.clone(),
                            source,
                        })?;
                }
            }
        }
        Ok(all)
    }
}

/// The `*.parquet` files in `dir`, sorted; none when `dir` does not exist.
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    Ok(files)
}

/// A run's curve file: the run's key in front of every point.
fn curves_frame(record: &RunRecord, curve: &[CurvePoint]) -> Result<DataFrame> {
    let mut columns = CurveKey::to_columns(&vec![CurveKey::of(record); curve.len()]);
    columns.extend(CurvePoint::to_columns(curve));
    DataFrame::new(curve.len(), columns).map_err(|source| Error::Parquet {
        path: PathBuf::from("<curves frame>"),
        source,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn record(method: &str, seed: i64, test_acc: f64) -> RunRecord {
        RunRecord {
            run_id: format!("mnist-{method}-k4-s{seed}-abc"),
            experiment: "t".into(),
            profile: "smoke".into(),
            dataset: "mnist".into(),
            model: "mlp-784-32-10".into(),
            method: method.into(),
            options: "{}".into(),
            k: 4,
            mixing: (method == "mk").then(|| "dirichlet(1)".into()),
            init: None,
            seed,
            epochs: 1,
            steps: 10,
            teacher_steps: 0,
            train_acc: 0.9,
            train_loss: 0.3,
            test_acc,
            test_loss: 0.35,
            metric: "accuracy".into(),
            train_score: 0.9,
            test_score: test_acc,
            validation_score: None,
            role: "final".into(),
            lr: Some(0.1),
            weight_decay: Some(0.0),
            deployed_params: 25_450,
            trained_params: 101_800,
            wall_clock_s: 1.5,
            step_ms: 2.0,
            state_bytes: Some(814_400),
            peak_rss_bytes: None,
            status: "completed".into(),
            backend: "flex".into(),
            device: "test".into(),
            burn_version: "0.21.0".into(),
            git_commit: "unknown".into(),
            config_hash: "abc".into(),
            finished_at: 0,
        }
    }

    #[test]
    fn runs_round_trip_through_parquet() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ResultsDir::new(tmp.path(), "t", "smoke");
        let a = record("mk", 0, 0.91);
        let point = CurvePoint {
            epoch: 1,
            step: 10,
            lr: 0.1,
            train_acc: 0.9,
            train_loss: 0.3,
            test_acc: 0.91,
            test_loss: 0.35,
            train_score: 0.9,
            test_score: 0.91,
            validation_score: 0.88,
            train_seconds: 1.0,
            kind: "epoch".into(),
        };
        assert!(!dir.is_done(&a.run_id));
        dir.store(&a, &[point.clone(), point]).unwrap();
        dir.store(&record("baseline", 0, 0.9), &[]).unwrap();
        assert!(dir.is_done(&a.run_id));
        let runs = dir.runs().unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs.iter().find(|r| r.method == "mk").unwrap(), &a);
        assert_eq!(dir.curves().unwrap().unwrap().height(), 2);
        let leftovers: Vec<_> = fs::read_dir(dir.root().join("runs"))
            .unwrap()
            .filter_map(|e| e.ok())
            .collect();
        assert_eq!(leftovers.len(), 2, "no temporary files left behind");
    }

    #[test]
    fn audit_sets_corrupt_files_aside_and_keeps_good_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ResultsDir::new(tmp.path(), "t", "smoke");
        let good = record("mk", 0, 0.91);
        dir.store(&good, &[]).unwrap();
        let runs = dir.root().join("runs");
        let truncated = runs.join("mnist-mk-k4-s1-abc.parquet");
        let bytes = fs::read(runs.join(format!("{}.parquet", good.run_id))).unwrap();
        fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
        fs::write(runs.join(".tmpXYZ"), b"partial").unwrap();
        let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
        fs::File::options()
            .write(true)
            .open(runs.join(".tmpXYZ"))
            .unwrap()
            .set_modified(day_ago)
            .unwrap();
        fs::write(runs.join(".tmpLIVE"), b"being written").unwrap();
        let set_aside = dir.audit().unwrap();
        assert_eq!(set_aside.len(), 1);
        assert_eq!(set_aside[0].0, truncated);
        assert!(
            dir.root()
                .join("corrupt/runs/mnist-mk-k4-s1-abc.parquet")
                .is_file(),
            "kept for inspection"
        );
        assert!(
            !runs.join(".tmpXYZ").exists(),
            "a killed writer's leftover is removed"
        );
        assert!(
            runs.join(".tmpLIVE").exists(),
            "a live writer's file is left alone"
        );
        assert_eq!(dir.runs().unwrap(), vec![good]);
    }

    #[test]
    fn a_foreign_parquet_file_is_named_in_the_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ResultsDir::new(tmp.path(), "t", "smoke");
        let path = dir.root().join("runs").join("odd.parquet");
        write_frame(&path, &mut df!("x" => [1i64]).unwrap()).unwrap();
        let err = dir.runs().unwrap_err().to_string();
        assert!(
            err.contains("odd.parquet") && err.contains("run_id"),
            "{err}"
        );
    }

    #[test]
    fn a_superseded_run_moves_aside_with_its_curve() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ResultsDir::new(tmp.path(), "table1", "smoke");
        let old = record("mk", 0, 0.9);
        dir.store(&old, &[]).unwrap();
        assert!(dir.is_done(&old.run_id));
        dir.supersede(&old.run_id).unwrap();
        assert!(!dir.is_done(&old.run_id));
        assert!(dir.runs().unwrap().is_empty());
        let moved = dir.root().join("superseded");
        assert!(
            moved
                .join("runs")
                .join(format!("{}.parquet", old.run_id))
                .is_file()
        );
        assert!(
            moved
                .join("curves")
                .join(format!("{}.parquet", old.run_id))
                .is_file()
        );
        dir.supersede("never-stored").unwrap();
    }

    #[test]
    fn a_row_stored_before_the_newest_columns_reads_with_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("old.parquet");
        let mut stored = record("mk", 0, 0.91);
        stored.train_score = 0.5;
        let mut frame = RunRecord::frame(std::slice::from_ref(&stored)).unwrap();
        // The oldest layout: no teachers, no task metric, no memory columns.
        for name in [
            "teacher_steps",
            "metric",
            "train_score",
            "test_score",
            "state_bytes",
            "peak_rss_bytes",
        ] {
            frame = frame.drop(name).unwrap();
        }
        write_frame(&path, &mut frame).unwrap();
        let read = RunRecord::from_frame(&path, &read_frame(&path).unwrap()).unwrap();
        assert_eq!(
            read,
            vec![RunRecord {
                teacher_steps: 0,
                metric: "accuracy".into(),
                train_score: stored.train_acc,
                test_score: stored.test_acc,
                state_bytes: None,
                peak_rss_bytes: None,
                ..stored
            }]
        );
    }

    #[test]
    fn every_stored_run_file_reads_back_exactly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut checked = 0;
        for top in ["results", "baselines"] {
            let Ok(experiments) = fs::read_dir(root.join(top)) else {
                continue;
            };
            for profile in experiments.flatten().flat_map(|e| {
                fs::read_dir(e.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|p| p.path())
            }) {
                for path in parquet_files(&profile.join("runs")).unwrap() {
                    let stored = read_frame(&path).unwrap();
                    let records = RunRecord::from_frame(&path, &stored).unwrap();
                    let written = RunRecord::frame(&records).unwrap();
                    let names: Vec<&str> =
                        stored.columns().iter().map(|c| c.name().as_str()).collect();
                    assert!(
                        written.select(names).unwrap().equals_missing(&stored),
                        "{}",
                        path.display()
                    );
                    checked += 1;
                }
            }
        }
        eprintln!("{checked} stored run files read back exactly");
    }

    #[test]
    fn references_round_trip_and_a_partial_update_keeps_the_other_datasets() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ResultsDir::new(tmp.path(), "t", "quick");
        assert!(dir.references().unwrap().is_empty(), "none stored yet");
        let reference = |dataset: &str, score: f64| ReferenceRecord {
            dataset: dataset.into(),
            rule: "majority class of the training set (1)".into(),
            metric: "f1".into(),
            test_score: score,
            test_acc: 0.68,
            data: "abc".into(),
        };
        dir.store_references(&[reference("mrpc", 0.81), reference("cola", 0.0)])
            .unwrap();
        dir.store_references(&[reference("mrpc", 0.82)]).unwrap();
        assert_eq!(
            dir.references().unwrap(),
            vec![reference("cola", 0.0), reference("mrpc", 0.82)]
        );
        dir.store_references(&[]).unwrap();
        assert_eq!(dir.references().unwrap().len(), 2, "nothing new: kept");
    }
}
