//! The optimiser: the spec a recipe names ([`OptimizerSpec`]), the update rules (SGD, Adam,
//! AdamW) fused over a parameter's k copies ([`CopyOptimizer`]), and their per-parameter state
//! with its checkpoint file.
//!
//! It updates every parameter of every model, baselines included (a plain parameter is one
//! copy), so MK and the baselines share one optimiser implementation.
//!
//! Imports nothing above it: the model-level orchestration (mixing, then updating) is
//! `crate::train::step`.

pub mod adam;
pub mod fused;
pub mod sgd;
pub mod spec;
mod state;

pub use fused::{CopyOptimizer, CopyRule};
pub use spec::OptimizerSpec;
