//! `mk_annealed`: majority kernels whose Dirichlet concentration follows a schedule over
//! training (docs/METHODS.md, "Annealed mixing"). Small alpha draws nearly one-hot
//! coefficients (each step trains mostly one copy: large mixing noise); large alpha draws
//! nearly uniform ones (the copies move together, as the mean kernel). Going geometrically
//! from `alpha_start` to `alpha_end`, once or over several `cycles`, moves from exploration
//! to consolidation.
//!
//! Also the example of adding a method: this file plus one line in the registry
//! (`src/methods/mod.rs`). It reuses MK's training and changes one hook, the mixing draw,
//! which sees where training is.

use burn::tensor::backend::AutodiffBackend;
use serde::Deserialize;

use super::mk::{DrawUses, LrCompensation, MajorityKernels};
use super::{Method, MethodContext, MethodInfo, MethodOutput, MethodSpec, Role};
use crate::error::Result;
use crate::mk::{Mixing, MkInit};
use crate::models::ModelSpec;
use crate::train::StepPosition;

fn default_alpha_start() -> f64 {
    0.3
}

fn default_alpha_end() -> f64 {
    3.0
}

fn one() -> usize {
    1
}

/// MK with `dirichlet(alpha)` mixing, alpha annealed from `alpha_start` to `alpha_end`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnealedMk {
    #[serde(default = "default_alpha_start")]
    pub alpha_start: f64,
    #[serde(default = "default_alpha_end")]
    pub alpha_end: f64,
    /// Times the schedule runs over training (1: once; more: restarts from `alpha_start`).
    #[serde(default = "one")]
    pub cycles: usize,
    #[serde(default)]
    pub init: MkInit,
    #[serde(default)]
    pub lr_compensation: LrCompensation,
    #[serde(default)]
    pub bn_recalibration: usize,
}

impl AnnealedMk {
    /// The concentration at `position`: geometric from `alpha_start` at the first step of a
    /// cycle to `alpha_end` at its last.
    pub fn alpha_at(&self, position: &StepPosition) -> f64 {
        let cycle = position.total_steps.div_ceil(self.cycles).max(1);
        let t = if cycle > 1 {
            (position.step % cycle) as f64 / (cycle - 1) as f64
        } else {
            0.0
        };
        self.alpha_start * (self.alpha_end / self.alpha_start).powf(t)
    }

    fn as_mk(&self) -> MajorityKernels {
        MajorityKernels {
            mixing: Mixing::Dirichlet {
                alpha: self.alpha_start,
            },
            init: self.init,
            lr_compensation: self.lr_compensation,
            bn_recalibration: self.bn_recalibration,
        }
    }
}

impl MethodSpec for AnnealedMk {
    fn validate_model(&self, model: &ModelSpec) -> std::result::Result<(), String> {
        super::spec::refuse_independent_pretrained(self.init, model)
    }

    fn info() -> MethodInfo {
        MethodInfo {
            claims_small_overhead: true,
            ..MethodInfo::new(
                "MK with the Dirichlet concentration annealed over training (example plug-in)",
                Role::Proposed,
            )
        }
    }

    fn options(&self) -> serde_json::Value {
        serde_json::json!({
            "alpha_start": self.alpha_start,
            "alpha_end": self.alpha_end,
            "cycles": self.cycles,
            "init": self.init.label(),
            "lr_compensation": self.lr_compensation,
            "bn_recalibration": self.bn_recalibration,
        })
    }

    fn validate(&self, _k: usize) -> std::result::Result<(), String> {
        for (key, alpha) in [
            ("alpha_start", self.alpha_start),
            ("alpha_end", self.alpha_end),
        ] {
            if !(alpha > 0.0 && alpha.is_finite()) {
                return Err(format!("{key} must be a positive number, got {alpha}"));
            }
        }
        if self.cycles == 0 {
            return Err("cycles must be at least 1".into());
        }
        Ok(())
    }

    fn mixing_label(&self, _k: usize) -> Option<String> {
        let cycles = match self.cycles {
            1 => String::new(),
            n => format!(" x{n}"),
        };
        Some(format!(
            "dirichlet({} -> {}){cycles}",
            self.alpha_start, self.alpha_end
        ))
    }

    fn init_label(&self) -> Option<String> {
        Some(self.init.label())
    }
}

