//! The one operation every majority-kernel layer shares: mixing its k copies into one kernel.

use burn::tensor::{Tensor, backend::Backend};

/// Mixes `theta` (`[k, ...kernel]`) into one kernel of `shape`.
///
/// With `mix = Some(p)` (`p` of shape `[1, k]`, on the simplex) this is `sum_i p_i theta_i`,
/// computed as one `[1, k] x [k, n]` product so the backward pass gives each copy exactly
/// `p_i * dL/dW`. With `None` it is the mean of the copies: the eval-mode kernel, and the very
/// same computation `collapse()` uses, so eval-mode MK and the collapsed model agree bit for bit.
pub fn mixed_kernel<B: Backend, const K: usize, const D: usize>(
    theta: Tensor<B, K>,
    mix: Option<Tensor<B, 2>>,
    shape: [usize; D],
) -> Tensor<B, D> {
    let k = theta.dims()[0];
    let flat: Tensor<B, 2> = theta.reshape([k as i64, -1]);
    let mixed = match mix {
        Some(p) => p.matmul(flat),
        None => flat.mean_dim(0),
    };
    mixed.reshape(shape)
}

/// Row `layer` of a `[layers, k]` mixing tensor, as the `[1, k]` operand of [`mixed_kernel`].
pub fn mixing_row<B: Backend>(mix: Option<&Tensor<B, 2>>, layer: usize) -> Option<Tensor<B, 2>> {
    mix.map(|m| m.clone().slice(layer..layer + 1))
}
