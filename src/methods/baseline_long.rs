//! `baseline_long`: the small model trained `long_factor` times longer (schedule stretched).

use burn::tensor::backend::AutodiffBackend;
use serde::Deserialize;

use super::baseline::train_small;
use super::{Method, MethodContext, MethodInfo, MethodOutput, MethodSpec, Role};
use crate::error::Result;
use crate::models::ModelSpec;

/// The small model trained `long_factor` times as many epochs, its schedule stretched.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineLong {
    #[serde(default = "default_long_factor")]
    pub long_factor: usize,
}

fn default_long_factor() -> usize {
    2
}

impl MethodSpec for BaselineLong {
    fn info() -> MethodInfo {
        MethodInfo {
            uses_k: false,
            figures: &["generalisation"],
            ..MethodInfo::new(
                "the small model trained long_factor times longer",
                Role::Competitor,
            )
        }
    }

    fn options(&self) -> serde_json::Value {
        serde_json::json!({ "long_factor": self.long_factor })
    }

    fn training_passes(
        &self,
        small: &ModelSpec,
        _k: usize,
        epochs: usize,
    ) -> Vec<(ModelSpec, f64)> {
        vec![(small.clone(), (epochs * self.long_factor) as f64)]
    }

    fn validate(&self, _k: usize) -> std::result::Result<(), String> {
        match self.long_factor {
            0 => Err("long_factor must be at least 1".into()),
            _ => Ok(()),
        }
    }
}

impl Method for BaselineLong {
    fn run<B: AutodiffBackend>(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        let mut settings = ctx.plain_settings();
        settings.epochs *= self.long_factor;
        train_small(ctx, &settings)
    }
}
