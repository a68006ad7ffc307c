//! The training loop shared by every method.

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use burn::tensor::backend::AutodiffBackend;
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::checkpoint::{CheckpointDir, LoopState, MODEL, OPTIMIZER};
use super::eval::evaluate;
use super::hooks::{MixingDraw, StepHooks, StepPosition};
use super::log::{EvalPoint, TrainLog};
use super::recipe::ScheduleSpec;
use super::step::MkStep;
use crate::data::{Augmentation, Examples, Inputs};
use crate::error::{Error, Result};
use crate::models::Classifier;
use crate::optim::OptimizerSpec;

/// Independent random streams derived from a run's seed, so that e.g. MK and the baseline
/// see the same data order for the same seed whatever else they draw.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Init = 1,
    DataOrder = 2,
    Mixing = 3,
    Subset = 4,
    MkCopies = 5,
    Augment = 6,
    Recalibration = 7,
}

/// The RNG of `stream` for `seed`.
pub fn stream_rng(seed: u64, stream: Stream) -> StdRng {
    stream_rng_at(seed, stream, 0)
}

/// The RNG of `stream` for `seed` at position `index` (an epoch). Every epoch has its own
/// stream, so a run resumed at an epoch draws exactly what an uninterrupted run draws.
pub fn stream_rng_at(seed: u64, stream: Stream, index: u64) -> StdRng {
    let mixed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (stream as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ index.wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(mixed)
}

/// Seed of a data slice for the run seed `seed`; `salt` tells apart the slices of one run
/// (train, test, train-eval, calibration...), so every method sees the same examples.
pub fn subset_seed(seed: u64, salt: u64) -> u64 {
    use rand::RngExt;
    stream_rng(seed, Stream::Subset).random::<u64>() ^ salt
}

/// How one model is trained: the recipe as a method adapted it. How each step is shaped
/// (mixing, loss, the copies' step size) is the method's [`StepHooks`].
#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub optimizer: OptimizerSpec,
    pub schedule: ScheduleSpec,
    pub epochs: usize,
    pub batch_size: usize,
    /// Augmentation of the training images.
    pub augment: Option<Augmentation>,
    /// Label smoothing of the cross-entropy (0: none).
    pub label_smoothing: f64,
    pub seed: u64,
    /// Evaluate every this many epochs and after the last (the recipe's `eval_every`).
    pub eval_every: usize,
}

/// The data a training run sees.
#[derive(Clone, Copy)]
pub struct TrainData<'a> {
    /// Examples the optimiser steps on.
    pub train: &'a Examples,
    /// Examples for the train-accuracy curve.
    pub train_eval: &'a Examples,
    /// The held-out validation slice of the training set (the recipe's `validation` size),
    /// scored on the curves beside the test set.
    pub validation: Option<&'a Examples>,
    pub test: &'a Examples,
}

/// How often the loss is read back for the progress bar and the divergence check.
const LOSS_READ_EVERY: usize = 10;
const EVAL_BATCH: usize = 1000;

type Recorder = BinFileRecorder<FullPrecisionSettings>;

