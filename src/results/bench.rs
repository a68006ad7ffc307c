//! Stored `reproduce bench` measurements: one parquet file per backend and machine (under
//! `results/bench/`), a row per model family and k, read back for the overhead figure.

use std::path::Path;

use super::provenance::machine_parts;
use super::schema::{Table, read_frame, table, write_frame};
use crate::error::{Error, Result};

table! {
    /// One measured configuration, with where and by which code it was measured.
    #[derive(Debug, Clone, PartialEq)]
    pub struct BenchRecord {
        pub family: String,
        pub model: String,
        pub dataset: String,
        pub optimizer: String,
        pub batch: i64,
        pub k: i64,
        /// Median training step of the plain small model, ms.
        pub baseline_ms: f64,
        /// Median training step of its MK twin with `k` copies, ms.
        pub mk_ms: f64,
        /// `mk_ms / baseline_ms`.
        pub ratio: f64,
        /// Seconds from a fresh model to the end of its first training step (upload, kernel
        /// compilation and tuning included), per family.
        pub first_step_s: f64,
        pub steps: i64,
        pub repeats: i64,
        pub backend: String,
        /// The machine ([`super::provenance::machine_description`]).
        pub device: String,
        pub threads: i64,
        pub git_commit: String,
        /// Unix seconds.
        pub finished_at: i64,
    }
}

/// Writes the rows of one bench invocation to `path` (atomically).
pub fn write(path: &Path, rows: &[BenchRecord]) -> Result<()> {
    write_frame(path, &mut BenchRecord::frame(rows)?)
}

/// Stores `rows` in `path` beside the rows already there: a model measured again (same family,
/// model and batch) has all its rows replaced, so one line of ratios comes from one run; every
/// other model's rows are kept (a one-family bench does not erase the others).
pub fn merge(path: &Path, rows: &[BenchRecord]) -> Result<()> {
    let same = |a: &BenchRecord, b: &BenchRecord| {
        a.family == b.family && a.model == b.model && a.batch == b.batch
    };
    let mut all: Vec<BenchRecord> = if path.is_file() {
        read(path)?
            .into_iter()
            .filter(|old| !rows.iter().any(|new| same(old, new)))
            .collect()
    } else {
        Vec::new()
    };
    all.extend(rows.iter().cloned());
    write(path, &all)
}

/// Every row stored in `dir` (`*.parquet`, by file name); none when `dir` does not exist.
pub fn stored(dir: &Path) -> Result<Vec<BenchRecord>> {
    let mut rows = Vec::new();
    for path in super::parquet_files(dir)? {
        rows.extend(read(&path)?);
    }
    Ok(rows)
}

/// The rows of one stored bench file.
pub fn read(path: &Path) -> Result<Vec<BenchRecord>> {
    BenchRecord::from_frame(path, &read_frame(path)?)
}

/// Every row stored in `dir` as `(label, k, ratio)`, the label naming family, model, backend
/// and machine: host and CPU model, since machines may share a host name (`vm`).
pub fn stored_ratios(dir: &Path) -> Result<Vec<(String, i64, f64)>> {
    Ok(stored(dir)?
        .into_iter()
        .map(|r| {
            let machine = match machine_parts(&r.device) {
                (host, "") => host.to_string(),
                (host, cpu) => format!("{host}, {cpu}"),
            };
            (
                format!("{} {} ({}, {machine})", r.family, r.model, r.backend),
                r.k,
                r.ratio,
            )
        })
        .collect())
}

