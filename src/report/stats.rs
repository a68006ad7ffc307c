//! Paired comparisons over seeds: the statistics every claim and every "best" mark rests on.
//!
//! Two methods run with the same seeds see the same data order and slices, so their results
//! are paired by seed; the difference per seed removes the seed-to-seed variation they share.
//! The test is the paired t-test (two-sided), the interval the t interval of the mean
//! difference, the effect size Cohen's d_z (mean difference over its standard deviation).
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

/// What the data say about a directional claim (`a` better than `b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The whole interval is on the claimed side.
    Supported,
    /// The whole interval is on the other side.
    Contradicted,
    /// The interval contains no effect.
    Inconclusive,
    /// Fewer than two paired seeds.
    InsufficientSeeds,
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

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Supported => "supported",
            Verdict::Contradicted => "contradicted",
            Verdict::Inconclusive => "inconclusive",
            Verdict::InsufficientSeeds => "too few seeds",
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
}
