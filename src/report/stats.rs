//! Paired comparisons over seeds: the statistics every claim and every "best" mark rests on.
//!
//! Two methods run with the same seeds see the same data order and slices, so their results
//! are paired by seed; the difference per seed removes the seed-to-seed variation they share.
//! The test is the paired t-test (two-sided), the interval the t interval of the mean
//! difference, the effect size Cohen's d_z (mean difference over its standard deviation), the
//! minimum detectable effect the one at 80% power. A family of tests is corrected by Holm's
//! step-down procedure; a ratio of two paired mean differences gets Fieller's interval.
//! Distribution functions come from `statrs`.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// A paired comparison of `a` against `b` (differences `a - b`).
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    /// Seeds present in both.
    pub n: usize,
    pub mean_diff: f64,
    /// Sample standard deviation of the differences.
    pub sd_diff: f64,
    /// 95% t interval of the mean difference.
    pub ci: (f64, f64),
    /// Two-sided p-value of the paired t-test (`None` with fewer than 2 pairs or no spread).
    pub p_value: Option<f64>,
    /// Cohen's d_z (`None` when the differences have no spread).
    pub effect_size: Option<f64>,
}

/// Confidence level of every interval.
pub const CONFIDENCE: f64 = 0.95;

/// Significance level of every test (two-sided), after correction where one applies.
pub const ALPHA: f64 = 1.0 - CONFIDENCE;

/// Power at which the minimum detectable effect is computed.
pub const POWER: f64 = 0.80;

impl Paired {
    /// The p-value a test of this comparison uses: the paired t-test's, or, when the
    /// differences have no spread, its limit (0 for a constant non-zero difference, 1 for
    /// none). `None` with fewer than two pairs.
    pub fn test_p(&self) -> Option<f64> {
        if self.n < 2 || self.sd_diff.is_nan() {
            return None;
        }
        self.p_value
            .or(Some(if self.mean_diff == 0.0 { 1.0 } else { 0.0 }))
    }

    /// The minimum detectable effect of this comparison ([`mde`]).
    pub fn mde(&self) -> Option<f64> {
        mde(self.n, self.sd_diff)
    }
}

/// Minimum detectable effect of a two-sided paired t-test at level [`ALPHA`] with power
/// [`POWER`], for `n` pairs whose differences have standard deviation `sd`:
/// `(t_{1-alpha/2, n-1} + t_{power, n-1}) sd / sqrt(n)` (the usual approximation; the exact one
/// uses the noncentral t). An effect smaller than this is likely to be missed with these seeds.
/// `None` with fewer than two pairs.
pub fn mde(n: usize, sd: f64) -> Option<f64> {
    if n < 2 || !sd.is_finite() {
        return None;
    }
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).expect("n >= 2 degrees of freedom");
    Some((t.inverse_cdf(1.0 - ALPHA / 2.0) + t.inverse_cdf(POWER)) * sd / (n as f64).sqrt())
}

/// Holm's step-down adjustment of the p-values of one family of tests, in their order: the
/// i-th smallest of m becomes `max_{j <= i} min(1, (m - j + 1) p_(j))`. Rejecting where the
/// adjusted p is below alpha controls the family-wise error rate at alpha.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// The ratio of two paired mean differences with its interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    /// Seeds present in all the rows compared.
    pub n: usize,
    /// Ratio of the means (NaN when the denominator's mean is 0).
    pub estimate: f64,
    /// Fieller's 95% interval; `None` when it is unbounded (the denominator is not
    /// significantly different from 0 at the same level) or there are fewer than 2 seeds.
    pub ci: Option<(f64, f64)>,
}

