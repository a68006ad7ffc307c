//! Random mixing coefficients for majority-kernel layers (docs/METHODS.md, "Majority kernels":
//! mixing distributions).
//!
//! Coefficients are drawn on the host with the run's seeded RNG, so a run is reproducible on
//! every backend, and all layers' draws for one step are uploaded as one `[layers, k]` tensor.

use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand_distr::{Distribution, Gamma};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the k copies of a kernel are mixed at each training step. Every draw lies on the
/// probability simplex (non-negative, sums to 1).
///
/// Written in experiment files as `dirichlet` (alpha 1), `dirichlet(0.5)`, `majority`
/// (m = floor(k/2)+1), `majority(3)`, `one_hot` or `uniform`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Mixing {
    /// `p ~ Dirichlet(alpha, ..., alpha)`; alpha = 1 is uniform on the simplex.
    Dirichlet { alpha: f64 },
    /// A uniformly random subset of `m` copies, each weighted `1/m`
    /// (`m = floor(k/2) + 1` when not given: a strict majority).
    Majority { m: Option<usize> },
    /// One copy chosen uniformly at random.
    OneHot,
    /// `p = 1/k` always: the control of the reduced-learning-rate lemma.
    Uniform,
}

impl FromStr for Mixing {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (name, arg) = match text.split_once('(') {
            Some((name, rest)) => {
                let arg = rest
                    .strip_suffix(')')
                    .ok_or_else(|| format!("mixing `{text}`: missing closing parenthesis"))?;
                (name.trim(), Some(arg.trim()))
            }
            None => (text, None),
        };
        let bad_arg = |what: &str| format!("mixing `{text}`: the argument must be {what}");
        match (name, arg) {
            ("dirichlet", None) => Ok(Mixing::Dirichlet { alpha: 1.0 }),
            ("dirichlet", Some(a)) => a
                .parse()
                .map(|alpha| Mixing::Dirichlet { alpha })
                .map_err(|_| bad_arg("a number (alpha)")),
            ("majority", None) => Ok(Mixing::Majority { m: None }),
            ("majority", Some(a)) => a
                .parse()
                .map(|m| Mixing::Majority { m: Some(m) })
                .map_err(|_| bad_arg("a whole number (m)")),
            ("one_hot", None) => Ok(Mixing::OneHot),
            ("uniform", None) => Ok(Mixing::Uniform),
            _ => Err(format!(
                "unknown mixing `{text}`: expected dirichlet, dirichlet(alpha), majority, majority(m), one_hot or uniform"
            )),
        }
    }
}

impl TryFrom<String> for Mixing {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Mixing> for String {
    fn from(mixing: Mixing) -> String {
        mixing.to_string()
    }
}

impl fmt::Display for Mixing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mixing::Dirichlet { alpha } => write!(f, "dirichlet({alpha})"),
            Mixing::Majority { m: None } => write!(f, "majority"),
            Mixing::Majority { m: Some(m) } => write!(f, "majority({m})"),
            Mixing::OneHot => write!(f, "one_hot"),
            Mixing::Uniform => write!(f, "uniform"),
        }
    }
}

impl Default for Mixing {
    fn default() -> Self {
        Mixing::Dirichlet { alpha: 1.0 }
    }
}

impl Mixing {
    /// Label for result rows and tables, with the majority size resolved for `k`.
    pub fn label(&self, k: usize) -> String {
        match self {
            Mixing::Majority { m } => format!("majority({})", self.majority_size(k, *m)),
            other => other.to_string(),
        }
    }

    fn majority_size(&self, k: usize, m: Option<usize>) -> usize {
        m.unwrap_or(k / 2 + 1)
    }

    /// Checks the parameters against `k`; the message names the offending value.
    pub fn validate(&self, k: usize) -> Result<(), String> {
        match self {
            Mixing::Dirichlet { alpha } if !(*alpha > 0.0 && alpha.is_finite()) => Err(format!(
                "mixing.dirichlet.alpha must be a positive number, got {alpha}"
            )),
            Mixing::Majority { m: Some(m) } if *m == 0 || *m > k => Err(format!(
                "mixing.majority.m must be between 1 and k = {k}, got {m}"
            )),
            _ => Ok(()),
        }
    }

    /// Draws one coefficient vector of length `k` into `out`.
    pub fn draw_into(&self, k: usize, rng: &mut StdRng, out: &mut [f32]) {
        debug_assert_eq!(out.len(), k);
        match *self {
            Mixing::Uniform => out.fill(1.0 / k as f32),
            Mixing::OneHot => {
                out.fill(0.0);
                out[rng.random_range(0..k)] = 1.0;
            }
            Mixing::Majority { m } => {
                let m = self.majority_size(k, m);
                out.fill(0.0);
                for i in sample(rng, k, m) {
                    out[i] = 1.0 / m as f32;
                }
            }
            Mixing::Dirichlet { alpha } => {
                // Normalised independent Gamma(alpha, 1) draws are Dirichlet(alpha) distributed.
                let gamma = Gamma::new(alpha, 1.0).expect("alpha is validated positive");
                let draws: Vec<f64> = (0..k).map(|_| gamma.sample(rng)).collect();
                let total: f64 = draws.iter().sum();
                if total > 0.0 && total.is_finite() {
                    for (o, d) in out.iter_mut().zip(&draws) {
                        *o = (d / total) as f32;
                    }
                } else {
                    // Every draw underflowed (tiny alpha): the barycentre, still on the simplex.
                    out.fill(1.0 / k as f32);
                }
            }
        }
    }

