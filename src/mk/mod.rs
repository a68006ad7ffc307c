//! Majority-kernel layers: k copies of a kernel, mixed with random simplex coefficients while
//! training and collapsed into one ordinary layer for deployment.

pub mod conv;
pub mod dense;
mod fast;
pub mod init;
pub mod kernel;
pub mod mixing;
pub mod step;
pub mod update;

pub use conv::MkConv2d;
pub use dense::MkLinear;
pub use init::MkInit;
pub use kernel::MixedKernels;
pub use mixing::Mixing;
pub use step::MkStep;
