//! The `reproduce` binary end to end on the smoke profile: it trains, stores parquet, prints
//! the table, resumes without retraining, and rejects bad input with a named key.

mod common;

use common::{reproduce, text};

#[test]
fn smoke_profile_trains_stores_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let first = reproduce(&["table1", "--profile", "smoke"], tmp.path());
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "{stderr}");
    for method in [
        "| baseline |",
        "| baseline_long |",
        "| lr_over_k |",
        "| mk (identical) |",
    ] {
        assert!(stdout.contains(method), "missing {method} in\n{stdout}");
    }
    let runs = tmp.path().join("table1/smoke/runs");
    // 4 methods on MNIST (MLP) and on CIFAR-10 (ResNet), and MK with BatchNorm
    // re-estimation on CIFAR-10 only (`datasets: [cifar10]`).
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 9);
    assert_eq!(
        std::fs::read_dir(tmp.path().join("table1/smoke/curves"))
            .unwrap()
            .count(),
        9
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("| cifar10 | resnet4-w8-cifar |"))
            .count(),
        5,
        "{stdout}"
    );
    assert!(tmp.path().join("table1-smoke.md").is_file());
    // The two MK entries on CIFAR-10 differ only in BatchNorm re-estimation after collapse:
    // one trained, the other reused its training (the same log, to the step time).
    let stored = majority_kernels::results::ResultsDir::new(tmp.path(), "table1", "smoke")
        .runs()
        .unwrap();
    let mk: Vec<_> = stored
        .iter()
        .filter(|r| r.dataset == "cifar10" && r.method == "mk")
        .collect();
    assert_eq!(mk.len(), 2);
    assert_eq!((mk[0].steps, mk[0].step_ms), (mk[1].steps, mk[1].step_ms));

    // Delete one run: the rerun trains exactly that one and reports the same table.
    let victim = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&victim).unwrap();
    let second = reproduce(&["table1", "--profile", "smoke"], tmp.path());
    let (stdout2, stderr2) = text(&second);
    assert!(second.status.success(), "{stderr2}");
    assert!(stderr2.contains("8 stored, 1 to train"), "{stderr2}");
    assert!(victim.is_file());
    let strip = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("| mnist") || l.starts_with("| cifar10"))
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
    };
    let (before, after) = (strip(&stdout), strip(&stdout2));
    // Same seed, same backend: the retrained run reproduces its numbers (step times aside).
    let accuracy = |rows: &[String]| {
        rows.iter()
            .map(|r| r.split('|').take(10).collect::<Vec<_>>().join("|"))
            .collect::<Vec<_>>()
    };
    assert_eq!(accuracy(&before), accuracy(&after));

    // `report` trains nothing and prints the stored table.
    let report = reproduce(&["report", "table1", "--profile", "smoke"], tmp.path());
    let (stdout3, _) = text(&report);
    assert!(report.status.success());
    assert_eq!(strip(&stdout3).len(), 9);
    assert!(
        stdout3.contains("| mk (identical, bn_recalibration: 20) |"),
        "{stdout3}"
    );
}

#[test]
fn imagenet_smoke_trains_resnets_on_tiny_imagenet_and_datasets_can_be_selected() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = reproduce(
        &[
            "table3",
            "--profile",
            "smoke",
            "--cache-dir",
            cache.to_str().unwrap(),
        ],
        tmp.path(),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("decoding into the dataset cache"),
        "{stderr}"
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("| tiny_imagenet | resnet4-w8-imagenet |"))
            .count(),
        4,
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        1,
        "one cache file"
    );

    let out = reproduce(
        &["table1", "--profile", "smoke", "--dataset", "svhn"],
        tmp.path(),
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--dataset svhn") && stderr.contains("mnist, cifar10"),
        "{stderr}"
    );
}

