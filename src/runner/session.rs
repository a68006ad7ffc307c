//! Running one planned run: its data slices, its method, the harness's own evaluation of the
//! deployed model, and storing the result.

use std::io::IsTerminal;
use std::time::Duration;

use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};

use super::RunOptions;
use super::record::{Measured, Provenance, run_record};
use crate::data::{DataSplits, Examples};
use crate::error::Result;
use crate::experiment::RunSpec;
use crate::methods::{MethodContext, MethodEntry};
use crate::results::{CurvePoint, ModelStore, ResultsDir, memory};
use crate::train::{CheckpointDir, EvalPoint, RunClock, TrainData, evaluate_point, subset_seed};

/// Salt of the validation slice's seed (drawn from seed 0 whatever the run's seed).
const VALIDATION_SALT: u64 = 4;

/// State shared by the runs of one invocation.
pub(super) struct Session<'a, B: AutodiffBackend> {
    pub options: &'a RunOptions,
    pub dir: &'a ResultsDir,
    /// The experiment's methods, indexed by the specs' `method_index`.
    pub methods: &'a [MethodEntry],
    /// Trained models runs share (ensemble members, teachers, the wide model).
    pub models: ModelStore,
    pub device: B::Device,
    pub stamp: Provenance,
}

impl<B: AutodiffBackend> Session<'_, B> {
    /// Runs `spec` (the `index`-th of `total` to run) on `splits`, stores its row and curve,
    /// moves the runs it `replaces` aside (the same run stored by earlier numerics or before
    /// the tuning protocol) and removes its checkpoints.
    pub fn run_one(
        &self,
        spec: &RunSpec,
        replaces: &[String],
        splits: &DataSplits,
        index: usize,
        total: usize,
    ) -> Result<()> {
        let checkpoint_dir = self.dir.root().join("checkpoints").join(spec.id());
        let clock = RunClock::start(&checkpoint_dir)?;
        let recipe = &spec.recipe;
        // Data slices are seeded by the experiment seed so every method sees the same examples.
        let subset = |data: &Examples, n: Option<usize>, salt: u64| match n {
            Some(n) => data.subset(n, subset_seed(spec.seed, salt)),
            None => data.clone(),
        };
        // The validation slice is the same for every seed and method; the run's training
        // examples are drawn from the rest.
        let (validation, rest) = match recipe.validation {
            Some(n) => {
                let (held, rest) = splits.train.hold_out(n, subset_seed(0, VALIDATION_SALT));
                (Some(held), rest)
            }
            None => (None, splits.train.clone()),
        };
        let train = subset(&rest, recipe.train_subset, 1);
        let test = subset(&splits.test, recipe.test_subset, 2);
        let train_eval = subset(&train, recipe.eval_train_subset, 3);

        let progress = self.progress_bar(spec, index, total);
        let method = &self.methods[spec.method_index].method;
        let checkpoint = CheckpointDir {
            dir: checkpoint_dir,
            every_epochs: self.options.checkpoint_every,
            clock: Some(clock.clone()),
        };
        let ctx = MethodContext::<B> {
            data: TrainData {
                train: &train,
                train_eval: &train_eval,
                validation: validation.as_ref(),
                test: &test,
            },
            model: &spec.model,
            recipe,
            k: spec.k,
            seed: spec.seed,
            device: &self.device,
            progress: &progress,
            checkpoint: Some(checkpoint.clone()),
            models: Some(&self.models),
            data_fingerprint: &spec.data,
        };
        memory::reset_peak_rss();
        let output = method.run::<B>(&ctx)?;
        let peak_rss_bytes = memory::peak_rss_bytes();
        progress.finish_and_clear();

        // The table reports the deployed small model, evaluated here, not the method's own log.
        let scored =
            evaluate_point::<B::InnerBackend, _>(&output.deployed, &ctx.data, &self.device);
        let (final_train, final_test, final_validation) =
            (scored.train, scored.test, scored.validation);
        let record = run_record(
            spec,
            method.spec(),
            &output,
            Measured {
                train: &train,
                final_train,
                final_test,
                final_validation,
                metric: splits.metric,
                wall_clock_s: clock.seconds(),
                peak_rss_bytes,
            },
            &self.stamp,
        );
        let mut curve: Vec<CurvePoint> = output
            .log
            .points
            .iter()
            .map(|p| CurvePoint::new(p, splits.metric))
            .collect();
        // The curve ends at the table's number: the deployed model as evaluated above (after
        // collapse and any BatchNorm re-estimation), at the last step.
        let last = output.log.points.last();
        let deployed = EvalPoint {
            epoch: last.map_or(0, |p| p.epoch),
            step: output.log.steps,
            lr: last.map_or(0.0, |p| p.lr),
            train_seconds: output.log.train_seconds,
            ..scored
        };
        curve.push(CurvePoint {
            kind: "deployed".into(),
            ..CurvePoint::new(&deployed, splits.metric)
        });
        self.dir.store(&record, &curve)?;
        for earlier in replaces {
            self.dir.supersede(earlier)?;
        }
        checkpoint.clear();
        eprintln!(
            "[{index}/{total}] {}: test acc {:.2}%, train acc {:.2}%, {:.1} s, {:.2} ms/step{}{}",
            record.run_id,
            100.0 * record.test_acc,
            100.0 * record.train_acc,
            record.wall_clock_s,
            record.step_ms,
            if output.log.resumed_after_epoch > 0 {
                format!(" (resumed after epoch {})", output.log.resumed_after_epoch)
            } else {
                String::new()
            },
            if output.log.diverged {
                " (diverged)"
            } else {
                ""
            }
        );
        Ok(())
    }

    fn progress_bar(&self, spec: &RunSpec, index: usize, total: usize) -> ProgressBar {
        if self.options.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(0).with_prefix(format!("[{index}/{total}] {}", spec.id()));
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg} ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}
