//! Fine-tuning from a pre-trained checkpoint end to end: the committed tiny BERT checkpoint
//! (`tests/fixtures/data/bert-tiny-random/`, with a 40-token vocabulary written here as its own
//! tokenizer) trains on the GLUE fixtures, and a missing or unfit checkpoint is a named error
//! at load time, never a panic while training.

mod common;

use std::path::{Path, PathBuf};

use common::{command, text};

/// The tiny checkpoint's 40 WordPiece tokens (`vocab_size: 40` in its config).
const VOCAB: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j",
    "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "the", "is",
    "it", "and", "of", "to", "movie", "film", "##s",
];

/// `<data>/bert-tiny/`: the tiny checkpoint with a `vocab.txt` of its own.
fn checkpoint_in(data: &Path) -> PathBuf {
    let fixture = majority_kernels::data::test_data().join("bert-tiny-random");
    let dir = data.join("bert-tiny");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(file), dir.join(file)).unwrap();
    }
    assert_eq!(VOCAB.len(), 40);
    std::fs::write(dir.join("vocab.txt"), VOCAB.join("\n") + "\n").unwrap();
    dir
}

/// An SST-2 experiment on the model `model`, baseline and MK at k = 2, one seed, one epoch.
fn experiment(dir: &Path, model: &str, methods: &str) -> PathBuf {
    let path = dir.join("tiny-bert.yaml");
    std::fs::write(
        &path,
        format!(
            "name: tiny-bert
datasets:
  - dataset: sst2
    model: {model}
    recipe:
      epochs: 1
      batch_size: 16
      train_subset: 64
      test_subset: 32
      optimizer: {{name: adamw, lr: 0.001}}
methods: {methods}
k: [2]
seeds: [0]
profiles:
  smoke: {{seeds: [0]}}
"
        ),
    )
    .unwrap();
    path
}

const METHODS: &str = "[baseline, {name: mk, mixing: 'dirichlet(1)', init: identical}]";

fn run(experiment: &Path, data: &Path, results: &Path) -> std::process::Output {
    command()
        .arg(experiment)
        .args(["--profile", "smoke", "--data-dir"])
        .arg(data)
        .arg("--results-dir")
        .arg(results)
        .output()
        .expect("the binary runs")
}

#[test]
fn a_tiny_pretrained_bert_fine_tunes_with_baseline_and_mk() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    checkpoint_in(&data);
    // Found by name under `--data-dir`, tokenised by its own vocab.txt (no `tokenizer:`).
    let file = experiment(
        tmp.path(),
        "{family: transformer, pretrained: bert-tiny, max_len: 16}",
        METHODS,
    );
    let results = tmp.path().join("results");
    let out = run(&file, &data, &results);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("pre-trained checkpoint `bert-tiny`"),
        "the load report is printed: {stderr}"
    );
    let rows = majority_kernels::results::ResultsDir::new(&results, "tiny-bert", "smoke")
        .runs()
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let row = |method: &str| rows.iter().find(|r| r.method == method).unwrap();
    let (baseline, mk) = (row("baseline"), row("mk"));
    for r in [baseline, mk] {
        assert_eq!(r.dataset, "sst2");
        assert_eq!(r.model, "pretrained-bert-tiny-len16");
        assert_eq!(r.status, "completed");
        assert!(r.test_acc.is_finite() && r.test_loss.is_finite(), "{r:?}");
        assert!(r.steps > 0);
    }
    assert_eq!(mk.k, 2);
    assert_eq!(mk.init.as_deref(), Some("identical"));
    assert_eq!(
        baseline.deployed_params, mk.deployed_params,
        "MK deploys the pre-trained architecture"
    );
    assert!(mk.trained_params > baseline.trained_params);
    assert_ne!(baseline.run_id, mk.run_id);

    // Run again: both runs are stored, nothing trains.
    let again = run(&file, &data, &results);
    assert!(again.status.success(), "{}", text(&again).1);
    assert_eq!(
        majority_kernels::results::ResultsDir::new(&results, "tiny-bert", "smoke")
            .runs()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_missing_or_unfit_checkpoint_is_a_named_error_at_load_time() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    checkpoint_in(&data);
    let results = tmp.path().join("results");

    // Missing: a data error (exit 1) naming the file, the key and every path searched.
    let file = experiment(
        tmp.path(),
        "{family: transformer, pretrained: no-such-bert, max_len: 16}",
        METHODS,
    );
    let out = run(&file, &data, &results);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for part in [
        file.display().to_string(),
        "datasets.0.model.pretrained".into(),
        "pre-trained checkpoint `no-such-bert`".into(),
        data.join("no-such-bert").display().to_string(),
        "HF_HUB_OFFLINE".into(),
    ] {
        assert!(stderr.contains(&part), "`{part}` in {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Unfit for the spec: a usage error (exit 2) naming the file and the key.
    let file = experiment(
        tmp.path(),
        "{family: transformer, pretrained: bert-tiny, max_len: 64}",
        METHODS,
    );
    let out = run(&file, &data, &results);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: datasets.0.model.pretrained: model.max_len = 64 exceeds the 24 positions",
            file.display()
        )),
        "{stderr}"
    );

    // Methods that would throw the loaded weights away are refused before any loading.
    for (methods, expected) in [
        (
            "[baseline, wide]",
            "`methods[1]` (wide) on datasets.0 (sst2): wide trains and deploys what is the \
             k-times-wider model",
        ),
        (
            "[{name: distilled_ensemble, teacher: wide}]",
            "the teacher of `teacher: wide` is the k-times-wider model",
        ),
        (
            "[{name: mk, init: independent}]",
            "`init: independent` draws every copy afresh and would throw away the kernels \
             loaded from the pre-trained checkpoint `bert-tiny`",
        ),
        (
            "[adv_only]",
            "adv_only cannot start from the pre-trained checkpoint `bert-tiny` with `init: \
             independent`",
        ),
    ] {
        let file = experiment(
            tmp.path(),
            "{family: transformer, pretrained: bert-tiny, max_len: 16}",
            methods,
        );
        let out = run(&file, &data, &results);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{methods}: {stderr}");
        assert!(stderr.contains(expected), "{methods}: {stderr}");
    }
    assert!(!results.join("tiny-bert").exists(), "nothing was written");
}

#[test]
fn bench_times_a_pretrained_checkpoint_with_its_own_tokenizer() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    checkpoint_in(&data);
    let bench = |name: &str| {
        command()
            .args(["bench", "--family", "transformer", "--pretrained", name])
            .args(["--max-len", "16", "--batch", "8", "--k", "2"])
            .args(["--steps", "1", "--repeats", "1", "--no-save", "--data-dir"])
            .arg(&data)
            .output()
            .expect("the binary runs")
    };
    let out = bench("bert-tiny");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("pretrained-bert-tiny-len16"),
        "the row names the checkpoint: {stdout}"
    );
    let missing = bench("no-such-bert");
    let (_, stderr) = text(&missing);
    assert!(!missing.status.success());
    assert!(
        stderr.contains("no-such-bert") && !stderr.contains("panicked"),
        "a named error, not a panic: {stderr}"
    );
}
