//! GLUE tasks CoLA, SST-2 and MRPC from the GLUE distribution's TSV files
//! (`<dir>/glue_data/<Task>/{train,dev}.tsv`) or the Hub (`nyu-mll/glue` parquet).
//! The dev split is the test set (GLUE's test labels are hidden).

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use super::dataset::{Fingerprint, Label};
use super::hub::{self, HubAccess};
use super::text::TextDataset;
use crate::error::{Error, Result};

/// The GLUE tasks this harness knows, with their headline metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Cola,
    Sst2,
    Mrpc,
}

impl Task {
    pub fn from_name(name: &str) -> Option<Task> {
        match name {
            "cola" => Some(Task::Cola),
            "sst2" => Some(Task::Sst2),
            "mrpc" => Some(Task::Mrpc),
            _ => None,
        }
    }

    fn folder(self) -> &'static str {
        match self {
            Task::Cola => "CoLA",
            Task::Sst2 => "SST-2",
            Task::Mrpc => "MRPC",
        }
    }

    fn hub_name(self) -> &'static str {
        match self {
            Task::Cola => "cola",
            Task::Sst2 => "sst2",
            Task::Mrpc => "mrpc",
        }
    }
}

/// Hub repository used when no local copy is found.
pub const HUB_REPO: &str = "nyu-mll/glue";

/// One labelled example: one sentence or a pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub first: String,
    pub second: Option<String>,
    pub label: u8,
}

/// Parses a GLUE TSV file. Tolerates a UTF-8 byte-order mark, a header row or none (CoLA has
/// none), quotes inside sentences (fields are split on tabs only, as GLUE writes them) and a
/// trailing newline; any other malformed row is an error naming the file and line.
pub fn parse_tsv(task: Task, path: &Path, text: &str) -> Result<Vec<Example>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut examples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let (label, first, second) = match task {
            Task::Cola if fields.len() == 4 => (fields[1], fields[3], None),
            Task::Sst2 if fields.len() == 2 => (fields[1], fields[0], None),
            Task::Mrpc if fields.len() == 5 => (fields[0], fields[3], Some(fields[4])),
            _ => {
                return Err(Error::data(
                    path,
                    format!(
                        "line {}: {} tab-separated fields, not the {} layout",
                        number + 1,
                        fields.len(),
                        task.folder()
                    ),
                ));
            }
        };
        let label = match label.trim().parse::<u8>() {
            Ok(l @ (0 | 1)) => l,
            _ if number == 0 => continue, // header row
            _ => {
                return Err(Error::data(
                    path,
                    format!("line {}: label `{label}` is not 0 or 1", number + 1),
                ));
            }
        };
        examples.push(Example {
            first: first.to_string(),
            second: second.map(String::from),
            label,
        });
    }
    if examples.is_empty() {
        return Err(Error::data(path, "no examples"));
    }
    Ok(examples)
}

/// Reads a `nyu-mll/glue` parquet split.
pub fn parse_parquet(task: Task, path: &Path) -> Result<Vec<Example>> {
    let df = hub::read_parquet(path)?;
    let text = |name: &str| -> Result<Vec<String>> {
        let col = df
            .column(name)
            .and_then(|c| c.str().cloned())
            .map_err(|_| Error::data(path, format!("expected a text column `{name}`")))?;
        Ok(col
            .iter()
            .map(|s| s.unwrap_or_default().to_string())
            .collect())
    };
    let labels = hub::read_labels(&df, path)?;
    let (first, second) = match task {
        Task::Mrpc => (text("sentence1")?, Some(text("sentence2")?)),
        _ => (text("sentence")?, None),
    };
    first
        .into_iter()
        .enumerate()
        .map(|(i, first)| {
            let label = u8::try_from(labels[i])
                .ok()
                .filter(|l| *l <= 1)
                .ok_or_else(|| {
                    Error::data(path, format!("row {i}: label {} is not 0 or 1", labels[i]))
                })?;
            Ok(Example {
                first,
                second: second.as_ref().map(|s| s[i].clone()),
                label,
            })
        })
        .collect()
}

/// Finds the task's `{train,dev}.tsv` in `dirs` (`<dir>/glue_data/<Task>/` or `<dir>/<Task>/`),
/// else the Hub parquet files; returns (train, dev) examples.
pub fn read(
    task: Task,
    dirs: &[PathBuf],
    hub_access: &HubAccess,
) -> Result<(Vec<Example>, Vec<Example>)> {
    for dir in dirs {
        for folder in [
            dir.join("glue_data").join(task.folder()),
            dir.join(task.folder()),
        ] {
            let (train, dev) = (folder.join("train.tsv"), folder.join("dev.tsv"));
            if train.is_file() && dev.is_file() {
                let read = |p: &Path| -> Result<Vec<Example>> {
                    let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
                    parse_tsv(task, p, &text)
                };
                return Ok((read(&train)?, read(&dev)?));
            }
        }
    }
    let searched = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let hint = format!(
        "GLUE {} train.tsv/dev.tsv not found under glue_data/{} in {searched}",
        task.folder(),
        task.folder()
    );
    let name = task.hub_name();
    let train = hub::dataset_file(
        hub_access,
        HUB_REPO,
        &format!("{name}/train-00000-of-00001.parquet"),
        &hint,
    )?;
    let dev = hub::dataset_file(
        hub_access,
        HUB_REPO,
        &format!("{name}/validation-00000-of-00001.parquet"),
        &hint,
    )?;
    Ok((parse_parquet(task, &train)?, parse_parquet(task, &dev)?))
}

