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

use crate::host::flex::contiguous;

use super::attention::{self as attention_kernel, AttentionShape};
use super::batch_norm::{self as bn, BnShape};
use super::conv::{self, ConvShape, Wanted};
use super::gelu as gelu_kernel;
use super::layer_norm as layer_norm_kernel;
use super::linear::{self as linear_kernel, LinearDims};
use super::max_pool::{self as pool_kernel, PoolShape};

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

fn flex_tensor(values: Vec<f32>, shape: impl Into<burn::tensor::Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.into()))
}

/// Whether every tensor is f32 (the kernels' only type).
fn all_f32<B: Backend, const DX: usize, const DW: usize>(
    x: &Tensor<B, DX>,
    weight: &Tensor<B, DW>,
    bias: &Option<Tensor<B, 1>>,
) -> bool {
    x.dtype() == DType::F32
        && weight.dtype() == DType::F32
        && bias.as_ref().is_none_or(|b| b.dtype() == DType::F32)
}

/// A layer's input, kernel and optional bias, handed back when the kernel does not take them.
type LayerInputs<B, const DX: usize, const DW: usize> =
    (Tensor<B, DX>, Tensor<B, DW>, Option<Tensor<B, 1>>);

/// A layer with a kernel and an optional bias (convolution, dense): `forward` on the host
/// buffers of input, kernel and bias; on the autodiff backend the result is recorded as `op`,
/// whose state `save` builds from the input and kernel buffers. The inputs back when `B` is
/// not a flex backend or a tensor is not f32.
fn kernel_layer<B, Op, S, const DX: usize, const DW: usize, const DY: usize>(
    (x, weight, bias): LayerInputs<B, DX, DW>,
    out_shape: [usize; DY],
    forward: impl FnOnce(&[f32], &[f32], Option<&[f32]>) -> Vec<f32>,
    op: Op,
    save: impl FnOnce(FlexTensor, FlexTensor) -> S,
) -> Result<Tensor<B, DY>, LayerInputs<B, DX, DW>>
where
    B: Backend,
    Op: Backward<Flex, 2, State = S> + Backward<Flex, 3, State = S>,
    S: Clone + Send + std::fmt::Debug + 'static,
{
    let Some(kind) = kind::<B>() else {
        return Err((x, weight, bias));
    };
    if !all_f32(&x, &weight, &bias) {
        return Err((x, weight, bias));
    }
    Ok(match kind {
        Kind::Plain => {
            let (x, w) = (plain_buffer(x), plain_buffer(weight));
            let b = bias.map(plain_buffer);
            let y = forward(x.storage(), w.storage(), b.as_ref().map(|b| b.storage()));
            from_primitive::<B, DY>(flex_tensor(y, out_shape))
        }
        Kind::Autodiff => {
            let x: AdTensor = cast(primitive(x));
            let w: AdTensor = cast(primitive(weight));
            let b: Option<AdTensor> = bias.map(|b| cast(primitive(b)));
            let x_buf = contiguous(x.primitive.clone());
            let w_buf = contiguous(w.primitive.clone());
            let b_buf = b.as_ref().map(|b| contiguous(b.primitive.clone()));
            let y = forward(
                x_buf.storage(),
                w_buf.storage(),
                b_buf.as_ref().map(|b| b.storage()),
            );
            let y = flex_tensor(y, out_shape);
            let state = save(x_buf, w_buf);
            let out = match b {
                Some(b) => track!(op, 3, [x.node, w.node, b.node], state, y),
                None => track!(op, 2, [x.node, w.node], state, y),
            };
            from_primitive::<B, DY>(out)
        }
    })
}

type ConvInputs<B> = LayerInputs<B, 4, 4>;

