//! The paper's claims, each checked on stored runs with a paired comparison over seeds: every
//! proposed method (majority kernels and their variants) against the baseline, every
//! competitor (the long-trained baseline, distilled ensembles, submodular selection...) and
//! every control trained without copies at its k (`lr_over_k`) on the test score; the
//! fraction of the gap to the k-fold `wide` reference it closes; the step time of those that
//! claim a small overhead against [`OVERHEAD_LIMIT`]; and rows that equal the baseline by
//! construction (k = 1, uniform mixing with learning-rate compensation) as identities.
//! Methods are found by their registered role, not by name.
//!
//! Claims about the test score are judged only where the baseline fitted its training set
//! ([`super::budget`]); the p-values of those judged in one experiment are corrected together
//! by Holm's procedure (docs/METHODS.md, "Claims and statistics").

use std::collections::HashMap;
use std::fmt::Write;

use super::budget::{self, Fit, FitPoint};
use super::reported;
use super::stats::{Paired, Ratio, Verdict, gap_fraction, holm, paired};
use super::table::{full_label, groups};
use crate::error::{Error, Result};
use crate::experiment::{ClaimsConfig, Experiment};
use crate::methods::{self, Role};
use crate::results::{ResultsDir, RunRecord};

/// What "small overhead" means here: MK's step time at most this multiple of the baseline's
/// (the performance issue's CPU target).
pub const OVERHEAD_LIMIT: f64 = 1.10;

/// The largest per-seed difference of the test score (a fraction, 1e-4 points) at which a
/// row that equals the baseline by construction passes as equal. The test score is a ratio of
/// counts (or MCC/F1 of counts), so a single changed prediction moves it by at least 1/N
/// (1e-4 on a 10 000-example test split); 1e-6 allows only for how the same count is
/// represented, never for a changed prediction on a test split under a million examples.
/// On the deterministic CPU backends the identities hold to the last bit at k = 1 and up to
/// float rounding of the mixed kernel with uniform mixing (docs/METHODS.md, "Majority
/// kernels": identities), which on the stored runs changes no prediction.
pub const IDENTITY_TOLERANCE: f64 = 1e-6;

/// Methods whose claims are checked: the proposed ones.
fn is_claimant(method: &str) -> bool {
    methods::role_of(method) == Some(Role::Proposed)
}

/// Methods a proposed method is claimed to beat at any k: the baseline and the competitors.
fn is_rival(method: &str) -> bool {
    matches!(
        methods::role_of(method),
        Some(Role::Baseline | Role::Competitor)
    )
}

/// Controls trained without copies (`lr_over_k`, the baseline at lr/k that uniform MK
/// without compensation reduces to): a proposed row is claimed to beat those of its own k.
fn is_plain_control(run: &RunRecord, k: i64) -> bool {
    methods::role_of(&run.method) == Some(Role::Control) && run.mixing.is_none() && run.k == k
}

/// Whether the method claims to train at about the baseline's step time.
fn claims_small_overhead(method: &str) -> bool {
    methods::info(method).is_some_and(|i| i.claims_small_overhead)
}

/// Why the rows of `run`'s method, options and k equal the baseline by construction, if they
/// do: an MK-like row (one with a mixing distribution: proposed methods and controls such as
/// `adv_only`) trained from `identical` copies, either at k = 1 (one copy, coefficient 1,
/// gradient scale 1), or with every coefficient `1/k` (`uniform`, `majority(k)`, and the
/// ascent from uniform, which identical copies keep uniform) and learning-rate compensation
/// under an SGD recipe (`sgd`). Not with `lr_compensation: none` (then it is `lr_over_k`, and
/// only for models without biases), nor under Adam, where `auto` scales nothing and uniform
/// MK is the baseline only approximately.
pub fn identity_reason(run: &RunRecord, sgd: bool) -> Option<&'static str> {
    let mixing = run.mixing.as_deref()?;
    let options: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&run.options).unwrap_or_default();
    let text = |key: &str| options.get(key).and_then(|v| v.as_str());
    let init = text("init").or(run.init.as_deref()).unwrap_or("identical");
    if init != "identical" {
        return None;
    }
    if run.k == 1 {
        return Some("k = 1");
    }
    let compensated = text("lr_compensation").unwrap_or("auto") == "auto";
    let uniform = mixing == "uniform"
        || mixing.starts_with("uniform + ")
        || mixing == format!("majority({})", run.k);
    (uniform && compensated && sgd).then_some("uniform mixing, lr compensation")
}

/// What a claim is about; it decides how the claim is judged and whether it is corrected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    /// "a beats b" on the test score: about generalisation, judged only at a budget where the
    /// baseline fitted its training set, and corrected with the experiment's other ones.
    TestScore,
    /// The fraction of the baseline-to-wide gap a row closes: an estimate with its interval.
    GapFraction,
    /// A row equal to the baseline by construction, checked seed by seed.
    Identity,
    /// The step-time ratio to the baseline against [`OVERHEAD_LIMIT`]: a measurement of the
    /// implementation on the machine that ran it, judged by its uncorrected interval.
    StepTime,
}