#[test]
fn bad_input_is_a_named_error_with_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "table1",
                "--profile",
                "smoke",
                "--set",
                "methods.3.mixing=majority(9)",
            ],
            "mixing.majority.m must be between 1 and k = 4",
        ),
        (
            &[
                "table1",
                "--profile",
                "smoke",
                "--set",
                "methods.1.long_factor=0",
            ],
            "long_factor must be at least 1",
        ),
        (
            &["table1", "--profile", "smoke", "--set", "k=[0]"],
            "`k` values must be at least 1",
        ),
        (
            &[
                "table1",
                "--profile",
                "smoke",
                "--set",
                "datasets.0.recipe.batch_size=big",
            ],
            "datasets[0].recipe.batch_size",
        ),
        (&["table1", "--profile", "tiny"], "no profile `tiny`"),
        (&["table9"], "no experiment `table9`"),
    ];
    for (args, expected) in cases {
        let out = reproduce(args, tmp.path());
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let out = reproduce(
        &["table1", "--profile", "smoke", "--backend", "tpu"],
        tmp.path(),
    );
    assert!(text(&out).1.contains("unknown backend `tpu`"));
    assert!(
        !tmp.path().join("table1").exists(),
        "nothing is written for rejected input"
    );
}

#[test]
fn glue_smoke_profile_reports_each_tasks_metric() {
    let tmp = tempfile::tempdir().unwrap();
    let out = reproduce(&["table4", "--profile", "smoke"], tmp.path());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for (task, metric) in [("cola", "mcc"), ("sst2", "accuracy"), ("mrpc", "f1")] {
        let (trivial, rows): (Vec<&str>, Vec<&str>) = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("| {task} |")))
            .partition(|l| l.contains("*trivial: majority class of the training set"));
        assert_eq!(rows.len(), 3, "{stdout}");
        assert_eq!(
            trivial.len(),
            1,
            "the trivial reference above the rows: {stdout}"
        );
        assert!(trivial[0].contains(&format!("| *{metric} ")), "{stdout}");
        assert!(
            rows.iter().all(|r| r.contains(&format!("| {metric} "))),
            "{stdout}"
        );
    }
    let curves = tmp.path().join("table4/smoke/curves");
    assert_eq!(
        std::fs::read_dir(curves).unwrap().count(),
        9,
        "CoLA/SST-2/MRPC curves stored"
    );
}

#[test]
fn adversarial_and_wide_methods_run_from_an_experiment_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let methods = "methods=[{name: adv_mj, rho: 0.5}, adv_only, wide, mk]";
    let out = reproduce(
        &[
            "table1",
            "--profile",
            "smoke",
            "--dataset",
            "mnist",
            "--set",
            methods,
        ],
        tmp.path(),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let row = |method: &str| {
        stdout
            .lines()
            .find(|l| l.contains(&format!("| {method} ")))
            .unwrap_or_else(|| panic!("no {method} row in\n{stdout}"))
            .split('|')
            .map(|c| c.trim().to_string())
            .collect::<Vec<_>>()
    };
    let (adv, only, wide, mk) = (row("adv_mj"), row("adv_only"), row("wide"), row("mk"));
    assert_eq!(adv[5], "dirichlet(1) + ascent(0.5)");
    assert_eq!(only[5], "uniform + ascent(1)");
    // Columns (after the leading empty cell): model at 2, deployed params at 12.
    assert_eq!(adv[12], mk[12], "adversarial MK deploys the small model");
    let deployed: f64 = wide[12].parse().unwrap();
    assert!(
        deployed > 3.5 * mk[12].parse::<f64>().unwrap(),
        "wide deploys a k-fold model: {wide:?}"
    );
    assert_eq!(
        wide[2], "mlp-784-128-10",
        "the row names the wide architecture"
    );
    // Same seed, same draws: only the ascent step separates adv_mj from mk (after one smoke
    // epoch the test losses differ in the fifth decimal, so the stored values are compared).
    let stored = majority_kernels::results::ResultsDir::new(tmp.path(), "table1", "smoke")
        .runs()
        .unwrap();
    let loss = |method: &str| {
        stored
            .iter()
            .find(|r| r.method == method)
            .unwrap()
            .test_loss
    };
    assert_ne!(
        loss("adv_mj"),
        loss("mk"),
        "the ascent step changes training"
    );
}

