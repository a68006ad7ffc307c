//! Reliability of the `reproduce` binary under the conditions real sweeps meet: killed
//! processes, diverging runs, concurrent shards, Slurm array tasks, unwritable or full disks.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{BIN, command, reproduce, text};
use majority_kernels::data::test_data;
use majority_kernels::results::{ResultsDir, RunRecord};

fn stderr(out: &Output) -> String {
    text(out).1
}

fn write_experiment(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    fs::write(&path, format!("name: {name}\n{body}")).unwrap();
    path
}

fn stored(results: &Path, experiment: &str, profile: &str) -> Vec<RunRecord> {
    ResultsDir::new(results, experiment, profile)
        .runs()
        .unwrap()
}

/// What must be identical between an interrupted and an uninterrupted run.
fn outcome(r: &RunRecord) -> (String, i64, [u64; 4], String) {
    let bits = [
        r.train_acc.to_bits(),
        r.train_loss.to_bits(),
        r.test_acc.to_bits(),
        r.test_loss.to_bits(),
    ];
    (r.run_id.clone(), r.steps, bits, r.status.clone())
}

/// Sized for the fixture's 500 MNIST images: a wide MLP at batch 8 makes each epoch (63 steps)
/// last most of a second on two cores, long enough to kill the run between two checkpoints.
const KILL_BODY: &str = r#"
datasets:
  - dataset: mnist
    model: {family: mlp, hidden: [512, 512]}
    recipe:
      epochs: 5
      batch_size: 8
      optimizer: {name: sgd, lr: 0.01, momentum: 0.9, weight_decay: 0.0005}
      schedule: {kind: cosine}
      eval_train_subset: 200
methods: [{name: mk, mixing: dirichlet(1)}]
k: [4]
seeds: [7]
profiles: {quick: {}}
"#;

fn find_checkpoint(root: &Path, epoch: &str) -> bool {
    let Ok(entries) = fs::read_dir(root) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        (p.file_name().is_some_and(|n| n == epoch) && p.join("state.json").is_file())
            || (p.is_dir() && find_checkpoint(&p, epoch))
    })
}

#[test]
fn a_killed_run_resumes_to_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let experiment = write_experiment(tmp.path(), "killtest", KILL_BODY);
    let exp = experiment.to_str().unwrap();
    let (reference, interrupted) = (tmp.path().join("reference"), tmp.path().join("interrupted"));

    let out = reproduce(&[exp], &reference);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = stored(&reference, "killtest", "quick");
    assert_eq!(expected.len(), 1);

    // Kill -9 right after the second epoch's checkpoint appears, then resume.
    let mut child = command()
        .args([
            exp,
            "--results-dir",
            interrupted.to_str().unwrap(),
            "--quiet",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let checkpoints = interrupted.join("killtest/quick/checkpoints");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !find_checkpoint(&checkpoints, "epoch-0002") {
        assert!(Instant::now() < deadline, "no checkpoint within 2 minutes");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        stored(&interrupted, "killtest", "quick").is_empty(),
        "killed before storing"
    );
    // The killed process's time counts in the run's wall clock: make it unmistakable (a day)
    // in the clock the run resumes from.
    let clocks = files_named(&checkpoints, "wall-clock.json");
    assert_eq!(clocks.len(), 1, "one clock per run: {clocks:?}");
    let saved: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&clocks[0]).unwrap()).unwrap();
    assert!(saved["seconds"].as_f64().unwrap() > 0.0, "{saved}");
    fs::write(&clocks[0], r#"{"seconds": 86400.0}"#).unwrap();

    let resumed = reproduce(&[exp], &interrupted);
    let log = stderr(&resumed);
    assert!(resumed.status.success(), "{log}");
    assert!(log.contains("resumed after epoch"), "{log}");
    let got = stored(&interrupted, "killtest", "quick");
    assert_eq!(
        got.iter().map(outcome).collect::<Vec<_>>(),
        expected.iter().map(outcome).collect::<Vec<_>>()
    );
    assert!(
        got[0].wall_clock_s > 86_400.0 && got[0].wall_clock_s < 86_400.0 + 3_600.0,
        "the earlier process's time counts once: {}",
        got[0].wall_clock_s
    );
    assert!(
        !checkpoints.exists() || fs::read_dir(&checkpoints).unwrap().count() == 0,
        "checkpoints removed once stored"
    );
}

/// Every file called `name` under `root`.
fn files_named(root: &Path, name: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == name) {
                vec![p]
            } else if p.is_dir() {
                files_named(&p, name)
            } else {
                Vec::new()
            }
        })
        .collect()
}

#[test]
fn a_diverging_run_is_recorded_and_the_sweep_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let body = r#"
datasets:
  - dataset: mnist
    model: {family: mlp, hidden: [32]}
    recipe:
      epochs: 3
      batch_size: 64
      optimizer: {name: sgd, lr: 10000.0, momentum: 0.9}
      train_subset: 500
      test_subset: 200