/// Tokenises examples to at most `max_len` ids (truncating the longer of a pair first).
pub fn tokenize(
    examples: &[Example],
    tokenizer: &Tokenizer,
    max_len: usize,
    fingerprint: &mut Fingerprint,
) -> Result<TextDataset> {
    let mut tokenizer = tokenizer.clone();
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|e| Error::Usage(format!("tokenizer truncation to {max_len}: {e}")))?;
    tokenizer.with_padding(None);
    let mut ids = vec![0u32; examples.len() * max_len];
    let mut lengths = Vec::with_capacity(examples.len());
    let mut second = Vec::with_capacity(examples.len());
    for (i, example) in examples.iter().enumerate() {
        let encoding = match &example.second {
            Some(second) => tokenizer.encode((example.first.as_str(), second.as_str()), true),
            None => tokenizer.encode(example.first.as_str(), true),
        }
        .map_err(|e| Error::Usage(format!("tokenizing `{}`: {e}", example.first)))?;
        let row = encoding.get_ids();
        ids[i * max_len..i * max_len + row.len()].copy_from_slice(row);
        lengths.push(row.len() as u16);
        second.push(segment_start(encoding.get_type_ids()).ok_or_else(|| {
            Error::Usage(format!(
                "tokenizing `{}`: token types {:?} are not 0s then 1s",
                example.first,
                encoding.get_type_ids()
            ))
        })?);
    }
    let labels: Vec<Label> = examples.iter().map(|e| e.label as Label).collect();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
    fingerprint.add(&bytes, &labels);
    Ok(TextDataset {
        ids,
        lengths,
        second,
        max_len,
        labels,
        num_classes: 2,
        vocab: tokenizer.get_vocab_size(true),
    })
}