#[test]
fn distilled_ensembles_reuse_their_stored_members() {
    use majority_kernels::results::ResultsDir;
    let tmp = tempfile::tempdir().unwrap();
    let run = |methods: &str| {
        let out = reproduce(
            &[
                "table1",
                "--profile",
                "smoke",
                "--dataset",
                "mnist",
                "--set",
                methods,
            ],
            tmp.path(),
        );
        assert!(out.status.success(), "{}", text(&out).1);
        text(&out).0
    };
    let stdout = run("methods=[distilled_ensemble, {name: distilled_ensemble, teacher: wide}]");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("| distilled_ensemble (teacher: "))
            .count(),
        2,
        "{stdout}"
    );
    let runs = ResultsDir::new(tmp.path(), "table1", "smoke")
        .runs()
        .unwrap();
    assert!(
        runs.iter().all(|r| r.teacher_steps > 0),
        "the first runs train their teachers"
    );
    assert!(
        runs.iter().all(|r| r.deployed_params == 25_450),
        "the student has the small size"
    );

    // Another temperature needs the same members: they are loaded, not trained again.
    run("methods=[{name: distilled_ensemble, temperature: 2.0}]");
    let runs = ResultsDir::new(tmp.path(), "table1", "smoke")
        .runs()
        .unwrap();
    let reused = runs
        .iter()
        .find(|r| r.options.contains("\"temperature\":2.0"))
        .unwrap();
    assert_eq!(
        reused.teacher_steps, 0,
        "members reused from the models/ folder"
    );
}

#[test]
fn submodular_selection_deploys_the_small_size_and_reports_before_fine_tuning() {
    use majority_kernels::results::ResultsDir;
    let tmp = tempfile::tempdir().unwrap();
    let methods = "methods=[{name: submodular, calibration: 256}, {name: submodular, calibration: 256, finetune_epochs: 0}]";
    let out = reproduce(
        &[
            "table1",
            "--profile",
            "smoke",
            "--dataset",
            "mnist",
            "--set",
            methods,
        ],
        tmp.path(),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("| submodular ("))
            .count(),
        2,
        "{stdout}"
    );
    let dir = ResultsDir::new(tmp.path(), "table1", "smoke");
    let runs = dir.runs().unwrap();
    assert!(
        runs.iter().all(|r| r.deployed_params == 25_450),
        "pruned to the small MLP"
    );
    let trained: Vec<i64> = runs.iter().map(|r| r.teacher_steps).collect();
    assert!(
        trained.contains(&0) && trained.iter().any(|&s| s > 0),
        "the wide model is trained once: {trained:?}"
    );
    // The curves start at epoch 0: the pruned model before fine-tuning.
    let curves = dir.curves().unwrap().unwrap();
    let epochs = curves.column("epoch").unwrap().i64().unwrap().clone();
    let kinds = curves.column("kind").unwrap().str().unwrap().clone();
    let before = epochs
        .iter()
        .zip(kinds.iter())
        .filter(|(e, kind)| *e == Some(0) && *kind == Some("epoch"))
        .count();
    assert_eq!(before, 2);
    let before_fine_tuning = runs
        .iter()
        .find(|r| r.options.contains("\"finetune_epochs\":0"))
        .unwrap();
    assert!(
        before_fine_tuning.test_acc > 0.2,
        "selection plus refit keeps a working model: {}",
        before_fine_tuning.test_acc
    );
}