/// The convolution through [`conv`], or the inputs back when `B` is not a flex backend.
pub fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    shape: ConvShape,
) -> Result<Tensor<B, 4>, ConvInputs<B>> {
    kernel_layer(
        (x, weight, bias),
        [shape.n, shape.o, shape.oh, shape.ow],
        |x, w, b| conv::forward(&shape, x, w, b),
        ConvBackward,
        |x, weight| ConvState { x, weight, shape },
    )
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

type LinearInputs<B> = LayerInputs<B, 2, 2>;

/// `x W + b` through [`linear_kernel`], or the inputs back when `B` is not a flex backend.
pub fn linear<B: Backend>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Result<Tensor<B, 2>, LinearInputs<B>> {
    let ([rows, d_in], [w_in, d_out]) = (x.dims(), weight.dims());
    // Mismatched shapes go back to burn's operation, which names them in its error.
    if d_in != w_in || bias.as_ref().is_some_and(|b| b.dims() != [d_out]) {
        return Err((x, weight, bias));
    }
    let dims = [rows, d_in, d_out];
    kernel_layer(
        (x, weight, bias),
        [rows, d_out],
        |x, w, b| linear_kernel::forward(dims, x, w, b),
        LinearBackward,
        |x, weight| LinearState { x, weight, dims },
    )
}

/// What the dense layer's backward step needs.
#[derive(Debug, Clone)]
struct LinearState {
    x: FlexTensor,
    weight: FlexTensor,
    dims: LinearDims,
}

/// Backward step of the dense layer; parents are input, kernel and (when `N = 3`) bias.
#[derive(Debug)]
struct LinearBackward;

impl<const N: usize> Backward<Flex, N> for LinearBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        use burn::tensor::ops::FloatTensorOps;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let LinearState { x, weight, dims } = ops.state;
        let [rows, d_in, d_out] = dims;
        let [input, kernel, rest @ ..] = &ops.parents[..] else {
            unreachable!("a dense layer has an input and a kernel")
        };
        if let Some(node) = input {
            let dx = linear_kernel::input_gradient(dims, weight.storage(), dy.storage());
            grads.register::<Flex>(node.id, flex_tensor(dx, [rows, d_in]));
        }
        if let Some(node) = kernel {
            let dw = linear_kernel::weight_gradient(dims, x.storage(), dy.storage());
            grads.register::<Flex>(node.id, flex_tensor(dw, [d_in, d_out]));
        }
        if let Some(node) = rest.first().and_then(|b| b.as_ref()) {
            // burn's own reduction, so the bias gradient has burn's bits.
            let db = Flex::float_sum_dim(dy, 0);
            grads.register::<Flex>(node.id, Flex::float_reshape(db, [d_out].into()));
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

/// 2-D max pooling through [`pool_kernel`], or the input back when `B` is not a flex backend
/// (or the input is not f32).
pub fn max_pool2d<B: Backend>(x: Tensor<B, 4>, s: PoolShape) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let Some(kind) = kind::<B>() else {
        return Err(x);
    };
    if x.dtype() != DType::F32 {
        return Err(x);
    }
    let out_shape = [s.n, s.c, s.oh, s.ow];
    match kind {
        Kind::Plain => {
            let (y, _) = pool_kernel::forward(&s, plain_buffer(x).storage());
            Ok(from_primitive::<B, 4>(flex_tensor(y, out_shape)))
        }
        Kind::Autodiff => {
            let x: AdTensor = cast(primitive(x));
            let (y, argmax) = pool_kernel::forward(&s, contiguous(x.primitive.clone()).storage());
            let y = flex_tensor(y, out_shape);
            Ok(from_primitive::<B, 4>(track!(
                MaxPoolBackward,
                1,
                [x.node],
                (s, argmax),
                y
            )))
        }
    }
}

/// Backward step of max pooling; the state is the geometry and every output's argmax.
#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    type State = (PoolShape, Vec<u32>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let (s, argmax) = ops.state;
        let [parent] = ops.parents;
        if let Some(node) = parent {
            let dx = pool_kernel::backward(&s, &argmax, dy.storage());
            grads.register::<Flex>(node.id, flex_tensor(dx, [s.n, s.c, s.h, s.w]));
        }
    }
}

type LnInputs<B, const D: usize> = (
    Tensor<B, D>,
    Option<Tensor<B, D>>,
    Tensor<B, 1>,
    Option<Tensor<B, 1>>,
);

/// `layer_norm(x + residual?)` through [`layer_norm_kernel`], or the inputs back when `B` is
/// not a flex backend (or there is no `beta`).
pub fn layer_norm<B: Backend, const D: usize>(
    (x, residual, gamma, beta): LnInputs<B, D>,
    epsilon: f64,
) -> Result<Tensor<B, D>, LnInputs<B, D>> {
    let Some(kind) = kind::<B>() else {
        return Err((x, residual, gamma, beta));
    };
    let Some(beta) = beta else {
        return Err((x, residual, gamma, None));
    };
    if x.dtype() != DType::F32 || residual.as_ref().is_some_and(|r| r.dtype() != DType::F32) {
        return Err((x, residual, gamma, Some(beta)));
    }
    let dims = x.dims();
    let width = dims[D - 1];
    match kind {
        Kind::Plain => {
            let (x, gamma, beta) = (plain_buffer(x), plain_buffer(gamma), plain_buffer(beta));
            let residual = residual.map(plain_buffer);
            let (y, _) = layer_norm_kernel::forward(
                x.storage(),
                residual.as_ref().map(|r| r.storage()),
                gamma.storage(),
                Some(beta.storage()),
                width,
                epsilon,
            );
            Ok(from_primitive::<B, D>(flex_tensor(y, dims)))
        }
        Kind::Autodiff => {
            let x: AdTensor = cast(primitive(x));
            let gamma: AdTensor = cast(primitive(gamma));
            let beta: AdTensor = cast(primitive(beta));
            let residual: Option<AdTensor> = residual.map(|r| cast(primitive(r)));
            let x_buf = contiguous(x.primitive.clone());
            let gamma_buf = contiguous(gamma.primitive.clone());
            let beta_buf = contiguous(beta.primitive.clone());
            let residual_buf = residual.as_ref().map(|r| contiguous(r.primitive.clone()));
            let (y, saved) = layer_norm_kernel::forward(
                x_buf.storage(),
                residual_buf.as_ref().map(|r| r.storage()),
                gamma_buf.storage(),
                Some(beta_buf.storage()),
                width,
                epsilon,
            );
            let y = flex_tensor(y, dims);
            let state = LnState {
                saved,
                gamma: gamma_buf,
                width,
                dims: dims.to_vec(),
            };
            let out = match residual {
                Some(r) => track!(
                    LnBackward,
                    4,
                    [x.node, gamma.node, beta.node, r.node],
                    state,
                    y
                ),
                None => track!(LnBackward, 3, [x.node, gamma.node, beta.node], state, y),
            };
            Ok(from_primitive::<B, D>(out))
        }
    }
}

