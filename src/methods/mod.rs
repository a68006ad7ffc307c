//! Training methods as plug-ins behind one trait.
//!
//! A method receives the experiment's data, model architecture and recipe, trains however it
//! likes, and returns the deployed small model plus its training log. The harness evaluates
//! and stores the result. To add a method: write one file here implementing [`Method`] (see
//! `lr_over_k.rs` for a ten-line example), add one line to [`REGISTRY`], and name it in an
//! experiment file.

pub mod adversarial;
pub mod baseline;
pub mod baseline_long;
pub mod distill;
pub mod lr_over_k;
pub mod mk;
pub mod reuse;
pub mod submodular;
pub mod wide;

use burn::tensor::backend::AutodiffBackend;
use indicatif::ProgressBar;
use serde::de::DeserializeOwned;
use serde_norway::{Mapping, Value};

use crate::error::Result;
use std::path::PathBuf;

use burn::module::AutodiffModule;

use crate::models::{Classifier, Model, ModelSpec};
use crate::train::{
    CheckpointDir, Recipe, Stream, TrainData, TrainLog, TrainSettings, stream_rng, train,
};

/// What a method is given for one run.
pub struct MethodContext<'a, B: AutodiffBackend> {
    pub data: TrainData<'a>,
    pub model: &'a ModelSpec,
    pub recipe: &'a Recipe,
    /// The overparameterization factor of the experiment cell.
    pub k: usize,
    pub seed: u64,
    pub device: &'a B::Device,
    pub progress: &'a ProgressBar,
    /// Where the run keeps its checkpoints (none: no checkpointing).
    pub checkpoint: Option<CheckpointDir>,
    /// Where trained models that other runs reuse (ensemble members, teachers) are stored
    /// (none: nothing is reused).
    pub models_dir: Option<PathBuf>,
    /// Content fingerprint of the dataset, part of the key of every reusable model.
    pub data_fingerprint: &'a str,
}

impl<B: AutodiffBackend> MethodContext<'_, B> {
    /// Trains `model` with the shared loop on this run's data, checkpointing as configured.
    /// Methods with several training phases pass a distinct `phase` name for each.
    pub fn train<M>(&self, model: M, settings: &TrainSettings, phase: &str) -> Result<(M, TrainLog)>
    where
        M: Classifier<B> + AutodiffModule<B>,
        M::InnerModule: Classifier<B::InnerBackend>,
    {
        self.train_on(model, settings, phase, &self.data)
    }

    /// [`MethodContext::train`] on other data (e.g. the same examples with soft targets).
    pub fn train_on<M>(
        &self,
        model: M,
        settings: &TrainSettings,
        phase: &str,
        data: &TrainData<'_>,
    ) -> Result<(M, TrainLog)>
    where
        M: Classifier<B> + AutodiffModule<B>,
        M::InnerModule: Classifier<B::InnerBackend>,
    {
        let checkpoint = self.checkpoint.as_ref().map(|c| CheckpointDir {
            dir: c.dir.join(phase),
            every_epochs: c.every_epochs,
        });
        train(
            model,
            data,
            settings,
            self.device,
            self.progress,
            checkpoint.as_ref(),
        )
    }

    /// The freshly initialised small model for this seed (the same for every method).
    pub fn small_model(&self) -> Model<B> {
        self.model.build(
            self.data.train,
            &mut stream_rng(self.seed, Stream::Init),
            self.device,
        )
    }
}

/// What a method returns.
pub struct MethodOutput<B: AutodiffBackend> {
    /// The deployed small model, on the inner (non-autodiff) backend.
    pub deployed: Model<B::InnerBackend>,
    pub log: TrainLog,
    /// Parameters that were trained (k·n for majority kernels).
    pub trained_params: usize,
}

/// A training method.
pub trait Method<B: AutodiffBackend> {
    /// The name used in experiment files and result rows.
    fn name(&self) -> &'static str;

    /// Whether the result depends on the experiment's k (baselines do not, so they run once
    /// per seed whatever the k list is).
    fn uses_k(&self) -> bool;

    /// The options that change the result, recorded in result rows and hashed into run ids.
    fn options(&self) -> serde_json::Value {
        serde_json::Value::Object(Default::default())
    }

    /// The architecture of the deployed model (the small model's, except for references
    /// such as `wide`).
    fn deployed_spec(&self, small: &ModelSpec, _k: usize) -> ModelSpec {
        small.clone()
    }

    /// Checks the options against the experiment's `k` before anything is trained.
    fn validate(&self, _k: usize) -> std::result::Result<(), String> {
        Ok(())
    }

    /// Mixing distribution label for the result columns, where it applies.
    fn mixing_label(&self, _k: usize) -> Option<String> {
        None
    }

    /// Init option label for the result columns, where it applies.
    fn init_label(&self) -> Option<String> {
        None
    }