/// One checked claim.
#[derive(Debug, Clone)]
pub struct Claim {
    pub experiment: String,
    pub dataset: String,
    pub claim: String,
    pub kind: ClaimKind,
    /// Seeds the claim rests on.
    pub seeds: usize,
    pub comparison: Option<Paired>,
    /// The uncorrected p-value of the claim's test (paired t-test): test-score and step-time
    /// claims.
    pub p_value: Option<f64>,
    /// The Holm-adjusted p-value: test-score claims judged at this budget.
    pub p_adjusted: Option<f64>,
    /// The gap fraction and its interval ([`ClaimKind::GapFraction`]).
    pub ratio: Option<Ratio>,
    /// The largest per-seed absolute difference to the baseline, in the claim's unit
    /// ([`ClaimKind::Identity`]).
    pub max_abs_diff: Option<f64>,
    /// The baseline's fit, for claims about generalisation.
    pub fit: Option<Fit>,
    pub verdict: Verdict,
    /// Unit of the effect: `pts` (test score points), `x` (step-time ratio) or `of gap`.
    pub unit: &'static str,
}

impl Claim {
    fn new(experiment: &str, dataset: &str, claim: String, kind: ClaimKind) -> Self {
        Claim {
            experiment: experiment.to_string(),
            dataset: dataset.to_string(),
            claim,
            kind,
            seeds: 0,
            comparison: None,
            p_value: None,
            p_adjusted: None,
            ratio: None,
            max_abs_diff: None,
            fit: None,
            verdict: Verdict::InsufficientSeeds,
            unit: "pts",
        }
    }

    /// The minimum effect detectable at 80% power with the claim's seeds, in its unit.
    pub fn mde(&self) -> Option<f64> {
        match self.kind {
            ClaimKind::TestScore | ClaimKind::StepTime => self.comparison.as_ref()?.mde(),
            ClaimKind::GapFraction | ClaimKind::Identity => None,
        }
    }
}

/// What the claims of one experiment need beyond its run rows.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// The experiment's `claims:` block.
    pub config: ClaimsConfig,
    /// Per-epoch points of the stored curves, by run id (the baseline's are read).
    pub curves: HashMap<String, Vec<FitPoint>>,
    /// Whether each dataset's recipe trains with SGD (where learning-rate compensation
    /// applies); a dataset not listed counts as SGD.
    pub sgd: HashMap<String, bool>,
}

impl Evidence {
    /// The `experiment`'s claims configuration and optimisers (defaults without it) and the
    /// stored curves of the baseline's runs among `runs`, from `dir`.
    pub fn load(
        dir: &ResultsDir,
        runs: &[RunRecord],
        experiment: Option<&Experiment>,
    ) -> Result<Self> {
        let mut evidence = Evidence {
            config: experiment.map(|e| e.claims.clone()).unwrap_or_default(),
            ..Default::default()
        };
        for entry in experiment.map_or(&[][..], |e| &e.datasets) {
            evidence
                .sgd
                .insert(entry.dataset.clone(), entry.recipe.optimizer.is_sgd());
        }
        for run in runs
            .iter()
            .filter(|r| counts(r) && methods::role_of(&r.method) == Some(Role::Baseline))
        {
            if let Some(points) = budget::stored_curve(dir, &run.run_id)? {
                evidence.curves.insert(run.run_id.clone(), points);
            }
        }
        Ok(evidence)
    }
}

/// Runs the claims rest on: completed runs of the final protocol (tuning-grid runs only chose
/// a learning rate).
fn counts(run: &RunRecord) -> bool {
    run.status == "completed" && run.role == "final"
}

/// Every claim the stored `runs` of one experiment can speak to, with the default claims
/// configuration and no curves (a baseline below the saturation threshold then makes the
/// test-score claims of its dataset not testable). [`check_with`] takes the evidence.
pub fn check(experiment: &str, runs: &[RunRecord]) -> Vec<Claim> {
    check_with(experiment, runs, &Evidence::default())
}