/// Trains `model` as `settings` say, each step shaped by `hooks`, evaluating the eval-mode
/// model after every `eval_every` epochs and after the last.
///
/// With `checkpoint`, the loop first resumes from the latest checkpoint there, and saves one
/// every `every_epochs` epochs; the result is the same as an uninterrupted run's.
pub fn train<B, M>(
    mut model: M,
    data: &TrainData<'_>,
    settings: &TrainSettings,
    hooks: &mut dyn StepHooks<B>,
    device: &B::Device,
    progress: &ProgressBar,
    checkpoint: Option<&CheckpointDir>,
) -> Result<(M, TrainLog)>
where
    B: AutodiffBackend,
    M: Classifier<B> + AutodiffModule<B>,
    M::InnerModule: Classifier<B::InnerBackend>,
{
    let loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing((settings.label_smoothing > 0.0).then_some(settings.label_smoothing as f32))
        .init(device);
    let (layers, k) = (model.mk_layers(), model.mk_copies());

    let batch = settings.batch_size.min(data.train.len()).max(1);
    let steps_per_epoch = data.train.len().div_ceil(batch);
    let total_steps = steps_per_epoch * settings.epochs;
    progress.set_length(total_steps as u64);

    let mut log = TrainLog::default();
    if let Some(folder) = checkpoint.and_then(CheckpointDir::latest) {
        let state = CheckpointDir::read_state(&folder)?;
        let unreadable = |e: burn::record::RecorderError| {
            Error::data(&folder, format!("unreadable checkpoint: {e}"))
        };
        model = model
            .load_file(folder.join(MODEL), &Recorder::new(), device)
            .map_err(unreadable)?;
        log.steps = state.steps;
        log.train_seconds = state.train_seconds;
        log.points = state.points;
        log.resumed_after_epoch = state.epoch;
        progress.set_position(log.steps as u64);
    }

    // After a resume: loading a checkpoint restores the saved parameter ids. One optimiser
    // updates every parameter (MK copies from their kernels' gradients), for MK and plain
    // models alike.
    let mut optimizer = MkStep::<B>::new(
        model.mk_kernel_ids(),
        &settings.optimizer,
        hooks.copy_grad_scale(),
    );
    if let Some(folder) = checkpoint
        .and_then(CheckpointDir::latest)
        .filter(|_| log.resumed_after_epoch > 0)
    {
        let path = folder.join(OPTIMIZER);
        optimizer.load(&path).map_err(|e| {
            Error::data(
                &folder,
                format!(
                    "unreadable checkpoint ({e}); a checkpoint written by an older version \
                     cannot be resumed: delete {} to start the run over",
                    folder.display()
                ),
            )
        })?;
    }
    'epochs: for epoch in log.resumed_after_epoch + 1..=settings.epochs {
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        order.shuffle(&mut stream_rng_at(
            settings.seed,
            Stream::DataOrder,
            epoch as u64,
        ));
        let mut mix_rng = stream_rng_at(settings.seed, Stream::Mixing, epoch as u64);
        let mut augment_rng = stream_rng_at(settings.seed, Stream::Augment, epoch as u64);
        let started = Instant::now();
        let mut lr = 0.0;
        // The coming step's coefficients when the hooks drew them ahead (within an epoch).
        let mut drawn_ahead: Option<Vec<f32>> = None;
        let mut batches = order.chunks(batch).peekable();
        let position = |step| StepPosition {
            step,
            epoch,
            total_steps,
            epochs: settings.epochs,
        };
        while let Some(indices) = batches.next() {
            lr = settings.optimizer.lr() * settings.schedule.factor(log.steps, total_steps);
            let augment = settings.augment.as_ref().map(|a| (a, &mut augment_rng));
            let (inputs, labels) = data.train.batch_augmented::<B>(indices, augment, device);
            // MK: this step's coefficients (one row per layer, as the method's hook draws
            // them) and the kernels mixed with them.
            let p = (layers > 0).then(|| {
                if let Some(p) = drawn_ahead.take() {
                    return p;
                }
                let loss_gradient = |p: &[f32]| {
                    mixing_gradient(&model, &optimizer, inputs.clone(), labels.clone(), p)
                };
                hooks.mixing(MixingDraw {
                    position: position(log.steps),
                    layers,
                    k,
                    rng: &mut mix_rng,
                    loss_gradient: &loss_gradient,
                })
            });
            let kernels = p.as_ref().map(|p| optimizer.mix(&model, p));
            let logits = model.forward(inputs, kernels.as_ref());
            let loss = hooks.loss(logits, labels, indices, &loss_fn);
            log.steps += 1;
            if log.steps % LOSS_READ_EVERY == 1 || log.steps == total_steps {
                let value: f32 = loss.clone().into_scalar().elem();
                if !value.is_finite() {
                    log.diverged = true;
                    log.train_seconds += started.elapsed().as_secs_f64();
                    progress.set_message(format!("diverged at step {} (loss {value})", log.steps));
                    break 'epochs;
                }
                progress.set_message(format!("epoch {epoch}/{} loss {value:.4}", settings.epochs));
            }
            let grads = loss.backward();
            let kernel_gradients = kernels
                .as_ref()
                .map_or_else(Vec::new, |kr| optimizer.kernel_gradients(kr, &grads));
            let grads = GradientsParams::from_grads(grads, &model);
            // The next step's coefficients before this update, when the hooks allow it, so
            // that the update pass also mixes the next kernels (same draws, same values).
            drawn_ahead =
                (layers > 0 && hooks.draws_ahead() && batches.peek().is_some()).then(|| {
                    let no_model = |_: &[f32]| -> Vec<f32> {
                        panic!(
                            "a method whose `draws_ahead` is true asked for the loss gradient \
                             of its mixing coefficients"
                        )
                    };
                    hooks.mixing(MixingDraw {
                        position: position(log.steps),
                        layers,
                        k,
                        rng: &mut mix_rng,
                        loss_gradient: &no_model,
                    })
                });
            model = optimizer.update_mixing_ahead(
                model,
                kernel_gradients,
                p.as_deref().unwrap_or_default(),
                grads,
                lr,
                drawn_ahead.as_deref(),
            );
            progress.inc(1);
        }
        log.train_seconds += started.elapsed().as_secs_f64();

        // `max(1)`: a library caller's 0 means every epoch (recipes reject it).
        if epoch % settings.eval_every.max(1) == 0 || epoch == settings.epochs {
            let point = EvalPoint {
                epoch,
                step: log.steps,
                lr,
                train_seconds: log.train_seconds,
                ..evaluate_point(&model.valid(), data, device)
            };
            progress.set_message(format!(
                "epoch {epoch}/{} train acc {:.2}% test acc {:.2}%",
                settings.epochs,
                100.0 * point.train.accuracy,
                100.0 * point.test.accuracy
            ));
            log.points.push(point);
        }

        if let Some(ck) = checkpoint.filter(|c| {
            c.every_epochs > 0 && epoch % c.every_epochs == 0 && epoch < settings.epochs
        }) {
            let state = LoopState {
                epoch,
                steps: log.steps,
                train_seconds: log.train_seconds,
                points: log.points.clone(),
            };
            ck.save(&state, |folder| {
                let failed = |e: burn::record::RecorderError| {
                    Error::data(folder, format!("cannot write checkpoint: {e}"))
                };
                model
                    .clone()
                    .save_file(folder.join(MODEL), &Recorder::new())
                    .map_err(failed)?;
                let path = folder.join(OPTIMIZER);
                optimizer.save(&path)
            })?;
        }
    }
    Ok((model, log))
}

