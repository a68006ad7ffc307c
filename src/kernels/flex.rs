//! The `flex` side of [`super`]: generic tensors recognised as `Flex` or `Autodiff<Flex>`
//! tensors (by type, at run time), the kernels run on their host buffers, and the autodiff
//! graph given our own backward steps.

use std::any::{Any, TypeId};

use burn::backend::Autodiff;
use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::prelude::*;
use burn::tensor::{DType, TensorPrimitive};
use burn_flex::FlexTensor;

use super::batch_norm::{self as bn, BnShape};
use super::conv::{self, ConvShape, Wanted};
use super::gelu as gelu_kernel;

type AdFlex = Autodiff<Flex>;
type AdTensor = burn::tensor::ops::FloatTensor<AdFlex>;

/// Registers `$output` as the result of `$op` on `$parents` (an array of `N` autodiff
/// nodes), keeping `$state` for the backward step when any parent needs a gradient. A macro
/// because the nodes' type is not nameable outside burn-autodiff.
macro_rules! track {
    ($op:expr, $n:literal, $parents:expr, $state:expr, $output:expr) => {
        match Backward::<Flex, $n>::prepare::<NoCheckpointing>($op, $parents)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish($state, $output),
            OpsKind::UnTracked(prep) => prep.finish($output),
        }
    };
}

/// Which of the two recognised backends `B` is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Autodiff,
}

fn kind<B: Backend>() -> Option<Kind> {
    let id = TypeId::of::<B>();
    if id == TypeId::of::<Flex>() {
        Some(Kind::Plain)
    } else if id == TypeId::of::<AdFlex>() {
        Some(Kind::Autodiff)
    } else {
        None
    }
}

/// `value` as type `T`; only called where `TypeId`s proved the types equal.
fn cast<T: 'static>(value: impl Any) -> T {
    *(Box::new(value) as Box<dyn Any>)
        .downcast::<T>()
        .unwrap_or_else(|_| unreachable!("the backend's type was checked"))
}

fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> B::FloatTensorPrimitive {
    match tensor.into_primitive() {
        TensorPrimitive::Float(p) => p,
        TensorPrimitive::QFloat(_) => unreachable!("only f32 tensors reach the kernels"),
    }
}

fn from_primitive<B: Backend, const D: usize>(p: impl Any) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast::<B::FloatTensorPrimitive>(p)))
}

/// A contiguous f32 buffer (a copy only when the layout is not already one).
fn contiguous(tensor: FlexTensor) -> FlexTensor {
    let numel = tensor.layout().num_elements();
    let plain = tensor.layout().contiguous_offsets() == Some((0, numel))
        && tensor.bytes().len() == numel * 4;
    if plain {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

fn flex_tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// Whether every tensor is f32 (the kernels' only type).
fn all_f32<B: Backend>(
    x: &Tensor<B, 4>,
    weight: &Tensor<B, 4>,
    bias: &Option<Tensor<B, 1>>,
) -> bool {
    x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.as_ref().is_none_or(|b| b.dtype() == DType::F32)
}

type ConvInputs<B> = (Tensor<B, 4>, Tensor<B, 4>, Option<Tensor<B, 1>>);

/// The convolution through [`conv`], or the inputs back when `B` is not a flex backend.
pub fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    shape: ConvShape,
) -> Result<Tensor<B, 4>, ConvInputs<B>> {
    let Some(kind) = kind::<B>() else {
        return Err((x, weight, bias));
    };
    if !all_f32(&x, &weight, &bias) {
        return Err((x, weight, bias));
    }
    let out_shape = [shape.n, shape.o, shape.oh, shape.ow];
    match kind {
        Kind::Plain => {
            let x = contiguous(cast::<FlexTensor>(primitive(x)));
            let w = contiguous(cast::<FlexTensor>(primitive(weight)));
            let b = bias.map(|b| contiguous(cast::<FlexTensor>(primitive(b))));
            let y = conv::forward(
                &shape,
                x.storage(),
                w.storage(),
                b.as_ref().map(|b| b.storage()),
            );
            Ok(from_primitive::<B, 4>(flex_tensor(y, out_shape)))
        }
        Kind::Autodiff => {
            let x: AdTensor = cast(primitive(x));
            let w: AdTensor = cast(primitive(weight));
            let b: Option<AdTensor> = bias.map(|b| cast(primitive(b)));
            let x_buf = contiguous(x.primitive.clone());
            let w_buf = contiguous(w.primitive.clone());
            let b_buf = b.as_ref().map(|b| contiguous(b.primitive.clone()));
            let y = conv::forward(
                &shape,
                x_buf.storage(),
                w_buf.storage(),
                b_buf.as_ref().map(|b| b.storage()),
            );
            let y = flex_tensor(y, out_shape);
            let state = ConvState {
                x: x_buf,
                weight: w_buf,
                shape,
            };
            let out = match b {
                Some(b) => track!(ConvBackward, 3, [x.node, w.node, b.node], state, y),
                None => track!(ConvBackward, 2, [x.node, w.node], state, y),
            };
            Ok(from_primitive::<B, 4>(out))
        }
    }
}

/// What the convolution's backward step needs.
#[derive(Debug, Clone)]
struct ConvState {
    x: FlexTensor,
    weight: FlexTensor,
    shape: ConvShape,
}

/// Backward step of the convolution; parents are input, kernel and (when `N = 3`) bias.
#[derive(Debug)]
struct ConvBackward;

impl<const N: usize> Backward<Flex, N> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let ConvState { x, weight, shape } = ops.state;
        let [input, kernel, rest @ ..] = &ops.parents[..] else {
            unreachable!("a convolution has an input and a kernel")
        };
        let bias = rest.first().and_then(|b| b.as_ref());
        let wanted = Wanted {
            input: input.is_some(),
            weight: kernel.is_some(),
            bias: bias.is_some(),
        };
        let result = conv::backward(&shape, x.storage(), weight.storage(), dy.storage(), wanted);
        if let (Some(node), Some(g)) = (input, result.input) {
            grads.register::<Flex>(
                node.id,
                flex_tensor(g, [shape.n, shape.c, shape.h, shape.w]),
            );
        }
        if let (Some(node), Some(g)) = (kernel, result.weight) {
            grads.register::<Flex>(
                node.id,
                flex_tensor(g, [shape.o, shape.c, shape.kh, shape.kw]),
            );
        }
        if let (Some(node), Some(g)) = (bias, result.bias) {
            grads.register::<Flex>(node.id, flex_tensor(g, [shape.o]));
        }
    }
}

