//! The experiment's tables (markdown and LaTeX), rendered from stored runs alone.

use std::path::Path;

use crate::error::Result;
use crate::experiment::Plan;
use crate::report::table;
use crate::results::{ResultsDir, RunRecord};

/// The markdown table of the planned runs of `plan` stored in `dir`; also written, with its
/// LaTeX twin, as `<results_dir>/<name>-<profile>.{md,tex}` when `results_dir` is given.
pub(super) fn render(
    dir: &ResultsDir,
    plan: &Plan,
    name: &str,
    profile: &str,
    results_dir: Option<&Path>,
) -> Result<String> {
    let stored: Vec<RunRecord> = dir.runs()?;
    let (planned, earlier) = planned_runs(plan, &stored);
    let title = format!("{name} ({profile} profile)");
    let references = dir.references()?;
    let mut markdown =
        table::markdown_with_references(&title, &planned, plan.finals.len(), &references);
    if earlier > 0 {
        markdown.push_str(&format!(
            "{earlier} of these runs were stored by an earlier numerics version of the code (its \
             commits are on the Code line) or before validation slices and tuning (no validation \
             score; the recipe's learning rate); running the experiment retrains them.\n"
        ));
    }
    if let Some(results_dir) = results_dir {
        let table_path = results_dir.join(format!("{name}-{profile}.md"));
        crate::atomic::write(&table_path, markdown.as_bytes())?;
        crate::atomic::write(
            &table_path.with_extension("tex"),
            table::latex(&title, &planned, plan.finals.len(), &references).as_bytes(),
        )?;
    }
    Ok(markdown)
}

/// The stored tuning runs of the plan, then the stored run of every final run: the current
/// code and protocol's, else the newest earlier one's (a table keeps showing what was
/// measured until the run is redone). Returns the runs and how many came from earlier code or
/// protocol.
fn planned_runs(plan: &Plan, stored: &[RunRecord]) -> (Vec<RunRecord>, usize) {
    let find = |id: &str| stored.iter().find(|r| r.run_id == id);
    let mut runs: Vec<RunRecord> = plan
        .tuning
        .iter()
        .filter_map(|spec| find(&spec.id()))
        .cloned()
        .collect();
    let mut earlier = 0;
    for run in &plan.finals {
        let current = run.spec.as_ref().and_then(|spec| find(&spec.id()));
        let found = current.or_else(|| {
            let old = run.earlier_ids().iter().find_map(|id| find(id));
            earlier += usize::from(old.is_some());
            old
        });
        runs.extend(found.cloned());
    }
    (runs, earlier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::RunSpec;

    #[test]
    fn tables_fall_back_to_a_run_stored_by_earlier_numerics() {
        let recipe: crate::train::Recipe =
            serde_norway::from_str("{epochs: 1, batch_size: 8, optimizer: {name: sgd, lr: 0.1}}")
                .unwrap();
        let spec = |seed: u64| RunSpec {
            experiment: "t".into(),
            dataset: "mnist".into(),
            model: crate::models::ModelSpec::Mlp {
                hidden: vec![8],
                bias: true,
            },
            recipe: recipe.clone(),
            method: "baseline".into(),
            options: serde_json::json!({}),
            k: 1,
            seed,
            phase: crate::experiment::Phase::Final,
            data: "fingerprint".into(),
            code_version: crate::results::provenance::NUMERICS_VERSION,
            dataset_index: 0,
            method_index: 0,
        };
        let specs = [spec(0), spec(1), spec(2)];
        let (old_version, old_id) = specs[0].earlier_ids()[0].clone();
        assert_eq!(
            old_version,
            crate::results::provenance::NUMERICS_VERSION - 1
        );
        assert_ne!(
            old_id,
            specs[0].id(),
            "the numerics version is part of the id"
        );
        let stored_as = |id: String, seed: i64| RunRecord {
            run_id: id,
            ..crate::results::store::tests::record("baseline", seed, 0.9)
        };
        // Seed 0 only under the earlier version, seed 1 under both, seed 2 not at all.
        let stored = vec![
            stored_as(old_id, 0),
            stored_as(specs[1].earlier_ids()[0].1.clone(), 1),
            stored_as(specs[1].id(), 1),
        ];
        let plan = Plan {
            tuning: Vec::new(),
            finals: specs
                .iter()
                .map(|spec| crate::experiment::FinalRun {
                    spec: Some(spec.clone()),
                    legacy: spec.clone(),
                    alternatives: Vec::new(),
                    tuning: None,
                })
                .collect(),
        };
        let (runs, earlier) = planned_runs(&plan, &stored);
        let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, [stored[0].run_id.as_str(), specs[1].id().as_str()]);
        assert_eq!(earlier, 1, "the current version wins where both are stored");
    }
}
