//! The training step's work around the forward/backward pass, for any model: mix every
//! majority kernel's copies before it ([`KernelMixer`]), and update every parameter after it
//! (MK copies from their kernel gradients, all others from their own gradients) with one fused
//! optimiser ([`CopyOptimizer`]).

use std::path::Path;

use burn::module::{AutodiffModule, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::error::Result;
use crate::mk::{KernelMixer, MixedKernels};
use crate::optim::{CopyOptimizer, OptimizerSpec};

type Inner<B> = <B as AutodiffBackend>::InnerBackend;

/// Mixes the copies of the MK parameters of a model and updates all its parameters.
pub struct MkStep<B: AutodiffBackend> {
    mixer: KernelMixer,
    /// Factor on the MK copies' gradients (learning-rate compensation).
    grad_scale: f32,
    optimizer: CopyOptimizer<Inner<B>>,
    /// The next step's kernels, mixed by the last update from the coefficients it was given
    /// (see [`MkStep::update_mixing_ahead`]).
    ahead: Option<MixedAhead<B>>,
}

/// Kernels mixed inside an update, for the step whose coefficients are `p`.
struct MixedAhead<B: AutodiffBackend> {
    p: Vec<f32>,
    /// `[1, n]` values per MK parameter, in row order.
    kernels: Vec<Vec<f32>>,
    device: burn::tensor::Device<Inner<B>>,
}

impl<B: AutodiffBackend> MkStep<B> {
    /// For the copies `ids` (in the order of the rows of every step's `p`; empty for a plain
    /// model), updated by the optimiser `spec` with the copies' gradients multiplied by
    /// `grad_scale`.
    pub fn new(ids: Vec<ParamId>, spec: &OptimizerSpec, grad_scale: f32) -> Self {
        Self {
            mixer: KernelMixer::new(ids),
            grad_scale,
            optimizer: CopyOptimizer::new(spec),
            ahead: None,
        }
    }

    /// Always mixes and updates with tensor operations, as on a GPU backend.
    pub fn tensor_path_only(mut self) -> Self {
        self.optimizer = self.optimizer.tensor_path_only();
        self.mixer = self.mixer.tensor_path_only();
        self
    }

    /// The ids this step mixes, in row order.
    pub fn ids(&self) -> &[ParamId] {
        self.mixer.ids()
    }

    /// The step's kernels: row l of `p` (`[layers, k]`) mixes the copies `ids[l]`. Taken from
    /// the last update when it mixed them ahead with these very coefficients (the same
    /// values), else mixed now. Kernels mixed ahead are of the copies that update wrote: a
    /// caller that changes the copies in between must call [`MkStep::mix_now`].
    pub fn mix<M: Module<B>>(&mut self, model: &M, p: &[f32]) -> MixedKernels<B> {
        match self.ahead.take() {
            Some(ahead) if ahead.p == p => {
                MixedKernels::from_host(self.mixer.ids(), ahead.kernels, &ahead.device)
            }
            _ => self.mixer.mix(model, p),
        }
    }

    /// The step's kernels, always mixed now (a side computation that leaves a kernel mixed
    /// ahead in place, e.g. adversarial mixing's extra gradient).
    pub fn mix_now<M: Module<B>>(&self, model: &M, p: &[f32]) -> MixedKernels<B> {
        self.mixer.mix(model, p)
    }

    /// `dL/dp` (`[layers, k]`, row-major) for the kernels of a backward pass.
    pub fn mixing_gradient<M: Module<B>>(
        &self,
        model: &M,
        kernels: &MixedKernels<B>,
        grads: &B::Gradients,
    ) -> Vec<f32> {
        self.mixer.mixing_gradient(model, kernels, grads)
    }

    /// The kernel gradients of a backward pass, taken before the gradients are handed to the
    /// optimiser.
    pub fn kernel_gradients(
        &self,
        kernels: &MixedKernels<B>,
        grads: &B::Gradients,
    ) -> Vec<Tensor<Inner<B>, 2>> {
        self.mixer.kernel_gradients(kernels, grads)
    }

    /// Updates every parameter: each MK layer's copies from its kernel gradient and its row
    /// of `p`, every other parameter with a gradient in `grads` from that gradient.
    pub fn update<M: AutodiffModule<B>>(
        &mut self,
        model: M,
        kernel_gradients: Vec<Tensor<Inner<B>, 2>>,
        p: &[f32],
        grads: GradientsParams,
        lr: f64,
    ) -> M {
        self.update_mixing_ahead(model, kernel_gradients, p, grads, lr, None)
    }

    /// [`MkStep::update`], which also mixes the next step's kernels with its coefficients
    /// `next` (`[layers, k]`) inside the update pass, while the copies are in cache (CPU
    /// backend): the next [`MkStep::mix`] with the same coefficients then reads no copy. The
    /// caller must draw `next` before this update without looking at the model.
    pub fn update_mixing_ahead<M: AutodiffModule<B>>(
        &mut self,
        model: M,
        kernel_gradients: Vec<Tensor<Inner<B>, 2>>,
        p: &[f32],
        grads: GradientsParams,
        lr: f64,
        next: Option<&[f32]>,
    ) -> M {
        struct Update<'a, B: AutodiffBackend> {
            ids: &'a [ParamId],
            kernel_gradients: Vec<Option<Tensor<Inner<B>, 2>>>,
            p: &'a [f32],
            next: Option<&'a [f32]>,
            mixed: Vec<Option<Vec<f32>>>,
            device: Option<burn::tensor::Device<Inner<B>>>,
            grads: GradientsParams,
            grad_scale: f32,
            lr: f64,
            optimizer: &'a mut CopyOptimizer<Inner<B>>,
        }
        impl<B: AutodiffBackend> ModuleMapper<B> for Update<'_, B> {
            fn map_float<const D: usize>(
                &mut self,
                param: Param<Tensor<B, D>>,
            ) -> Param<Tensor<B, D>> {
                let row = self.ids.iter().position(|id| *id == param.id);
                let (gradient, p, scale, next) = match row {
                    Some(row) => {
                        let k = param.dims()[0];
                        let gradient = self.kernel_gradients[row]
                            .take()
                            .expect("one gradient per MK parameter");
                        let next = self.next.map(|next| &next[row * k..(row + 1) * k]);
                        let p = &self.p[row * k..(row + 1) * k];
                        (gradient, p, self.grad_scale, next)
                    }
                    None => match self.grads.remove::<Inner<B>, D>(param.id) {
                        Some(g) => (g.reshape([1, -1]), &[1.0f32][..], 1.0, None),
                        None => return param,
                    },
                };
                let (id, tensor, mapper) = param.consume();
                let dims = tensor.dims();
                let flat = tensor.inner().reshape([p.len() as i64, -1]);
                self.device.get_or_insert_with(|| flat.device());
                let (updated, mixed) = self
                    .optimizer
                    .step_mixing_ahead(self.lr, id, flat, gradient, p, scale, next);
                if let Some(row) = row {
                    self.mixed[row] = mixed;
                }
                let tensor = Tensor::<B, D>::from_inner(updated.reshape(dims)).require_grad();
                Param::from_mapped_value(id, tensor, mapper)
            }
        }
        assert_eq!(
            kernel_gradients.len(),
            self.mixer.ids().len(),
            "one gradient per layer"
        );
        let layers = self.mixer.ids().len();
        if let Some(next) = next {
            assert_eq!(next.len(), p.len(), "one next coefficient per coefficient");
        }
        self.ahead = None;
        let mut update = Update::<B> {
            ids: self.mixer.ids(),
            kernel_gradients: kernel_gradients.into_iter().map(Some).collect(),
            p,
            next,
            mixed: vec![None; layers],
            device: None,
            grads,
            grad_scale: self.grad_scale,
            lr,
            optimizer: &mut self.optimizer,
        };
        let model = model.map(&mut update);
        let (mixed, device) = (update.mixed, update.device);
        // Kept only when every kernel was mixed (the CPU path); else the next step mixes.
        if let (Some(next), Some(device), Some(kernels)) =
            (next, device, mixed.into_iter().collect::<Option<Vec<_>>>())
        {
            self.ahead = Some(MixedAhead {
                p: next.to_vec(),
                kernels,
                device,
            });
        }
        model
    }

    /// Saves the optimiser state (see [`CopyOptimizer::save`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.optimizer.save(path)
    }

    /// Loads the state [`MkStep::save`] wrote.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        self.optimizer.load(path)
    }
}