/// A stored row for tests: the MLP on `testhost` at `k`, baseline 2 ms, MK `2 + k` ms.
#[cfg(test)]
pub(crate) fn sample_row(k: i64) -> BenchRecord {
    BenchRecord {
        family: "mlp".into(),
        model: "mlp-784-8-10".into(),
        dataset: "mnist".into(),
        optimizer: "sgd-momentum".into(),
        batch: 32,
        k,
        baseline_ms: 2.0,
        mk_ms: 2.0 + k as f64,
        ratio: (2.0 + k as f64) / 2.0,
        first_step_s: 0.1,
        steps: 3,
        repeats: 1,
        backend: "flex".into(),
        device: "testhost (cpu, 2 threads)".into(),
        threads: 2,
        git_commit: "unknown".into(),
        finished_at: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_rows_round_trip_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![sample_row(1), sample_row(4)];
        write(&dir.path().join("flex-test.parquet"), &rows).unwrap();
        assert_eq!(stored(dir.path()).unwrap(), rows);
        assert_eq!(
            stored_ratios(dir.path()).unwrap(),
            vec![
                ("mlp mlp-784-8-10 (flex, testhost, cpu)".to_string(), 1, 1.5),
                ("mlp mlp-784-8-10 (flex, testhost, cpu)".to_string(), 4, 3.0),
            ]
        );
        assert!(stored(&dir.path().join("absent")).unwrap().is_empty());
    }

    #[test]
    fn a_bench_of_one_model_keeps_the_other_models_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flex-test.parquet");
        let encoder = |k: i64, mk_ms: f64| BenchRecord {
            family: "transformer".into(),
            model: "pretrained-t-len16".into(),
            batch: 32,
            mk_ms,
            ..sample_row(k)
        };
        merge(&path, &[sample_row(1), sample_row(4), encoder(4, 9.0)]).unwrap();
        // The encoder again at another k: its old rows go, the MLP's stay.
        merge(&path, &[encoder(2, 7.0)]).unwrap();
        assert_eq!(
            read(&path).unwrap(),
            vec![sample_row(1), sample_row(4), encoder(2, 7.0)]
        );
        // The same model at another batch is another line.
        let at_64 = BenchRecord {
            batch: 64,
            ..encoder(2, 8.0)
        };
        merge(&path, std::slice::from_ref(&at_64)).unwrap();
        assert_eq!(read(&path).unwrap().len(), 4);
    }

    #[test]
    fn the_stored_bench_files_read_back() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/bench");
        for row in stored(&dir).unwrap() {
            assert!(row.ratio > 0.0 && row.k >= 1, "{row:?}");
        }
    }
}

/// One row of a reference CSV, as `benches/reference/pytorch_step.py` writes it: the same
/// step timed in PyTorch on the same machine.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceRow {
    pub family: String,
    /// The step's batch (`None` when the CSV has no `batch` column).
    pub batch: Option<i64>,
    pub k: i64,
    pub baseline_ms: f64,
    pub mk_ms: f64,
    /// PyTorch's version and the step's dtype.
    pub torch: String,
    pub dtype: String,
    /// The machine it ran on (empty when the CSV has no `host` column).
    pub host: String,
    /// Its CPU model (empty when the CSV has no `cpu` column; older CSVs hold the
    /// architecture, e.g. `x86_64`).
    pub cpu: String,
}

/// The rows of a reference CSV; errors name the file, the missing column or the bad line.
pub fn reference_rows(path: &Path) -> Result<Vec<ReferenceRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            Error::data(
                path,
                format!(
                    "reference CSV has no `{name}` column (expected the output of \
                     benches/reference/pytorch_step.py)"
                ),
            )
        })
    };
    let (family, k, baseline, mk) = (
        column("family")?,
        column("k")?,
        column("baseline_ms")?,
        column("mk_ms")?,
    );
    let (torch, dtype) = (column("torch")?, column("dtype")?);
    let host = header.iter().position(|h| *h == "host");
    let cpu = header.iter().position(|h| *h == "cpu");
    let batch = header.iter().position(|h| *h == "batch");
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or_default().to_string();
        let number = |i: usize| -> Result<f64> {
            fields.get(i).and_then(|v| v.parse().ok()).ok_or_else(|| {
                Error::data(
                    path,
                    format!("line {}: expected a number in column {}", n + 2, i + 1),
                )
            })
        };
        rows.push(ReferenceRow {
            family: field(family),
            batch: batch.map(|i| number(i).map(|b| b as i64)).transpose()?,
            k: number(k)? as i64,
            baseline_ms: number(baseline)?,
            mk_ms: number(mk)?,
            torch: field(torch),
            dtype: field(dtype),
            host: host.map(field).unwrap_or_default(),
            cpu: cpu.map(field).unwrap_or_default(),
        });
    }
    Ok(rows)
}
