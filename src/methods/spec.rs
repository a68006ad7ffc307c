//! The two sides of a method: what it is ([`MethodSpec`], no backend needed: read by planning,
//! listing, tables, claims and figures) and how it trains ([`Method`]).

use burn::tensor::backend::AutodiffBackend;

use super::{MethodContext, MethodOutput};
use crate::error::Result;
use crate::mk::MkInit;
use crate::models::ModelSpec;

/// What a method is for in the comparisons. Claims and figures find methods by role, never by
/// name, so a new method takes part in them by declaring its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The reference every claim is measured against: the small model, same recipe and steps.
    Baseline,
    /// A method whose claims `reproduce claims` checks (majority kernels and their variants).
    Proposed,
    /// A strong baseline that proposed methods are claimed to beat.
    Competitor,
    /// An ablation control that isolates one ingredient of a proposed method.
    Control,
    /// Shown for reference but not a small model (e.g. the k-times-wider model).
    Reference,
}

/// Static facts about a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodInfo {
    /// One line for `reproduce list`.
    pub about: &'static str,
    pub role: Role,
    /// Whether the result depends on the experiment's k (methods that do not run once per seed,
    /// whatever the k list is, and tables show no k for them).
    pub uses_k: bool,
    /// Whether the paper claims the method trains at about the baseline's step time (checked
    /// against the stored step times by `reproduce claims`).
    pub claims_small_overhead: bool,
    /// Extra figures the method's curves are drawn in, beside the figure of every row: methods
    /// naming the same figure are drawn together with the baseline when two or more ran.
    pub figures: &'static [&'static str],
}

impl MethodInfo {
    /// A method with `role` described by `about`: depends on k, claims nothing about its
    /// step time, drawn in no extra figure.
    pub const fn new(about: &'static str, role: Role) -> Self {
        Self {
            about,
            role,
            uses_k: true,
            claims_small_overhead: false,
            figures: &[],
        }
    }
}

/// What a method is, before any backend is chosen: its options (the method's own struct, read
/// from the experiment entry), how they are checked, recorded and labelled.
pub trait MethodSpec {
    /// Static facts about the method.
    fn info() -> MethodInfo
    where
        Self: Sized;

    /// The options that change the result, recorded in result rows and hashed into run ids.
    fn options(&self) -> serde_json::Value {
        serde_json::Value::Object(Default::default())
    }

    /// Checks the options against one of the experiment's `k` (at load time).
    fn validate(&self, _k: usize) -> std::result::Result<(), String> {
        Ok(())
    }

    /// Checks the method against one dataset entry's model (at load time): methods that need
    /// what a pre-trained model cannot give (a wider twin, fresh copies of its kernels) refuse
    /// it here, with the reason.
    fn validate_model(&self, _model: &ModelSpec) -> std::result::Result<(), String> {
        Ok(())
    }

    /// The architecture of the deployed model (the small model's, except for references such
    /// as `wide`).
    fn deployed_spec(&self, small: &ModelSpec, _k: usize) -> ModelSpec {
        small.clone()
    }

    /// The training a run does, for cost estimates (`reproduce plan`): each model trained,
    /// with its epochs-equivalent passes over the training set (a pass: one forward and
    /// backward of every example). Models a run reuses once trained (ensemble members, the
    /// wide model) are counted in every run that needs them, as if not yet stored.
    fn training_passes(
        &self,
        small: &ModelSpec,
        _k: usize,
        epochs: usize,
    ) -> Vec<(ModelSpec, f64)> {
        vec![(small.clone(), epochs as f64)]
    }

    /// Mixing distribution label for the result columns, where it applies.
    fn mixing_label(&self, _k: usize) -> Option<String> {
        None
    }

    /// Init option label for the result columns, where it applies.
    fn init_label(&self) -> Option<String> {
        None
    }
}

/// How a method trains: given the run's data, architecture, recipe, k and seed, it returns the
/// deployed small model and its training log; the harness evaluates and stores the result.
pub trait Method: MethodSpec {
    fn run<B: AutodiffBackend>(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>>;
}

/// Why a method that needs the `k`-times-wider twin of the small model refuses a pre-trained
/// model, which has none (`what` says what the twin is for).
pub(crate) fn refuse_wide_pretrained(
    model: &ModelSpec,
    what: &str,
) -> std::result::Result<(), String> {
    match model.pretrained() {
        Some(name) => Err(format!(
            "{what} is the k-times-wider model, and the pre-trained checkpoint `{name}` has no \
             wider twin (its architecture is the checkpoint's)"
        )),
        None => Ok(()),
    }
}

/// Why MK copies drawn independently (`init: independent` / `independent_scaled`) are refused
/// on a pre-trained model: they would replace the loaded kernels by fresh random ones.
pub(crate) fn refuse_independent_pretrained(
    init: MkInit,
    model: &ModelSpec,
) -> std::result::Result<(), String> {
    match model.pretrained() {
        Some(name) if !init.keeps_the_kernel() => Err(format!(
            "`init: {}` draws every copy afresh and would throw away the kernels loaded from the \
             pre-trained checkpoint `{name}`; use `init: identical` (every copy starts from the \
             loaded kernels) or `init: perturbed(s)` (the loaded kernels plus centred noise)",
            init.label()
        )),
        _ => Ok(()),
    }
}