#[cfg(test)]
impl<B: AutodiffBackend> MkStep<B> {
    /// For tests that only mix (plain SGD, no gradient scaling).
    pub(crate) fn for_mixing(ids: Vec<ParamId>) -> Self {
        Self::new(
            ids,
            &OptimizerSpec::Sgd {
                lr: 0.1,
                momentum: 0.0,
                nesterov: false,
                weight_decay: 0.0,
            },
            1.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::TestAutodiffBackend as B;
    use crate::data::{self, test_data};
    use crate::mk::{Mixing, MkInit};
    use crate::models::{Classifier, Inputs, ModelSpec, ResNetSpec};
    use crate::train::{Stream, stream_rng};
    use burn::module::ModuleVisitor;
    use burn::nn::loss::CrossEntropyLossConfig;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    // The reference optimisers: burn's own, through its `Optimizer` adaptor.
    use burn::optim::adaptor::OptimizerAdaptor;
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::{Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, Sgd, SgdConfig};

    /// One of the optimisers a recipe can name, for any model type.
    #[derive(Clone)]
    enum AnyOptimizer<M: AutodiffModule<B>, B: AutodiffBackend> {
        Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M, B>),
        Adam(OptimizerAdaptor<Adam, M, B>),
        AdamW(OptimizerAdaptor<AdamW, M, B>),
    }

    impl<M: AutodiffModule<B>, B: AutodiffBackend> AnyOptimizer<M, B> {
        /// The optimiser `spec` describes (the learning rate is given at each step).
        fn new(spec: &OptimizerSpec) -> Self {
            let decay = |wd: f64| (wd > 0.0).then(|| WeightDecayConfig::new(wd as f32));
            match *spec {
                OptimizerSpec::Sgd {
                    momentum,
                    nesterov,
                    weight_decay,
                    ..
                } => {
                    let momentum = (momentum > 0.0).then_some(MomentumConfig {
                        momentum,
                        dampening: 0.0,
                        nesterov,
                    });
                    let config = SgdConfig::new()
                        .with_momentum(momentum)
                        .with_weight_decay(decay(weight_decay));
                    AnyOptimizer::Sgd(config.init())
                }
                OptimizerSpec::Adam {
                    beta1,
                    beta2,
                    epsilon,
                    weight_decay,
                    ..
                } => {
                    let config = AdamConfig::new()
                        .with_beta_1(beta1 as f32)
                        .with_beta_2(beta2 as f32)
                        .with_epsilon(epsilon as f32)
                        .with_weight_decay(decay(weight_decay));
                    AnyOptimizer::Adam(config.init())
                }
                OptimizerSpec::AdamW {
                    beta1,
                    beta2,
                    epsilon,
                    weight_decay,
                    ..
                } => {
                    let config = AdamWConfig::new()
                        .with_beta_1(beta1 as f32)
                        .with_beta_2(beta2 as f32)
                        .with_epsilon(epsilon as f32)
                        .with_weight_decay(weight_decay as f32);
                    AnyOptimizer::AdamW(config.init())
                }
            }
        }

        /// One update of `module` with learning rate `lr`.
        fn step(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
            match self {
                AnyOptimizer::Sgd(o) => o.step(lr, module, grads),
                AnyOptimizer::Adam(o) => o.step(lr, module, grads),
                AnyOptimizer::AdamW(o) => o.step(lr, module, grads),
            }
        }
    }

    /// Multiplies the gradients of the parameters `ids` by `factor`.
    ///
    /// Under (momentum) SGD, scaling a parameter's gradient by k while the optimiser adds
    /// `wd * theta` is exactly a k-times larger learning rate with a k-times smaller weight decay:
    /// `lr * (k g + wd theta) = (k lr) * (g + (wd / k) theta)`. That is MK's `auto` compensation,
    /// which [`CopyOptimizer`] applies inside its fused update; this is the reference version.
    fn scale_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
        module: &M,
        grads: &mut GradientsParams,
        ids: &[ParamId],
        factor: f32,
    ) {
        struct Scaler<'a> {
            grads: &'a mut GradientsParams,
            ids: &'a [ParamId],
            factor: f32,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Scaler<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if self.ids.contains(&param.id)
                    && let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id)
                {
                    self.grads.register(param.id, g.mul_scalar(self.factor));
                }
            }
        }
        module.visit(&mut Scaler { grads, ids, factor });
    }

    #[allow(clippy::too_many_arguments)]
    /// The reference: burn's optimiser on the copies, differentiating through
    /// `W = sum_i p_i theta_i` (the textbook MK step).
    fn reference_step<M: Classifier<B> + AutodiffModule<B>>(
        model: M,
        ids: &[ParamId],
        inputs: Inputs<B>,
        labels: Tensor<B, 1, Int>,
        p: &[f32],
        spec: &OptimizerSpec,
        optimizer: &mut AnyOptimizer<M, B>,
        grad_scale: f32,
    ) -> M {
        // Kernels mixed inside the graph: the copies themselves receive p_i * G.
        struct Graph<'a> {
            ids: &'a [ParamId],
            p: &'a [f32],
            kernels: std::collections::HashMap<ParamId, Tensor<B, 2>>,
        }
        impl ModuleVisitor<B> for Graph<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if let Some(row) = self.ids.iter().position(|id| *id == param.id) {
                    let theta = param.val();
                    let k = theta.dims()[0];
                    let p = Tensor::<B, 2>::from_data(
                        TensorData::new(self.p[row * k..(row + 1) * k].to_vec(), [1, k]),
                        &theta.device(),
                    );
                    self.kernels
                        .insert(param.id, p.matmul(theta.reshape([k as i64, -1])));
                }
            }
        }
        let mut graph = Graph {
            ids,
            p,
            kernels: Default::default(),
        };
        model.visit(&mut graph);
        let kernels = MixedKernels::from_map(graph.kernels);
        let device = labels.device();
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(model.forward(inputs, Some(&kernels)), labels);
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        scale_gradients(&model, &mut grads, ids, grad_scale);
        optimizer.step(spec.lr(), model, grads)
    }

    fn fused_step<M: Classifier<B> + AutodiffModule<B>>(
        model: M,
        mk: &mut MkStep<B>,
        inputs: Inputs<B>,
        labels: Tensor<B, 1, Int>,
        p: &[f32],
        spec: &OptimizerSpec,
    ) -> M {
        let kernels = mk.mix(&model, p);
        let device = labels.device();
        let loss = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(model.forward(inputs, Some(&kernels)), labels);
        let grads = loss.backward();
        let gradients = mk.kernel_gradients(&kernels, &grads);
        let grads = GradientsParams::from_grads(grads, &model);
        mk.update(model, gradients, p, grads, spec.lr())
    }

    fn flat_params<M: Module<B>>(model: &M) -> Vec<f32> {
        struct All(Vec<f32>);
        impl ModuleVisitor<B> for All {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                self.0
                    .extend(param.val().into_data().to_vec::<f32>().expect("f32"));
            }
        }
        let mut all = All(Vec::new());
        model.visit(&mut all);
        all.0
    }

    /// An update given the next step's coefficients leaves that step's kernels mixed, equal
    /// bit for bit to mixing the updated copies afterwards; `mix` takes them only for those
    /// very coefficients, and the tensor path (GPU backends) mixes ahead nothing.
    #[test]
    fn kernels_mixed_ahead_are_the_kernels_mixed_after_the_update() {
        let splits = data::load("mnist", &[test_data()], &data::LoadOptions::default()).unwrap();
        let train = splits.train.subset(8, 0);
        let device = Default::default();
        let spec = OptimizerSpec::Sgd {
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
        };
        let small = ModelSpec::Mlp {
            hidden: vec![16],
            bias: true,
        }
        .build::<B>(&train, &mut stream_rng(0, Stream::Init), &device);
        let (k, mut rng) = (4, StdRng::seed_from_u64(3));
        let model = small.to_mk(k, MkInit::Independent, &mut rng);
        let ids = model.mk_kernel_ids();
        let kernel_values = |kernels: &MixedKernels<B>| -> Vec<Vec<f32>> {
            ids.iter()
                .map(|id| kernels.get(*id).into_data().to_vec().unwrap())
                .collect()
        };
        for tensor_path in [false, true] {
            let mut mk = MkStep::<B>::new(ids.clone(), &spec, 1.0);
            if tensor_path {
                mk = mk.tensor_path_only();
            }
            let p = Mixing::default().draw_all(ids.len(), k, &mut rng);
            let next = Mixing::default().draw_all(ids.len(), k, &mut rng);
            let (inputs, labels) = train.batch::<B>(&[0, 1, 2, 3], &device);
            let kernels = mk.mix(&model, &p);
            let loss = CrossEntropyLossConfig::new()
                .init(&device)
                .forward(model.clone().forward(inputs, Some(&kernels)), labels);
            let grads = loss.backward();
            let gradients = mk.kernel_gradients(&kernels, &grads);
            let grads = GradientsParams::from_grads(grads, &model);
            let model =
                mk.update_mixing_ahead(model.clone(), gradients, &p, grads, 0.1, Some(&next));
            assert_eq!(
                mk.ahead.is_some(),
                !tensor_path,
                "mixed ahead on the host only"
            );
            let after = kernel_values(&mk.mix_now(&model, &next));
            assert!(
                mk.ahead.is_some() != tensor_path,
                "mix_now leaves it in place"
            );
            assert_eq!(kernel_values(&mk.mix(&model, &next)), after);
            assert!(mk.ahead.is_none(), "taken by the step it was mixed for");
            if !tensor_path {
                // Other coefficients than the ones mixed ahead: mixed now.
                let grads = GradientsParams::new();
                let zero = ids
                    .iter()
                    .map(|id| kernels.get(*id).inner().zeros_like())
                    .collect();
                let model = mk.update_mixing_ahead(model, zero, &p, grads, 0.0, Some(&next));
                assert!(mk.ahead.is_some());
                assert_eq!(
                    kernel_values(&mk.mix(&model, &p)),
                    kernel_values(&mk.mix_now(&model, &p))
                );
                assert!(mk.ahead.is_none(), "dropped when not used");
            }
        }
    }

    /// Three steps of the fused MK update give the parameters (copies and everything else)
    /// that burn's own optimiser gives when differentiating through the mixture, for every
    /// optimiser, on an MLP (dense kernels) and a ResNet (convolutions).
    #[test]
    fn fused_update_matches_differentiating_through_the_mixture() {
        let splits = data::load("mnist", &[test_data()], &data::LoadOptions::default()).unwrap();
        let train = splits.train.subset(16, 0);
        let resnet = ModelSpec::Resnet(ResNetSpec {
            arch: None,
            blocks: Some(vec![1, 1]),
            widths: Some(vec![4, 8]),
            stem: Default::default(),
        });
        let mlp = ModelSpec::Mlp {
            hidden: vec![16],
            bias: true,
        };
        let specs = [
            OptimizerSpec::Sgd {
                lr: 0.1,
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.05,
            },
            OptimizerSpec::Sgd {
                lr: 0.1,
                momentum: 0.9,
                nesterov: true,
                weight_decay: 0.0,
            },
            OptimizerSpec::Sgd {
                lr: 0.1,
                momentum: 0.0,
                nesterov: false,
                weight_decay: 1e-3,
            },
            OptimizerSpec::Adam {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.1,
            },
            OptimizerSpec::AdamW {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.999,
                epsilon: 1e-8,
                weight_decay: 0.5,
            },
        ];
        let device = Default::default();
        for model_spec in [&mlp, &resnet] {
            for spec in &specs {
                let small =
                    model_spec.build::<B>(&train, &mut stream_rng(0, Stream::Init), &device);
                let k = 3;
                let mk_model = small.to_mk(k, MkInit::Independent, &mut StdRng::seed_from_u64(1));
                // The plain model too: every parameter goes through the fused optimiser.
                for model in [small, mk_model] {
                    let ids = model.mk_kernel_ids();
                    let grad_scale = 2.0;
                    for tensor_path in [false, true] {
                        let mut mk = MkStep::<B>::new(ids.clone(), spec, grad_scale);
                        if tensor_path {
                            mk = mk.tensor_path_only();
                        }
                        let (mut reference, mut fused) = (model.clone(), model.clone());
                        let mut reference_opt = AnyOptimizer::new(spec);
                        let mut rng = StdRng::seed_from_u64(2);
                        for step in 0..3 {
                            let (inputs, labels) =
                                train.batch::<B>(&[step * 4, step * 4 + 1, step * 4 + 2], &device);
                            let p = Mixing::default().draw_all(ids.len(), k, &mut rng);
                            reference = reference_step(
                                reference,
                                &ids,
                                inputs.clone(),
                                labels.clone(),
                                &p,
                                spec,
                                &mut reference_opt,
                                grad_scale,
                            );
                            fused = fused_step(fused, &mut mk, inputs, labels, &p, spec);
                        }
                        let (a, b) = (flat_params(&reference), flat_params(&fused));
                        assert_eq!(a.len(), b.len());
                        let worst = a
                            .iter()
                            .zip(&b)
                            .map(|(x, y)| (x - y).abs() / (1e-3 + x.abs()))
                            .fold(0.0f32, f32::max);
                        // Float summation order differs (Adam's normalisation amplifies it where a
                        // gradient is tiny); a wrong formula or decay is off by a whole update (~1e-2).
                        assert!(
                            worst < 1e-3,
                            "{} (MK layers: {}) with {spec:?} (tensor path: {tensor_path}): relative difference {worst}",
                            model_spec.label(&train),
                            ids.len()
                        );
                    }
                }
            }
        }
    }
}