/// Where the type-1 tokens of a row start (its length when it has none); `None` unless the
/// types are 0s followed by 1s.
fn segment_start(types: &[u32]) -> Option<u16> {
    let start = types.iter().position(|&t| t != 0).unwrap_or(types.len());
    types[start..]
        .iter()
        .all(|&t| t == 1)
        .then_some(start as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{full_data, test_data};
    use polars::prelude::*;

    /// Reads CoLA, SST-2 and MRPC from `dir`, expecting `sizes` (train, dev) examples each.
    fn check_glue(dir: PathBuf, sizes: [(usize, usize); 3]) {
        let hub = HubAccess::from_env();
        for (task, expected) in [Task::Cola, Task::Sst2, Task::Mrpc].into_iter().zip(sizes) {
            let (train, dev) = read(task, std::slice::from_ref(&dir), &hub).unwrap();
            assert_eq!((train.len(), dev.len()), expected, "{task:?}");
            assert!(train.iter().any(|e| e.label == 0) && train.iter().any(|e| e.label == 1));
            assert_eq!(train[0].second.is_some(), task == Task::Mrpc);
        }
    }

    #[test]
    fn reads_the_glue_fixture() {
        // The first 256 train and 128 dev rows, quirks kept (CoLA: no header; MRPC: a BOM).
        check_glue(test_data(), [(256, 128); 3]);
    }

    #[test]
    fn reads_the_real_glue_files() {
        let test = "data::glue::tests::reads_the_real_glue_files";
        if let Some(dir) = full_data(test, "GLUE tasks", "glue_data/SST-2/train.tsv") {
            check_glue(dir, [(8551, 1043), (67349, 872), (3668, 408)]);
        }
    }

    fn write_hub_parquet(task: Task, examples: &[Example], path: &Path) {
        let n = examples.len();
        let first = Series::new(
            "sentence".into(),
            examples
                .iter()
                .map(|e| e.first.as_str())
                .collect::<Vec<_>>(),
        );
        let labels = Series::new(
            "label".into(),
            examples.iter().map(|e| e.label as i64).collect::<Vec<_>>(),
        );
        let idx = Series::new("idx".into(), (0..n as i32).collect::<Vec<_>>());
        let columns = match task {
            Task::Mrpc => vec![
                first.with_name("sentence1".into()).into(),
                Series::new(
                    "sentence2".into(),
                    examples
                        .iter()
                        .map(|e| e.second.as_deref().unwrap())
                        .collect::<Vec<_>>(),
                )
                .into(),
                labels.into(),
                idx.into(),
            ],
            _ => vec![first.into(), labels.into(), idx.into()],
        };
        let mut frame = DataFrame::new(n, columns).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        ParquetWriter::new(std::fs::File::create(path).unwrap())
            .finish(&mut frame)
            .unwrap();
    }

    #[test]
    fn falls_back_to_the_hub_cache_offline() {
        let dir = test_data();
        let local = HubAccess::from_env();
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("datasets--nyu-mll--glue");
        let hub = HubAccess {
            cache: hf_hub::Cache::new(cache.path().to_path_buf()),
            offline: true,
        };
        let empty = tempfile::tempdir().unwrap();
        let err = read(Task::Mrpc, &[empty.path().to_path_buf()], &hub)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MRPC") && err.contains("nyu-mll/glue") && err.contains("--data-dir"),
            "{err}"
        );

        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), "c0ffee").unwrap();
        for task in [Task::Cola, Task::Mrpc] {
            let (train, dev) = read(task, std::slice::from_ref(&dir), &local).unwrap();
            let (train, dev) = (&train[..50], &dev[..20]);
            let snapshot = repo.join("snapshots/c0ffee").join(task.hub_name());
            write_hub_parquet(task, train, &snapshot.join("train-00000-of-00001.parquet"));
            write_hub_parquet(
                task,
                dev,
                &snapshot.join("validation-00000-of-00001.parquet"),
            );
            let (hub_train, hub_dev) = read(task, &[empty.path().to_path_buf()], &hub).unwrap();
            assert_eq!((&hub_train[..], &hub_dev[..]), (train, dev), "{task:?}");
        }
    }

    #[test]
    fn quirks_are_tolerated_and_bad_rows_named() {
        let path = Path::new("train.tsv");
        let mrpc = "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n1\t1\t2\tHe said \"hi\".\tShe said 'hi'.\r\n";
        let rows = parse_tsv(Task::Mrpc, path, mrpc).unwrap();
        assert_eq!(
            rows,
            vec![Example {
                first: "He said \"hi\".".into(),
                second: Some("She said 'hi'.".into()),
                label: 1
            }]
        );
        let cola = "gj04\t1\t\tThe book was read.\ngj04\t0\t*\tBook the read was.\n";
        assert_eq!(
            parse_tsv(Task::Cola, path, cola).unwrap().len(),
            2,
            "no header row"
        );
        let err = parse_tsv(Task::Sst2, path, "sentence\tlabel\nfine\t1\nbroken row\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.tsv") && err.contains("line 3"), "{err}");
        let err = parse_tsv(Task::Sst2, path, "sentence\tlabel\nfine\t7\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`7`"), "{err}");
    }

    #[test]
    fn sentence_pairs_get_token_types() {
        type B = crate::backend::TestBackend;
        let dir = test_data();
        let hub = HubAccess::from_env();
        let tokenizer =
            crate::data::tokenize::from_file(&dir.join("bert-base-uncased").join("tokenizer.json"))
                .unwrap();
        let mut fingerprint = Fingerprint::default();
        let (mrpc, _) = read(Task::Mrpc, std::slice::from_ref(&dir), &hub).unwrap();
        let pairs = tokenize(&mrpc[..8], &tokenizer, 32, &mut fingerprint).unwrap();
        for i in 0..pairs.len() {
            let (second, len) = (pairs.second[i] as usize, pairs.lengths[i] as usize);
            let row = &pairs.ids[i * 32..i * 32 + len];
            assert!(second < len, "row {i}: a pair has a second segment");
            assert_eq!(
                (row[0], row[second - 1], row[len - 1]),
                (101, 102, 102),
                "row {i}"
            );
        }
        let indices = [0, 1, 2];
        let types: Vec<i64> = pairs
            .token_types::<B>(&indices, &Default::default())
            .expect("pairs have type-1 tokens")
            .into_data()
            .convert::<i64>()
            .to_vec()
            .unwrap();
        let t = types.len() / 3;
        for (r, &i) in indices.iter().enumerate() {
            let (second, len) = (pairs.second[i] as usize, pairs.lengths[i] as usize);
            let want: Vec<i64> = (0..t).map(|j| i64::from(j >= second && j < len)).collect();
            assert_eq!(types[r * t..(r + 1) * t], want[..], "row {i}");
        }

        let (sst2, _) = read(Task::Sst2, std::slice::from_ref(&dir), &hub).unwrap();
        let single = tokenize(&sst2[..8], &tokenizer, 32, &mut fingerprint).unwrap();
        assert_eq!(single.second, single.lengths);
        assert!(
            single
                .token_types::<B>(&[0, 1], &Default::default())
                .is_none()
        );
    }
}
