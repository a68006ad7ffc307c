//! Model surgery for MLPs: each hidden layer keeps n of its k·n units, and the next layer is
//! refitted on the kept units.

use burn::prelude::*;

use super::ridge::least_squares;
use super::selection::{lazy_greedy, unit_similarity};
use super::{Submodular, host, linear};
use crate::models::{Dense, Mlp};

impl Submodular {
    /// Prunes the wide MLP to the small widths `hidden`, layer by layer.
    pub(super) fn prune_mlp<B: Backend>(
        &self,
        wide: &Mlp<B>,
        hidden: &[usize],
        calibration: Tensor<B, 2>,
        device: &B::Device,
    ) -> Mlp<B> {
        let rows = calibration.dims()[0];
        let mut layers: Vec<(Vec<f32>, Vec<f32>, usize, usize)> = wide
            .layers
            .iter()
            .map(|l| {
                let Dense::Plain(l) = l else {
                    unreachable!("the wide reference is a plain network")
                };
                let [d_in, d_out] = l.weight.dims();
                let bias = l
                    .bias
                    .as_ref()
                    .map(|b| host(b.val()))
                    .unwrap_or_else(|| vec![0.0; d_out]);
                (host(l.weight.val()), bias, d_in, d_out)
            })
            .collect();
        let mut x = calibration; // input of the current layer, in the pruned model
        for (l, &keep) in hidden.iter().enumerate() {
            let (w, b, d_in, m) = layers[l].clone();
            let act = burn::tensor::activation::relu(
                x.clone().matmul(Tensor::from_data(
                    TensorData::new(w.clone(), [d_in, m]),
                    device,
                )) + Tensor::<B, 1>::from_data(TensorData::new(b.clone(), [m]), device)
                    .unsqueeze::<2>(),
            );
            let acts = host(act.clone());
            let selected = lazy_greedy(&unit_similarity(&acts, rows, m), m, keep);
            // Layer l keeps the selected columns.
            let w_kept: Vec<f32> = (0..d_in)
                .flat_map(|r| selected.iter().map(|&u| w[r * m + u]).collect::<Vec<_>>())
                .collect();
            let b_kept: Vec<f32> = selected.iter().map(|&u| b[u]).collect();
            layers[l] = (w_kept, b_kept, d_in, keep);
            // Layer l+1 is refitted on the kept units to reproduce its wide pre-activations.
            let (w_next, b_next, _, out) = layers[l + 1].clone();
            let target = host(
                act.matmul(Tensor::from_data(TensorData::new(w_next, [m, out]), device))
                    + Tensor::<B, 1>::from_data(TensorData::new(b_next, [out]), device)
                        .unsqueeze::<2>(),
            );
            let kept_act: Vec<f32> = (0..rows)
                .flat_map(|r| {
                    selected
                        .iter()
                        .map(|&u| acts[r * m + u])
                        .collect::<Vec<_>>()
                })
                .collect();
            let (w_fit, b_fit) = least_squares(&kept_act, &target, rows, keep, out, self.ridge);
            layers[l + 1] = (w_fit, b_fit, keep, out);
            x = Tensor::from_data(TensorData::new(kept_act, [rows, keep]), device);
        }
        Mlp {
            layers: layers
                .into_iter()
                .map(|(w, b, d_in, d_out)| Dense::Plain(linear(w, b, d_in, d_out, device)))
                .collect(),
        }
    }
}