type BnInputs<B> = (
    Tensor<B, 4>,
    Tensor<B, 1>,
    Tensor<B, 1>,
    Option<Tensor<B, 4>>,
);
/// Per-channel mean and variance.
type Moments<B> = (Tensor<B, 1>, Tensor<B, 1>);
/// The normalised output and, in training mode, the batch mean and biased variance.
type BnOutput<B> = (Tensor<B, 4>, Option<Moments<B>>);
/// The inputs, given back.
type BnRejected<B> = (BnInputs<B>, Option<Moments<B>>);

fn plain_buffer<B: Backend, const D: usize>(t: Tensor<B, D>) -> FlexTensor {
    contiguous(cast::<FlexTensor>(primitive(t)))
}

/// BatchNorm (+ `skip`, + ReLU) through [`bn`]: batch statistics when `running` is `None`
/// (training), else the given mean and variance; the inputs back when `B` is not a flex
/// backend or the combination is not one this kernel handles.
pub fn batch_norm<B: Backend>(
    (x, gamma, beta, skip): BnInputs<B>,
    epsilon: f64,
    running: Option<Moments<B>>,
    relu: bool,
) -> Result<BnOutput<B>, BnRejected<B>> {
    let kind = kind::<B>();
    let supported = x.dtype() == DType::F32
        && skip.as_ref().is_none_or(|s| s.dtype() == DType::F32)
        && match kind {
            Some(Kind::Plain) => true,
            // Autodiff with fixed statistics is not a training-mode BatchNorm: burn's ops.
            Some(Kind::Autodiff) => running.is_none(),
            None => false,
        };
    if !supported {
        return Err(((x, gamma, beta, skip), running));
    }
    let [n, c, h, w] = x.dims();
    let shape = BnShape {
        n,
        c,
        pixels: h * w,
    };
    match kind {
        Some(Kind::Plain) => {
            let x_buf = plain_buffer(x);
            let gamma = plain_buffer(gamma);
            let beta = plain_buffer(beta);
            let skip = skip.map(plain_buffer);
            let (stats, batch) = match running {
                Some((mean, var)) => {
                    let mean: Vec<f32> = plain_buffer(mean).storage().to_vec();
                    let var: Vec<f32> = plain_buffer(var).storage().to_vec();
                    let inv_std = var
                        .iter()
                        .map(|v| (1.0 / (*v as f64 + epsilon).sqrt()) as f32)
                        .collect();
                    (bn::BatchStats { mean, var, inv_std }, false)
                }
                None => (bn::batch_stats(&shape, x_buf.storage(), epsilon), true),
            };
            let y = bn::normalize(
                &shape,
                x_buf.storage(),
                &stats,
                gamma.storage(),
                beta.storage(),
                skip.as_ref().map(|s| s.storage()),
                relu,
            );
            let out = from_primitive::<B, 4>(flex_tensor(y, [n, c, h, w]));
            let stats = batch.then(|| {
                (
                    from_primitive::<B, 1>(flex_tensor(stats.mean, [c])),
                    from_primitive::<B, 1>(flex_tensor(stats.var, [c])),
                )
            });
            Ok((out, stats))
        }
        _ => {
            let x: AdTensor = cast(primitive(x));
            let gamma: AdTensor = cast(primitive(gamma));
            let beta: AdTensor = cast(primitive(beta));
            let skip: Option<AdTensor> = skip.map(|s| cast(primitive(s)));
            let x_buf = contiguous(x.primitive.clone());
            let gamma_buf = contiguous(gamma.primitive.clone());
            let beta_buf = contiguous(beta.primitive.clone());
            let skip_buf = skip.as_ref().map(|s| contiguous(s.primitive.clone()));
            let stats = bn::batch_stats(&shape, x_buf.storage(), epsilon);
            let y = bn::normalize(
                &shape,
                x_buf.storage(),
                &stats,
                gamma_buf.storage(),
                beta_buf.storage(),
                skip_buf.as_ref().map(|s| s.storage()),
                relu,
            );
            let y = flex_tensor(y, [n, c, h, w]);
            let untracked = |v: Vec<f32>| -> Tensor<B, 1> {
                from_primitive::<B, 1>(AdTensor::new(flex_tensor(v, [c])))
            };
            let batch = (untracked(stats.mean.clone()), untracked(stats.var.clone()));
            let state = BnState {
                x: x_buf,
                y: relu.then(|| y.clone()),
                stats,
                gamma: gamma_buf,
                shape,
            };
            let out = match skip {
                Some(skip) => track!(
                    BnBackward,
                    4,
                    [x.node, gamma.node, beta.node, skip.node],
                    state,
                    y
                ),
                None => track!(BnBackward, 3, [x.node, gamma.node, beta.node], state, y),
            };
            Ok((from_primitive::<B, 4>(out), Some(batch)))
        }
    }
}

