//! Re-estimating BatchNorm statistics of a deployed model.
//!
//! An MK network's running statistics were gathered with mixed kernels, while the deployed
//! model uses the mean kernel: its activations have other statistics. Re-estimating them on
//! training batches (no augmentation, no parameter change) fixes the mismatch, as is done
//! after weight averaging (SWA).

use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;

use super::trainer::{Stream, stream_rng};
use crate::data::Examples;
use crate::models::{Classifier, Model};

/// Replaces the running statistics of every BatchNorm in `model` by their exact average over
/// `batches` training batches of `batch_size` examples (a seeded sample of `data`).
/// Returns the number of batches used (0 for models without BatchNorm).
pub fn recalibrate_batchnorm<B: AutodiffBackend>(
    model: &mut Model<B>,
    data: &Examples,
    batches: usize,
    batch_size: usize,
    seed: u64,
    device: &B::Device,
) -> usize {
    let momenta: Vec<f64> = model
        .batchnorms_mut()
        .iter()
        .map(|bn| bn.momentum)
        .collect();
    if momenta.is_empty() || batches == 0 {
        return 0;
    }
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.shuffle(&mut stream_rng(seed, Stream::Recalibration));
    let mut used = 0;
    for (t, indices) in order.chunks(batch_size.max(1)).take(batches).enumerate() {
        // Momentum 1/(t+1): the running value becomes the mean of the t+1 batch statistics.
        for bn in model.batchnorms_mut() {
            bn.momentum = 1.0 / (t as f64 + 1.0);
        }
        let (inputs, _) = data.batch::<B>(indices, device);
        // Training-mode forward (autodiff backend): updates the statistics; output unused.
        let _ = model.forward(inputs, None);
        used += 1;
    }
    for (bn, momentum) in model.batchnorms_mut().into_iter().zip(momenta) {
        bn.momentum = momentum;
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiffBackend as AB;
    use crate::data::{ImageDataset, Normalization};
    use crate::models::resnet::{ResNet, ResNetSpec, Stem};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn recalibrated_statistics_are_the_batch_average() {
        let device = Default::default();
        let mut rng = StdRng::seed_from_u64(1);
        let pixels: Vec<u8> = (0..64 * 3 * 4 * 4).map(|i| (i * 37 % 251) as u8).collect();
        let data = Examples::Images(ImageDataset {
            pixels: pixels.into(),
            labels: vec![0; 64],
            image_shape: [3, 4, 4],
            num_classes: 2,
            normalization: Normalization {
                mean: vec![0.5; 3],
                std: vec![0.25; 3],
            },
        });
        let spec = ResNetSpec {
            arch: None,
            blocks: Some(vec![1]),
            widths: Some(vec![4]),
            stem: Stem::Cifar,
        };
        let mut model = Model::ResNet(ResNet::<AB>::new(&spec, 3, 2, &mut rng, &device));
        let used = recalibrate_batchnorm(&mut model, &data, 4, 16, 0, &device);
        assert_eq!(used, 4);
        // The stem's statistics are those of the stem convolution's output over all 64
        // images (4 batches of 16 equal-sized batches: the mean of means is the mean).
        let Model::ResNet(resnet) = &mut model else {
            unreachable!()
        };
        assert!(resnet.batchnorms_mut().iter().all(|bn| bn.momentum == 0.1));
        let all: Vec<usize> = (0..64).collect();
        let (inputs, _) = data.batch::<AB>(&all, &device);
        let crate::data::Inputs::Images(x) = inputs else {
            unreachable!()
        };
        let conv = resnet.stem.conv.forward(x, None);
        let expected: Vec<f32> = conv
            .swap_dims(0, 1)
            .reshape([4, 64 * 16])
            .mean_dim(1)
            .into_data()
            .to_vec()
            .unwrap();
        let running: Vec<f32> = resnet
            .stem
            .bn
            .running_mean
            .value_sync()
            .into_data()
            .to_vec()
            .unwrap();
        for (a, b) in running.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-4, "{running:?} vs {expected:?}");
        }
    }
}