methods: [baseline, lr_over_k]
k: [1000000]
seeds: [0]
profiles: {quick: {}}
"#;
    let exp = write_experiment(tmp.path(), "diverge", body);
    let out = reproduce(&[exp.to_str().unwrap()], &tmp.path().join("results"));
    assert!(out.status.success(), "{}", stderr(&out));
    let runs = stored(&tmp.path().join("results"), "diverge", "quick");
    let status = |m: &str| runs.iter().find(|r| r.method == m).unwrap().status.clone();
    assert_eq!(status("baseline"), "diverged");
    assert_eq!(status("lr_over_k"), "completed");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("0 (1 diverged)"), "{table}");
}

#[test]
fn three_concurrent_shards_store_every_run_once() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let args = [
        "table1",
        "--profile",
        "smoke",
        "--dataset",
        "mnist",
        "--set",
        "seeds=[0,1,2]",
        "--quiet",
    ];
    let children: Vec<_> = (0..3)
        .map(|i| {
            command()
                .args(args)
                .args([
                    "--shard",
                    &format!("{i}/3"),
                    "--results-dir",
                    results.to_str().unwrap(),
                ])
                .output()
        })
        .collect::<Vec<_>>();
    for child in children {
        let out = child.unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let runs = stored(&results, "table1", "smoke");
    assert_eq!(runs.len(), 12, "4 methods x 3 seeds");
    let plan = reproduce(
        &[
            "plan",
            "table1",
            "--profile",
            "smoke",
            "--dataset",
            "mnist",
            "--set",
            "seeds=[0,1,2]",
        ],
        &results,
    );
    let listing = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(
        listing.lines().filter(|l| l.ends_with("stored")).count(),
        12,
        "{listing}"
    );
    let report = reproduce(
        &[
            "report",
            "table1",
            "--profile",
            "smoke",
            "--dataset",
            "mnist",
            "--set",
            "seeds=[0,1,2]",
        ],
        &results,
    );
    let table = String::from_utf8_lossy(&report.stdout);
    assert_eq!(
        table
            .lines()
            .filter(|l| l.starts_with("| mnist") && l.ends_with("| 3 |"))
            .count(),
        4,
        "{table}"
    );
}

#[test]
fn the_slurm_script_runs_its_array_tasks_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm/reproduce.sbatch");
    let run_task = |task: &str, count: &str| {
        Command::new("bash")
            .arg(&script)
            .env("SLURM_ARRAY_TASK_ID", task)
            .env("SLURM_ARRAY_TASK_COUNT", count)
            .env("GPUS_PER_TASK", "2")
            .env("EXPERIMENT", "table1")
            .env("PROFILE", "smoke")
            .env("BACKEND", "flex")
            .env("REPRODUCE", BIN)
            .env("RESULTS", &results)
            .env("EXTRA_ARGS", "--set seeds=[0,1,2] --dataset mnist")
            .env("MK_DATA_DIR", test_data())
            .env("HF_HUB_OFFLINE", "1")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    // Task 1 of 2 with 2 GPUs each runs shards 2/4 and 3/4.
    let out = run_task("1", "2");
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("shard 2/4 on GPU 0") && log.contains("shard 3/4 on GPU 1"),
        "{log}"
    );
    let plan = |shard: &str| {
        let out = reproduce(
            &[
                "plan",
                "table1",
                "--profile",
                "smoke",
                "--dataset",
                "mnist",
                "--set",
                "seeds=[0,1,2]",
                "--shard",
                shard,
            ],
            &results,
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
    };
    let mine: Vec<String> = [plan("2/4"), plan("3/4")].concat();
    assert_eq!(mine.len(), 6);
    assert!(mine.iter().all(|l| l.ends_with("stored")), "{mine:?}");
    assert!(
        plan("0/4")
            .iter()
            .chain(plan("1/4").iter())
            .all(|l| l.ends_with("pending"))
    );

    let bad = run_task("2", "2");
    assert_eq!(
        bad.status.code(),
        Some(2),
        "a task id beyond the array is rejected"
    );
}

#[test]
fn an_unwritable_results_folder_fails_before_training_and_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-folder");
    fs::write(&file, "x").unwrap();
    let out = reproduce(
        &["table1", "--profile", "smoke", "--dataset", "mnist"],
        &file.join("results"),
    );
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("not-a-folder/results") && !log.contains("[1/4]"),
        "{log}"
    );
}

#[test]
fn a_full_disk_is_an_error_that_loses_nothing_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk");
    fs::create_dir(&disk).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&disk)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _guard = Unmount(&disk);
    let results = disk.join("results");
    let first = reproduce(
        &["table1", "--profile", "smoke", "--dataset", "mnist"],
        &results,
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let before = stored(&results, "table1", "smoke");
    assert_eq!(before.len(), 4);

    // Fill the disk, then ask for more runs.
    let filler = disk.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let second = reproduce(
        &[
            "table1",
            "--profile",
            "smoke",
            "--dataset",
            "mnist",
            "--set",
            "seeds=[0,1]",
        ],
        &results,
    );
    let log = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{log}");
    assert!(
        log.contains("No space left on device") && log.contains(results.to_str().unwrap()),
        "{log}"
    );

    fs::remove_file(&filler).unwrap();
    assert_eq!(
        stored(&results, "table1", "smoke"),
        before,
        "stored runs intact"
    );
}