/// Every claim the stored `runs` of one experiment can speak to, given the `evidence`.
pub fn check_with(experiment: &str, runs: &[RunRecord], evidence: &Evidence) -> Vec<Claim> {
    let completed: Vec<RunRecord> = runs.iter().filter(|r| counts(r)).cloned().collect();
    let rows = groups(&completed);
    let mut claims = Vec::new();
    let mut datasets: Vec<&str> = Vec::new();
    for (_, r) in &rows {
        if !datasets.contains(&r[0].dataset.as_str()) {
            datasets.push(&r[0].dataset);
        }
    }
    let scores = |runs: &[&RunRecord]| -> Vec<(i64, f64)> {
        runs.iter()
            .map(|r| (r.seed, 100.0 * r.test_score))
            .collect()
    };
    for dataset in datasets {
        let in_dataset: Vec<&(String, Vec<&RunRecord>)> = rows
            .iter()
            .filter(|(_, r)| r[0].dataset == dataset)
            .collect();
        let baseline = in_dataset
            .iter()
            .find(|(_, r)| methods::role_of(&r[0].method) == Some(Role::Baseline))
            .map(|(_, r)| r);
        let fit = baseline.and_then(|runs| {
            let curves: Vec<Vec<FitPoint>> = runs
                .iter()
                .filter_map(|r| evidence.curves.get(&r.run_id).cloned())
                .collect();
            let finals: Vec<f64> = runs.iter().map(|r| r.train_acc).collect();
            budget::fit(&curves, &finals, &evidence.config)
        });
        let not_testable = fit.as_ref().is_some_and(|f| !f.testable);
        let sgd = evidence.sgd.get(dataset).copied().unwrap_or(true);
        let new = |claim: String, kind| Claim::new(experiment, dataset, claim, kind);
        for (label, runs) in &in_dataset {
            let first = runs[0];
            let label = full_label(label, first);
            let identity = identity_reason(first, sgd);
            if let (Some(reason), Some(baseline)) = (identity, baseline) {
                claims.push(identity_claim(
                    new(
                        format!("{label} = baseline (identity: {reason})"),
                        ClaimKind::Identity,
                    ),
                    runs,
                    baseline,
                ));
            }
            if !is_claimant(&first.method) {
                continue;
            }
            if identity.is_none() {
                let rivals = in_dataset
                    .iter()
                    .filter(|(_, r)| is_rival(&r[0].method) || is_plain_control(r[0], first.k));
                for (rival_label, rival) in rivals {
                    let comparison = paired(&scores(runs), &scores(rival));
                    let mut claim = new(
                        format!("{label} beats {}", full_label(rival_label, rival[0])),
                        ClaimKind::TestScore,
                    );
                    claim.seeds = comparison.as_ref().map_or(0, |p| p.n);
                    claim.p_value = comparison.as_ref().and_then(Paired::test_p);
                    claim.verdict = if comparison.is_none() {
                        Verdict::InsufficientSeeds
                    } else if not_testable {
                        Verdict::NotTestable
                    } else if claim.p_value.is_none() {
                        Verdict::InsufficientSeeds
                    } else {
                        // Provisional: judged once the experiment's family is corrected
                        // ([`correct`]).
                        Verdict::Inconclusive
                    };
                    claim.comparison = comparison;
                    claim.fit = fit.clone();
                    claims.push(claim);
                }
                let references = in_dataset.iter().filter(|(_, r)| {
                    methods::role_of(&r[0].method) == Some(Role::Reference) && r[0].k == first.k
                });
                let with_baseline = references.filter_map(|row| Some((row, baseline?)));
                for ((reference_label, reference), baseline) in with_baseline {
                    let ratio = gap_fraction(&scores(runs), &scores(baseline), &scores(reference));
                    let mut claim = new(
                        format!(
                            "{label} closes the baseline-to-{} gap",
                            full_label(reference_label, reference[0])
                        ),
                        ClaimKind::GapFraction,
                    );
                    claim.unit = "of gap";
                    claim.seeds = ratio.as_ref().map_or(0, |r| r.n);
                    claim.verdict = match &ratio {
                        Some(r) if r.n >= 2 && not_testable => Verdict::NotTestable,
                        Some(r) if r.n >= 2 => Verdict::Estimate,
                        _ => Verdict::InsufficientSeeds,
                    };
                    claim.ratio = ratio;
                    claim.fit = fit.clone();
                    claims.push(claim);
                }
            }
            if let Some(baseline) = baseline
                && claims_small_overhead(&first.method)
            {
                claims.push(step_time_claim(
                    new(
                        format!("{label} step time <= {OVERHEAD_LIMIT} x baseline"),
                        ClaimKind::StepTime,
                    ),
                    runs,
                    baseline,
                ));
            }
        }
    }
    correct(&mut claims);
    claims
}

/// Holm's correction over the test-score claims judged at this budget, and their verdicts
/// from the adjusted p-values.
fn correct(claims: &mut [Claim]) {
    let family: Vec<usize> = (0..claims.len())
        .filter(|&i| {
            let c = &claims[i];
            c.kind == ClaimKind::TestScore
                && c.verdict == Verdict::Inconclusive
                && c.p_value.is_some()
        })
        .collect();
    let raw: Vec<f64> = family
        .iter()
        .map(|&i| claims[i].p_value.expect("in the family"))
        .collect();
    for (&i, adjusted) in family.iter().zip(holm(&raw)) {
        let claim = &mut claims[i];
        claim.p_adjusted = Some(adjusted);
        if let Some(p) = &claim.comparison {
            claim.verdict = Verdict::judge(p, true, Some(adjusted));
        }
    }
}