/// The eval-mode `model` scored on the run's train-accuracy slice, test set and validation
/// slice, as a curve point before training (epoch 0, step 0); points taken later set their
/// position over it (`EvalPoint { epoch, ..evaluate_point(..) }`).
pub fn evaluate_point<B: Backend, M: Classifier<B>>(
    model: &M,
    data: &TrainData<'_>,
    device: &B::Device,
) -> EvalPoint {
    EvalPoint {
        epoch: 0,
        step: 0,
        lr: 0.0,
        train: evaluate(model, data.train_eval, EVAL_BATCH, device),
        test: evaluate(model, data.test, EVAL_BATCH, device),
        validation: data
            .validation
            .map(|v| evaluate(model, v, EVAL_BATCH, device)),
        train_seconds: 0.0,
    }
}

/// The gradient of the batch loss (plain cross-entropy) with respect to the mixing
/// coefficients `p` (`[layers, k]`, rows in the order of `mk`'s parameters):
/// `dL/dp_i = <theta_i, dL/dW>`, from one forward and backward pass.
pub fn mixing_gradient<B, M>(
    model: &M,
    mk: &MkStep<B>,
    inputs: Inputs<B>,
    labels: Tensor<B, 1, Int>,
    p: &[f32],
) -> Vec<f32>
where
    B: AutodiffBackend,
    M: Classifier<B>,
{
    let device = labels.device();
    let kernels = mk.mix_now(model, p);
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(model.forward(inputs, Some(&kernels)), labels);
    mk.mixing_gradient(model, &kernels, &loss.backward())
}