impl Method for AnnealedMk {
    fn run<B: AutodiffBackend>(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        let variant = serde_json::json!({"method": "mk_annealed", "options": self.options()});
        self.as_mk()
            .train_mk(ctx, variant, DrawUses::PositionOnly, |draw| {
                let alpha = self.alpha_at(&draw.position);
                Mixing::Dirichlet { alpha }.draw_all(draw.layers, draw.k, draw.rng)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(yaml: &str) -> AnnealedMk {
        serde_norway::from_str(yaml).unwrap()
    }

    fn at(step: usize, total_steps: usize) -> StepPosition {
        StepPosition {
            step,
            epoch: 1,
            total_steps,
            epochs: 1,
        }
    }

    #[test]
    fn alpha_runs_geometrically_from_start_to_end() {
        let m = method("{alpha_start: 0.1, alpha_end: 10.0}");
        assert!((m.alpha_at(&at(0, 101)) - 0.1).abs() < 1e-12);
        assert!((m.alpha_at(&at(50, 101)) - 1.0).abs() < 1e-12);
        assert!((m.alpha_at(&at(100, 101)) - 10.0).abs() < 1e-12);
        assert!(m.validate(4).is_ok());
        assert_eq!(m.mixing_label(4).as_deref(), Some("dirichlet(0.1 -> 10)"));
    }

    #[test]
    fn cycles_restart_the_schedule() {
        let m = method("{alpha_start: 1.0, alpha_end: 4.0, cycles: 2}");
        assert_eq!(m.alpha_at(&at(0, 10)), 1.0);
        assert_eq!(m.alpha_at(&at(4, 10)), 4.0);
        assert_eq!(m.alpha_at(&at(5, 10)), 1.0, "second cycle starts over");
        assert_eq!(m.alpha_at(&at(9, 10)), 4.0);
        assert!(method("{cycles: 0}").validate(4).is_err());
        assert!(
            method("{alpha_end: -1}")
                .validate(4)
                .unwrap_err()
                .contains("alpha_end")
        );
    }

    /// Through the real loop: the draw sees every step in order with its epoch, and the
    /// method deploys a collapsed model of the small model's size.
    #[test]
    fn the_draw_sees_each_step_of_a_real_run() {
        use crate::backend::TestAutodiffBackend as B;
        use crate::data::{self, test_data};
        use crate::methods::{MethodContext, mk::MkHooks};
        use crate::models::{Classifier, ModelSpec};
        use crate::train::{PlainStep, Recipe, TrainData};
        use burn::module::Module;

        let splits = data::load("mnist", &[test_data()], &Default::default()).unwrap();
        let (train, test) = (splits.train.subset(64, 0), splits.test.subset(32, 1));
        let recipe: Recipe = serde_norway::from_str(
            "{epochs: 2, batch_size: 16, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}",
        )
        .unwrap();
        let model = ModelSpec::Mlp {
            hidden: vec![16],
            bias: true,
        };
        let progress = indicatif::ProgressBar::hidden();
        let device = Default::default();
        let data = TrainData {
            train: &train,
            train_eval: &test,
            validation: None,
            test: &test,
        };
        let ctx = MethodContext::<B>::for_test(data, &model, &recipe, 3, &device, &progress);
        let mut seen = Vec::new();
        let mut hooks = MkHooks {
            draw: |draw: crate::train::MixingDraw<'_>| {
                seen.push((
                    draw.position.step,
                    draw.position.epoch,
                    draw.position.total_steps,
                ));
                Mixing::Uniform.draw_all(draw.layers, draw.k, draw.rng)
            },
            copy_grad_scale: 1.0,
            draws_ahead: true,
        };
        let mk_model = || {
            let mut rng = crate::train::stream_rng(0, crate::train::Stream::MkCopies);
            ctx.small_model().to_mk(3, MkInit::Identical, &mut rng)
        };
        let (_, log) = ctx
            .train(mk_model(), &ctx.plain_settings(), &mut hooks, "mk")
            .unwrap();
        let expected: Vec<(usize, usize, usize)> =
            (0..8).map(|step| (step, 1 + step / 4, 8)).collect();
        assert_eq!(seen, expected);
        assert_eq!(log.steps, 8);
        // A plain model is never mixed.
        let (_, log) = ctx
            .train(
                ctx.small_model(),
                &ctx.plain_settings(),
                &mut PlainStep,
                "small",
            )
            .unwrap();
        assert_eq!(log.steps, 8);

        let out = method("{alpha_start: 0.5, alpha_end: 2.0}")
            .run::<B>(&ctx)
            .unwrap();
        assert_eq!(out.deployed.num_params(), ctx.small_model().num_params());
        assert_eq!(out.deployed.mk_layers(), 0, "deployed collapsed");
        assert_eq!(out.trained_params, mk_model().num_params());
    }
}
