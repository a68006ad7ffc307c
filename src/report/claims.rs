//! The paper's claims, each checked on stored runs with a paired comparison over seeds: every
//! proposed method (majority kernels and their variants) against the baseline and every
//! competitor (the long-trained baseline, distilled ensembles, submodular selection...) on the
//! test score, and the step time of those that claim a small overhead against
//! [`OVERHEAD_LIMIT`]. Methods are found by their registered role, not by name.

use std::fmt::Write;

use super::stats::{Paired, Verdict, paired};
use super::table::groups;
use crate::methods::{self, Role};
use crate::results::RunRecord;

/// What "small overhead" means here: MK's step time at most this multiple of the baseline's
/// (the performance issue's CPU target).
pub const OVERHEAD_LIMIT: f64 = 1.10;

/// Methods whose claims are checked: the proposed ones.
fn is_claimant(method: &str) -> bool {
    methods::role_of(method) == Some(Role::Proposed)
}

/// Methods a proposed method is claimed to beat: the baseline and the competitors.
fn is_rival(method: &str) -> bool {
    matches!(
        methods::role_of(method),
        Some(Role::Baseline | Role::Competitor)
    )
}

/// Whether the method claims to train at about the baseline's step time.
fn claims_small_overhead(method: &str) -> bool {
    methods::info(method).is_some_and(|i| i.claims_small_overhead)
}

/// One checked claim.
#[derive(Debug, Clone)]
pub struct Claim {
    pub experiment: String,
    pub dataset: String,
    pub claim: String,
    pub comparison: Option<Paired>,
    pub verdict: Verdict,
    /// Unit of the effect: `pts` (test score points) or `x` (step-time ratio).
    pub unit: &'static str,
}

/// Every claim the stored `runs` of one experiment can speak to.
pub fn check(experiment: &str, runs: &[RunRecord]) -> Vec<Claim> {
    let completed: Vec<RunRecord> = runs
        .iter()
        .filter(|r| r.status == "completed")
        .cloned()
        .collect();
    let rows = groups(&completed);
    let mut claims = Vec::new();
    let mut datasets: Vec<&str> = rows.iter().map(|(_, r)| r[0].dataset.as_str()).collect();
    datasets.dedup();
    for dataset in datasets {
        let in_dataset: Vec<&(String, Vec<&RunRecord>)> = rows
            .iter()
            .filter(|(_, r)| r[0].dataset == dataset)
            .collect();
        let scores = |runs: &[&RunRecord]| -> Vec<(i64, f64)> {
            runs.iter()
                .map(|r| (r.seed, 100.0 * r.test_score))
                .collect()
        };
        for (label, runs) in in_dataset.iter().filter(|(_, r)| is_claimant(&r[0].method)) {
            let label = super::table::full_label(label, runs[0]);
            for (rival_label, rival) in in_dataset.iter().filter(|(_, r)| is_rival(&r[0].method)) {
                let comparison = paired(&scores(runs), &scores(rival));
                claims.push(Claim {
                    experiment: experiment.to_string(),
                    dataset: dataset.to_string(),
                    claim: format!(
                        "{label} beats {}",
                        super::table::full_label(rival_label, rival[0])
                    ),
                    verdict: comparison
                        .as_ref()
                        .map_or(Verdict::InsufficientSeeds, |p| Verdict::of(p, true)),
                    comparison,
                    unit: "pts",
                });
            }
            if let Some((_, baseline)) = in_dataset
                .iter()
                .find(|(_, r)| methods::role_of(&r[0].method) == Some(Role::Baseline))
                && claims_small_overhead(&runs[0].method)
            {
                // Step-time ratio per seed, against the limit.
                let ratios: Vec<(i64, f64)> = runs
                    .iter()
                    .filter_map(|r| {
                        baseline
                            .iter()
                            .find(|b| b.seed == r.seed)
                            .map(|b| (r.seed, r.step_ms / b.step_ms))
                    })
                    .collect();
                let limit: Vec<(i64, f64)> =
                    ratios.iter().map(|(s, _)| (*s, OVERHEAD_LIMIT)).collect();
                let comparison = paired(&ratios, &limit).map(|mut p| {
                    // Report the ratio itself, not its distance to the limit; the p-value
                    // tests ratio = limit.
                    p.effect_size = None;
                    p.mean_diff += OVERHEAD_LIMIT;
                    p.ci = (p.ci.0 + OVERHEAD_LIMIT, p.ci.1 + OVERHEAD_LIMIT);
                    p
                });
                let verdict = match &comparison {
                    Some(p) if p.n >= 2 && !p.sd_diff.is_nan() => {
                        if p.ci.1 <= OVERHEAD_LIMIT {
                            Verdict::Supported
                        } else if p.ci.0 > OVERHEAD_LIMIT {
                            Verdict::Contradicted
                        } else {
                            Verdict::Inconclusive
                        }
                    }
                    _ => Verdict::InsufficientSeeds,
                };
                claims.push(Claim {
                    experiment: experiment.to_string(),
                    dataset: dataset.to_string(),
                    claim: format!("{label} step time <= {OVERHEAD_LIMIT} x baseline"),
                    comparison,
                    verdict,
                    unit: "x",
                });
            }
        }
    }
    claims
}