/// A row that equals the baseline by construction: the largest per-seed difference of the
/// test score against [`IDENTITY_TOLERANCE`]; seeds trained at different learning rates (after
/// tuning) fail.
fn identity_claim(mut claim: Claim, runs: &[&RunRecord], baseline: &[&RunRecord]) -> Claim {
    let mut worst = 0.0f64;
    let mut lr_differs = false;
    for run in runs {
        let Some(base) = baseline.iter().find(|b| b.seed == run.seed) else {
            continue;
        };
        claim.seeds += 1;
        let diff = (run.test_score - base.test_score).abs();
        worst = if diff.is_nan() {
            f64::INFINITY
        } else {
            worst.max(diff)
        };
        lr_differs |= run.lr.is_some() && base.lr.is_some() && run.lr != base.lr;
    }
    if lr_differs {
        claim
            .claim
            .push_str(" (tuned to a different learning rate)");
    }
    claim.max_abs_diff = (claim.seeds > 0).then_some(100.0 * worst);
    claim.verdict = if claim.seeds == 0 {
        Verdict::InsufficientSeeds
    } else if worst <= IDENTITY_TOLERANCE && !lr_differs {
        Verdict::IdentityHolds
    } else {
        Verdict::IdentityFails
    };
    claim
}

/// Step-time ratio per seed against [`OVERHEAD_LIMIT`]: supported if the upper end of its 95%
/// interval is at or below the limit, contradicted if the lower end is above it.
fn step_time_claim(mut claim: Claim, runs: &[&RunRecord], baseline: &[&RunRecord]) -> Claim {
    let ratios: Vec<(i64, f64)> = runs
        .iter()
        .filter_map(|r| {
            baseline
                .iter()
                .find(|b| b.seed == r.seed)
                .map(|b| (r.seed, r.step_ms / b.step_ms))
        })
        .collect();
    let limit: Vec<(i64, f64)> = ratios.iter().map(|(s, _)| (*s, OVERHEAD_LIMIT)).collect();
    let comparison = paired(&ratios, &limit).map(|mut p| {
        // Report the ratio itself, not its distance to the limit; the p-value tests
        // ratio = limit.
        p.effect_size = None;
        p.mean_diff += OVERHEAD_LIMIT;
        p.ci = (p.ci.0 + OVERHEAD_LIMIT, p.ci.1 + OVERHEAD_LIMIT);
        p
    });
    claim.verdict = match &comparison {
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
    claim.seeds = comparison.as_ref().map_or(0, |p| p.n);
    claim.p_value = comparison.as_ref().and_then(|p| p.p_value);
    claim.comparison = comparison;
    claim.unit = "x";
    claim
}

/// Checks the claims of every named experiment (all experiment files when `names` is empty)
/// from the runs and curves stored for `profile`, writes `claims-<profile>.md` beside the
/// tables and returns it.
pub fn run(
    results_dir: &std::path::Path,
    experiments_dir: &std::path::Path,
    names: &[String],
    profile: &str,
) -> Result<String> {
    let names: Vec<String> = if names.is_empty() {
        crate::experiment::list(experiments_dir)
    } else {
        names.to_vec()
    };
    let mut all = Vec::new();
    for name in &names {
        let dir = ResultsDir::new(results_dir, name, profile);
        let stored = dir.runs()?;
        if stored.is_empty() {
            continue;
        }
        let experiment = reported::experiment_for(name, experiments_dir, profile)?;
        let runs = reported::reported_runs(&stored, experiment.as_ref());
        let evidence = Evidence::load(&dir, &runs, experiment.as_ref())?;
        all.extend(check_with(name, &runs, &evidence));
    }
    if all.is_empty() {
        return Err(Error::Usage(format!(
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

fn format_p(p: Option<f64>) -> String {
    match p {
        Some(v) if v < 0.001 => "<0.001".into(),
        Some(v) => format!("{v:.3}"),
        None => "—".into(),
    }
}

fn format_ci((low, high): (f64, f64)) -> String {
    if low.is_finite() && high.is_finite() {
        format!("[{low:.2}, {high:.2}]")
    } else {
        "—".into()
    }
}

/// The claims as a markdown table, with the legend of the verdicts and the baselines' fit.
pub fn markdown(claims: &[Claim]) -> String {
    let mut out = String::from(
        "| experiment | dataset | claim | seeds | effect | 95% CI | d_z | MDE (80%) | p | p (Holm) | verdict |\n\
         |---|---|---|---:|---:|---|---:|---:|---:|---:|---|\n",
    );
    let dash = || "—".to_string();
    for c in claims {
        let p = c.comparison.as_ref();
        let (effect, ci, d) = match c.kind {
            ClaimKind::TestScore => (
                p.map_or_else(dash, |p| format!("{:+.2} pts", p.mean_diff)),
                p.map_or_else(dash, |p| format_ci(p.ci)),
                p.and_then(|p| p.effect_size)
                    .map_or_else(dash, |d| format!("{d:.2}")),
            ),
            ClaimKind::StepTime => (
                p.map_or_else(dash, |p| format!("{:.2} x", p.mean_diff)),
                p.map_or_else(dash, |p| format_ci(p.ci)),
                dash(),
            ),
            ClaimKind::Identity => (
                c.max_abs_diff
                    .map_or_else(dash, |m| format!("max abs {m:.4} pts")),
                dash(),
                dash(),
            ),
            ClaimKind::GapFraction => {
                let ratio = c.ratio.as_ref();
                (
                    ratio
                        .filter(|r| r.estimate.is_finite())
                        .map_or_else(dash, |r| format!("{:+.2} of gap", r.estimate)),
                    match ratio {
                        Some(r) if r.n >= 2 => {
                            r.ci.map_or("unbounded (wide ≈ baseline)".into(), format_ci)
                        }
                        _ => dash(),
                    },
                    dash(),
                )
            }
        };
        let mde = c.mde().map_or_else(dash, |m| format!("{m:.2} {}", c.unit));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {effect} | {ci} | {d} | {mde} | {} | {} | {} |",
            c.experiment,
            c.dataset,
            c.claim,
            c.seeds,
            format_p(c.p_value),
            format_p(c.p_adjusted),
            c.verdict.label()
        );
    }
    let defaults = ClaimsConfig::default();
    let _ = write!(
        out,
        "\nEffect: mean difference of the test score in points (claimant minus rival), the mean \
         step-time ratio, the largest per-seed difference (identities) or the fraction of the \
         baseline-to-wide gap closed; 95% t interval over seeds paired by seed (not corrected); \
         d_z = mean difference / its standard deviation; MDE: the smallest true difference a \
         two-sided paired t-test at 0.05 detects with 80% power with these seeds, \
         (t_0.975,n-1 + t_0.80,n-1) sd / sqrt(n). p: the paired t-test's; p (Holm): adjusted \
         over the experiment's test-score claims judged at this budget (step-time claims, \
         identities and estimates are not in the family).\n\n\
         Verdicts. *supported* / *contradicted*: Holm-adjusted p < 0.05, the difference on the \
         claimed / the other side (step time: the interval's upper end at or below \
         {OVERHEAD_LIMIT} / its lower end above it). *inconclusive*: neither; where the MDE \
         exceeds the difference that matters, too few seeds to tell. *too few seeds*: under two \
         paired seeds. *not testable at this budget*: a claim about the test score while the \
         dataset's baseline had not fitted its training set: final train accuracy below the \
         experiment's `claims.saturated_train_acc` (default {:.0}%) and still rising by at least \
         `claims.rising_points` (default {}) points over the last `claims.last_fraction` \
         (default {:.0}%) of training, mean over seeds of its curve's evaluations; without a stored \
         curve, below the threshold alone; the raw p is shown, uncorrected and unjudged. \
         *identity holds* / *identity fails*: a row equal to the baseline by construction (k = \
         1, or every coefficient 1/k with learning-rate compensation under SGD, from identical \
         copies), passing when no seed's test score differs from the baseline's by more than \
         {} (a fraction: no changed prediction). *estimate*: the fraction \
         mean(row - baseline) / mean(wide - baseline) with Fieller's 95% interval, unbounded \
         when wide and the baseline do not differ significantly.\n",
        100.0 * defaults.saturated_train_acc,
        defaults.rising_points,
        100.0 * defaults.last_fraction,
        IDENTITY_TOLERANCE,
    );
    let mut fits: Vec<(&str, &str, &Fit)> = Vec::new();
    for c in claims {
        if let Some(fit) = &c.fit
            && !fits
                .iter()
                .any(|(e, d, _)| *e == c.experiment && *d == c.dataset)
        {
            fits.push((&c.experiment, &c.dataset, fit));
        }
    }
    if !fits.is_empty() {
        out.push_str("\nThe baselines' fit at this budget:\n\n");
        for (experiment, dataset, fit) in fits {
            let _ = writeln!(out, "- {experiment} / {dataset}: {}", fit.describe());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::store::tests::record;

    /// A baseline that fitted its training set (so test-score claims are testable).
    fn fitted_baseline(seed: i64, test_acc: f64) -> RunRecord {
        RunRecord {
            step_ms: 10.0,
            k: 1,
            train_acc: 1.0,
            ..record("baseline", seed, test_acc)
        }
    }

    #[test]
    fn claims_pair_mk_with_each_rival_and_judge_the_overhead() {
        let mut runs = Vec::new();
        for seed in 0..3 {
            runs.push(fitted_baseline(seed, 0.90 + 0.001 * seed as f64));
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
        // Two test-score claims: the smaller p is doubled by Holm.
        let raw = vs_baseline.p_value.unwrap();
        assert!((vs_baseline.p_adjusted.unwrap() - 2.0 * raw).abs() < 1e-12);
        let overhead = find("step time");
        assert_eq!(overhead.verdict, Verdict::Supported, "{overhead:?}");
        assert!((overhead.comparison.as_ref().unwrap().mean_diff - 1.04).abs() < 1e-9);
        assert_eq!(
            overhead.p_adjusted, None,
            "step time is not in the Holm family"
        );
        let table = markdown(&claims);
        assert!(
            table.contains("| supported |") && table.contains("1.04 x"),
            "{table}"
        );
    }

    /// A method registered as proposed takes part in the claims without any edit here:
    /// against the baseline, every competitor and the controls without copies at its k, with
    /// the gap to the k-fold reference; never against other controls.
    #[test]
    fn claims_find_methods_by_their_registered_role() {
        let mut runs = Vec::new();
        for seed in 0..3 {
            runs.push(fitted_baseline(seed, 0.90));
            runs.push(RunRecord {
                step_ms: 10.5,
                ..record("mk_annealed", seed, 0.92 + 0.001 * seed as f64)
            });
            runs.push(record("lr_over_k", seed, 0.8));
            runs.push(RunRecord {
                k: 2,
                ..record("lr_over_k", seed, 0.8)
            });
            runs.push(record("wide", seed, 0.99));
            runs.push(record("submodular", seed, 0.91));
            runs.push(RunRecord {
                mixing: Some("uniform + ascent(1)".into()),
                init: Some("independent".into()),
                ..record("adv_only", seed, 0.5)
            });
        }
        let claims = check("table5", &runs);
        let texts: Vec<&str> = claims.iter().map(|c| c.claim.as_str()).collect();
        assert_eq!(claims.len(), 5, "{texts:?}");
        assert!(
            texts.iter().all(|t| t.starts_with("mk_annealed")),
            "{texts:?}"
        );
        for expected in [
            "beats baseline",
            "beats submodular",
            "beats lr_over_k [k = 4]",
            "closes the baseline-to-wide [k = 4] gap",
            "step time",
        ] {
            assert!(texts.iter().any(|t| t.contains(expected)), "{texts:?}");
        }
    }

    #[test]
    fn holm_can_turn_raw_significance_into_inconclusive() {
        // MK beats the baseline by 0.7, 1.0, 1.3 points (t = 5.77, 2 df: raw p = 0.029)
        // and ties three competitors (large p). Four tests: the smallest p is multiplied
        // by 4 (0.115), so the claim that is significant on its own is inconclusive.
        let mut runs = Vec::new();
        for seed in 0..3 {
            let s = seed as f64;
            let mk = 0.91 + 0.01 * s + 0.003 * (s - 1.0);
            runs.push(fitted_baseline(seed, 0.90 + 0.01 * s));
            runs.push(record("mk", seed, mk));
            let noise = [1.0, -1.0, 0.5][seed as usize];
            for (i, competitor) in ["baseline_long", "submodular", "distilled_ensemble"]
                .iter()
                .enumerate()
            {
                runs.push(record(
                    competitor,
                    seed,
                    mk + 0.001 * noise + 0.0001 * i as f64,
                ));
            }
        }
        let claims = check("t", &runs);
        let family: Vec<&Claim> = claims
            .iter()
            .filter(|c| c.kind == ClaimKind::TestScore)
            .collect();
        assert_eq!(family.len(), 4, "{claims:#?}");
        let vs_baseline = family
            .iter()
            .find(|c| c.claim.ends_with("beats baseline"))
            .unwrap();
        let raw = vs_baseline.p_value.unwrap();
        assert!((raw - 0.0287).abs() < 5e-4, "{vs_baseline:?}");
        assert!((vs_baseline.p_adjusted.unwrap() - 4.0 * raw).abs() < 1e-12);
        // Uncorrected this would be supported.
        let p = vs_baseline.comparison.as_ref().unwrap();
        assert_eq!(Verdict::of(p, true), Verdict::Supported);
        assert_eq!(vs_baseline.verdict, Verdict::Inconclusive);
        let raws: Vec<f64> = family.iter().map(|c| c.p_value.unwrap()).collect();
        for (c, expected) in family.iter().zip(holm(&raws)) {
            assert_eq!(c.p_adjusted, Some(expected));
            assert_eq!(c.verdict, Verdict::Inconclusive);
        }
    }

    #[test]
    fn claims_are_not_testable_while_the_baseline_is_still_learning() {
        let runs_with = |train_acc: f64| -> Vec<RunRecord> {
            let mut runs = Vec::new();
            for seed in 0..3 {
                runs.push(RunRecord {
                    train_acc,
                    ..fitted_baseline(seed, 0.60 + 0.01 * seed as f64)
                });
                runs.push(record("mk", seed, 0.50 + 0.011 * seed as f64));
                runs.push(record("wide", seed, 0.70 + 0.012 * seed as f64));
                // A tuning-grid run is ignored.
                runs.push(RunRecord {
                    role: "tune".into(),
                    run_id: format!("tune-{seed}"),
                    ..record("mk", seed, 0.99)
                });
            }
            runs
        };
        let verdicts = |claims: &[Claim]| -> Vec<(ClaimKind, Verdict)> {
            claims.iter().map(|c| (c.kind, c.verdict)).collect()
        };
        // No curve, train accuracy below 99%: not testable; the step time is still judged.
        let low = runs_with(0.62);
        let claims = check("table1", &low);
        assert_eq!(
            verdicts(&claims),
            vec![
                (ClaimKind::TestScore, Verdict::NotTestable),
                (ClaimKind::GapFraction, Verdict::NotTestable),
                (ClaimKind::StepTime, Verdict::Supported),
            ],
            "{claims:#?}"
        );
        assert!(claims[0].p_value.is_some() && claims[0].p_adjusted.is_none());
        assert_eq!(
            claims[0].comparison.as_ref().unwrap().n,
            3,
            "tune runs ignored"
        );
        assert!(markdown(&claims).contains("| not testable at this budget |"));
        // A stored curve still rising over the last 20% of its 5 epochs: not testable.
        let curve = |accs: [f64; 5]| -> Vec<FitPoint> {
            accs.iter()
                .enumerate()
                .map(|(i, &train_acc)| FitPoint {
                    epoch: i as i64 + 1,
                    step: 10 * (i as i64 + 1),
                    train_acc,
                })
                .collect()
        };
        let with_curves = |accs: [f64; 5]| Evidence {
            curves: low
                .iter()
                .filter(|r| r.method == "baseline")
                .map(|r| (r.run_id.clone(), curve(accs)))
                .collect(),
            ..Default::default()
        };
        let rising = check_with("table1", &low, &with_curves([0.2, 0.4, 0.5, 0.58, 0.62]));
        assert_eq!(rising[0].verdict, Verdict::NotTestable);
        let fit = rising[0].fit.as_ref().unwrap();
        assert!(fit.from_curve && (fit.rise_points.unwrap() - 4.0).abs() < 1e-9);
        // The same final accuracy on a plateau: testable, and MK is worse than the baseline.
        let flat = check_with("table1", &low, &with_curves([0.2, 0.4, 0.6, 0.619, 0.62]));
        assert_eq!(
            verdicts(&flat),
            vec![
                (ClaimKind::TestScore, Verdict::Contradicted),
                (ClaimKind::GapFraction, Verdict::Estimate),
                (ClaimKind::StepTime, Verdict::Supported),
            ],
            "{flat:#?}"
        );
        // Saturated without a curve: testable.
        let saturated = check("table1", &runs_with(0.995));
        assert_eq!(saturated[0].verdict, Verdict::Contradicted);
        // A configured lower threshold makes the unsaturated one testable too.
        let lenient = Evidence {
            config: ClaimsConfig {
                saturated_train_acc: 0.6,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            check_with("table1", &low, &lenient)[0].verdict,
            Verdict::Contradicted
        );
    }

    #[test]
    fn identity_rows_pass_when_equal_on_every_seed_and_fail_otherwise() {
        let uniform = |seed: i64, score: f64, options: &str| RunRecord {
            mixing: Some("uniform".into()),
            init: Some("identical".into()),
            options: options.into(),
            ..record("mk", seed, score)
        };
        let auto = r#"{"init":"identical","lr_compensation":"auto","mixing":"uniform"}"#;
        let none = r#"{"init":"identical","lr_compensation":"none","mixing":"uniform"}"#;
        let mut runs = Vec::new();
        for seed in 0..3 {
            let score = 0.9 + 0.01 * seed as f64;
            runs.push(fitted_baseline(seed, score));
            // k = 1: equal on every seed.
            runs.push(RunRecord {
                k: 1,
                step_ms: 10.0,
                ..record("mk", seed, score)
            });
            // Uniform with compensation, one example of 10 000 differs on seed 2.
            let off = if seed == 2 { 1e-4 } else { 0.0 };
            runs.push(uniform(seed, score + off, auto));
            // Without compensation it is not the baseline: an ordinary claim.
            runs.push(uniform(seed, score - 0.01, none));
        }
        let claims = check("table5", &runs);
        let identities: Vec<&Claim> = claims
            .iter()
            .filter(|c| c.kind == ClaimKind::Identity)
            .collect();
        assert_eq!(identities.len(), 2, "{claims:#?}");
        let k1 = identities
            .iter()
            .find(|c| c.claim.contains("identity: k = 1"))
            .unwrap();
        assert_eq!(k1.verdict, Verdict::IdentityHolds);
        assert_eq!((k1.seeds, k1.max_abs_diff), (3, Some(0.0)));
        let uni = identities
            .iter()
            .find(|c| c.claim.contains("uniform mixing"))
            .unwrap();
        assert_eq!(uni.verdict, Verdict::IdentityFails);
        assert!((uni.max_abs_diff.unwrap() - 0.01).abs() < 1e-9, "{uni:?}");
        // Identity rows make no test-score claim; the step time of k = 1 is still checked.
        assert!(
            claims
                .iter()
                .filter(|c| c.kind == ClaimKind::TestScore)
                .all(|c| c.claim.starts_with("mk (identical, lr_compensation: none)")),
            "{claims:#?}"
        );
        assert!(claims.iter().any(|c| c.kind == ClaimKind::StepTime
            && c.claim.contains("k = 1")
            && c.verdict == Verdict::Supported));
        let table = markdown(&claims);
        assert!(table.contains("| identity holds |") && table.contains("max abs 0.0100 pts"));
        // Which rows are identities.
        let base = uniform(0, 0.9, auto);
        assert!(identity_reason(&base, true).is_some());
        assert_eq!(identity_reason(&base, false), None, "not under Adam");
        let independent = RunRecord {
            k: 1,
            options: r#"{"init":"independent"}"#.into(),
            ..base.clone()
        };
        assert_eq!(identity_reason(&independent, true), None);
        let majority = RunRecord {
            mixing: Some("majority(4)".into()),
            ..base.clone()
        };
        assert!(identity_reason(&majority, true).is_some());
        let dirichlet = RunRecord {
            mixing: Some("dirichlet(1)".into()),
            ..base.clone()
        };
        assert_eq!(identity_reason(&dirichlet, true), None);
        assert_eq!(identity_reason(&record("baseline", 0, 0.9), true), None);
    }

    #[test]
    fn the_gap_to_wide_is_a_fraction_with_fieller_interval() {
        let mut runs = Vec::new();
        for (seed, (base, mk, wide)) in [(90.0, 92.1, 94.0), (91.0, 93.0, 95.2), (92.0, 94.0, 95.9)]
            .into_iter()
            .enumerate()
        {
            let seed = seed as i64;
            runs.push(fitted_baseline(seed, base / 100.0));
            runs.push(record("mk", seed, mk / 100.0));
            runs.push(RunRecord {
                k: 2,
                ..record("wide", seed, 0.5)
            });
            runs.push(record("wide", seed, wide / 100.0));
        }
        let claims = check("table2", &runs);
        let gaps: Vec<&Claim> = claims
            .iter()
            .filter(|c| c.kind == ClaimKind::GapFraction)
            .collect();
        assert_eq!(gaps.len(), 1, "only the wide row of MK's k: {claims:#?}");
        let gap = gaps[0];
        assert_eq!(gap.verdict, Verdict::Estimate);
        let ratio = gap.ratio.as_ref().unwrap();
        assert!((ratio.estimate - 6.1 / 12.1).abs() < 1e-9, "{ratio:?}");
        let (low, high) = ratio.ci.unwrap();
        assert!(0.0 < low && high < 1.0);
        assert_eq!(
            gap.p_adjusted, None,
            "an estimate is not in the Holm family"
        );
        let table = markdown(&claims);
        let line = table
            .lines()
            .find(|l| l.contains("closes the baseline-to-wide"))
            .unwrap();
        assert!(
            line.contains("+0.50 of gap") && line.contains("| estimate |"),
            "{line}"
        );
    }

    #[test]
    fn markdown_shows_raw_and_adjusted_p_the_mde_and_the_legend() {
        let mut runs = Vec::new();
        for seed in 0..3 {
            runs.push(fitted_baseline(seed, 0.90 + 0.001 * seed as f64));
            runs.push(RunRecord {
                step_ms: 10.3 + 0.1 * seed as f64,
                ..record("mk", seed, 0.93 + 0.002 * seed as f64)
            });
        }
        let claims = check("table1", &runs);
        let table = markdown(&claims);
        let columns = |line: &str| line.matches('|').count();
        let header = table.lines().next().unwrap();
        assert!(
            header.contains("| MDE (80%) | p | p (Holm) | verdict |"),
            "{header}"
        );
        assert!(
            table
                .lines()
                .filter(|l| l.starts_with('|'))
                .all(|l| columns(l) == columns(header)),
            "{table}"
        );
        // Differences 3.0, 3.1, 3.2 points: sd 0.1, MDE 0.1 x 3.096510 = 0.31 points.
        let vs_baseline = &claims[0];
        assert!((vs_baseline.mde().unwrap() - 0.309_651).abs() < 1e-5);
        let line = table.lines().nth(2).unwrap();
        assert!(line.contains("| 0.31 pts |"), "{line}");
        // One claim in the family: its adjusted p is its raw p.
        assert_eq!(vs_baseline.p_adjusted, vs_baseline.p_value);
        for class in [
            "*supported*",
            "*inconclusive*",
            "*too few seeds*",
            "*not testable at this budget*",
            "*identity holds*",
            "*estimate*",
        ] {
            assert!(table.contains(class), "{class}: {table}");
        }
        assert!(table.contains("- table1 / mnist: train accuracy 100.00% at the end"));
    }
}
