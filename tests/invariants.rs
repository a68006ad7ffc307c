//! The invariants docs/METHODS.md requires of majority kernels ("Majority kernels":
//! identities), checked through the real methods on a slice of real MNIST (the committed
//! fixture):
//! - uniform mixing, identical init, no compensation, momentum SGD with weight decay is
//!   step-for-step the baseline at learning rate lr/k (weight decay k·wd), i.e. `lr_over_k`,
//!   for a model without biases (a bias is not copied, so it keeps the full learning rate);
//! - the same with `lr_compensation: auto` is step-for-step the baseline itself.

use burn::backend::Autodiff;
use indicatif::ProgressBar;
use majority_kernels::backend::DefaultCpu;
use majority_kernels::data::{self, Examples};
use majority_kernels::methods::baseline::Baseline;
use majority_kernels::methods::lr_over_k::LrOverK;
use majority_kernels::methods::mk::{LrCompensation, MajorityKernels};
use majority_kernels::methods::{Method, MethodContext, MethodOutput};
use majority_kernels::mk::{Mixing, MkInit};
use majority_kernels::models::{Dense, Model, ModelSpec};
use majority_kernels::train::{
    CheckpointDir, OptimizerSpec, Recipe, ScheduleKind, ScheduleSpec, TrainData,
};

type B = Autodiff<DefaultCpu>;

fn mnist_slice() -> (Examples, Examples) {
    let splits = data::load("mnist", &[data::test_data()], &Default::default()).unwrap();
    (splits.train.subset(320, 1), splits.test.subset(200, 2))
}

fn recipe() -> Recipe {
    Recipe {
        epochs: 2,
        batch_size: 32,
        optimizer: OptimizerSpec::Sgd {
            lr: 0.05,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.001,
        },
        schedule: ScheduleSpec {
            kind: ScheduleKind::Cosine,
            ..Default::default()
        },
        validation: None,
        train_subset: None,
        test_subset: None,
        eval_train_subset: None,
        augment: None,
        label_smoothing: 0.0,
        eval_every: 1,
    }
}

fn run(
    method: &impl Method,
    bias: bool,
    recipe: &Recipe,
    train: &Examples,
    test: &Examples,
) -> MethodOutput<B> {
    run_checkpointed(method, bias, recipe, train, test, None)
}

fn run_checkpointed(
    method: &impl Method,
    bias: bool,
    recipe: &Recipe,
    train: &Examples,
    test: &Examples,
    checkpoint: Option<CheckpointDir>,
) -> MethodOutput<B> {
    let progress = ProgressBar::hidden();
    let model = ModelSpec::Mlp {
        hidden: vec![48, 24],
        bias,
    };
    let ctx = MethodContext::<B> {
        data: TrainData {
            train,
            train_eval: test,
            validation: None,
            test,
        },
        model: &model,
        recipe,
        k: 4,
        seed: 3,
        device: &Default::default(),
        progress: &progress,
        checkpoint,
        models: None,
        data_fingerprint: "test",
    };
    method.run::<B>(&ctx).unwrap()
}

fn deployed_weights(out: MethodOutput<B>) -> Vec<Vec<f32>> {
    let Model::Mlp(deployed) = out.deployed else {
        panic!("an MLP experiment deploys an MLP")
    };
    deployed
        .layers
        .iter()
        .flat_map(|l| {
            let Dense::Plain(l) = l else {
                panic!("a deployed MLP has plain layers")
            };
            let bias = l
                .bias
                .as_ref()
                .map(|b| b.val().into_data().to_vec().unwrap());
            std::iter::once(l.weight.val().into_data().to_vec().unwrap()).chain(bias)
        })
        .collect()
}

fn weights(
    method: &impl Method,
    bias: bool,
    recipe: &Recipe,
    train: &Examples,
    test: &Examples,
) -> Vec<Vec<f32>> {
    let out = run(method, bias, recipe, train, test);
    assert_eq!(out.log.steps, 20);
    deployed_weights(out)
}

fn assert_close(a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
    let mut worst = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        for (u, v) in x.iter().zip(y) {
            worst = worst.max((u - v).abs() / (1e-3 + v.abs()));
        }
    }
    assert!(worst < 1e-3, "{what}: worst relative difference {worst}");
}

