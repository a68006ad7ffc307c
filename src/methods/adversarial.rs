//! Adversarial majority kernels (docs/METHODS.md, "Adversarial MK"): `adv_mj` draws p as MK
//! does, then moves it to a worse point on the simplex with one exponentiated-gradient ascent
//! step of size `rho` before the update, using dL/dp_i = <dL/dW, theta_i> from a first
//! forward/backward pass (about twice the cost of a plain MK step); `adv_only` ascends from
//! uniform p, with no random draw. `adv_only` needs copies that differ: from `identical` copies
//! every dL/dp_i of a layer is equal, the ascent leaves p uniform, the copies stay identical and
//! the run is uniform MK (with `lr_compensation: auto`, the baseline). It therefore defaults to
//! `independent` copies and refuses `identical` ones when the experiment is loaded. `adv_mj`
//! accepts them: its first ascent is a no-op, but the drawn p makes the copies differ.

use burn::tensor::backend::AutodiffBackend;
use serde::Deserialize;

use super::mk::{DrawUses, LrCompensation, MajorityKernels};
use super::{Method, MethodContext, MethodInfo, MethodOutput, MethodSpec, Role};
use crate::error::Result;
use crate::mk::{Mixing, MkInit};
use crate::models::ModelSpec;
use crate::train::MixingDraw;

fn default_rho() -> f64 {
    1.0
}

/// `adv_mj` ("Adv-Majority Kernels"): random draw, then one ascent step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvMajority {
    #[serde(default)]
    pub mixing: Mixing,
    #[serde(default)]
    pub init: MkInit,
    #[serde(default)]
    pub lr_compensation: LrCompensation,
    /// Step size of the exponentiated-gradient ascent on p.
    #[serde(default = "default_rho")]
    pub rho: f64,
    /// As for `mk`: BatchNorm re-estimation batches after collapse (0: off).
    #[serde(default)]
    pub bn_recalibration: usize,
}

/// Why `adv_only` refuses `init: identical` (its `validate` error).
const IDENTICAL_REFUSED: &str = "adv_only refuses `init: identical` (and `perturbed(0)`): from \
    identical copies every dL/dp_i of a layer is equal, so the ascent never moves p from uniform, \
    the copies stay identical and the run is uniform MK (with `lr_compensation: auto`, the \
    baseline); use `init: independent` (the default), `init: independent_scaled`, or \
    `init: perturbed(s)` with s > 0";

fn default_adv_only_init() -> MkInit {
    MkInit::Independent
}

/// `adv_only`: the ascent step from uniform p.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvOnly {
    /// The copies' init: `independent` by default; `identical` is refused (see the module
    /// documentation).
    #[serde(default = "default_adv_only_init")]
    pub init: MkInit,
    #[serde(default)]
    pub lr_compensation: LrCompensation,
    #[serde(default = "default_rho")]
    pub rho: f64,
    #[serde(default)]
    pub bn_recalibration: usize,
}

