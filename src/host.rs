//! Host-memory fast paths for the CPU backend (`flex`): the majority kernels' mixing sum
//! ([`crate::mk`]) and the fused optimiser update ([`crate::optim`]) run as single parallel
//! passes over the tensors' own buffers, in place.
//!
//! Every function here takes a generic tensor and gives it back untouched (`Err`) when the
//! backend is not `flex` (or the tensor is not a plain contiguous f32 buffer); callers then use
//! ordinary tensor operations, which is what the GPU backends want anyway.

use burn::tensor::{Tensor, backend::Backend};

/// Elements per parallel task: large enough to amortise scheduling, small enough to split a
/// layer across cores.
const CHUNK: usize = 1 << 14;

#[cfg(feature = "flex")]
pub(crate) mod flex {
    use super::*;
    use burn::tensor::TensorPrimitive;
    use burn_flex::FlexTensor;
    use std::any::Any;

    /// The `flex` tensor behind `tensor`, made contiguous, or the tensor back.
    pub fn take<B: Backend, const D: usize>(
        tensor: Tensor<B, D>,
    ) -> Result<FlexTensor, Tensor<B, D>> {
        let primitive = match tensor.into_primitive() {
            TensorPrimitive::Float(p) => p,
            other => return Err(Tensor::from_primitive(other)),
        };
        let boxed: Box<dyn Any> = Box::new(primitive);
        match boxed.downcast::<FlexTensor>() {
            Ok(flex) if flex.dtype() == burn::tensor::DType::F32 => Ok(contiguous(*flex)),
            Ok(flex) => Err(give(*flex)),
            Err(other) => Err(Tensor::from_primitive(TensorPrimitive::Float(
                *other
                    .downcast::<B::FloatTensorPrimitive>()
                    .expect("the primitive came from this backend"),
            ))),
        }
    }

    /// An f32 tensor as one plain contiguous buffer (a copy only when its layout is not one).
    pub fn contiguous(tensor: FlexTensor) -> FlexTensor {
        let numel = tensor.layout().num_elements();
        let plain = tensor.layout().contiguous_offsets() == Some((0, numel))
            && tensor.bytes().len() == numel * 4;
        if plain {
            tensor
        } else {
            tensor.to_contiguous()
        }
    }

    /// A `flex` tensor as the generic tensor it came from.
    pub fn give<B: Backend, const D: usize>(flex: FlexTensor) -> Tensor<B, D> {
        let boxed: Box<dyn Any> = Box::new(flex);
        Tensor::from_primitive(TensorPrimitive::Float(
            *boxed
                .downcast::<B::FloatTensorPrimitive>()
                .expect("only called after `take` succeeded for this backend"),
        ))
    }
}

/// `sum_i p_i theta_i` on the host for `[k, n]` copies, or the copies back.
pub fn mix<B: Backend>(theta: Tensor<B, 2>, p: &[f32]) -> Result<Vec<f32>, Tensor<B, 2>> {
    #[cfg(feature = "flex")]
    {
        use rayon::prelude::*;
        let [k, n] = theta.dims();
        let buffer = flex::take(theta)?;
        let copies: &[f32] = buffer.storage();
        let mut out = vec![0.0f32; n];
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| {
                let start = c * CHUNK;
                for (i, &p_i) in p.iter().enumerate().take(k) {
                    let row = &copies[i * n + start..i * n + start + chunk.len()];
                    for (o, &t) in chunk.iter_mut().zip(row) {
                        *o += p_i * t;
                    }
                }
            });
        Ok(out)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = p;
        Err(theta)
    }
}

/// Runs `update(copies, gradient)` on the host buffers of `theta` (`[k, n]`, updated in place)
/// and `grad` (`[1, n]`), or gives both back.
#[allow(clippy::type_complexity)]
pub fn update_in_place<B: Backend>(
    theta: Tensor<B, 2>,
    grad: Tensor<B, 2>,
    update: impl FnOnce(&mut [f32], &[f32]),
) -> Result<Tensor<B, 2>, (Tensor<B, 2>, Tensor<B, 2>)> {
    #[cfg(feature = "flex")]
    {
        let mut theta = match flex::take(theta) {
            Ok(t) => t,
            Err(theta) => return Err((theta, grad)),
        };
        let grad = match flex::take(grad) {
            Ok(g) => g,
            Err(grad) => return Err((flex::give(theta), grad)),
        };
        // Copy-on-write: in place when the copies are not shared, which is the training loop's
        // case (the model gives its parameter up for the update).
        update(theta.storage_mut(), grad.storage());
        Ok(flex::give(theta))
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = update;
        Err((theta, grad))
    }
}

/// Applies `f(i, j_start, theta_chunk, state_chunks...)` over row-aligned chunks of `[k, n]`
/// buffers in parallel: `i` is the copy, `j_start` the first column of the chunk.
pub fn for_each_chunk<const S: usize>(
    theta: &mut [f32],
    states: [&mut [f32]; S],
    n: usize,
    f: impl Fn(usize, usize, &mut [f32], [&mut [f32]; S]) + Sync,
) {
    use rayon::prelude::*;
    // Split every buffer the same way: rows of n, then chunks of a row.
    fn split(buffer: &mut [f32], n: usize) -> Vec<(usize, usize, &mut [f32])> {
        buffer
            .chunks_mut(n)
            .enumerate()
            .flat_map(|(i, row)| {
                row.chunks_mut(CHUNK)
                    .enumerate()
                    .map(move |(c, chunk)| (i, c * CHUNK, chunk))
            })
            .collect()
    }
    let mut theta_parts = split(theta, n);
    let mut state_parts: Vec<Vec<(usize, usize, &mut [f32])>> =
        states.into_iter().map(|s| split(s, n)).collect();
    // (copy, first column, copies chunk, state chunks)
    type Task<'a> = (usize, usize, &'a mut [f32], Vec<&'a mut [f32]>);
    let mut tasks: Vec<Task<'_>> = theta_parts
        .drain(..)
        .map(|(i, j, t)| (i, j, t, Vec::with_capacity(S)))
        .collect();
    for parts in &mut state_parts {
        for (task, (_, _, chunk)) in tasks.iter_mut().zip(parts.drain(..)) {
            task.3.push(chunk);
        }
    }
    tasks.into_par_iter().for_each(|(i, j, t, s)| {
        let s: [&mut [f32]; S] = s.try_into().unwrap_or_else(|_| unreachable!());
        f(i, j, t, s)
    });
}
