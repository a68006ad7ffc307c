//! # majority-kernels
//!
//! A benchmark harness reproducing *Majority Kernels: An Approach to Leverage Big Model
//! Dynamics for Efficient Small Model Training* (Mazzawi et al., arXiv 2402.05033).
//!
//! Layout, one concept per module:
//! - [`atomic`]: the one way files are written (whole or not at all, durably);
//! - [`data`]: datasets (MNIST IDX files or the Hugging Face Hub) and batching;
//! - [`mk`]: the majority-kernel layers (dense, conv), mixing distributions, init, collapse;
//! - [`optim`]: the optimiser spec, the fused update rules (SGD, Adam, AdamW), their state;
//! - [`models`]: model families, each plain or with majority kernels;
//! - [`train`]: recipes, the training step and loop, evaluation;
//! - [`methods`]: training methods as plug-ins behind one trait;
//! - [`experiment`]: declarative experiment files, profiles, overrides, the run plan;
//! - [`results`]: the stored rows declared once, parquet storage of runs, curves and bench
//!   rows, provenance;
//! - [`report`]: tables rendered from stored results;
//! - [`runner`], [`bench`]: what the `reproduce` binary calls;
//! - [`workers`]: the worker threads a command runs on.

pub mod atomic;
pub mod backend;
pub mod bench;
pub mod compare;
pub mod data;
pub mod error;
pub mod experiment;
mod host;
pub mod kernels;
pub mod methods;
pub mod mk;
pub mod models;
pub mod optim;
pub mod report;
pub mod results;
pub mod runner;
pub mod train;
pub mod workers;

pub use error::{Error, Result};
