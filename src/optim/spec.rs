//! The optimiser an experiment names, with its hyper-parameters, as written in the recipe.
//!
//! Its serde form is part of every run id (the recipe is hashed into it): field names,
//! order and defaults must not change.

use serde::{Deserialize, Serialize};

/// Optimiser and its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSpec {
    /// SGD, with heavy-ball (or Nesterov) momentum when `momentum > 0`; L2 weight decay.
    Sgd {
        lr: f64,
        #[serde(default)]
        momentum: f64,
        #[serde(default)]
        nesterov: bool,
        #[serde(default)]
        weight_decay: f64,
    },
    /// AdamW: Adam with decoupled weight decay (the usual Transformer recipe).
    #[serde(rename = "adamw")]
    AdamW {
        lr: f64,
        #[serde(default = "default_beta1")]
        beta1: f64,
        #[serde(default = "default_beta2")]
        beta2: f64,
        #[serde(default = "default_eps")]
        epsilon: f64,
        #[serde(default = "default_adamw_decay")]
        weight_decay: f64,
    },
    /// Adam with L2 weight decay.
    Adam {
        lr: f64,
        #[serde(default = "default_beta1")]
        beta1: f64,
        #[serde(default = "default_beta2")]
        beta2: f64,
        #[serde(default = "default_eps")]
        epsilon: f64,
        #[serde(default)]
        weight_decay: f64,
    },
}

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}
fn default_adamw_decay() -> f64 {
    0.01
}

impl OptimizerSpec {
    /// Base learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerSpec::Sgd { lr, .. }
            | OptimizerSpec::Adam { lr, .. }
            | OptimizerSpec::AdamW { lr, .. } => *lr,
        }
    }

    /// Weight-decay coefficient.
    pub fn weight_decay(&self) -> f64 {
        match self {
            OptimizerSpec::Sgd { weight_decay, .. }
            | OptimizerSpec::Adam { weight_decay, .. }
            | OptimizerSpec::AdamW { weight_decay, .. } => *weight_decay,
        }
    }

    /// Optimiser buffers kept per parameter (momentum; Adam's two moments).
    pub fn state_buffers(&self) -> usize {
        match self {
            OptimizerSpec::Sgd { momentum, .. } if *momentum == 0.0 => 0,
            OptimizerSpec::Sgd { .. } => 1,
            OptimizerSpec::Adam { .. } | OptimizerSpec::AdamW { .. } => 2,
        }
    }

    /// Whether the update is linear in the gradient (plain or momentum SGD), which is when
    /// MK's learning-rate compensation applies.
    pub fn is_sgd(&self) -> bool {
        matches!(self, OptimizerSpec::Sgd { .. })
    }

    /// The same optimiser with learning rate `lr * lr_scale` and weight decay `wd * wd_scale`.
    pub fn scaled(&self, lr_scale: f64, wd_scale: f64) -> OptimizerSpec {
        let mut out = self.clone();
        match &mut out {
            OptimizerSpec::Sgd {
                lr, weight_decay, ..
            }
            | OptimizerSpec::Adam {
                lr, weight_decay, ..
            }
            | OptimizerSpec::AdamW {
                lr, weight_decay, ..
            } => {
                *lr *= lr_scale;
                *weight_decay *= wd_scale;
            }
        }
        out
    }

    /// The same optimiser with weight decay `decay`.
    pub fn with_weight_decay(&self, decay: f64) -> OptimizerSpec {
        let mut out = self.clone();
        match &mut out {
            OptimizerSpec::Sgd { weight_decay, .. }
            | OptimizerSpec::Adam { weight_decay, .. }
            | OptimizerSpec::AdamW { weight_decay, .. } => *weight_decay = decay,
        }
        out
    }

    /// Checks the values; the message names the key (`recipe.optimizer.*`).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lr() > 0.0 && self.lr().is_finite()) {
            return Err(format!(
                "recipe.optimizer.lr must be a positive number, got {}",
                self.lr()
            ));
        }
        if self.weight_decay() < 0.0 {
            return Err(format!(
                "recipe.optimizer.weight_decay must be >= 0, got {}",
                self.weight_decay()
            ));
        }
        if let OptimizerSpec::Sgd { momentum, .. } = self
            && !(0.0..1.0).contains(momentum)
        {
            return Err(format!(
                "recipe.optimizer.momentum must be in [0, 1), got {momentum}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_optimizer_fields_are_rejected_by_name() {
        let err = serde_norway::from_str::<OptimizerSpec>("{name: sgd, lr: 0.1, momentun: 0.9}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("momentun"), "{err}");
        let err = serde_norway::from_str::<OptimizerSpec>("{name: lamb, lr: 0.1}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lamb"), "{err}");
    }

    #[test]
    fn the_json_form_hashed_into_run_ids_is_unchanged() {
        let cases = [
            (
                "{name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0005}",
                r#"{"name":"sgd","lr":0.05,"momentum":0.9,"nesterov":false,"weight_decay":0.0005}"#,
            ),
            (
                "{name: adamw, lr: 0.0005}",
                r#"{"name":"adamw","lr":0.0005,"beta1":0.9,"beta2":0.999,"epsilon":1e-8,"weight_decay":0.01}"#,
            ),
            (
                "{name: adam, lr: 0.001}",
                r#"{"name":"adam","lr":0.001,"beta1":0.9,"beta2":0.999,"epsilon":1e-8,"weight_decay":0.0}"#,
            ),
        ];
        for (yaml, json) in cases {
            let spec: OptimizerSpec = serde_norway::from_str(yaml).unwrap();
            assert_eq!(serde_json::to_string(&spec).unwrap(), json);
        }
    }
}
