//! The comparison protocol end to end on the committed fixtures: a validation slice held out of
//! the training set, a tuning grid every method gets, final runs at the value chosen on the
//! validation score, the two phases of a sweep, and data sizes checked against the data.

use std::fs;
use std::path::Path;

mod common;

use common::{reproduce, text};
use majority_kernels::results::{ResultsDir, RunRecord};
use polars::prelude::ChunkCompareEq;

/// Seconds on two cores: 400 fixture images trained, 100 held out, two methods, a grid of two.
const TUNED: &str = r#"name: tuned
datasets:
  - dataset: mnist
    model: {family: mlp, hidden: [16]}
    recipe:
      epochs: 2
      batch_size: 50
      validation: 100
      optimizer: {name: sgd, lr: 0.05, momentum: 0.9}
methods: [baseline, {name: mk, mixing: dirichlet(1)}]
k: [2]
seeds: [0, 1]
tune: {lr_multipliers: [0.5, 4], seeds: [100]}
profiles: {quick: {}}
"#;

fn runs(results: &Path) -> Vec<RunRecord> {
    ResultsDir::new(results, "tuned", "quick").runs().unwrap()
}

#[test]
fn final_runs_train_at_the_learning_rate_their_tuning_runs_chose_on_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tuned.yaml");
    fs::write(&file, TUNED).unwrap();
    let exp = file.to_str().unwrap();
    let results = tmp.path().join("results");

    // The final phase alone has nothing to train yet: its runs wait for their tuning, and the
    // phase fails so that a sweep's dependency does not pass it for done.
    let out = reproduce(&[exp, "--phase", "final", "--quiet"], &results);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(runs(&results).is_empty());
    assert!(err.contains("4 final runs wait for tuning runs"), "{err}");

    let out = reproduce(&[exp, "--phase", "tune", "--quiet"], &results);
    assert!(out.status.success(), "{}", text(&out).1);
    let tuning = runs(&results);
    assert_eq!(tuning.len(), 4, "2 methods x 2 grid points x 1 tuning seed");
    assert!(tuning.iter().all(|r| r.role == "tune" && r.seed == 100));
    assert!(
        tuning
            .iter()
            .all(|r| r.validation_score.is_some_and(|v| (0.0..=1.0).contains(&v)))
    );
    let listing = text(&reproduce(&["plan", exp], &results)).0;
    assert_eq!(listing.lines().filter(|l| l.contains(" tune ")).count(), 4);
    assert!(
        listing
            .lines()
            .filter(|l| l.contains(" final "))
            .all(|l| l.contains("pending at lr x")),
        "{listing}"
    );

    let out = reproduce(&[exp, "--quiet"], &results);
    let table = text(&out).0;
    assert!(out.status.success(), "{}", text(&out).1);
    let all = runs(&results);
    assert_eq!(all.len(), 8);
    for method in ["baseline", "mk"] {
        let score_at = |lr: f64| {
            all.iter()
                .find(|r| r.role == "tune" && r.method == method && r.lr == Some(lr))
                .and_then(|r| r.validation_score)
                .unwrap()
        };
        // Ties go to the smaller learning rate.
        let chosen = if score_at(0.2) > score_at(0.025) {
            0.2
        } else {
            0.025
        };
        let finals: Vec<&RunRecord> = all
            .iter()
            .filter(|r| r.role == "final" && r.method == method)
            .collect();
        assert_eq!(finals.len(), 2);
        assert!(
            finals.iter().all(|r| r.lr == Some(chosen)),
            "{method}: chose {chosen}, finals at {:?}",
            finals.iter().map(|r| r.lr).collect::<Vec<_>>()
        );
    }
    // The table reports the final runs, their learning rate and validation score, and the
    // tuning runs' steps as their cost: 2 tuning runs x 2 epochs x 8 steps.
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| mnist")).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows.iter().all(|l| l.contains("| 32 |")), "{table}");

    // Curves score the validation slice after every epoch and end at the table's number.
    let curves = ResultsDir::new(&results, "tuned", "quick")
        .curves()
        .unwrap()
        .unwrap();
    let finals: Vec<&RunRecord> = all.iter().filter(|r| r.role == "final").collect();
    for run in finals {
        let mask = curves
            .column("run_id")
            .unwrap()
            .str()
            .unwrap()
            .equal(run.run_id.as_str());
        let curve = curves.filter(&mask).unwrap();
        let validation = curve.column("validation_score").unwrap().f64().unwrap();
        assert!(validation.iter().all(|v| v.is_some_and(|v| !v.is_nan())));
        let kinds: Vec<String> = curve
            .column("kind")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|k| k.unwrap().to_string())
            .collect();
        assert_eq!(kinds, ["epoch", "epoch", "deployed"]);
        let test = curve.column("test_score").unwrap().f64().unwrap();
        assert_eq!(test.get(2), Some(run.test_score));
    }
}

