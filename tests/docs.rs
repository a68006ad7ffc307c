//! The committed docs match the committed results: `docs/RESULTS.md` and
//! `docs/MEASUREMENTS.md` are regenerated from `results/` (no training, no data) and compared.

mod common;

use std::path::Path;

use common::{run_with, text};
use majority_kernels::report::docs::{self, DocsOptions};

fn committed() -> DocsOptions {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    DocsOptions {
        results_dir: root.join("results"),
        experiments_dir: root.join("experiments"),
        plots_dir: root.join("plots"),
        docs_dir: root.join("docs"),
        profile: "quick".into(),
    }
}

#[test]
fn committed_docs_match_the_stored_runs() {
    let stale = docs::stale(&committed()).expect("the stored results render");
    assert!(
        stale.is_empty(),
        "{stale:?} differ from what the stored results give: run `{}` and commit the docs",
        docs::REFRESH
    );
}

#[test]
fn the_figure_list_is_what_the_stored_runs_draw() {
    let options = committed();
    let tmp = tempfile::tempdir().unwrap();
    majority_kernels::report::plots::run(
        &options.results_dir,
        &options.experiments_dir,
        tmp.path(),
        &[],
        &options.profile,
    )
    .expect("figures render from stored runs");
    let mut drawn: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str().map(String::from))
        .filter(|n| n.ends_with(".png"))
        .collect();
    drawn.sort();
    // The bench figure belongs to MEASUREMENTS.md, every other one to RESULTS.md.
    let measurements = std::fs::read_to_string(options.docs_dir.join(docs::MEASUREMENTS)).unwrap();
    assert!(measurements.contains("(../plots/overhead-vs-k.png)"));
    drawn.retain(|n| n != "overhead-vs-k.png");
    let results = std::fs::read_to_string(options.docs_dir.join(docs::RESULTS)).unwrap();
    for name in &drawn {
        assert!(
            results.contains(&format!("[`{name}`]")),
            "{name} is drawn from the stored runs but not listed: run `reproduce plots` and `{}`",
            docs::REFRESH
        );
        assert!(
            options.plots_dir.join(name).is_file(),
            "{name} is not committed: run `reproduce plots`"
        );
    }
    let listed = results.matches("- [`").count();
    assert_eq!(
        listed,
        drawn.len(),
        "figures listed that no stored run draws"
    );
}

#[test]
fn the_docs_command_writes_and_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("docs");
    let dir = out_dir.to_str().unwrap();
    // The committed docs are current.
    let out = run_with(&["docs", "--check"], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    // Into an empty folder: both files from their skeletons, then up to date.
    let out = run_with(&["docs", "--docs-dir", dir], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let results = std::fs::read_to_string(out_dir.join(docs::RESULTS)).unwrap();
    assert!(
        results.contains("## table1 (quick profile)")
            && results.contains("## Claims (quick profile)"),
        "{results}"
    );
    let measurements = std::fs::read_to_string(out_dir.join(docs::MEASUREMENTS)).unwrap();
    assert!(measurements.contains("| mlp |"), "{measurements}");
    let out = run_with(&["docs", "--check", "--docs-dir", dir], &[]);
    assert!(out.status.success(), "{:?}", text(&out));
    // A hand edit inside a generated block is stale; one outside is kept.
    let edited = results.replacen("| mnist |", "| MNIST |", 1) + "\nA note.\n";
    std::fs::write(out_dir.join(docs::RESULTS), &edited).unwrap();
    let out = run_with(&["docs", "--check", "--docs-dir", dir], &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("RESULTS.md") && stderr.contains("reproduce -- docs"),
        "{stderr}"
    );
    let out = run_with(&["docs", "--docs-dir", dir], &[]);
    assert!(out.status.success());
    let refreshed = std::fs::read_to_string(out_dir.join(docs::RESULTS)).unwrap();
    assert_eq!(refreshed, results + "\nA note.\n");
}