    /// Trains and returns the deployed model.
    fn run(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>>;
}

/// The methods of an experiment, in the order of its file.
pub type Methods<B> = Vec<Box<dyn Method<B>>>;

/// Builds a method from its options mapping (without `name`).
type Builder<B> = fn(&Mapping) -> std::result::Result<Box<dyn Method<B>>, String>;

/// Every method the harness knows: name, what it is, builder.
#[allow(clippy::type_complexity)]
pub fn registry<B: AutodiffBackend>() -> Vec<(&'static str, &'static str, Builder<B>)> {
    vec![
        ("baseline", "the small model, same recipe and steps", |o| {
            Ok(Box::new(parse::<baseline::Baseline>(o)?))
        }),
        (
            "baseline_long",
            "the small model trained long_factor times longer",
            |o| Ok(Box::new(parse::<baseline_long::BaselineLong>(o)?)),
        ),
        (
            "lr_over_k",
            "the baseline at learning rate lr/k (weight decay k·wd)",
            |o| Ok(Box::new(parse::<lr_over_k::LrOverK>(o)?)),
        ),
        (
            "mk",
            "majority kernels: k mixed copies per kernel, collapsed to the mean",
            |o| Ok(Box::new(parse::<mk::MajorityKernels>(o)?)),
        ),
        (
            "adv_mj",
            "adversarial MK: random draw, then an ascent step on the mixing coefficients",
            |o| Ok(Box::new(parse::<adversarial::AdvMajority>(o)?)),
        ),
        (
            "adv_only",
            "adversarial MK from uniform mixing (ascent step only)",
            |o| Ok(Box::new(parse::<adversarial::AdvOnly>(o)?)),
        ),
        (
            "wide",
            "the k-times-wider model trained normally (deployed size k-fold)",
            |o| Ok(Box::new(parse::<wide::Wide>(o)?)),
        ),
        (
            "distilled_ensemble",
            "k small models (or the wide model) distilled into a fresh small model",
            |o| Ok(Box::new(parse::<distill::DistilledEnsemble>(o)?)),
        ),
        (
            "submodular",
            "the wide model pruned to n units per layer by facility-location selection, refitted, fine-tuned",
            |o| Ok(Box::new(parse::<submodular::Submodular>(o)?)),
        ),
    ]
}

/// Names of the registered methods.
pub const REGISTRY: [&str; 9] = [
    "baseline",
    "baseline_long",
    "lr_over_k",
    "mk",
    "adv_mj",
    "adv_only",
    "wide",
    "distilled_ensemble",
    "submodular",
];

/// Parses a method's options; unknown keys and bad values are errors naming the key.
fn parse<T: DeserializeOwned>(options: &Mapping) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(Value::Mapping(options.clone())).map_err(|e| {
        let at = e.path().to_string();
        format!("`{at}`: {}", e.into_inner())
    })
}

/// The list under `key` of a method entry, each item read by `item` (`None` when absent).
fn entry_list<T>(
    entry: &Value,
    key: &str,
    what: &str,
    item: impl Fn(&Value) -> Option<T>,
) -> std::result::Result<Option<Vec<T>>, String> {
    let Value::Mapping(map) = entry else {
        return Ok(None);
    };
    match map.get(key) {
        None => Ok(None),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|v| item(v).ok_or_else(|| format!("`{key}` lists {what}, got {v:?}")))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(format!("`{key}` must be a list of {what}, got {other:?}")),
    }
}

/// The `datasets:` restriction of a method entry (`{name: mk, ..., datasets: [cifar10]}`): the
/// method runs on those datasets of the experiment only. `None` when absent (every dataset).
pub fn entry_datasets(entry: &Value) -> std::result::Result<Option<Vec<String>>, String> {
    entry_list(entry, "datasets", "dataset names", |v| {
        v.as_str().map(String::from)
    })
}

/// The `k:` restriction of a method entry (`{name: mk, mixing: uniform, k: [4]}`): the method
/// runs at those values only (each must be in the experiment's `k` list). `None` when absent.
pub fn entry_ks(entry: &Value) -> std::result::Result<Option<Vec<usize>>, String> {
    entry_list(entry, "k", "positive integers", |v| {
        v.as_u64().map(|k| k as usize)
    })
}

/// Builds the method an experiment entry names: either a bare name (`mk`) or a mapping
/// (`{name: mk, mixing: uniform}`; `datasets:` and `k:` restrictions are read by the plan).
pub fn build<B: AutodiffBackend>(entry: &Value) -> std::result::Result<Box<dyn Method<B>>, String> {
    let (name, options) = match entry {
        Value::String(name) => (name.clone(), Mapping::new()),
        Value::Mapping(map) => {
            let mut options = map.clone();
            options.remove("datasets");
            options.remove("k");
            let name = match options.remove("name") {
                Some(Value::String(name)) => name,
                _ => return Err("each method needs a `name` (a string)".into()),
            };
            (name, options)
        }
        other => {
            return Err(format!(
                "a method is a name or a mapping with `name`, got {other:?}"
            ));
        }
    };
    let registry = registry::<B>();
    let (_, _, builder) = registry
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| {
            format!(
                "unknown method `{name}`: expected one of {}",
                REGISTRY.join(", ")
            )
        })?;
    builder(&options).map_err(|e| format!("method `{name}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiffBackend as B;

    #[test]
    fn registry_and_its_name_list_agree() {
        let names: Vec<&str> = registry::<B>().iter().map(|(n, _, _)| *n).collect();
        assert_eq!(names, REGISTRY);
    }

    #[test]
    fn methods_parse_from_names_and_mappings() {
        let m = build::<B>(&serde_norway::from_str("mk").unwrap()).unwrap();
        assert_eq!(m.name(), "mk");
        let m = build::<B>(
            &serde_norway::from_str("{name: mk, mixing: 'majority(3)', init: independent}")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(m.mixing_label(4).as_deref(), Some("majority(3)"));
        assert_eq!(m.init_label().as_deref(), Some("independent"));
        let err = build::<B>(&serde_norway::from_str("{name: mk, mixin: uniform}").unwrap())
            .err()
            .unwrap();
        assert!(err.contains("mixin"), "{err}");
        let err = build::<B>(&serde_norway::from_str("sgd_plus").unwrap())
            .err()
            .unwrap();
        assert!(
            err.contains("sgd_plus") && err.contains("baseline"),
            "{err}"
        );
    }
}
