//! Host-side, seeded parameter initialisation.
//!
//! Weights are drawn on the host from the run's `StdRng` rather than the backend's RNG, so the
//! same seed gives the same initial model on every backend (burn's backend seeding covers only
//! the next random op on some backends).

use std::str::FromStr;

use rand::RngExt;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// How the k copies of a majority kernel are initialised (docs/METHODS.md, "Majority kernels":
/// initialisation). Written in experiment files as `identical`, `independent`,
/// `independent_scaled` or `perturbed(s)`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MkInit {
    /// Every copy equals the small model's kernel: its standard init, or the kernel loaded from
    /// a pre-trained checkpoint (provisional default until the Table 5 ablation picks one).
    #[default]
    Identical,
    /// Every copy is an independent standard init (the mean has 1/k of the standard variance).
    Independent,
    /// Independent copies with k times the standard variance, so the mean has the standard one.
    IndependentScaled,
    /// Every copy is the small model's kernel plus Gaussian noise whose standard deviation is
    /// `s` times the kernel's own, centred across the copies so that their mean is the kernel
    /// exactly (a pre-trained kernel's copies differ, their uniform collapse is the
    /// checkpoint's).
    Perturbed(f32),
}

impl MkInit {
    /// Name as written in experiment files and result rows (`perturbed(0.01)`).
    pub fn label(&self) -> String {
        match self {
            MkInit::Identical => "identical".into(),
            MkInit::Independent => "independent".into(),
            MkInit::IndependentScaled => "independent_scaled".into(),
            MkInit::Perturbed(scale) => format!("perturbed({scale})"),
        }
    }

    /// Whether the copies start from the small model's kernel (identical or perturbed), rather
    /// than being drawn afresh.
    pub fn keeps_the_kernel(&self) -> bool {
        matches!(self, MkInit::Identical | MkInit::Perturbed(_))
    }
}

impl FromStr for MkInit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        match text {
            "identical" => return Ok(MkInit::Identical),
            "independent" => return Ok(MkInit::Independent),
            "independent_scaled" => return Ok(MkInit::IndependentScaled),
            _ => {}
        }
        let scale = text
            .strip_prefix("perturbed(")
            .and_then(|rest| rest.strip_suffix(')'))
            .ok_or_else(|| {
                format!(
                    "unknown init `{text}`: expected identical, independent, independent_scaled \
                     or perturbed(s) (s the noise's standard deviation relative to the kernel's)"
                )
            })?;
        match scale.trim().parse::<f32>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Ok(MkInit::Perturbed(s)),
            _ => Err(format!(
                "init `{text}`: the scale must be a finite number >= 0, got `{}`",
                scale.trim()
            )),
        }
    }
}

impl TryFrom<String> for MkInit {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<MkInit> for String {
    fn from(init: MkInit) -> String {
        init.label()
    }
}

/// burn's default `Linear`/`Conv2d` init: Kaiming-uniform with gain 1/sqrt(3), i.e.
/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, for weights and biases alike.
pub fn kaiming_uniform(len: usize, fan_in: usize, rng: &mut StdRng) -> Vec<f32> {
    let bound = 1.0 / (fan_in as f32).sqrt();
    (0..len).map(|_| rng.random_range(-bound..bound)).collect()
}

/// The flattened `[k, kernel]` copies for an MK layer whose small-model kernel is `base`.
pub fn copies(base: &[f32], k: usize, fan_in: usize, init: MkInit, rng: &mut StdRng) -> Vec<f32> {
    match init {
        MkInit::Identical => base.repeat(k),
        MkInit::Perturbed(scale) => perturbed(base, k, scale, rng),
        MkInit::Independent | MkInit::IndependentScaled => {
            let scale = match init {
                MkInit::IndependentScaled => (k as f32).sqrt(),
                _ => 1.0,
            };
            let mut out = kaiming_uniform(base.len() * k, fan_in, rng);
            out.iter_mut().for_each(|w| *w *= scale);
            out
        }
    }
}

/// `k` copies of `base` plus Gaussian noise centred across the copies element by element, so
/// that their mean is `base` (up to rounding), and drawn with variance
/// `k / (k - 1) · (scale · std(base))^2`, so that after centring each copy's deviation from
/// `base` has standard deviation `scale · std(base)`.
fn perturbed(base: &[f32], k: usize, scale: f32, rng: &mut StdRng) -> Vec<f32> {
    if k < 2 {
        return base.repeat(k);
    }
    let n = base.len().max(1) as f64;
    let mean = base.iter().map(|&w| w as f64).sum::<f64>() / n;
    let std = (base.iter().map(|&w| (w as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let sigma = scale as f64 * std * (k as f64 / (k as f64 - 1.0)).sqrt();
    let mut noise: Vec<f64> = (0..base.len() * k)
        .map(|_| {
            let z: f64 = StandardNormal.sample(rng);
            sigma * z
        })
        .collect();
    for i in 0..base.len() {
        let centre = (0..k).map(|c| noise[c * base.len() + i]).sum::<f64>() / k as f64;
        (0..k).for_each(|c| noise[c * base.len() + i] -= centre);
    }
    noise
        .iter()
        .enumerate()
        .map(|(j, e)| (base[j % base.len()] as f64 + e) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn inits_are_written_as_they_are_read() {
        for text in [
            "identical",
            "independent",
            "independent_scaled",
            "perturbed(0.01)",
        ] {
            let init: MkInit = text.parse().unwrap();
            assert_eq!(init.label(), text);
        }
        assert_eq!("perturbed( 0.5 )".parse(), Ok(MkInit::Perturbed(0.5)));
        let unknown = "gaussian".parse::<MkInit>().unwrap_err();
        assert!(unknown.contains("unknown init `gaussian`"), "{unknown}");
        let negative = "perturbed(-1)".parse::<MkInit>().unwrap_err();
        assert!(
            negative.contains("finite number >= 0, got `-1`"),
            "{negative}"
        );
        assert!(MkInit::Perturbed(0.1).keeps_the_kernel() && MkInit::Identical.keeps_the_kernel());
        assert!(!MkInit::Independent.keeps_the_kernel());
    }

    #[test]
    fn perturbed_copies_differ_and_average_to_the_kernel() {
        let mut rng = StdRng::seed_from_u64(3);
        let base: Vec<f32> = (0..4000).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect();
        let k = 4;
        let theta = copies(&base, k, 1, MkInit::Perturbed(0.1), &mut rng);
        let n = base.len();
        let base_std = {
            let m = base.iter().sum::<f32>() / n as f32;
            (base.iter().map(|w| (w - m).powi(2)).sum::<f32>() / n as f32).sqrt()
        };
        let mut noise_sq = 0.0f64;
        for (i, &w) in base.iter().enumerate() {
            let mean = (0..k).map(|c| theta[c * n + i]).sum::<f32>() / k as f32;
            assert!((mean - w).abs() < 1e-6, "mean of the copies is the kernel");
            noise_sq += (0..k)
                .map(|c| ((theta[c * n + i] - w) as f64).powi(2))
                .sum::<f64>();
        }
        // Each copy's deviation from the kernel has s times the kernel's deviation.
        let std = (noise_sq / (n * k) as f64).sqrt();
        let expected = 0.1 * base_std as f64;
        assert!((std / expected - 1.0).abs() < 0.05, "{std} vs {expected}");
        assert_eq!(
            copies(&base, 1, 1, MkInit::Perturbed(0.1), &mut rng),
            base,
            "one copy is the kernel"
        );
    }
}