/// What the BatchNorm's backward step needs.
#[derive(Debug, Clone)]
struct BnState {
    x: FlexTensor,
    /// The output, kept only with a ReLU (its sign is the mask).
    y: Option<FlexTensor>,
    stats: bn::BatchStats,
    gamma: FlexTensor,
    shape: BnShape,
}

/// Backward step of the BatchNorm; parents are input, gamma, beta and (when `N = 4`) skip.
#[derive(Debug)]
struct BnBackward;

impl<const N: usize> Backward<Flex, N> for BnBackward {
    type State = BnState;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let BnState {
            x,
            y,
            stats,
            gamma,
            shape,
        } = ops.state;
        let [input, gamma_node, beta_node, rest @ ..] = &ops.parents[..] else {
            unreachable!("a BatchNorm has an input, gamma and beta")
        };
        let skip = rest.first().and_then(|s| s.as_ref());
        let wanted = bn::Wanted {
            input: input.is_some(),
            gamma: gamma_node.is_some(),
            beta: beta_node.is_some(),
            skip: skip.is_some(),
        };
        let x_values = x.storage();
        let relu = y.is_some();
        let result = bn::backward(
            &shape,
            x_values,
            y.as_ref().map_or(x_values, |y| y.storage()),
            &stats,
            gamma.storage(),
            dy.storage(),
            relu,
            wanted,
        );
        let dims = x.layout().shape().clone();
        for (node, grad, shape) in [
            (input.as_ref(), result.input, dims.clone()),
            (gamma_node.as_ref(), result.gamma, [shape.c].into()),
            (beta_node.as_ref(), result.beta, [shape.c].into()),
            (skip, result.skip, dims),
        ] {
            if let (Some(node), Some(g)) = (node, grad) {
                grads.register::<Flex>(node.id, flex_tensor(g, shape));
            }
        }
    }
}

/// GELU through [`gelu`], or the input back when `B` is not a flex backend.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let Some(kind) = kind::<B>() else {
        return Err(x);
    };
    if x.dtype() != DType::F32 {
        return Err(x);
    }
    let dims = x.dims();
    match kind {
        Kind::Plain => {
            let y = gelu_kernel::forward(plain_buffer(x).storage());
            Ok(from_primitive::<B, D>(flex_tensor(y, dims)))
        }
        Kind::Autodiff => {
            let x: AdTensor = cast(primitive(x));
            let x_buf = contiguous(x.primitive.clone());
            let y = flex_tensor(gelu_kernel::forward(x_buf.storage()), dims);
            Ok(from_primitive::<B, D>(track!(
                GeluBackward,
                1,
                [x.node],
                x_buf,
                y
            )))
        }
    }
}

/// Backward step of GELU; the state is its input.
#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let x = ops.state;
        let [parent] = ops.parents;
        if let Some(node) = parent {
            let dx = gelu_kernel::backward(x.storage(), dy.storage());
            grads.register::<Flex>(node.id, flex_tensor(dx, x.layout().shape().clone()));
        }
    }
}