/// One exponentiated-gradient ascent step per row of `p` (`[layers, k]`, row-major):
/// `p'_i ∝ p_i exp(rho g_i)`. Rows stay on the simplex; zero coefficients stay zero.
pub fn exponentiated_ascent(p: &[f32], gradient: &[f32], k: usize, rho: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(p.len());
    for (row, grad) in p.chunks(k).zip(gradient.chunks(k)) {
        let logits: Vec<f64> = row
            .iter()
            .zip(grad)
            .map(|(&pi, &gi)| {
                if pi > 0.0 {
                    (pi as f64).ln() + rho * gi as f64
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        out.extend(weights.iter().map(|w| (w / total) as f32));
    }
    out
}

/// The step's coefficients moved by one ascent step of size `rho` from `p`.
fn ascend(draw: &MixingDraw<'_>, p: Vec<f32>, rho: f64) -> Vec<f32> {
    let gradient = (draw.loss_gradient)(&p);
    exponentiated_ascent(&p, &gradient, draw.k, rho)
}

fn check_rho(rho: f64) -> std::result::Result<(), String> {
    if rho >= 0.0 && rho.is_finite() {
        Ok(())
    } else {
        Err(format!("rho must be a number >= 0, got {rho}"))
    }
}

impl AdvMajority {
    fn as_mk(&self) -> MajorityKernels {
        MajorityKernels {
            mixing: self.mixing,
            init: self.init,
            lr_compensation: self.lr_compensation,
            bn_recalibration: self.bn_recalibration,
        }
    }
}

impl AdvOnly {
    fn as_mk(&self) -> MajorityKernels {
        MajorityKernels {
            mixing: Mixing::Uniform,
            init: self.init,
            lr_compensation: self.lr_compensation,
            bn_recalibration: self.bn_recalibration,
        }
    }
}

/// The MK options with the ascent's step size added.
fn options_with_rho(mk: &MajorityKernels, rho: f64) -> serde_json::Value {
    let mut options = mk.base_options();
    options["rho"] = serde_json::json!(rho);
    options
}

impl MethodSpec for AdvMajority {
    /// A first forward/backward pass for dL/dp, then the update's.
    fn training_passes(
        &self,
        small: &ModelSpec,
        _k: usize,
        epochs: usize,
    ) -> Vec<(ModelSpec, f64)> {
        vec![(small.clone(), 2.0 * epochs as f64)]
    }

    fn validate_model(&self, model: &ModelSpec) -> std::result::Result<(), String> {
        super::spec::refuse_independent_pretrained(self.init, model)
    }

    fn info() -> MethodInfo {
        MethodInfo {
            figures: &["adversarial", "generalisation"],
            ..MethodInfo::new(
                "adversarial MK: random draw, then an ascent step on the mixing coefficients",
                Role::Proposed,
            )
        }
    }

    fn options(&self) -> serde_json::Value {
        options_with_rho(&self.as_mk(), self.rho)
    }

    fn validate(&self, k: usize) -> std::result::Result<(), String> {
        self.mixing.validate(k)?;
        check_rho(self.rho)
    }

    fn mixing_label(&self, k: usize) -> Option<String> {
        Some(format!("{} + ascent({})", self.mixing.label(k), self.rho))
    }

    fn init_label(&self) -> Option<String> {
        Some(self.init.label())
    }
}

impl Method for AdvMajority {
    fn run<B: AutodiffBackend>(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        let (mixing, rho) = (self.mixing, self.rho);
        let variant = serde_json::json!({"method": "adv_mj", "options": self.options()});
        self.as_mk()
            .train_mk(ctx, variant, DrawUses::Model, |draw| {
                let p = mixing.draw_all(draw.layers, draw.k, draw.rng);
                ascend(&draw, p, rho)
            })
    }
}

impl MethodSpec for AdvOnly {
    /// A first forward/backward pass for dL/dp, then the update's.
    fn training_passes(
        &self,
        small: &ModelSpec,
        _k: usize,
        epochs: usize,
    ) -> Vec<(ModelSpec, f64)> {
        vec![(small.clone(), 2.0 * epochs as f64)]
    }

    fn validate_model(&self, model: &ModelSpec) -> std::result::Result<(), String> {
        match model.pretrained() {
            Some(name) if !matches!(self.init, MkInit::Perturbed(_)) => Err(format!(
                "adv_only cannot start from the pre-trained checkpoint `{name}` with `init: {}`: \
                 its copies must differ (it refuses `init: identical`) and must keep the loaded \
                 kernels (independent copies are drawn afresh); use `init: perturbed(s)` (the \
                 loaded kernels plus centred noise), or adv_mj / mk with `init: identical`",
                self.init.label()
            )),
            _ => Ok(()),
        }
    }

    fn info() -> MethodInfo {
        MethodInfo {
            figures: &["adversarial"],
            ..MethodInfo::new(
                "adversarial MK from uniform mixing (ascent step only)",
                Role::Control,
            )
        }
    }

    fn options(&self) -> serde_json::Value {
        options_with_rho(&self.as_mk(), self.rho)
    }

    fn validate(&self, _k: usize) -> std::result::Result<(), String> {
        if matches!(self.init, MkInit::Identical) || self.init == MkInit::Perturbed(0.0) {
            return Err(IDENTICAL_REFUSED.into());
        }
        check_rho(self.rho)
    }

    fn mixing_label(&self, _k: usize) -> Option<String> {
        Some(format!("uniform + ascent({})", self.rho))
    }

    fn init_label(&self) -> Option<String> {
        Some(self.init.label())
    }
}

impl Method for AdvOnly {
    fn run<B: AutodiffBackend>(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        let rho = self.rho;
        let variant = serde_json::json!({"method": "adv_only", "options": self.options()});
        self.as_mk()
            .train_mk(ctx, variant, DrawUses::Model, |draw| {
                let uniform = vec![1.0 / draw.k as f32; draw.layers * draw.k];
                ascend(&draw, uniform, rho)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiffBackend as B;
    use crate::data::{self, test_data};
    use crate::mk::{Mixing, MkInit};
    use crate::models::{Classifier, Model, ModelSpec};
    use crate::train::MkStep;
    use crate::train::{Stream, mixing_gradient, stream_rng};
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn ascent_stays_on_the_simplex_and_keeps_zeros() {
        let p = [0.5f32, 0.0, 0.25, 0.25, 0.1, 0.2, 0.3, 0.4];
        let g = [1.0f32, 5.0, -1.0, 0.0, 1000.0, -1000.0, 0.0, 0.0];
        let q = exponentiated_ascent(&p, &g, 4, 0.5);
        for row in q.chunks(4) {
            assert!(
                (row.iter().sum::<f32>() - 1.0).abs() < 1e-6 && row.iter().all(|&x| x >= 0.0),
                "{q:?}"
            );
        }
        assert_eq!(q[1], 0.0, "a copy left out stays out");
        assert!(
            q[0] > p[0] && q[2] < p[2],
            "mass moves towards larger gradients"
        );
        assert!(q[4] > 0.99, "large gradients do not overflow");
    }

    /// `adv_only` from identical copies is uniform MK (the baseline under `auto` compensation),
    /// so the experiment is refused when it is loaded, with the reason; independent copies (the
    /// default) load.
    #[test]
    fn adv_only_refuses_identical_copies_when_the_experiment_loads() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "name: demo
datasets:
  - dataset: mnist
    model: {family: mlp, hidden: [32]}
    recipe: {epochs: 1, batch_size: 64, optimizer: {name: sgd, lr: 0.1}}
methods: [baseline, {name: adv_only, init: identical}, {name: adv_mj, init: identical}]
k: [4]
seeds: [0]
profiles: {smoke: {}}
",
        )
        .unwrap();
        let load = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            crate::experiment::load(file.path(), "smoke", &sets)
        };
        let err = load(&[]).unwrap_err().to_string();
        assert!(
            err.contains(&file.path().display().to_string())
                && err.contains(
                    "`methods[1]` (adv_only), k = 4: adv_only refuses `init: identical` (and \
                     `perturbed(0)`): from identical copies every dL/dp_i of a layer is equal, \
                     so the ascent never moves p from uniform, the copies stay identical and \
                     the run is uniform MK (with `lr_compensation: auto`, the baseline); use \
                     `init: independent` (the default), `init: independent_scaled`, or `init: \
                     perturbed(s)` with s > 0"
                ),
            "{err}"
        );
        for init in ["independent", "independent_scaled", "perturbed(0.01)"] {
            let set = format!("methods.1.init={init}");
            load(&[set.as_str()]).unwrap();
        }
        let zero = load(&["methods.1.init=perturbed(0)"])
            .unwrap_err()
            .to_string();
        assert!(
            zero.contains("adv_only refuses `init: identical` (and `perturbed(0)`)"),
            "{zero}"
        );
        // The default is independent copies; adv_mj keeps accepting identical copies (its
        // random draw makes them differ after the first step).
        let experiment = load(&["methods.1=adv_only"]).unwrap().experiment;
        let spec = experiment.methods[1].method.spec();
        assert_eq!(spec.init_label().as_deref(), Some("independent"));
        assert_eq!(
            experiment.methods[2].method.spec().init_label().as_deref(),
            Some("identical")
        );
    }

    /// Why `adv_only` refuses identical copies: from them every dL/dp_i of a layer is equal,
    /// so the ascent from uniform p stays at uniform p (the update then keeps the copies
    /// identical, and so on at every step); from independent copies it moves p.
    #[test]
    fn the_ascent_from_uniform_stays_uniform_only_with_identical_copies() {
        let splits = data::load("mnist", &[test_data()], &Default::default()).unwrap();
        let batch = splits.train.subset(64, 0);
        let device = Default::default();
        let spec = ModelSpec::Mlp {
            hidden: vec![16],
            bias: true,
        };
        let indices: Vec<usize> = (0..64).collect();
        for init in [MkInit::Identical, MkInit::Independent] {
            let small: Model<B> = spec.build(&batch, &mut stream_rng(0, Stream::Init), &device);
            let model = small.to_mk(4, init, &mut stream_rng(0, Stream::MkCopies));
            let (layers, k) = (model.mk_layers(), model.mk_copies());
            let mk = MkStep::<B>::for_mixing(model.mk_kernel_ids());
            let uniform = vec![1.0 / k as f32; layers * k];
            let (inputs, labels) = batch.batch::<B>(&indices, &device);
            let gradient = mixing_gradient(&model, &mk, inputs, labels, &uniform);
            let q = exponentiated_ascent(&uniform, &gradient, k, 1.0);
            let spread = |row: &[f32]| {
                let (lo, hi) = row
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                hi - lo
            };
            let moved = q.chunks(k).map(spread).fold(0.0f32, f32::max);
            match init {
                MkInit::Identical => {
                    assert!(
                        gradient.chunks(k).all(|row| spread(row) == 0.0),
                        "equal dL/dp_i per layer: {gradient:?}"
                    );
                    assert_eq!(q, uniform, "p stays uniform");
                }
                _ => assert!(moved > 1e-4, "independent copies move p: {q:?}"),
            }
        }
    }

    #[test]
    fn the_ascent_step_increases_the_batch_loss() {
        let splits = data::load("mnist", &[test_data()], &Default::default()).unwrap();
        let batch = splits.train.subset(256, 0);
        let device = Default::default();
        let spec = ModelSpec::Mlp {
            hidden: vec![64],
            bias: true,
        };
        let small: Model<B> = spec.build(&batch, &mut stream_rng(0, Stream::Init), &device);
        let model = small.to_mk(4, MkInit::Independent, &mut stream_rng(0, Stream::MkCopies));
        let indices: Vec<usize> = (0..256).collect();
        let (layers, k) = (model.mk_layers(), model.mk_copies());
        let mk = MkStep::<B>::for_mixing(model.mk_kernel_ids());
        let loss_at = |p: &[f32]| -> f32 {
            let (inputs, labels) = batch.batch::<B>(&indices, &device);
            let mix = mk.mix_now(&model, p);
            let loss = CrossEntropyLossConfig::new()
                .init(&device)
                .forward(model.forward(inputs, Some(&mix)), labels);
            loss.into_scalar().elem()
        };
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..5 {
            let p = Mixing::default().draw_all(layers, k, &mut rng);
            let (inputs, labels) = batch.batch::<B>(&indices, &device);
            let gradient = mixing_gradient(&model, &mk, inputs, labels, &p);
            let q = exponentiated_ascent(&p, &gradient, k, 0.5);
            assert!(
                loss_at(&q) > loss_at(&p),
                "ascent must raise the loss: {} -> {}",
                loss_at(&p),
                loss_at(&q)
            );
        }
    }
}
