//! `distilled_ensemble` (docs/METHODS.md, "Distilled ensemble"): k small models trained with
//! different seeds (or the
//! `wide` model, with `teacher: wide`), their averaged logits distilled into a fresh small
//! model with the usual knowledge-distillation loss. Members and teachers are stored under the
//! results folder's `models/`, keyed by everything that determines them, and reused by every
//! run and rerun that needs the same one.

use burn::module::{AutodiffModule, Module};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::baseline::plain_settings;
use super::{Method, MethodContext, MethodOutput};
use crate::error::Result;
use crate::models::{Classifier, Model};
use crate::train::{Distillation, TrainData};

/// Which models teach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherKind {
    /// The average logits of k small models trained with different seeds.
    #[default]
    Ensemble,
    /// The k-times-wider model ("distilled-Baseline" with a big teacher).
    Wide,
}

fn default_temperature() -> f64 {
    4.0
}

fn default_alpha() -> f64 {
    0.9
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistilledEnsemble {
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Weight of the soft (teacher) term.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub teacher: TeacherKind,
}

/// Seed of ensemble member `index` for the run seed `seed` (member 0 is the seed itself).
fn member_seed(seed: u64, index: usize) -> u64 {
    seed.wrapping_add(1_000_003 * index as u64)
}

/// The teacher logits of every example of `data`, averaged over `teachers`.
fn average_logits<B: Backend>(
    teachers: &[Model<B>],
    data: &crate::data::Examples,
    device: &B::Device,
) -> Vec<f32> {
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut sum = vec![0f32; data.len() * data.num_classes()];
    for teacher in teachers {
        let mut at = 0;
        for chunk in indices.chunks(1000) {
            let (inputs, _) = data.batch::<B>(chunk, device);
            let logits: Vec<f32> = teacher
                .forward(inputs, None)
                .into_data()
                .convert::<f32>()
                .to_vec()
                .expect("f32 logits");
            for (s, l) in sum[at..at + logits.len()].iter_mut().zip(&logits) {
                *s += l;
            }
            at += logits.len();
        }
    }
    sum.iter_mut().for_each(|s| *s /= teachers.len() as f32);
    sum
}

impl<B: AutodiffBackend> Method<B> for DistilledEnsemble {
    fn name(&self) -> &'static str {
        "distilled_ensemble"
    }

    fn uses_k(&self) -> bool {
        true
    }

    fn options(&self) -> serde_json::Value {
        serde_json::json!({ "temperature": self.temperature, "alpha": self.alpha, "teacher": self.teacher })
    }

    fn validate(&self, _k: usize) -> std::result::Result<(), String> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "temperature must be positive, got {}",
                self.temperature
            ));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(format!("alpha must be in [0, 1], got {}", self.alpha));
        }
        Ok(())
    }

    fn run(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        let mut teachers = Vec::new();
        let mut teacher_steps = 0;
        match self.teacher {
            TeacherKind::Ensemble => {
                for index in 0..ctx.k {
                    let seed = member_seed(ctx.seed, index);
                    let (model, steps) =
                        ctx.trained_model(ctx.model, seed, &format!("member-{index}"))?;
                    teachers.push(model);
                    teacher_steps += steps;
                }
            }
            TeacherKind::Wide => {
                let (model, steps) =
                    ctx.trained_model(&ctx.model.widened(ctx.k), ctx.seed, "wide")?;
                teachers.push(model);
                teacher_steps += steps;
            }
        }
        let targets = average_logits(&teachers, ctx.data.train, ctx.device);
        let data = TrainData {
            soft_targets: Some(&targets),
            ..ctx.data
        };
        let mut settings = plain_settings(ctx);
        settings.distillation = Some(Distillation {
            temperature: self.temperature,
            alpha: self.alpha,
        });
        let student = ctx.small_model();
        let trained_params = student.num_params();
        let (student, mut log) = ctx.train_on(student, &settings, "student", &data)?;
        log.teacher_steps = teacher_steps;
        Ok(MethodOutput {
            deployed: student.valid(),
            log,
            trained_params,
        })
    }
}