#[derive(Debug, Clone)]
struct LnState {
    saved: layer_norm_kernel::Saved,
    gamma: FlexTensor,
    width: usize,
    dims: Vec<usize>,
}

/// Backward step of the LayerNorm; parents are input, gamma, beta and (when `N = 4`) the
/// residual, whose gradient is the input's.
#[derive(Debug)]
struct LnBackward;

impl<const N: usize> Backward<Flex, N> for LnBackward {
    type State = LnState;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let LnState {
            saved,
            gamma,
            width,
            dims,
        } = ops.state;
        let [input, gamma_node, beta_node, rest @ ..] = &ops.parents[..] else {
            unreachable!("a LayerNorm has an input, gamma and beta")
        };
        let (dx, dgamma, dbeta) =
            layer_norm_kernel::backward(&saved, gamma.storage(), dy.storage(), width);
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, flex_tensor(dgamma, [width]));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, flex_tensor(dbeta, [width]));
        }
        if let Some(Some(node)) = rest.first() {
            grads.register::<Flex>(node.id, flex_tensor(dx.clone(), dims.clone()));
        }
        if let Some(node) = input {
            grads.register::<Flex>(node.id, flex_tensor(dx, dims));
        }
    }
}

type AttentionInputs<B> = (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 2>);

/// Multi-head attention through [`attention_kernel`], or the inputs back when `B` is not a
/// flex backend (or the key bias needs a gradient).
pub fn attention<B: Backend>(
    (q, k, v, key_bias): AttentionInputs<B>,
    heads: usize,
) -> Result<Tensor<B, 3>, AttentionInputs<B>> {
    let Some(kind) = kind::<B>() else {
        return Err((q, k, v, key_bias));
    };
    let all_f32 = [q.dtype(), k.dtype(), v.dtype(), key_bias.dtype()]
        .iter()
        .all(|d| *d == DType::F32);
    let [batch, len, width] = q.dims();
    if !all_f32 || heads == 0 || width % heads != 0 || k.dims() != q.dims() || v.dims() != q.dims()
    {
        return Err((q, k, v, key_bias));
    }
    let shape = AttentionShape {
        batch,
        len,
        heads,
        head_dim: width / heads,
    };
    match kind {
        Kind::Plain => {
            let (q, k, v) = (plain_buffer(q), plain_buffer(k), plain_buffer(v));
            let bias = plain_buffer(key_bias);
            let (context, _) = attention_kernel::forward(
                &shape,
                q.storage(),
                k.storage(),
                v.storage(),
                bias.storage(),
            );
            Ok(from_primitive::<B, 3>(flex_tensor(
                context,
                [batch, len, width],
            )))
        }
        Kind::Autodiff => {
            let bias_ad: AdTensor = cast(primitive(key_bias));
            if bias_ad.is_tracked() {
                let back = |t: AdTensor| from_primitive::<B, 2>(t);
                return Err((q, k, v, back(bias_ad)));
            }
            let q: AdTensor = cast(primitive(q));
            let k: AdTensor = cast(primitive(k));
            let v: AdTensor = cast(primitive(v));
            let bias = contiguous(bias_ad.primitive);
            let (q_buf, k_buf, v_buf) = (
                contiguous(q.primitive.clone()),
                contiguous(k.primitive.clone()),
                contiguous(v.primitive.clone()),
            );
            let (context, weights) = attention_kernel::forward(
                &shape,
                q_buf.storage(),
                k_buf.storage(),
                v_buf.storage(),
                bias.storage(),
            );
            let y = flex_tensor(context, [batch, len, width]);
            let state = AttentionState {
                q: q_buf,
                k: k_buf,
                v: v_buf,
                weights,
                shape,
            };
            Ok(from_primitive::<B, 3>(track!(
                AttentionBackward,
                3,
                [q.node, k.node, v.node],
                state,
                y
            )))
        }
    }
}

#[derive(Debug, Clone)]
struct AttentionState {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    weights: Vec<f32>,
    shape: AttentionShape,
}

/// Backward step of the attention; parents are queries, keys and values.
#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dc = contiguous(grads.consume::<Flex>(&ops.node));
        let AttentionState {
            q,
            k,
            v,
            weights,
            shape,
        } = ops.state;
        let (dq, dk, dv) = attention_kernel::backward(
            &shape,
            q.storage(),
            k.storage(),
            v.storage(),
            &weights,
            dc.storage(),
        );
        let dims = [shape.batch, shape.len, shape.heads * shape.head_dim];
        for (node, grad) in ops.parents.iter().zip([dq, dk, dv]) {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, flex_tensor(grad, dims));
            }
        }
    }
}