    /// Draws one vector per layer, row-major `[layers, k]`, ready to upload as one tensor.
    pub fn draw_all(&self, layers: usize, k: usize, rng: &mut StdRng) -> Vec<f32> {
        let mut out = vec![0.0; layers * k];
        for row in out.chunks_mut(k) {
            self.draw_into(k, rng, row);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn on_simplex(p: &[f32]) -> bool {
        p.iter().all(|&x| x >= 0.0) && (p.iter().sum::<f32>() - 1.0).abs() < 1e-5
    }

    #[test]
    fn every_distribution_stays_on_the_simplex() {
        let mut rng = StdRng::seed_from_u64(1);
        for mixing in [
            Mixing::Dirichlet { alpha: 1.0 },
            Mixing::Dirichlet { alpha: 0.05 },
            Mixing::Majority { m: None },
            Mixing::Majority { m: Some(2) },
            Mixing::OneHot,
            Mixing::Uniform,
        ] {
            for k in [1, 2, 4, 8] {
                if mixing.validate(k).is_err() {
                    continue;
                }
                let draws = mixing.draw_all(50, k, &mut rng);
                for p in draws.chunks(k) {
                    assert!(on_simplex(p), "{mixing:?} k={k}: {p:?}");
                }
            }
        }
    }

    #[test]
    fn dirichlet_moments_match_theory() {
        // Dirichlet(alpha) with k components: E[p_i] = 1/k,
        // Var[p_i] = (k-1) / (k^2 (k alpha + 1)).
        let mut rng = StdRng::seed_from_u64(7);
        for (k, alpha) in [(4usize, 1.0f64), (4, 0.5), (8, 2.0)] {
            let n = 40_000;
            let draws = Mixing::Dirichlet { alpha }.draw_all(n, k, &mut rng);
            let kf = k as f64;
            let var_theory = (kf - 1.0) / (kf * kf * (kf * alpha + 1.0));
            for i in 0..k {
                let xs: Vec<f64> = draws.chunks(k).map(|p| p[i] as f64).collect();
                let mean = xs.iter().sum::<f64>() / n as f64;
                let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
                assert!(
                    (mean - 1.0 / kf).abs() < 0.005,
                    "k={k} alpha={alpha} mean {mean}"
                );
                assert!(
                    (var / var_theory - 1.0).abs() < 0.05,
                    "k={k} alpha={alpha} var {var} vs {var_theory}"
                );
            }
        }
    }

    #[test]
    fn majority_picks_m_distinct_copies() {
        let mut rng = StdRng::seed_from_u64(3);
        let k = 5;
        let mut counts = [0usize; 5];
        for p in (Mixing::Majority { m: None })
            .draw_all(5_000, k, &mut rng)
            .chunks(k)
        {
            let chosen: Vec<usize> = (0..k).filter(|&i| p[i] > 0.0).collect();
            assert_eq!(chosen.len(), 3, "floor(5/2)+1 = 3 copies");
            for &i in &chosen {
                assert!((p[i] - 1.0 / 3.0).abs() < 1e-6);
                counts[i] += 1;
            }
        }
        // Each copy is in a random majority with probability 3/5.
        for c in counts {
            assert!((c as f64 / 5_000.0 - 0.6).abs() < 0.03, "{counts:?}");
        }
    }

    #[test]
    fn validation_names_the_bad_value() {
        let err = Mixing::Majority { m: Some(9) }.validate(4).unwrap_err();
        assert!(
            err.contains("mixing.majority.m") && err.contains('9'),
            "{err}"
        );
        let err = Mixing::Dirichlet { alpha: 0.0 }.validate(4).unwrap_err();
        assert!(err.contains("alpha"), "{err}");
    }

    #[test]
    fn written_forms_round_trip() {
        for text in [
            "dirichlet(1)",
            "dirichlet(0.5)",
            "majority",
            "majority(3)",
            "one_hot",
            "uniform",
        ] {
            assert_eq!(text.parse::<Mixing>().unwrap().to_string(), text);
        }
        assert_eq!(
            "dirichlet".parse::<Mixing>().unwrap(),
            Mixing::Dirichlet { alpha: 1.0 }
        );
        let err = "gaussian".parse::<Mixing>().unwrap_err();
        assert!(
            err.contains("gaussian") && err.contains("dirichlet"),
            "{err}"
        );
        assert!(
            "dirichlet(x)"
                .parse::<Mixing>()
                .unwrap_err()
                .contains("alpha")
        );
    }

    #[test]
    fn same_seed_same_draws() {
        let a = Mixing::default().draw_all(3, 4, &mut StdRng::seed_from_u64(11));
        let b = Mixing::default().draw_all(3, 4, &mut StdRng::seed_from_u64(11));
        assert_eq!(a, b);
    }
}
