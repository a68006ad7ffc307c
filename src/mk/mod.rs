//! Majority-kernel layers: k copies of a kernel, mixed with random simplex coefficients while
//! training and collapsed into one ordinary layer for deployment.
//!
//! The lowest model layer: imports nothing from `optim`, `models`, `train` or `methods`.

pub mod conv;
pub mod dense;
pub mod init;
pub mod kernel;
pub mod mixing;

pub use conv::MkConv2d;
pub use dense::MkLinear;
pub use init::MkInit;
pub use kernel::{KernelMixer, MixedKernels};
pub use mixing::Mixing;
