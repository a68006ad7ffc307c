//! Host-side, seeded parameter initialisation.
//!
//! Weights are drawn on the host from the run's `StdRng` rather than the backend's RNG, so the
//! same seed gives the same initial model on every backend (burn's backend seeding covers only
//! the next random op on some backends).

use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// How the k copies of a majority kernel are initialised (docs/METHODS.md, "Majority kernels":
/// initialisation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MkInit {
    /// Every copy equals the small model's standard init (provisional default until the
    /// Table 5 ablation picks one).
    #[default]
    Identical,
    /// Every copy is an independent standard init (the mean has 1/k of the standard variance).
    Independent,
    /// Independent copies with k times the standard variance, so the mean has the standard one.
    IndependentScaled,
}

impl MkInit {
    /// Name as written in experiment files and result rows.
    pub fn label(&self) -> &'static str {
        match self {
            MkInit::Identical => "identical",
            MkInit::Independent => "independent",
            MkInit::IndependentScaled => "independent_scaled",
        }
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
