//! Trained models shared between runs: ensemble members, teachers, the wide model that
//! submodular selection prunes. Each is keyed by everything that determines it and kept in
//! the run's [`TrainedModels`] store (the results folder's `models/`), so it is never trained
//! twice.

use burn::module::AutodiffModule;
use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;

use super::MethodContext;
use crate::error::Result;
use crate::models::{Model, ModelSpec};
use crate::train::{PlainStep, Stream, TrainLog, stream_rng};

/// Where trained models that several runs need are kept, keyed by everything that determines
/// them (implemented by `results::ModelStore`, which adds the code's numerics version).
pub trait TrainedModels<B: Backend> {
    /// The model stored under `key`, loaded into `fresh` (a model of its architecture), with
    /// the log it was trained with; `None` when it is not stored.
    fn load(
        &self,
        key: &serde_json::Value,
        fresh: Model<B>,
    ) -> Result<Option<(Model<B>, TrainLog)>>;

    /// Stores `model` and its training `log` under `key`.
    fn save(&self, key: &serde_json::Value, model: &Model<B>, log: &TrainLog) -> Result<()>;
}

impl<B: AutodiffBackend> MethodContext<'_, B> {
    /// The model `spec` trained with the plain recipe from `seed` (an ensemble member, a
    /// teacher, the wide model to prune): loaded from the store when a run trained it before,
    /// else trained (phase `phase`, checkpointed) and stored. Also returns the steps this call
    /// spent training (0 when reused).
    pub fn trained_model(
        &self,
        spec: &ModelSpec,
        seed: u64,
        phase: &str,
    ) -> Result<(Model<B::InnerBackend>, usize)> {
        let (model, log, trained_now) = self.trained_model_with_log(spec, seed, phase)?;
        Ok((model, if trained_now { log.steps } else { 0 }))
    }

    /// [`MethodContext::trained_model`] with the training log (curves, steps, seconds) the
    /// model was trained with, stored beside it, and whether this call trained it. A model
    /// stored without its log is trained again (the log is part of a `wide` run's result).
    pub fn trained_model_with_log(
        &self,
        spec: &ModelSpec,
        seed: u64,
        phase: &str,
    ) -> Result<(Model<B::InnerBackend>, TrainLog, bool)> {
        let mut settings = self.plain_settings();
        settings.seed = seed;
        let fresh = || {
            spec.build::<B>(
                self.data.train,
                &mut stream_rng(seed, Stream::Init),
                self.device,
            )
        };
        self.stored_or_trained(&self.reuse_key(spec, seed), fresh().valid(), || {
            let (model, log) = self.train(fresh(), &settings, &mut PlainStep, phase)?;
            Ok((model.valid(), log))
        })
    }

    /// The key a model trained by this run's recipe is stored under: its architecture, the
    /// recipe, `seed`, the data and the record layout (a caller adds what else determines
    /// the training).
    pub fn reuse_key(&self, spec: &ModelSpec, seed: u64) -> serde_json::Value {
        serde_json::json!({
            "model": spec, "recipe": self.recipe, "seed": seed, "data": self.data_fingerprint,
            "model_record": crate::models::RECORD_VERSION,
        })
    }

    /// The model stored under `key` (loaded into `fresh`, a model of its architecture) with
    /// its log, else the one `train` returns, then stored under `key`; and whether this call
    /// trained it. Without a store, `train` runs and nothing is kept.
    pub fn stored_or_trained(
        &self,
        key: &serde_json::Value,
        fresh: Model<B::InnerBackend>,
        train: impl FnOnce() -> Result<(Model<B::InnerBackend>, TrainLog)>,
    ) -> Result<(Model<B::InnerBackend>, TrainLog, bool)> {
        if let Some(store) = self.models
            && let Some((model, log)) = store.load(key, fresh)?
        {
            return Ok((model, log, false));
        }
        let (model, log) = train()?;
        if let Some(store) = self.models {
            store.save(key, &model, &log)?;
        }
        Ok((model, log, true))
    }
}
