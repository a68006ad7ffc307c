//! The stored row of a finished run, assembled in one place from its spec, its method, the
//! method's output and what the harness measured around it.

use burn::module::Module;
use burn::tensor::backend::AutodiffBackend;

use crate::backend::BURN_VERSION;
use crate::data::{Examples, Metric};
use crate::experiment::RunSpec;
use crate::methods::{MethodOutput, MethodSpec};
use crate::results::{RunRecord, memory, provenance};
use crate::train::Metrics;

/// What every run of one invocation shares in its row.
pub(super) struct Provenance {
    pub profile: String,
    /// The backend and its device, as `flex (cpu)`.
    pub backend: String,
    /// The machine ([`provenance::run_machine_description`]).
    pub machine: String,
    pub commit: String,
}

/// What the harness measured of a finished run, beside the method's own output.
pub(super) struct Measured<'a> {
    /// The run's training examples (the deployed model's label names their shape).
    pub train: &'a Examples,
    /// The deployed model evaluated on the training and test examples.
    pub final_train: Metrics,
    pub final_test: Metrics,
    /// The deployed model on the validation slice, when the recipe holds one out.
    pub final_validation: Option<Metrics>,
    /// The task's headline metric.
    pub metric: Metric,
    /// The run's wall clock, earlier processes of a resumed run included.
    pub wall_clock_s: f64,
    pub peak_rss_bytes: Option<i64>,
}

/// The stored row of the finished run `spec` of `method`.
pub(super) fn run_record<B: AutodiffBackend>(
    spec: &RunSpec,
    method: &dyn MethodSpec,
    output: &MethodOutput<B>,
    measured: Measured<'_>,
    stamp: &Provenance,
) -> RunRecord {
    let Measured {
        train,
        final_train,
        final_test,
        final_validation,
        metric,
        wall_clock_s,
        peak_rss_bytes,
    } = measured;
    let recipe = &spec.recipe;
    RunRecord {
        run_id: spec.id(),
        experiment: spec.experiment.clone(),
        profile: stamp.profile.clone(),
        dataset: spec.dataset.clone(),
        model: method.deployed_spec(&spec.model, spec.k).label(train),
        method: spec.method.clone(),
        options: spec.options.to_string(),
        k: spec.k as i64,
        mixing: method.mixing_label(spec.k),
        init: method.init_label(),
        seed: spec.seed as i64,
        epochs: output.log.points.last().map_or(0, |p| p.epoch as i64),
        steps: output.log.steps as i64,
        teacher_steps: output.log.teacher_steps as i64,
        train_acc: final_train.accuracy,
        train_loss: final_train.loss,
        test_acc: final_test.accuracy,
        test_loss: final_test.loss,
        metric: metric.name().into(),
        train_score: final_train.score(metric),
        test_score: final_test.score(metric),
        validation_score: final_validation.map(|v| v.score(metric)),
        role: spec.phase.name().into(),
        lr: Some(recipe.optimizer.lr()),
        weight_decay: Some(recipe.optimizer.weight_decay()),
        deployed_params: output.deployed.num_params() as i64,
        trained_params: output.trained_params as i64,
        wall_clock_s,
        step_ms: output.log.step_ms(),
        state_bytes: Some(memory::state_bytes(
            output.trained_params,
            recipe.optimizer.state_buffers(),
        )),
        peak_rss_bytes,
        status: if output.log.diverged {
            "diverged"
        } else {
            "completed"
        }
        .into(),
        backend: stamp.backend.clone(),
        device: stamp.machine.clone(),
        burn_version: BURN_VERSION.into(),
        git_commit: stamp.commit.clone(),
        config_hash: spec.config_hash(),
        finished_at: provenance::unix_now(),
    }
}
