//! Adversarial mixing (docs/METHODS.md, "Adversarial MK"): before the update, move the mixing
//! coefficients p to a worse point on the simplex with one exponentiated-gradient ascent step,
//! using dL/dp_i = <dL/dW, theta_i> from a first forward/backward pass (about twice the cost
//! of a plain MK step).

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::data::Inputs;
use crate::mk::MkStep;
use crate::models::Classifier;

/// The ascent applied to each step's mixing coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Adversary {
    /// Step size of the exponentiated-gradient ascent.
    pub rho: f64,
    /// Start from uniform p (`adv_only`) instead of a random draw (`adv_mj`).
    pub from_uniform: bool,
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

/// The gradient of the batch loss with respect to the mixing coefficients `p`
/// (`[layers, k]`, rows in the order of `mk`'s parameters).
pub fn mixing_gradient<B, M>(
    model: &M,
    mk: &MkStep<B>,
    inputs: Inputs<B>,
    labels: Tensor<B, 1, Int>,
    p: &[f32],
) -> Vec<f32>
where
    B: AutodiffBackend,
    M: Classifier<B>,
{
    let device = labels.device();
    let kernels = mk.mix(model, p);
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(model.forward(inputs, Some(&kernels)), labels);
    mk.mixing_gradient(model, &kernels, &loss.backward())
}

/// The adversarial coefficients for one step, starting from `p`.
pub fn adversarial_mix<B, M>(
    model: &M,
    mk: &MkStep<B>,
    inputs: Inputs<B>,
    labels: Tensor<B, 1, Int>,
    p: Vec<f32>,
    rho: f64,
) -> Vec<f32>
where
    B: AutodiffBackend,
    M: Classifier<B>,
{
    let k = p.len() / mk.ids().len().max(1);
    let gradient = mixing_gradient(model, mk, inputs, labels, &p);
    exponentiated_ascent(&p, &gradient, k, rho)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiffBackend as B;
    use crate::data::{self, shared_data_dir};
    use crate::mk::{Mixing, MkInit};
    use crate::models::{Model, ModelSpec};
    use crate::train::{Stream, stream_rng};
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

    #[test]
    fn the_ascent_step_increases_the_batch_loss() {
        let dir = shared_data_dir().expect("tests need the real datasets in ../shared/data");
        let splits = data::load("mnist", &[dir], &Default::default()).unwrap();
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
            let mix = mk.mix(&model, p);
            let loss = CrossEntropyLossConfig::new()
                .init(&device)
                .forward(model.forward(inputs, Some(&mix)), labels);
            loss.into_scalar().elem()
        };
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..5 {
            let p = Mixing::default().draw_all(layers, k, &mut rng);
            let (inputs, labels) = batch.batch::<B>(&indices, &device);
            let q = adversarial_mix(&model, &mk, inputs, labels, p.clone(), 0.5);
            assert!(
                loss_at(&q) > loss_at(&p),
                "ascent must raise the loss: {} -> {}",
                loss_at(&p),
                loss_at(&q)
            );
        }
    }
}
