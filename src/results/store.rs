//! Parquet results: one file per finished run (its summary row) and one per run for its
//! curves, under `<results>/<experiment>/<profile>/{runs,curves}/<run_id>.parquet`.
//!
//! Files are written to a temporary name in the same folder and renamed into place, so a
//! reader never sees a partial file, and the run file (written last) marks a finished run.

use std::fs;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};

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
    /// Steps spent on teachers/members trained for this run (0 when reused).
    pub teacher_steps: i64,
    pub train_acc: f64,
    pub train_loss: f64,
    pub test_acc: f64,
    pub test_loss: f64,
    /// The task's headline metric (`accuracy`, `mcc`, `f1`) and its values.
    pub metric: String,
    pub train_score: f64,
    pub test_score: f64,
    pub deployed_params: i64,
    pub trained_params: i64,
    /// Whole run, evaluation included.
    pub wall_clock_s: f64,
    /// Mean training step, evaluation excluded.
    pub step_ms: f64,
    /// Bytes of the trained parameters (k copies for MK) and their optimiser state, f32.
    pub state_bytes: Option<i64>,
    /// Peak resident memory of the process during the run (host memory, Linux), bytes.
    pub peak_rss_bytes: Option<i64>,
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
    pub train_seconds: f64,
}

impl CurvePoint {
    /// The curve point of an evaluation, with the task's headline `metric`.
    pub fn new(p: &crate::train::EvalPoint, metric: crate::data::Metric) -> Self {
        CurvePoint {
            train_score: p.train.score(metric),
            test_score: p.test.score(metric),
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
        write_atomic(
            &self.curve_path(&record.run_id),
            &mut curves_frame(record, curve)?,
        )?;
        write_atomic(
            &self.run_path(&record.run_id),
            &mut runs_frame(std::slice::from_ref(record))?,
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
                if name.starts_with(".tmp") {
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
                let check = read(&path).and_then(|frame| {
                    if kind == "runs" {
                        records_from_frame(&path, &frame).map(|_| ())
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

    /// Every stored run row, sorted by run id.
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        let mut records = Vec::new();
        for path in parquet_files(&self.root.join("runs"))? {
            records.extend(records_from_frame(&path, &read(&path)?)?);
        }
        records.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        Ok(records)
    }

    /// Every stored curve row, one frame.
    pub fn curves(&self) -> Result<Option<DataFrame>> {
        let mut all: Option<DataFrame> = None;
        for path in parquet_files(&self.root.join("curves"))? {
            let frame = read(&path)?;
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

    /// Writes a text file (tables, the resolved experiment) atomically.
    pub fn write_text(path: &Path, text: &str) -> Result<()> {
        Self::write_bytes(path, text.as_bytes())
    }

    /// Writes a file (figures, tables) atomically: a temporary file renamed into place.
    pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
        std::io::Write::write_all(&mut tmp, bytes).map_err(|e| Error::io(path, e))?;
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
        Ok(())
    }
}

fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
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

fn write_atomic(path: &Path, frame: &mut DataFrame) -> Result<()> {
    let dir = path.parent().expect("result files live in a folder");
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    ParquetWriter::new(tmp.as_file_mut())
        .finish(frame)
        .map_err(|source| Error::Parquet {
            path: path.to_path_buf(),
            source,
        })?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

fn read(path: &Path) -> Result<DataFrame> {
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|source| Error::Parquet {
            path: path.to_path_buf(),
            source,
        })
}

fn runs_frame(records: &[RunRecord]) -> Result<DataFrame> {
    let s = |f: fn(&RunRecord) -> &str| records.iter().map(f).collect::<Vec<&str>>();
    let o =
        |f: fn(&RunRecord) -> Option<&str>| records.iter().map(f).collect::<Vec<Option<&str>>>();
    let i = |f: fn(&RunRecord) -> i64| records.iter().map(f).collect::<Vec<i64>>();
    let x = |f: fn(&RunRecord) -> f64| records.iter().map(f).collect::<Vec<f64>>();
    df!(
        "run_id" => s(|r| &r.run_id),
        "experiment" => s(|r| &r.experiment),
        "profile" => s(|r| &r.profile),
        "dataset" => s(|r| &r.dataset),
        "model" => s(|r| &r.model),
        "method" => s(|r| &r.method),
        "options" => s(|r| &r.options),
        "k" => i(|r| r.k),
        "mixing" => o(|r| r.mixing.as_deref()),
        "init" => o(|r| r.init.as_deref()),
        "seed" => i(|r| r.seed),
        "epochs" => i(|r| r.epochs),
        "steps" => i(|r| r.steps),
        "teacher_steps" => i(|r| r.teacher_steps),
        "train_acc" => x(|r| r.train_acc),
        "train_loss" => x(|r| r.train_loss),
        "test_acc" => x(|r| r.test_acc),
        "test_loss" => x(|r| r.test_loss),
        "metric" => s(|r| &r.metric),
        "train_score" => x(|r| r.train_score),
        "test_score" => x(|r| r.test_score),
        "deployed_params" => i(|r| r.deployed_params),
        "trained_params" => i(|r| r.trained_params),
        "wall_clock_s" => x(|r| r.wall_clock_s),
        "step_ms" => x(|r| r.step_ms),
        "state_bytes" => records.iter().map(|r| r.state_bytes).collect::<Vec<Option<i64>>>(),
        "peak_rss_bytes" => records.iter().map(|r| r.peak_rss_bytes).collect::<Vec<Option<i64>>>(),
        "status" => s(|r| &r.status),
        "backend" => s(|r| &r.backend),
        "device" => s(|r| &r.device),
        "burn_version" => s(|r| &r.burn_version),
        "git_commit" => s(|r| &r.git_commit),
        "config_hash" => s(|r| &r.config_hash),
        "finished_at" => i(|r| r.finished_at),
    )
    .map_err(|source| Error::Parquet {
        path: PathBuf::from("<runs frame>"),
        source,
    })
}

fn curves_frame(record: &RunRecord, curve: &[CurvePoint]) -> Result<DataFrame> {
    let n = curve.len();
    let x = |f: fn(&CurvePoint) -> f64| curve.iter().map(f).collect::<Vec<f64>>();
    let i = |f: fn(&CurvePoint) -> i64| curve.iter().map(f).collect::<Vec<i64>>();
    df!(
        "run_id" => vec![record.run_id.as_str(); n],
        "dataset" => vec![record.dataset.as_str(); n],
        "method" => vec![record.method.as_str(); n],
        "k" => vec![record.k; n],
        "seed" => vec![record.seed; n],
        "epoch" => i(|p| p.epoch),
        "step" => i(|p| p.step),
        "lr" => x(|p| p.lr),
        "train_acc" => x(|p| p.train_acc),
        "train_loss" => x(|p| p.train_loss),
        "test_acc" => x(|p| p.test_acc),
        "test_loss" => x(|p| p.test_loss),
        "train_score" => x(|p| p.train_score),
        "test_score" => x(|p| p.test_score),
        "train_seconds" => x(|p| p.train_seconds),
    )
    .map_err(|source| Error::Parquet {
        path: PathBuf::from("<curves frame>"),
        source,
    })
}

fn records_from_frame(path: &Path, frame: &DataFrame) -> Result<Vec<RunRecord>> {
    let missing = |name: &str, what: &str| Error::Results {
        path: path.to_path_buf(),
        message: format!("column `{name}` is missing or not {what}"),
    };
    let strs = |name: &str| -> Result<Vec<Option<String>>> {
        let col = frame
            .column(name)
            .and_then(|c| c.str().cloned())
            .map_err(|_| missing(name, "text"))?;
        Ok(col.iter().map(|v| v.map(String::from)).collect())
    };
    let ints = |name: &str| -> Result<Vec<i64>> {
        let col = frame
            .column(name)
            .and_then(|c| c.i64().cloned())
            .map_err(|_| missing(name, "integer"))?;
        Ok(col.iter().map(|v| v.unwrap_or_default()).collect())
    };
    let floats = |name: &str| -> Result<Vec<f64>> {
        let col = frame
            .column(name)
            .and_then(|c| c.f64().cloned())
            .map_err(|_| missing(name, "float"))?;
        Ok(col.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let text = |name: &str| -> Result<Vec<String>> {
        Ok(strs(name)?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    };
    let (run_id, experiment, profile, dataset) = (
        text("run_id")?,
        text("experiment")?,
        text("profile")?,
        text("dataset")?,
    );
    let (model, method, options, status) = (
        text("model")?,
        text("method")?,
        text("options")?,
        text("status")?,
    );
    let (backend, device, burn_version) =
        (text("backend")?, text("device")?, text("burn_version")?);
    let (git_commit, config_hash) = (text("git_commit")?, text("config_hash")?);
    let (mixing, init) = (strs("mixing")?, strs("init")?);
    let (k, seed, epochs, steps) = (ints("k")?, ints("seed")?, ints("epochs")?, ints("steps")?);
    let (deployed_params, trained_params, finished_at) = (
        ints("deployed_params")?,
        ints("trained_params")?,
        ints("finished_at")?,
    );
    let (train_acc, train_loss, test_acc, test_loss) = (
        floats("train_acc")?,
        floats("train_loss")?,
        floats("test_acc")?,
        floats("test_loss")?,
    );
    let (wall_clock_s, step_ms) = (floats("wall_clock_s")?, floats("step_ms")?);
    // Files written before the memory columns existed did not measure it.
    let optional_ints = |name: &str| -> Result<Vec<Option<i64>>> {
        match frame.column(name) {
            Err(_) => Ok(vec![None; frame.height()]),
            Ok(c) => Ok(c
                .i64()
                .map_err(|_| missing(name, "integer"))?
                .iter()
                .collect()),
        }
    };
    let (state_bytes, peak_rss_bytes) = (
        optional_ints("state_bytes")?,
        optional_ints("peak_rss_bytes")?,
    );
    // Files written before the column existed had no teachers.
    let teacher_steps = if frame.column("teacher_steps").is_ok() {
        ints("teacher_steps")?
    } else {
        vec![0; frame.height()]
    };
    // Files written before the task-metric columns existed scored accuracy.
    let (metric, train_score, test_score) = if frame.column("metric").is_ok() {
        (
            text("metric")?,
            floats("train_score")?,
            floats("test_score")?,
        )
    } else {
        (
            vec!["accuracy".to_string(); frame.height()],
            train_acc.clone(),
            test_acc.clone(),
        )
    };
    Ok((0..frame.height())
        .map(|r| RunRecord {
            run_id: run_id[r].clone(),
            experiment: experiment[r].clone(),
            profile: profile[r].clone(),
            dataset: dataset[r].clone(),
            model: model[r].clone(),
            method: method[r].clone(),
            options: options[r].clone(),
            k: k[r],
            mixing: mixing[r].clone(),
            init: init[r].clone(),
            seed: seed[r],
            epochs: epochs[r],
            steps: steps[r],
            teacher_steps: teacher_steps[r],
            train_acc: train_acc[r],
            train_loss: train_loss[r],
            test_acc: test_acc[r],
            test_loss: test_loss[r],
            metric: metric[r].clone(),
            train_score: train_score[r],
            test_score: test_score[r],
            deployed_params: deployed_params[r],
            trained_params: trained_params[r],
            wall_clock_s: wall_clock_s[r],
            step_ms: step_ms[r],
            state_bytes: state_bytes[r],
            peak_rss_bytes: peak_rss_bytes[r],
            status: status[r].clone(),
            backend: backend[r].clone(),
            device: device[r].clone(),
            burn_version: burn_version[r].clone(),
            git_commit: git_commit[r].clone(),
            config_hash: config_hash[r].clone(),
            finished_at: finished_at[r],
        })
        .collect())
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
            train_seconds: 1.0,
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
        write_atomic(&path, &mut df!("x" => [1i64]).unwrap()).unwrap();
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
}