fn uniform_mk(lr_compensation: LrCompensation) -> MajorityKernels {
    MajorityKernels {
        mixing: Mixing::Uniform,
        init: MkInit::Identical,
        lr_compensation,
        bn_recalibration: 0,
    }
}

#[test]
fn uniform_mk_without_compensation_is_the_lr_over_k_baseline() {
    let (train, test) = mnist_slice();
    let recipe = recipe();
    let mk = weights(
        &uniform_mk(LrCompensation::None),
        false,
        &recipe,
        &train,
        &test,
    );
    let reference = weights(&LrOverK {}, false, &recipe, &train, &test);
    assert_close(&mk, &reference, "uniform MK (none) vs lr_over_k");
    // And the comparison can fail: the plain baseline moved differently.
    let baseline = weights(&Baseline {}, false, &recipe, &train, &test);
    let moved = mk
        .iter()
        .zip(&baseline)
        .any(|(a, b)| a.iter().zip(b).any(|(u, v)| (u - v).abs() > 1e-3));
    assert!(moved, "lr/k training should differ from the baseline");
}

#[test]
fn uniform_mk_with_auto_compensation_is_the_baseline() {
    let (train, test) = mnist_slice();
    let recipe = recipe();
    for bias in [true, false] {
        let mk = weights(
            &uniform_mk(LrCompensation::Auto),
            bias,
            &recipe,
            &train,
            &test,
        );
        let baseline = weights(&Baseline {}, bias, &recipe, &train, &test);
        assert_close(
            &mk,
            &baseline,
            &format!("uniform MK (auto) vs baseline, bias {bias}"),
        );
    }
}

#[test]
fn evaluating_less_often_keeps_the_training_and_the_last_epochs_numbers() {
    let (train, test) = mnist_slice();
    let every = Recipe {
        epochs: 3,
        ..recipe()
    };
    let sparse = Recipe {
        eval_every: 2,
        ..every.clone()
    };
    let dense = run(&Baseline {}, true, &every, &train, &test);
    let thin = run(&Baseline {}, true, &sparse, &train, &test);
    let epochs = |out: &MethodOutput<B>| out.log.points.iter().map(|p| p.epoch).collect::<Vec<_>>();
    assert_eq!(epochs(&dense), [1, 2, 3]);
    // Every second epoch, and always the last.
    assert_eq!(epochs(&thin), [2, 3]);
    let (last_dense, last_thin) = (dense.log.points[2].clone(), thin.log.points[1].clone());
    assert_eq!(last_dense.test.accuracy, last_thin.test.accuracy);
    assert_eq!(last_dense.train.accuracy, last_thin.train.accuracy);
    assert_eq!(dense.log.steps, thin.log.steps);
    assert_eq!(deployed_weights(dense), deployed_weights(thin));
}

#[test]
fn a_run_resumed_after_an_epoch_it_did_not_evaluate_keeps_its_curve_and_weights() {
    let (train, test) = mnist_slice();
    let recipe = Recipe {
        epochs: 4,
        eval_every: 2,
        ..recipe()
    };
    let whole = run(&Baseline {}, true, &recipe, &train, &test);
    // Checkpoints every 3 epochs: the run leaves epoch 3's (not evaluated) behind; a second
    // run resumes after it and trains epoch 4 only.
    let tmp = tempfile::tempdir().unwrap();
    let checkpoints = CheckpointDir {
        dir: tmp.path().to_path_buf(),
        every_epochs: 3,
        clock: None,
    };
    run_checkpointed(
        &Baseline {},
        true,
        &recipe,
        &train,
        &test,
        Some(checkpoints.clone()),
    );
    let resumed = run_checkpointed(
        &Baseline {},
        true,
        &recipe,
        &train,
        &test,
        Some(checkpoints),
    );
    assert_eq!(resumed.log.resumed_after_epoch, 3);
    let epochs = |out: &MethodOutput<B>| out.log.points.iter().map(|p| p.epoch).collect::<Vec<_>>();
    assert_eq!(epochs(&whole), [2, 4]);
    assert_eq!(epochs(&resumed), [2, 4]);
    assert_eq!(
        whole.log.points[1].test.accuracy,
        resumed.log.points[1].test.accuracy
    );
    assert_eq!(deployed_weights(whole), deployed_weights(resumed));
}
