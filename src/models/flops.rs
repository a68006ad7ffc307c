//! The arithmetic of a model: multiply-adds of one forward pass per example, counted from the
//! architecture. Dense layers, convolutions and attention's two products are counted;
//! normalisation, activations, pooling, embeddings and the optimiser are not (a few percent of
//! a step). Used to estimate what a run costs on hardware this project has not measured
//! (`reproduce plan`), never in place of a measured time.

use super::{EncoderSpec, ModelSpec, ResNetSpec, Stem};

/// FLOPs of one training example: a forward pass and the backward pass's two products (input
/// and weight gradients), each as many multiply-adds as the forward, at 2 FLOPs a multiply-add.
pub const TRAINING_FLOPS_PER_MAC: f64 = 6.0;

/// What one example looks like to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputShape {
    /// An image of `channels` x `height` x `width`.
    Image {
        channels: usize,
        height: usize,
        width: usize,
    },
    /// A sequence of `len` tokens (at most `max_len`: the count is an upper bound where
    /// batches are padded only to their longest example).
    Tokens { len: usize },
}

impl ModelSpec {
    /// Multiply-adds of one forward pass of one example into `classes` logits. A pre-trained
    /// encoder's sizes must be filled in from its checkpoint first (zero sizes count nothing).
    pub fn forward_macs(&self, input: InputShape, classes: usize) -> f64 {
        match (self, input) {
            (
                ModelSpec::Mlp { hidden, .. },
                InputShape::Image {
                    channels,
                    height,
                    width,
                },
            ) => {
                let widths: Vec<usize> = std::iter::once(channels * height * width)
                    .chain(hidden.iter().copied())
                    .chain(std::iter::once(classes))
                    .collect();
                widths.windows(2).map(|w| (w[0] * w[1]) as f64).sum()
            }
            (
                ModelSpec::Resnet(spec),
                InputShape::Image {
                    channels,
                    height,
                    width,
                },
            ) => resnet_macs(spec, channels, height, width, classes),
            (ModelSpec::Transformer(spec), InputShape::Tokens { len }) => {
                encoder_macs(spec, len, classes)
            }
            _ => 0.0,
        }
    }
}

/// Output side of a convolution (or pooling) with padding `kernel / 2`.
fn conv_out(side: usize, kernel: usize, stride: usize) -> usize {
    (side + 2 * (kernel / 2) - kernel) / stride + 1
}

fn resnet_macs(
    spec: &ResNetSpec,
    channels: usize,
    height: usize,
    width: usize,
    classes: usize,
) -> f64 {
    let (blocks, widths) = spec.stages();
    let conv = |c_in: usize, c_out: usize, kernel: usize, h: usize, w: usize| {
        (c_in * c_out * kernel * kernel * h * w) as f64
    };
    let (kernel, stride) = match spec.stem {
        Stem::Cifar => (3, 1),
        Stem::Imagenet => (7, 2),
    };
    let (mut h, mut w) = (
        conv_out(height, kernel, stride),
        conv_out(width, kernel, stride),
    );
    let mut macs = conv(channels, widths[0], kernel, h, w);
    if spec.stem == Stem::Imagenet {
        (h, w) = (conv_out(h, 3, 2), conv_out(w, 3, 2));
    }
    let mut c_in = widths[0];
    for (stage, (&n, &c)) in blocks.iter().zip(&widths).enumerate() {
        for b in 0..n {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            let (ho, wo) = (conv_out(h, 3, stride), conv_out(w, 3, stride));
            macs += conv(c_in, c, 3, ho, wo) + conv(c, c, 3, ho, wo);
            if stride != 1 || c_in != c {
                macs += conv(c_in, c, 1, ho, wo);
            }
            (h, w, c_in) = (ho, wo, c);
        }
    }
    macs + (c_in * classes) as f64
}

fn encoder_macs(spec: &EncoderSpec, len: usize, classes: usize) -> f64 {
    let (d, ffn, len) = (spec.hidden as f64, spec.ffn as f64, len as f64);
    // Q, K, V and the output projection; the two feed-forward layers; scores QK^T and the
    // weighted sum of V (every head together: len x len x d each).
    let per_layer = len * (4.0 * d * d + 2.0 * d * ffn) + 2.0 * len * len * d;
    // The pooler (d x d on the first token) and the head.
    spec.layers as f64 * per_layer + d * d + d * classes as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::resnet::ResNetArch;

    fn resnet(arch: ResNetArch, stem: Stem) -> ModelSpec {
        ModelSpec::Resnet(ResNetSpec {
            arch: Some(arch),
            blocks: None,
            widths: None,
            stem,
        })
    }

    fn image(channels: usize, side: usize) -> InputShape {
        InputShape::Image {
            channels,
            height: side,
            width: side,
        }
    }

    #[test]
    fn published_resnet_counts_are_reproduced() {
        // He et al. 2016, Table 1: ResNet-18 at 224x224, "1.8 x 10^9 FLOPs" (multiply-adds).
        let r18 = resnet(ResNetArch::Resnet18, Stem::Imagenet).forward_macs(image(3, 224), 1000);
        assert!((r18 / 1.8e9 - 1.0).abs() < 0.02, "{r18:e}");
        // ResNet-20 on CIFAR-10: 40.8 M multiply-adds (about 41 M in the CIFAR ResNet tables).
        let r20 = resnet(ResNetArch::Resnet20, Stem::Cifar).forward_macs(image(3, 32), 10);
        assert!((r20 / 40.8e6 - 1.0).abs() < 0.02, "{r20:e}");
        // Counted by hand: the CIFAR ResNet-18 (3x3 stem), 0.56 G.
        let cifar18 = resnet(ResNetArch::Resnet18, Stem::Cifar).forward_macs(image(3, 32), 10);
        assert!((cifar18 / 0.556e9 - 1.0).abs() < 0.01, "{cifar18:e}");
    }

    #[test]
    fn mlp_and_encoder_counts_are_their_products() {
        let mlp = ModelSpec::Mlp {
            hidden: vec![512, 512],
            bias: true,
        };
        assert_eq!(
            mlp.forward_macs(image(1, 28), 10),
            (784 * 512 + 512 * 512 + 512 * 10) as f64
        );
        let bert_base = ModelSpec::Transformer(EncoderSpec {
            layers: 12,
            hidden: 768,
            heads: 12,
            ffn: 3072,
            max_len: 128,
            pre_norm: false,
            dropout: 0.1,
            pretrained: None,
        });
        let macs = bert_base.forward_macs(InputShape::Tokens { len: 128 }, 2);
        let by_hand = 12.0 * (128.0 * (4.0 * 768.0 * 768.0 + 2.0 * 768.0 * 3072.0))
            + 12.0 * 2.0 * 128.0 * 128.0 * 768.0
            + 768.0 * 768.0
            + 768.0 * 2.0;
        assert_eq!(macs, by_hand);
        // About 11 G multiply-adds at 128 tokens: 85 M encoder weights x 128 tokens plus attention.
        assert!((macs / 11.2e9 - 1.0).abs() < 0.01, "{macs:e}");
        // A family on the wrong input counts nothing rather than panicking.
        assert_eq!(mlp.forward_macs(InputShape::Tokens { len: 8 }, 2), 0.0);
    }
}