#[test]
fn claims_plots_baselines_and_compare_work_from_stored_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("results");
    let out = reproduce(&["table5", "--profile", "smoke", "-q"], &results);
    assert!(out.status.success(), "{}", text(&out).1);
    let stored =
        |args: &[&str]| common::run_with(args, &["--results-dir", results.to_str().unwrap()]);

    // Claims: every MK row against the baseline, and the overhead, with a verdict.
    let out = stored(&["claims", "table5", "--profile", "smoke"]);
    let (claims, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        claims
            .contains("mk (identical, lr_compensation: auto) [dirichlet(1), k = 4] beats baseline")
            && claims.contains("too few seeds"),
        "{claims}"
    );
    assert!(results.join("claims-smoke.md").is_file());

    // Figures: curves and the k sweep, as PNG and SVG.
    let plots = tmp.path().join("plots");
    let out = stored(&[
        "plots",
        "table5",
        "--profile",
        "smoke",
        "--plots-dir",
        plots.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    for name in ["mnist-curves", "mnist-accuracy-vs-k", "mnist-overhead-vs-k"] {
        let png = plots.join(format!("table5-smoke-{name}.png"));
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        let ink = pixels.iter().filter(|&&v| v < 128).count();
        assert!(
            ink > 1000,
            "{name}: a drawn figure, not a blank one ({ink})"
        );
        let svg = std::fs::read_to_string(plots.join(format!("table5-smoke-{name}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("table5"), "{name}");
    }

    // Stored baselines, then a new method beside them; a changed recipe is refused.
    let baselines = tmp.path().join("baselines");
    let with_baselines = |args: &[&str]| {
        common::run_with(
            args,
            &[
                "--results-dir",
                results.to_str().unwrap(),
                "--baselines-dir",
                baselines.to_str().unwrap(),
            ],
        )
    };
    // A run stored there before (superseded since) is removed: the baselines mirror the results.
    let stale = baselines.join("table5/smoke/runs/mnist-baseline-k1-s0-000000000000.parquet");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"superseded").unwrap();
    let out = with_baselines(&["baselines", "table5", "--profile", "smoke"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(baselines.join("table5/smoke/experiment.yaml").is_file());
    assert!(
        !stale.exists(),
        "a run the results no longer hold stays in the baselines"
    );
    let copied =
        |sub: &str, root: &std::path::Path| std::fs::read_dir(root.join(sub)).unwrap().count();
    assert_eq!(
        copied("table5/smoke/runs", &baselines),
        copied("table5/smoke/runs", &results)
    );
    let out = with_baselines(&[
        "compare",
        "--method",
        "{name: mk, mixing: one_hot, k: [4]}",
        "--experiment",
        "table5",
        "--profile",
        "smoke",
        "-q",
    ]);
    let (table, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        // One final seed each: the tuning runs (seed 100) are cost, never paired seeds.
        table.contains("| mk (identical) [one_hot, k = 4] | baseline | 1 |"),
        "{table}"
    );
    let out = with_baselines(&[
        "compare",
        "--method",
        "mk",
        "--experiment",
        "table5",
        "--profile",
        "smoke",
        "--set",
        "datasets.0.recipe.epochs=2",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("recipe mismatch")
            && stderr.contains("datasets.0.recipe.epochs: stored 1, requested 2"),
        "{stderr}"
    );
}

#[test]
fn submodular_selection_prunes_resnet_channels_to_the_small_size() {
    use majority_kernels::results::ResultsDir;
    let tmp = tempfile::tempdir().unwrap();
    let out = reproduce(
        &[
            "table2",
            "--profile",
            "smoke",
            "--dataset",
            "cifar10",
            "--set",
            "methods=[baseline, {name: submodular, calibration: 64}]",
            "-q",
        ],
        tmp.path(),
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let runs = ResultsDir::new(tmp.path(), "table2", "smoke")
        .runs()
        .unwrap();
    let params = |method: &str| {
        runs.iter()
            .find(|r| r.method == method)
            .map(|r| r.deployed_params)
            .unwrap()
    };
    assert_eq!(
        params("submodular"),
        params("baseline"),
        "the wide ResNet pruned to the small one's channels"
    );
    let pruned = runs.iter().find(|r| r.method == "submodular").unwrap();
    assert!(
        pruned.teacher_steps > 0,
        "the wide model was trained for it"
    );
}
