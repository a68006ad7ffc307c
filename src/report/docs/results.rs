//! `RESULTS.md`'s generated blocks: every experiment's table from its stored runs in the order
//! of its plan, the claims, the list of figures.

use std::fmt::Write as _;
use std::path::Path;

use super::{Block, DocsOptions, folder_name};
use crate::error::Result;
use crate::experiment;
use crate::report::{claims, reported, table};
use crate::results::ResultsDir;

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
        let (specs, rows) = reported::planned_and_reported(&stored, &resolved.experiment);
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
        let evidence = claims::Evidence::load(&dir, &rows, Some(&resolved.experiment))?;
        all_claims.extend(claims::check_with(&name, &rows, &evidence));
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
