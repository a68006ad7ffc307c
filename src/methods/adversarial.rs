//! Adversarial majority kernels (docs/METHODS.md, "Adversarial MK"): `adv_mj` draws p as MK does,
//! then moves it to a
//! worse point on the simplex with one exponentiated-gradient ascent step of size `rho` before
//! the update; `adv_only` ascends from uniform p, with no random draw.

use burn::tensor::backend::AutodiffBackend;
use serde::Deserialize;

use super::mk::{LrCompensation, MajorityKernels};
use super::{Method, MethodContext, MethodOutput};
use crate::error::{Error, Result};
use crate::mk::{Mixing, MkInit};
use crate::train::Adversary;

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

/// `adv_only`: the ascent step from uniform p.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvOnly {
    #[serde(default)]
    pub init: MkInit,
    #[serde(default)]
    pub lr_compensation: LrCompensation,
    #[serde(default = "default_rho")]
    pub rho: f64,
    #[serde(default)]
    pub bn_recalibration: usize,
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

/// The MK method's options with the ascent's step size added.
fn options_with_rho<B: AutodiffBackend>(mk: &MajorityKernels, rho: f64) -> serde_json::Value {
    let mut options = Method::<B>::options(mk);
    options["rho"] = serde_json::json!(rho);
    options
}

impl<B: AutodiffBackend> Method<B> for AdvMajority {
    fn name(&self) -> &'static str {
        "adv_mj"
    }

    fn uses_k(&self) -> bool {
        true
    }

    fn options(&self) -> serde_json::Value {
        options_with_rho::<B>(&self.as_mk(), self.rho)
    }

    fn validate(&self, k: usize) -> std::result::Result<(), String> {
        self.mixing.validate(k)?;
        check_rho(self.rho)
    }

    fn mixing_label(&self, k: usize) -> Option<String> {
        Some(format!("{} + ascent({})", self.mixing.label(k), self.rho))
    }

    fn init_label(&self) -> Option<String> {
        Some(self.init.label().into())
    }

    fn run(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        Method::<B>::validate(self, ctx.k)
            .map_err(|e| Error::Usage(format!("method adv_mj: {e}")))?;
        self.as_mk().train_mk(
            ctx,
            Some(Adversary {
                rho: self.rho,
                from_uniform: false,
            }),
        )
    }
}

impl<B: AutodiffBackend> Method<B> for AdvOnly {
    fn name(&self) -> &'static str {
        "adv_only"
    }

    fn uses_k(&self) -> bool {
        true
    }

    fn options(&self) -> serde_json::Value {
        options_with_rho::<B>(&self.as_mk(), self.rho)
    }

    fn validate(&self, _k: usize) -> std::result::Result<(), String> {
        check_rho(self.rho)
    }

    fn mixing_label(&self, _k: usize) -> Option<String> {
        Some(format!("uniform + ascent({})", self.rho))
    }

    fn init_label(&self) -> Option<String> {
        Some(self.init.label().into())
    }

    fn run(&self, ctx: &MethodContext<'_, B>) -> Result<MethodOutput<B>> {
        Method::<B>::validate(self, ctx.k)
            .map_err(|e| Error::Usage(format!("method adv_only: {e}")))?;
        self.as_mk().train_mk(
            ctx,
            Some(Adversary {
                rho: self.rho,
                from_uniform: true,
            }),
        )
    }
}
