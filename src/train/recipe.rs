//! The training recipe: optimiser, schedule, budget and data slices, as declared in
//! experiment files.

use serde::{Deserialize, Serialize};

use crate::data::Augmentation;
use crate::optim::OptimizerSpec;

/// Everything about how a model is trained that is shared by the methods of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Passes over the training set (methods may stretch it, e.g. `baseline_long`).
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerSpec,
    #[serde(default)]
    pub schedule: ScheduleSpec,
    /// Examples of the training set held out as the validation slice (none when absent): a
    /// fixed seeded slice, the same for every method and seed, never trained on; tuning
    /// chooses on it. `train_subset` is then drawn from the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<usize>,
    /// Train on a seeded random subset of this many examples (all when absent).
    #[serde(default)]
    pub train_subset: Option<usize>,
    /// Evaluate on a seeded random subset of the test set (all when absent).
    #[serde(default)]
    pub test_subset: Option<usize>,
    /// Examples of the training set used for the train-accuracy curve (all when absent).
    #[serde(default)]
    pub eval_train_subset: Option<usize>,
    /// Augmentation of training images (`{crop_padding: 4, flip: true}` is the CIFAR recipe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<Augmentation>,
    /// Label smoothing of the cross-entropy, in [0, 1) (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_smoothing: f64,
    /// Evaluate the curves' train, validation and test accuracy every this many epochs (and
    /// always after the last): evaluation can cost as much as training on small slices. The
    /// table's numbers are the last epoch's either way. Left out of a run's identity when 1.
    #[serde(default = "every_epoch", skip_serializing_if = "is_every_epoch")]
    pub eval_every: usize,
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

fn every_epoch() -> usize {
    1
}

fn is_every_epoch(value: &usize) -> bool {
    *value == 1
}

impl Recipe {
    /// Checks the values; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.epochs == 0 {
            return Err("recipe.epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return Err("recipe.batch_size must be at least 1".into());
        }
        if self.eval_every == 0 {
            return Err("recipe.eval_every must be at least 1 (1: every epoch)".into());
        }
        if self.validation == Some(0) {
            return Err("recipe.validation must be at least 1 (omit it to hold out none)".into());
        }
        for (key, value) in [
            ("recipe.train_subset", self.train_subset),
            ("recipe.test_subset", self.test_subset),
            ("recipe.eval_train_subset", self.eval_train_subset),
        ] {
            if value == Some(0) {
                return Err(format!(
                    "{key} must be at least 1 (omit it to use every example)"
                ));
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(format!(
                "recipe.label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        self.optimizer.validate()?;
        self.schedule.validate()
    }
}

impl Recipe {
    /// Checks the data sizes against the loaded data (`train` and `test` examples of the
    /// dataset `name`); a size larger than what it slices is an error naming both.
    pub fn check_sizes(&self, name: &str, train: usize, test: usize) -> Result<(), String> {
        let validation = self.validation.unwrap_or(0);
        if validation >= train {
            return Err(format!(
                "recipe.validation: {validation} examples held out of {name}'s {train} \
                 training examples leaves none to train on"
            ));
        }
        let rest = train - validation;
        let trained = self.trained_examples(train);
        let checks = [
            (
                "recipe.train_subset",
                self.train_subset,
                rest,
                if validation > 0 {
                    format!("training examples left after the {validation} validation examples")
                } else {
                    "training examples".to_string()
                },
            ),
            (
                "recipe.test_subset",
                self.test_subset,
                test,
                "test examples".into(),
            ),
            (
                "recipe.eval_train_subset",
                self.eval_train_subset,
                trained,
                "examples trained on".into(),
            ),
        ];
        for (key, size, available, what) in checks {
            if let Some(size) = size.filter(|&n| n > available) {
                return Err(format!(
                    "{key}: {size} is larger than {name}'s {available} {what}"
                ));
            }
        }
        Ok(())
    }

    /// How many examples a run trains on out of a training split of `train`: `train_subset`
    /// of what the validation slice leaves, else all of that.
    pub fn trained_examples(&self, train: usize) -> usize {
        let rest = train.saturating_sub(self.validation.unwrap_or(0));
        self.train_subset.map_or(rest, |n| n.min(rest))
    }
}

/// Learning-rate schedule over the whole run (stretched, not repeated, for longer runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    #[serde(default)]
    pub kind: ScheduleKind,
    /// Linear warm-up from 0, as a fraction of all steps.
    #[serde(default)]
    pub warmup_fraction: f64,
    /// For `step`: fractions of the run at which the rate is multiplied by `gamma`.
    #[serde(default)]
    pub milestones: Vec<f64>,
    #[serde(default = "default_gamma")]
    pub gamma: f64,
}

fn default_gamma() -> f64 {
    0.1
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        Self {
            kind: ScheduleKind::Constant,
            warmup_fraction: 0.0,
            milestones: Vec::new(),
            gamma: default_gamma(),
        }
    }
}

/// Shape of the schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    #[default]
    Constant,
    /// Cosine decay to zero at the last step.
    Cosine,
    /// Piecewise constant, multiplied by `gamma` at each milestone.
    Step,
    /// Linear decay to zero at the last step.
    Linear,
}

