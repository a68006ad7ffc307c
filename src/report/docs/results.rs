//! `RESULTS.md`'s generated blocks: every experiment's table from its stored runs in the order
//! of its plan, the claims, the list of figures.

use std::fmt::Write as _;
use std::path::Path;

use super::{Block, DocsOptions, folder_name};
use crate::error::Result;
use crate::experiment::{self, RunSpec};
use crate::report::{claims, table};
use crate::results::{ResultsDir, RunRecord};

/// The blocks of `RESULTS.md`: every experiment's table, the claims, the figure list.
pub fn results_blocks(options: &DocsOptions) -> Result<Vec<Block>> {
    let profile = &options.profile;
    let mut blocks = Vec::new();
    let mut all_claims = Vec::new();
    let mut figures = Vec::new();
    for name in experiment::list(&options.experiments_dir) {
        let dir = ResultsDir::new(&options.results_dir, &name, profile);
        let stored = dir.runs()?;
        if stored.is_empty() {
            continue;
        }
        let path = experiment::locate(&name, &options.experiments_dir)?;
        let resolved = experiment::load(&path, profile, &[])?;
        let specs = planned_specs(&resolved.experiment);
        let tune_seeds = resolved
            .experiment
            .tune
            .as_ref()
            .map_or(&[][..], |t| &t.seeds[..]);
        let rows = planned_rows(&specs, tune_seeds, &stored);
        let title = format!("{name} ({profile} profile)");
        let mut text =
            table::markdown_with_references(&title, &rows, specs.len(), &dir.references()?);
        let about = resolved.experiment.description.trim();
        let minutes = rows.iter().map(|r| r.wall_clock_s).sum::<f64>() / 60.0;
        let intro = format!(
            "{}`reproduce report {name} --profile {profile}`; the {} runs shown took {minutes:.1} \
             min of wall clock in all (their `wall_clock_s`, stored in `{}/{name}/{profile}/runs/`).\n\n",
            if about.is_empty() {
                String::new()
            } else {
                format!("{about}. ")
            },
            rows.len(),
            folder_name(&options.results_dir),
        );
        if let Some(at) = text.find("\n\n") {
            text.insert_str(at + 2, &intro);
        }
        blocks.push(Block {
            name: format!("{name}-{profile}"),
            text,
        });
        let evidence = claims::Evidence::load(&dir, &stored, Some(&resolved.experiment))?;
        all_claims.extend(claims::check_with(&name, &stored, &evidence));
        figures.extend(figure_files(
            &options.plots_dir,
            &format!("{name}-{profile}-"),
        )?);
    }
    let claims_text = if all_claims.is_empty() {
        "No stored runs to check.\n".to_string()
    } else {
        claims::markdown(&all_claims)
    };
    blocks.push(Block {
        name: format!("claims-{profile}"),
        text: format!(
            "## Claims ({profile} profile)\n\n`reproduce claims --profile {profile}`: every claim \
             the stored runs can speak to (statistics: `docs/METHODS.md`, \"Claims and \
             statistics\").\n\n{claims_text}"
        ),
    });
    let plots = folder_name(&options.plots_dir);
    let mut list = format!(
        "## Figures ({profile} profile)\n\n`reproduce plots --profile {profile}` renders them \
         from the stored runs into `{plots}/` (PNG, each with an SVG twin):\n\n"
    );
    for file in &figures {
        let _ = writeln!(list, "- [`{file}`](../{plots}/{file})");
    }
    if figures.is_empty() {
        list.push_str("(none rendered yet)\n");
    }
    blocks.push(Block {
        name: format!("figures-{profile}"),
        text: list,
    });
    Ok(blocks)
}

/// The plan of `experiment`, built without the data: every entry gets a placeholder
/// fingerprint (the same for entries that load the same data), so the order and count are the
/// plan's and only the ids differ.
fn planned_specs(experiment: &experiment::Experiment) -> Vec<RunSpec> {
    // The final runs' identities (dataset, method, options, k, seed) do not depend on tuning.
    let fingerprints: Vec<String> = experiment
        .datasets
        .iter()
        .map(|e| format!("{}:{:?}", e.dataset, e.load_options(None)))
        .collect();
    experiment::plan(
        experiment,
        &fingerprints,
        crate::results::provenance::NUMERICS_VERSION,
        &|_| None,
    )
    .finals
    .into_iter()
    .map(|run| run.legacy)
    .collect()
}

/// The stored tuning rows of the planned (dataset, method, options, k) on the experiment's
/// `tune_seeds`, then the stored row of every planned final run, in plan order: the row
/// recording the same dataset, method, options, k and seed (the newest when a rerun stored it
/// twice).
pub(super) fn planned_rows(
    specs: &[RunSpec],
    tune_seeds: &[u64],
    stored: &[RunRecord],
) -> Vec<RunRecord> {
    let mut used: Vec<bool> = stored.iter().map(|r| r.role == "tune").collect();
    let groups: Vec<(&str, &str, String, i64)> = specs
        .iter()
        .map(|s| (&*s.dataset, &*s.method, s.options.to_string(), s.k as i64))
        .collect();
    let mut rows: Vec<RunRecord> = stored
        .iter()
        .filter(|r| {
            r.role == "tune"
                && tune_seeds.contains(&(r.seed as u64))
                && groups.iter().any(|(dataset, method, options, k)| {
                    *dataset == r.dataset
                        && *method == r.method
                        && *options == r.options
                        && *k == r.k
                })
        })
        .cloned()
        .collect();
    for spec in specs {
        let options = spec.options.to_string();
        let found = stored
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                !used[*i]
                    && r.dataset == spec.dataset
                    && r.method == spec.method
                    && r.options == options
                    && r.k == spec.k as i64
                    && r.seed == spec.seed as i64
            })
            .max_by_key(|(_, r)| r.finished_at);
        if let Some((i, row)) = found {
            used[i] = true;
            rows.push(row.clone());
        }
    }
    rows
}

/// The PNG figures in `plots_dir` whose names start with `prefix`, sorted.
fn figure_files(plots_dir: &Path, prefix: &str) -> Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(plots_dir) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| n.starts_with(prefix) && n.ends_with(".png"))
        .collect();
    names.sort();
    Ok(names)
}
