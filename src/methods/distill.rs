//! `distilled_ensemble` (docs/METHODS.md, "Distilled ensemble"): k small models trained with different seeds (or the
//! `wide` model, with `teacher: wide`), their averaged logits distilled into a fresh small
//! model with the usual knowledge-distillation loss. Members and teachers are stored under the
//! results folder's `models/`, keyed by everything that determines them, and reused by every
//! run and rerun that needs the same one.

use burn::module::{AutodiffModule, Module};
use burn::nn::loss::CrossEntropyLoss;
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::{Method, MethodContext, MethodInfo, MethodOutput, MethodSpec, Role};
use crate::error::Result;
use crate::models::{Classifier, Model, ModelSpec};
use crate::train::StepHooks;

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

/// Knowledge distillation (Hinton et al.) as the student's loss: `alpha * T^2 *
/// CE(softmax(teacher / T), softmax(student / T)) + (1 - alpha) * CE(labels, student)`. The
/// soft term's cross-entropy differs from the KL divergence by the teacher's entropy, a
/// constant: same gradients.
pub struct DistillationLoss {
    pub temperature: f64,
    pub alpha: f64,
    /// Teacher logits of every training example, `[N, classes]` row-major.
    pub teacher_logits: Vec<f32>,
    pub classes: usize,
}

impl DistillationLoss {
    /// The distillation loss of `logits` against `teacher` logits and hard `labels`.
    pub fn loss<B: Backend>(
        &self,
        logits: Tensor<B, 2>,
        teacher: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        cross_entropy: &CrossEntropyLoss<B>,
    ) -> Tensor<B, 1> {
        let t = self.temperature;
        let targets = softmax(teacher.div_scalar(t), 1);
        let log_student = log_softmax(logits.clone().div_scalar(t), 1);
        let soft = (targets * log_student)
            .sum_dim(1)
            .mean()
            .neg()
            .mul_scalar(t * t);
        let hard = cross_entropy.forward(logits, labels);
        soft.mul_scalar(self.alpha) + hard.mul_scalar(1.0 - self.alpha)
    }
}

impl<B: AutodiffBackend> StepHooks<B> for DistillationLoss {
    fn loss(
        &self,
        logits: Tensor<B, 2>,
        labels: Tensor<B, 1, Int>,
        batch: &[usize],
        cross_entropy: &CrossEntropyLoss<B>,
    ) -> Tensor<B, 1> {
        let classes = self.classes;
        let teacher: Vec<f32> = batch
            .iter()
            .flat_map(|&i| {
                self.teacher_logits[i * classes..(i + 1) * classes]
                    .iter()
                    .copied()
            })
            .collect();
        let teacher = Tensor::<B, 2>::from_data(
            TensorData::new(teacher, [batch.len(), classes]),
            &logits.device(),
        );
        self.loss(logits, teacher, labels, cross_entropy)
    }
}

impl MethodSpec for DistilledEnsemble {
    /// The teachers (k members, or the wide model), then the student (the teachers' logits
    /// are computed once, a third of a pass each: left out).
    fn training_passes(&self, small: &ModelSpec, k: usize, epochs: usize) -> Vec<(ModelSpec, f64)> {
        let mut passes = match self.teacher {
            TeacherKind::Ensemble => vec![(small.clone(), (k * epochs) as f64)],
            TeacherKind::Wide => vec![(small.widened(k), epochs as f64)],
        };
        passes.push((small.clone(), epochs as f64));
        passes
    }

    fn validate_model(&self, model: &ModelSpec) -> std::result::Result<(), String> {
        match self.teacher {
            TeacherKind::Wide => {
                super::spec::refuse_wide_pretrained(model, "the teacher of `teacher: wide`")
            }
            TeacherKind::Ensemble => Ok(()),
        }
    }

    fn info() -> MethodInfo {
        MethodInfo {
            figures: &["generalisation"],
            ..MethodInfo::new(
                "k small models (or the wide model) distilled into a fresh small model",
                Role::Competitor,
            )
        }
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
}

impl Method for DistilledEnsemble {
    fn run<B: AutodiffBackend>(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
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
        let teacher_logits = average_logits(&teachers, ctx.data.train, ctx.device);
        let mut loss = DistillationLoss {
            temperature: self.temperature,
            alpha: self.alpha,
            classes: teacher_logits.len() / ctx.data.train.len(),
            teacher_logits,
        };
        let student = ctx.small_model();
        let trained_params = student.num_params();
        let (student, mut log) = ctx.train(student, &ctx.plain_settings(), &mut loss, "student")?;
        log.teacher_steps = teacher_steps;
        Ok(MethodOutput {
            deployed: student.valid(),
            log,
            trained_params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestBackend as B;
    use burn::nn::loss::CrossEntropyLossConfig;

    #[test]
    fn distillation_loss_interpolates_between_teacher_and_labels() {
        let device = Default::default();
        let tensor = |v: Vec<f32>| Tensor::<B, 2>::from_data(TensorData::new(v, [2, 3]), &device);
        let labels = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![0i64, 2], [2]), &device);
        let ce = CrossEntropyLossConfig::new().init(&device);
        let student = vec![1.0f32, 0.2, -0.5, 0.1, 0.3, 2.0];
        let teacher = vec![2.0f32, -1.0, 0.0, 0.5, 0.5, 1.0];
        let with = |temperature, alpha| DistillationLoss {
            temperature,
            alpha,
            teacher_logits: teacher.clone(),
            classes: 3,
        };
        let value = |d: DistillationLoss, s: Vec<f32>| -> f32 {
            d.loss(tensor(s), tensor(teacher.clone()), labels.clone(), &ce)
                .into_scalar()
                .elem()
        };
        let hard: f32 = ce
            .forward(tensor(student.clone()), labels.clone())
            .into_scalar()
            .elem();
        assert!((value(with(4.0, 0.0), student.clone()) - hard).abs() < 1e-6);
        // With alpha = 1 the loss is smallest when the student matches the teacher.
        assert!(value(with(2.0, 1.0), teacher.clone()) < value(with(2.0, 1.0), student));
    }
}