impl ScheduleSpec {
    /// Multiplier of the base learning rate at `step` of `total` steps.
    pub fn factor(&self, step: usize, total: usize) -> f64 {
        let total = total.max(1) as f64;
        let t = step as f64 / total;
        let warmup = self.warmup_fraction;
        if t < warmup {
            return (step as f64 + 1.0) / (warmup * total).max(1.0);
        }
        let progress = if warmup < 1.0 {
            (t - warmup) / (1.0 - warmup)
        } else {
            1.0
        };
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            ScheduleKind::Linear => 1.0 - progress,
            ScheduleKind::Step => self
                .gamma
                .powi(self.milestones.iter().filter(|&&m| t >= m).count() as i32),
        }
    }

    fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            return Err(format!(
                "recipe.schedule.warmup_fraction must be in [0, 1), got {}",
                self.warmup_fraction
            ));
        }
        if let Some(m) = self.milestones.iter().find(|m| !(0.0..=1.0).contains(*m)) {
            return Err(format!(
                "recipe.schedule.milestones must be fractions in [0, 1], got {m}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_have_their_textbook_shape() {
        let cosine = ScheduleSpec {
            kind: ScheduleKind::Cosine,
            ..Default::default()
        };
        assert_eq!(cosine.factor(0, 100), 1.0);
        assert!((cosine.factor(50, 100) - 0.5).abs() < 1e-12);
        assert!(cosine.factor(99, 100) < 0.001);
        let step = ScheduleSpec {
            kind: ScheduleKind::Step,
            milestones: vec![0.5, 0.75],
            ..Default::default()
        };
        assert_eq!(step.factor(49, 100), 1.0);
        assert!((step.factor(50, 100) - 0.1).abs() < 1e-12);
        assert!((step.factor(80, 100) - 0.01).abs() < 1e-12);
        let warm = ScheduleSpec {
            warmup_fraction: 0.1,
            ..Default::default()
        };
        assert!((warm.factor(0, 100) - 0.1).abs() < 1e-12);
        assert_eq!(warm.factor(10, 100), 1.0);
    }

    const RECIPE: &str = "{epochs: 2, batch_size: 8, optimizer: {name: sgd, lr: 0.1}}";

    #[test]
    fn evaluation_every_epoch_is_the_default_and_left_out_of_the_identity() {
        let recipe: Recipe = serde_norway::from_str(RECIPE).unwrap();
        assert_eq!(recipe.eval_every, 1);
        // Runs stored before the key existed keep their ids: the default is not serialised.
        assert!(
            !serde_json::to_string(&recipe)
                .unwrap()
                .contains("eval_every")
        );
        let sparse = Recipe {
            eval_every: 5,
            ..recipe.clone()
        };
        assert!(
            serde_json::to_string(&sparse)
                .unwrap()
                .contains("\"eval_every\":5")
        );
        let never = Recipe {
            eval_every: 0,
            ..recipe
        };
        assert!(never.validate().unwrap_err().contains("recipe.eval_every"));
    }
}