/// `mean(a) / mean(b)` for per-seed pairs `(a_s, b_s)` with Fieller's interval: the values rho
/// for which the paired t-test of `a_s - rho b_s` does not reject mean 0 at [`CONFIDENCE`],
/// i.e. `(mean(a) - rho mean(b))^2 <= t^2 (s_aa - 2 rho s_ab + rho^2 s_bb)` with `s` the
/// sample (co)variances over n and `t = t_{0.975, n-1}`. Exact under normality of the
/// pairs; bounded only when `mean(b)^2 > t^2 s_bb`. `None` without any pair.
pub fn fieller(pairs: &[(f64, f64)]) -> Option<Ratio> {
    let pairs: Vec<(f64, f64)> = pairs
        .iter()
        .copied()
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .collect();
    let n = pairs.len();
    if n == 0 {
        return None;
    }
    let nf = n as f64;
    let (ma, mb) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / nf,
        pairs.iter().map(|p| p.1).sum::<f64>() / nf,
    );
    let estimate = if mb == 0.0 { f64::NAN } else { ma / mb };
    if n < 2 {
        return Some(Ratio {
            n,
            estimate,
            ci: None,
        });
    }
    let cov = |f: &dyn Fn(&(f64, f64)) -> f64| pairs.iter().map(f).sum::<f64>() / (nf - 1.0) / nf;
    let s_aa = cov(&|p| (p.0 - ma).powi(2));
    let s_bb = cov(&|p| (p.1 - mb).powi(2));
    let s_ab = cov(&|p| (p.0 - ma) * (p.1 - mb));
    let t = StudentsT::new(0.0, 1.0, nf - 1.0)
        .expect("n >= 2 degrees of freedom")
        .inverse_cdf(0.5 + CONFIDENCE / 2.0);
    let t2 = t * t;
    // rho^2 A - 2 rho B + C <= 0.
    let a = mb * mb - t2 * s_bb;
    let b = ma * mb - t2 * s_ab;
    let c = ma * ma - t2 * s_aa;
    let ci = if a > 0.0 {
        // The set contains the estimate (where the left side is 0), so the discriminant is
        // not negative; rounding aside.
        let root = (b * b - a * c).max(0.0).sqrt();
        Some(((b - root) / a, (b + root) / a))
    } else {
        None
    };
    Some(Ratio { n, estimate, ci })
}

/// The fraction of the gap from `baseline` to `reference` that `claimant` closes, per seed
/// `(seed, value)`: `mean(claimant - baseline) / mean(reference - baseline)` over the seeds
/// all three have, with [`fieller`]'s interval. `None` without a common seed.
pub fn gap_fraction(
    claimant: &[(i64, f64)],
    baseline: &[(i64, f64)],
    reference: &[(i64, f64)],
) -> Option<Ratio> {
    let value =
        |rows: &[(i64, f64)], seed: i64| rows.iter().find(|(s, _)| *s == seed).map(|(_, v)| *v);
    let pairs: Vec<(f64, f64)> = claimant
        .iter()
        .filter_map(|&(seed, x)| {
            let base = value(baseline, seed)?;
            Some((x - base, value(reference, seed)? - base))
        })
        .collect();
    fieller(&pairs)
}

/// Pairs `a` and `b` by seed (`(seed, value)`) and compares them; `None` without any pair.
pub fn paired(a: &[(i64, f64)], b: &[(i64, f64)]) -> Option<Paired> {
    let diffs: Vec<f64> = a
        .iter()
        .filter_map(|(seed, x)| b.iter().find(|(s, _)| s == seed).map(|(_, y)| x - y))
        .filter(|d| d.is_finite())
        .collect();
    let n = diffs.len();
    if n == 0 {
        return None;
    }
    let mean = diffs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Some(Paired {
            n,
            mean_diff: mean,
            sd_diff: f64::NAN,
            ci: (f64::NEG_INFINITY, f64::INFINITY),
            p_value: None,
            effect_size: None,
        });
    }
    let sd = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64).expect("n >= 2 degrees of freedom");
    let half = t.inverse_cdf(0.5 + CONFIDENCE / 2.0) * sd / (n as f64).sqrt();
    let (p_value, effect_size) = if sd > 0.0 {
        let statistic = mean / (sd / (n as f64).sqrt());
        (Some(2.0 * (1.0 - t.cdf(statistic.abs()))), Some(mean / sd))
    } else {
        // Identical differences: no spread to test against.
        (None, None)
    };
    Some(Paired {
        n,
        mean_diff: mean,
        sd_diff: sd,
        ci: (mean - half, mean + half),
        p_value,
        effect_size,
    })
}