/// Checks the claims of every named experiment (all experiment files when `names` is empty)
/// from the runs stored for `profile`, writes `claims-<profile>.md` beside the tables and
/// returns it.
pub fn run(
    results_dir: &std::path::Path,
    experiments_dir: &std::path::Path,
    names: &[String],
    profile: &str,
) -> crate::error::Result<String> {
    let names: Vec<String> = if names.is_empty() {
        crate::experiment::list(experiments_dir)
    } else {
        names.to_vec()
    };
    let mut all = Vec::new();
    for name in &names {
        let dir = crate::results::ResultsDir::new(results_dir, name, profile);
        all.extend(check(name, &dir.runs()?));
    }
    if all.is_empty() {
        return Err(crate::error::Error::Usage(format!(
            "no stored runs to check for profile `{profile}` in {} (experiments: {})",
            results_dir.display(),
            names.join(", ")
        )));
    }
    let text = format!("## Claims ({profile} profile)\n\n{}", markdown(&all));
    crate::atomic::write(
        &results_dir.join(format!("claims-{profile}.md")),
        text.as_bytes(),
    )?;
    Ok(text)
}

/// The claims as a markdown table.
pub fn markdown(claims: &[Claim]) -> String {
    let mut out = String::from(
        "| experiment | dataset | claim | seeds | effect | 95% CI | d_z | p (paired t) | verdict |\n|---|---|---|---:|---:|---|---:|---:|---|\n",
    );
    for c in claims {
        let (n, effect, ci, d, p) = match &c.comparison {
            Some(p) => (
                p.n.to_string(),
                format!("{:+.2} {}", p.mean_diff, c.unit),
                if p.ci.0.is_finite() {
                    format!("[{:.2}, {:.2}]", p.ci.0, p.ci.1)
                } else {
                    "—".into()
                },
                p.effect_size.map_or("—".into(), |d| format!("{d:.2}")),
                p.p_value.map_or("—".into(), |v| format!("{v:.3}")),
            ),
            None => ("0".into(), "—".into(), "—".into(), "—".into(), "—".into()),
        };
        let effect = if c.unit == "x" {
            effect.replacen('+', "", 1)
        } else {
            effect
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {n} | {effect} | {ci} | {d} | {p} | {} |",
            c.experiment,
            c.dataset,
            c.claim,
            c.verdict.label()
        );
    }
    out.push_str(
        "\nEffect: mean difference of the test score in points (claimant minus rival), or the mean step-time \
         ratio; 95% t interval over seeds paired by seed; d_z = mean difference / its standard deviation. \
         Supported: the interval lies on the claimed side; contradicted: on the other side; inconclusive: \
         it contains no effect. The step-time claim compares the ratio with ",
    );
    let _ = writeln!(out, "{OVERHEAD_LIMIT}.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::store::tests::record;

    #[test]
    fn claims_pair_mk_with_each_rival_and_judge_the_overhead() {
        let mut runs = Vec::new();
        for seed in 0..3 {
            runs.push(RunRecord {
                step_ms: 10.0,
                k: 1,
                ..record("baseline", seed, 0.90 + 0.001 * seed as f64)
            });
            runs.push(RunRecord {
                step_ms: 10.3 + 0.1 * seed as f64,
                ..record("mk", seed, 0.93 + 0.002 * seed as f64)
            });
            runs.push(RunRecord {
                k: 1,
                ..record("baseline_long", seed, 0.95 - 0.01 * seed as f64)
            });
        }
        let claims = check("table1", &runs);
        assert_eq!(claims.len(), 3, "{claims:?}");
        let find = |text: &str| claims.iter().find(|c| c.claim.contains(text)).unwrap();
        assert_eq!(find("beats baseline_long").verdict, Verdict::Inconclusive);
        let vs_baseline = claims
            .iter()
            .find(|c| c.claim.ends_with("beats baseline"))
            .unwrap();
        assert_eq!(vs_baseline.verdict, Verdict::Supported);
        assert!((vs_baseline.comparison.as_ref().unwrap().mean_diff - 3.1).abs() < 1e-9);
        let overhead = find("step time");
        assert_eq!(overhead.verdict, Verdict::Supported, "{overhead:?}");
        assert!((overhead.comparison.as_ref().unwrap().mean_diff - 1.04).abs() < 1e-9);
        let table = markdown(&claims);
        assert!(
            table.contains("| supported |") && table.contains("1.04 x"),
            "{table}"
        );
    }

    /// A method registered as proposed takes part in the claims without any edit here:
    /// against the baseline and every competitor, never against controls or references.
    #[test]
    fn claims_find_methods_by_their_registered_role() {
        let mut runs = Vec::new();
        for seed in 0..3 {
            runs.push(RunRecord {
                step_ms: 10.0,
                k: 1,
                ..record("baseline", seed, 0.90)
            });
            runs.push(RunRecord {
                step_ms: 10.5,
                ..record("mk_annealed", seed, 0.92 + 0.001 * seed as f64)
            });
            runs.push(record("lr_over_k", seed, 0.8));
            runs.push(record("wide", seed, 0.99));
            runs.push(record("submodular", seed, 0.91));
        }
        let claims = check("table5", &runs);
        let texts: Vec<&str> = claims.iter().map(|c| c.claim.as_str()).collect();
        assert_eq!(claims.len(), 3, "{texts:?}");
        assert!(
            texts.iter().all(|t| t.starts_with("mk_annealed")),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.ends_with("beats baseline")),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.contains("beats submodular")),
            "{texts:?}"
        );
        assert!(texts.iter().any(|t| t.contains("step time")), "{texts:?}");
    }
}
