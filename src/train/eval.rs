//! Evaluation of a classifier on a dataset: mean cross-entropy, accuracy, and for binary
//! tasks Matthews correlation and F1 of the positive class.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{Examples, Label, Metric};
use crate::models::Classifier;

/// Loss and quality of a model on a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub loss: f64,
    pub accuracy: f64,
    /// Matthews correlation (binary tasks only).
    pub mcc: Option<f64>,
    /// F1 of class 1 (binary tasks only).
    pub f1: Option<f64>,
}

impl Metrics {
    /// The value of `metric` (NaN when it does not apply).
    pub fn score(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Accuracy => Some(self.accuracy),
            Metric::Mcc => self.mcc,
            Metric::F1 => self.f1,
        }
        .unwrap_or(f64::NAN)
    }

    /// Metrics of `predictions` against `labels` with `loss` the mean cross-entropy.
    pub fn from_predictions(
        predictions: &[Label],
        labels: &[Label],
        classes: usize,
        loss: f64,
    ) -> Metrics {
        let n = labels.len().max(1) as f64;
        let correct = predictions
            .iter()
            .zip(labels)
            .filter(|(p, l)| p == l)
            .count();
        let (mut tp, mut tn, mut fp, mut fn_) = (0f64, 0f64, 0f64, 0f64);
        for (&p, &l) in predictions.iter().zip(labels) {
            match (p == 1, l == 1) {
                (true, true) => tp += 1.0,
                (false, false) => tn += 1.0,
                (true, false) => fp += 1.0,
                (false, true) => fn_ += 1.0,
            }
        }
        let binary = classes == 2;
        let denominator = ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt();
        let mcc = if denominator > 0.0 {
            (tp * tn - fp * fn_) / denominator
        } else {
            0.0
        };
        let f1 = if tp > 0.0 {
            2.0 * tp / (2.0 * tp + fp + fn_)
        } else {
            0.0
        };
        Metrics {
            loss,
            accuracy: correct as f64 / n,
            mcc: binary.then_some(mcc),
            f1: binary.then_some(f1),
        }
    }
}

/// The trivial reference of a task: the class most frequent in `train` (the smaller label on
/// a tie) and the metrics of predicting it for every example of `test` (loss NaN: a constant
/// prediction has no probabilities).
pub fn majority_class(train: &Examples, test: &Examples) -> (Label, Metrics) {
    let classes = train.num_classes().max(test.num_classes());
    let mut counts = vec![0usize; classes];
    for &label in train.labels() {
        counts[label as usize] += 1;
    }
    let class = (0..classes)
        .max_by(|&a, &b| counts[a].cmp(&counts[b]).then(b.cmp(&a)))
        .unwrap_or(0) as Label;
    let predictions = vec![class; test.len()];
    (
        class,
        Metrics::from_predictions(&predictions, test.labels(), classes, f64::NAN),
    )
}

/// Evaluates `model` in eval mode (mean kernels) on all of `data`, `batch` examples at a time.
pub fn evaluate<B: Backend, M: Classifier<B>>(
    model: &M,
    data: &Examples,
    batch: usize,
    device: &B::Device,
) -> Metrics {
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut loss_sum = 0.0f64;
    let mut predictions = Vec::with_capacity(data.len());
    for chunk in indices.chunks(batch.max(1)) {
        let (inputs, labels) = data.batch::<B>(chunk, device);
        let logits = model.forward(inputs, None);
        let loss: f32 = loss_fn.forward(logits.clone(), labels).into_scalar().elem();
        loss_sum += loss as f64 * chunk.len() as f64;
        let predicted: Vec<i64> = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .to_vec()
            .expect("integer predictions");
        predictions.extend(predicted.into_iter().map(|p| p as Label));
    }
    Metrics::from_predictions(
        &predictions,
        data.labels(),
        data.num_classes(),
        loss_sum / data.len().max(1) as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_metrics_match_hand_computation() {
        // tp = 2, tn = 1, fp = 1, fn = 1
        let m = Metrics::from_predictions(&[1, 1, 0, 1, 0], &[1, 1, 0, 0, 1], 2, 0.5);
        assert!((m.accuracy - 0.6).abs() < 1e-12);
        assert!((m.f1.unwrap() - 4.0 / 6.0).abs() < 1e-12);
        let mcc = (2.0 * 1.0 - 1.0 * 1.0) / ((3.0f64) * 3.0 * 2.0 * 2.0).sqrt();
        assert!((m.mcc.unwrap() - mcc).abs() < 1e-12);
        assert_eq!(m.score(Metric::Mcc), m.mcc.unwrap());
        let constant = Metrics::from_predictions(&[1, 1, 1], &[1, 0, 1], 2, 0.0);
        assert_eq!(constant.mcc, Some(0.0), "MCC of a constant predictor is 0");
        let multi = Metrics::from_predictions(&[3, 1], &[3, 2], 10, 0.0);
        assert_eq!((multi.mcc, multi.f1), (None, None));
        assert!(multi.score(Metric::F1).is_nan());
    }

    fn text(labels: &[Label]) -> Examples {
        Examples::Text(crate::data::TextDataset {
            ids: vec![2; labels.len()],
            lengths: vec![1; labels.len()],
            second: vec![1; labels.len()],
            max_len: 1,
            labels: labels.to_vec(),
            num_classes: 2,
            vocab: 3,
        })
    }

    #[test]
    fn the_majority_class_reference_predicts_the_training_sets_commonest_label() {
        // Train: three 1s, two 0s; test: tp = 2, fp = 2 for "always 1".
        let (class, m) = majority_class(&text(&[1, 0, 1, 1, 0]), &text(&[1, 0, 0, 1]));
        assert_eq!(class, 1);
        assert_eq!(m.accuracy, 0.5);
        assert_eq!(m.mcc, Some(0.0), "a constant prediction has MCC 0");
        assert!((m.f1.unwrap() - 2.0 * 2.0 / (2.0 * 2.0 + 2.0)).abs() < 1e-12);
        assert!(m.loss.is_nan());
        // A tie goes to the smaller label; "always 0" has F1 0.
        let (class, m) = majority_class(&text(&[1, 0]), &text(&[1, 0, 0]));
        assert_eq!((class, m.f1), (0, Some(0.0)));
        assert!((m.accuracy - 2.0 / 3.0).abs() < 1e-12);
    }
}