/// What the data say about a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Significant on the claimed side (uncorrected: the whole interval is there).
    Supported,
    /// Significant on the other side.
    Contradicted,
    /// Not significant either way.
    Inconclusive,
    /// Fewer than two paired seeds.
    InsufficientSeeds,
    /// A claim about generalisation while the baseline had not yet fitted its training set
    /// (`super::budget`): no verdict at this budget.
    NotTestable,
    /// A row equal to the baseline by construction that is equal on every seed.
    IdentityHolds,
    /// A row equal to the baseline by construction that differs on some seed.
    IdentityFails,
    /// A quantity reported with its interval, not a test.
    Estimate,
}

impl Verdict {
    /// Verdict on "the mean difference is positive" (`higher_is_better`) or negative.
    pub fn of(p: &Paired, higher_is_better: bool) -> Verdict {
        if p.n < 2 || p.sd_diff.is_nan() {
            return Verdict::InsufficientSeeds;
        }
        let (low, high) = if higher_is_better {
            p.ci
        } else {
            (-p.ci.1, -p.ci.0)
        };
        if low > 0.0 {
            Verdict::Supported
        } else if high < 0.0 {
            Verdict::Contradicted
        } else {
            Verdict::Inconclusive
        }
    }

    /// Verdict on "the mean difference is positive" (`higher_is_better`) or negative from the
    /// comparison's `p_value` after correction for multiple testing: significant when it is
    /// below [`ALPHA`], on the side of the mean difference. With the uncorrected p-value
    /// ([`Paired::test_p`]) this is [`Verdict::of`] (a t-test rejects at alpha exactly when
    /// its 1 - alpha interval excludes 0).
    pub fn judge(p: &Paired, higher_is_better: bool, p_value: Option<f64>) -> Verdict {
        if p.n < 2 || p.sd_diff.is_nan() {
            return Verdict::InsufficientSeeds;
        }
        let side = if higher_is_better {
            p.mean_diff
        } else {
            -p.mean_diff
        };
        match p_value {
            Some(q) if q < ALPHA && side > 0.0 => Verdict::Supported,
            Some(q) if q < ALPHA && side < 0.0 => Verdict::Contradicted,
            _ => Verdict::Inconclusive,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Supported => "supported",
            Verdict::Contradicted => "contradicted",
            Verdict::Inconclusive => "inconclusive",
            Verdict::InsufficientSeeds => "too few seeds",
            Verdict::NotTestable => "not testable at this budget",
            Verdict::IdentityHolds => "identity holds",
            Verdict::IdentityFails => "identity fails",
            Verdict::Estimate => "estimate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(values: &[f64]) -> Vec<(i64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as i64, v))
            .collect()
    }

    #[test]
    fn matches_a_hand_computed_paired_t_test() {
        // Differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.4641, df 2.
        let p = paired(&seeds(&[11.0, 12.0, 13.0]), &seeds(&[10.0, 10.0, 10.0])).unwrap();
        assert_eq!(p.n, 3);
        assert!((p.mean_diff - 2.0).abs() < 1e-12 && (p.sd_diff - 1.0).abs() < 1e-12);
        // Two-sided p for t = 3.4641 with 2 df is 0.0742 (tables); t_0.975,2 = 4.3027.
        assert!((p.p_value.unwrap() - 0.0742).abs() < 5e-4, "{p:?}");
        let half = 4.302_653 / 3f64.sqrt();
        assert!((p.ci.0 - (2.0 - half)).abs() < 1e-4 && (p.ci.1 - (2.0 + half)).abs() < 1e-4);
        assert!((p.effect_size.unwrap() - 2.0).abs() < 1e-12);
        // The interval contains 0 here, so the claim is not settled either way.
        assert_eq!(Verdict::of(&p, true), Verdict::Inconclusive);
    }

    #[test]
    fn pairs_by_seed_and_judges_direction() {
        let a = vec![(5, 0.90), (1, 0.91), (2, 0.92), (3, 0.93)];
        let b = vec![(1, 0.80), (2, 0.815), (3, 0.82), (9, 0.1)];
        let p = paired(&a, &b).unwrap();
        assert_eq!(p.n, 3, "seeds 1, 2, 3 are in both");
        assert_eq!(Verdict::of(&p, true), Verdict::Supported);
        assert_eq!(Verdict::of(&p, false), Verdict::Contradicted);
        let single = paired(&[(0, 1.0)], &[(0, 0.5)]).unwrap();
        assert_eq!(Verdict::of(&single, true), Verdict::InsufficientSeeds);
        assert!(paired(&[(0, 1.0)], &[(1, 0.5)]).is_none());
    }

    #[test]
    fn minimum_detectable_effect_matches_a_hand_computation() {
        // With 2 degrees of freedom the t CDF is 1/2 + t / (2 sqrt(2 + t^2)), so
        // t_0.975 = sqrt(2 * 0.9025 / 0.0975) = 4.302653 and t_0.80 = sqrt(0.72 / 0.64) =
        // 1.060660; n = 3, sd = 1: MDE = 5.363313 / sqrt 3 = 3.096510.
        let t975 = (2.0f64 * 0.9025 / 0.0975).sqrt();
        let t80 = (0.72f64 / 0.64).sqrt();
        let expected = (t975 + t80) / 3f64.sqrt();
        assert!((expected - 3.096_510).abs() < 1e-6);
        assert!((mde(3, 1.0).unwrap() - expected).abs() < 1e-6);
        let p = paired(&seeds(&[11.0, 12.0, 13.0]), &seeds(&[10.0, 10.0, 10.0])).unwrap();
        assert!((p.mde().unwrap() - expected).abs() < 1e-6);
        // It scales with sd / sqrt(n) and needs two pairs.
        assert!((mde(3, 2.5).unwrap() - 2.5 * expected).abs() < 1e-6);
        assert!(mde(30, 1.0).unwrap() < mde(3, 1.0).unwrap() / 2.0);
        assert_eq!(mde(1, 1.0), None);
    }

    #[test]
    fn holm_matches_the_textbook_example() {
        // Four hypotheses with p = 0.01, 0.04, 0.03, 0.005 (Holm's procedure on Wikipedia;
        // R: p.adjust(c(0.01, 0.04, 0.03, 0.005), "holm") = 0.03 0.06 0.06 0.02): sorted,
        // 4 x 0.005 = 0.02, 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06.
        let adjusted = holm(&[0.01, 0.04, 0.03, 0.005]);
        let expected = [0.03, 0.06, 0.06, 0.02];
        for (a, e) in adjusted.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{adjusted:?}");
        }
        // Only H4 and H1 are rejected at 0.05.
        let rejected: Vec<bool> = adjusted.iter().map(|&q| q < ALPHA).collect();
        assert_eq!(rejected, [true, false, false, true]);
        // Capped at 1; a single test is not adjusted; an empty family is empty.
        assert_eq!(holm(&[0.6, 0.7]), vec![1.0, 1.0]);
        assert_eq!(holm(&[0.2]), vec![0.2]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn judging_with_the_raw_p_value_is_the_interval_verdict() {
        let cases = [
            (vec![11.0, 12.0, 13.0], vec![10.0, 10.0, 10.0]),
            (vec![0.93, 0.94, 0.95], vec![0.90, 0.91, 0.92]),
            (vec![0.90, 0.91, 0.92, 0.95], vec![0.93, 0.95, 0.93, 0.99]),
            (vec![1.0, 2.0, 3.0], vec![0.9, 1.9, 2.9]),
            (vec![1.0, 2.0, 3.0], vec![1.0, 2.0, 3.0]),
        ];
        for (a, b) in cases {
            let p = paired(&seeds(&a), &seeds(&b)).unwrap();
            for higher in [true, false] {
                assert_eq!(
                    Verdict::judge(&p, higher, p.test_p()),
                    Verdict::of(&p, higher),
                    "{p:?}"
                );
            }
        }
        // A correction can only weaken a verdict.
        let p = paired(&seeds(&[0.93, 0.94, 0.96]), &seeds(&[0.90, 0.91, 0.92])).unwrap();
        assert_eq!(Verdict::of(&p, true), Verdict::Supported);
        assert_eq!(
            Verdict::judge(&p, true, Some(0.2)),
            Verdict::Inconclusive,
            "{p:?}"
        );
        assert_eq!(
            Verdict::judge(&p, true, None),
            Verdict::Inconclusive,
            "{p:?}"
        );
    }

    /// The paired t statistic of `a_s - rho b_s`.
    fn t_of(pairs: &[(f64, f64)], rho: f64) -> f64 {
        let c: Vec<f64> = pairs.iter().map(|(a, b)| a - rho * b).collect();
        let n = c.len() as f64;
        let mean = c.iter().sum::<f64>() / n;
        let sd = (c.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        mean / (sd / n.sqrt())
    }

    #[test]
    fn fieller_interval_is_where_the_t_test_of_a_minus_rho_b_does_not_reject() {
        // MK - baseline and wide - baseline per seed (points): MK closes about half the gap.
        let pairs = [(1.0, 2.1), (1.3, 2.0), (0.8, 1.9), (1.1, 2.2)];
        let ratio = fieller(&pairs).unwrap();
        assert_eq!(ratio.n, 4);
        assert!((ratio.estimate - 4.2 / 8.2).abs() < 1e-12);
        let (low, high) = ratio.ci.unwrap();
        assert!(low < ratio.estimate && ratio.estimate < high, "{ratio:?}");
        // At both ends the t statistic is exactly the critical value t_0.975,3 = 3.182446.
        for end in [low, high] {
            assert!((t_of(&pairs, end).abs() - 3.182_446).abs() < 1e-5, "{end}");
        }
        assert!(t_of(&pairs, ratio.estimate).abs() < 1e-9);
        // A reference that is not significantly better than the baseline: unbounded.
        let flat = [(1.0, 0.5), (1.2, -0.6), (0.9, 0.2)];
        assert_eq!(fieller(&flat).unwrap().ci, None);
        // One seed: an estimate without interval; nothing without a pair.
        assert_eq!(fieller(&[(1.0, 2.0)]).unwrap().ci, None);
        assert!(fieller(&[]).is_none());
    }

    #[test]
    fn gap_fraction_pairs_the_three_rows_by_seed() {
        let baseline = vec![(0, 90.0), (1, 91.0), (2, 92.0), (3, 50.0)];
        let wide = vec![(0, 94.0), (1, 95.2), (2, 95.9)];
        let mk = vec![(2, 94.0), (1, 93.0), (0, 92.1), (4, 99.0)];
        let ratio = gap_fraction(&mk, &baseline, &wide).unwrap();
        // Seeds 0, 1, 2: MK - baseline 2.1, 2.0, 2.0 (mean 6.1 / 3); wide - baseline 4.0,
        // 4.2, 3.9 (mean 12.1 / 3).
        assert_eq!(ratio.n, 3);
        assert!((ratio.estimate - 6.1 / 12.1).abs() < 1e-12, "{ratio:?}");
        let (low, high) = ratio.ci.unwrap();
        assert!(0.0 < low && low < ratio.estimate && ratio.estimate < high && high < 1.0);
        // MK at the baseline: a fraction of 0; MK at the reference: 1.
        let at = |rows: &[(i64, f64)]| gap_fraction(rows, &baseline, &wide).unwrap().estimate;
        assert!(at(&baseline).abs() < 1e-12);
        assert!((at(&wide) - 1.0).abs() < 1e-12);
        assert!(gap_fraction(&mk, &baseline, &[(7, 1.0)]).is_none());
    }
}