#[test]
fn data_sizes_larger_than_the_data_are_errors_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tuned.yaml");
    fs::write(&file, TUNED).unwrap();
    let exp = file.to_str().unwrap();
    let results = tmp.path().join("results");
    for (set, expected) in [
        (
            "datasets.0.recipe.train_subset=256000",
            "recipe.train_subset: 256000 is larger than mnist's 400 training examples left after \
             the 100 validation examples",
        ),
        (
            "datasets.0.recipe.test_subset=99999",
            "recipe.test_subset: 99999 is larger than mnist's",
        ),
        (
            "datasets.0.recipe.validation=500",
            "recipe.validation: 500 examples held out of mnist's 500 training examples leaves \
             none to train on",
        ),
    ] {
        let out = reproduce(&[exp, "--set", set, "--quiet"], &results);
        let err = text(&out).1;
        assert_eq!(out.status.code(), Some(2), "{set}: {err}");
        assert!(
            err.contains(expected) && err.contains("tuned.yaml"),
            "{set}: {err}"
        );
    }
    assert!(runs(&results).is_empty(), "nothing trained");
}

#[test]
fn two_shards_run_the_two_phases_and_store_every_run_once() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tuned.yaml");
    fs::write(&file, TUNED).unwrap();
    let exp = file.to_str().unwrap();
    let results = tmp.path().join("results");
    let positions = |shard: &str| -> Vec<String> {
        text(&reproduce(&["plan", exp, "--shard", shard], &results))
            .0
            .lines()
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect()
    };
    let before = [positions("0/2"), positions("1/2")];
    for phase in ["tune", "final"] {
        for shard in ["0/2", "1/2"] {
            let out = reproduce(
                &[exp, "--phase", phase, "--shard", shard, "--quiet"],
                &results,
            );
            assert!(out.status.success(), "{phase} {shard}: {}", text(&out).1);
        }
    }
    let all = runs(&results);
    assert_eq!(all.len(), 8, "4 tuning + 4 final runs, each once");
    let mut ids: Vec<&str> = all.iter().map(|r| r.run_id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 8);
    // Each shard owns the same positions before and after tuning, and they partition the plan.
    assert_eq!([positions("0/2"), positions("1/2")], before);
    assert_eq!(before[0].len() + before[1].len(), 8);
    for shard in ["0/2", "1/2"] {
        let listing = text(&reproduce(&["plan", exp, "--shard", shard], &results)).0;
        assert!(listing.lines().all(|l| l.contains("stored")), "{listing}");
    }
}

#[test]
fn plan_estimates_the_training_arithmetic_of_every_run_on_request() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tuned.yaml");
    fs::write(&file, TUNED).unwrap();
    let exp = file.to_str().unwrap();
    let results = tmp.path().join("results");
    let plain = text(&reproduce(&["plan", exp], &results)).0;
    assert!(!plain.contains("Estimated"), "the listing alone by default");
    let out = reproduce(&["plan", exp, "--tflops", "0.001"], &results);
    assert!(out.status.success(), "{}", text(&out).1);
    let listing = text(&out).0;
    assert!(listing.starts_with(&plain), "{listing}");
    // MLP 784-16-10: 12 704 multiply-adds an example; 400 examples trained (the fixture's 500
    // less the 100 held out), 2 epochs, 6 FLOPs a multiply-add: 60.98 MFLOP a run; 4 runs
    // each (2 tuning, 2 final).
    let row = |method: &str| {
        listing
            .lines()
            .find(|l| l.contains(method))
            .unwrap_or_else(|| panic!("{listing}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        row("baseline (methods[0])"),
        "4 mnist baseline (methods[0]) 1 60.979 MFLOP 0.00"
    );
    assert!(row("mk (methods[1])").starts_with("4 mnist mk (methods[1]) 2 60.979 MFLOP"));
    assert!(
        listing.contains("total: 8 runs, 487.834 MFLOP, 0.0 hours at a sustained 0.001 TFLOP/s"),
        "{listing}"
    );
    let refused = reproduce(&["plan", exp, "--tflops", "0"], &results);
    assert!(!refused.status.success());
    assert!(
        text(&refused)
            .1
            .contains("--tflops 0: expected a positive rate"),
        "{}",
        text(&refused).1
    );
}
