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

/// Runs `f` compiled for the widest SIMD level this CPU has (AVX-512, else AVX2 + FMA, else
/// the baseline), chosen at run time. The project's own loops are otherwise compiled for
/// x86-64's SSE2 baseline (the crate is built without `target-cpu`, so one binary runs on every
/// x86-64). The same bits on every level: Rust never fuses a multiply and an add nor
/// reorders a float sum, so wider vectors compute each element with the same operations.
///
/// Pass `#[inline(always)] move || ...` with the loop inside: a closure left out of line
/// keeps baseline code, and one capturing by reference reloads its captures after every store,
/// which stops the loop from being vectorized (both seen in `perf annotate`).
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(feature = "flex")]
    {
        pulp::Arch::new().dispatch(f)
    }
    #[cfg(not(feature = "flex"))]
    {
        f()
    }
}

/// `sum_i p_i theta_i` on the host for `[k, n]` copies, or the copies back.
pub fn mix<B: Backend>(theta: Tensor<B, 2>, p: &[f32]) -> Result<Vec<f32>, Tensor<B, 2>> {
    #[cfg(feature = "flex")]
    {
        use rayon::prelude::*;
        let [k, n] = theta.dims();
        assert!(k >= 1 && !p.is_empty(), "mixing needs at least one copy");
        let buffer = flex::take(theta)?;
        let copies: &[f32] = buffer.storage();
        let mut out = Vec::with_capacity(n);
        out.spare_capacity_mut()[..n]
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| {
                let start = c * CHUNK;
                vectorized(
                    #[inline(always)]
                    move || {
                        for (i, &p_i) in p.iter().enumerate().take(k) {
                            let row = &copies[i * n + start..i * n + start + chunk.len()];
                            mix_into(i, p_i, chunk, row);
                        }
                    },
                )
            });
        // SAFETY: the chunks cover all n values and `mix_into` wrote each (k >= 1, asserted).
        unsafe { out.set_len(n) };
        Ok(out)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = p;
        Err(theta)
    }
}

/// Adds copy `i`'s term `p_i theta_i` to a mixed kernel's values: written as `0 + p_0 theta_0`
/// for the first copy (the sum of a zeroed buffer, bit for bit, without zeroing it), added
/// for the others. The one summation order every mixing path shares.
#[inline]
fn mix_into(i: usize, p_i: f32, out: &mut [std::mem::MaybeUninit<f32>], row: &[f32]) {
    if i == 0 {
        for (o, &t) in out.iter_mut().zip(row) {
            o.write(0.0 + p_i * t);
        }
    } else {
        for (o, &t) in out.iter_mut().zip(row) {
            // SAFETY: copy 0 wrote every value of `out` before.
            let o = unsafe { o.assume_init_mut() };
            *o += p_i * t;
        }
    }
}

/// The next step's kernel, mixed inside an update pass from the updated copies, while each is
/// in cache: `sum_i p_i theta_i` (the mix of the next step reads no copy again).
pub struct MixAhead<'a> {
    /// The next step's coefficients of this kernel (length k).
    pub p: &'a [f32],
    /// Receives the n values.
    pub out: &'a mut Vec<f32>,
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
/// buffers in parallel: `i` is the copy, `j_start` the first column of the chunk. With
/// `mix_ahead`, each task takes one column chunk of every copy in turn and adds the updated
/// copy to the next kernel's values right after `f` (see [`MixAhead`]). `f` runs its own loop
/// through [`vectorized`]: called here through a reference, it would not be inlined into a
/// dispatch made here.
pub fn for_each_chunk<const S: usize>(
    theta: &mut [f32],
    states: [&mut [f32]; S],
    n: usize,
    mix_ahead: Option<MixAhead<'_>>,
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
    let Some(MixAhead { p, out }) = mix_ahead else {
        tasks.into_par_iter().for_each(|(i, j, t, s)| {
            let s: [&mut [f32]; S] = s.try_into().unwrap_or_else(|_| unreachable!());
            f(i, j, t, s)
        });
        return;
    };
    // Regroup by column chunk (tasks are in row order: copy i's chunk c at i * chunks + c).
    let chunks = n.div_ceil(CHUNK);
    assert!(!p.is_empty(), "mixing needs at least one copy");
    assert_eq!(tasks.len(), p.len() * chunks, "one coefficient per copy");
    let mut columns: Vec<Vec<Task<'_>>> = (0..chunks).map(|_| Vec::new()).collect();
    for (index, task) in tasks.into_iter().enumerate() {
        columns[index % chunks].push(task);
    }
    out.clear();
    out.reserve(n);
    columns
        .into_par_iter()
        .zip(out.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
        .for_each(|(column, mixed)| {
            for (i, j, t, mut s) in column {
                let s: [&mut [f32]; S] = s
                    .iter_mut()
                    .map(|chunk| &mut **chunk)
                    .collect::<Vec<_>>()
                    .try_into()
                    .unwrap_or_else(|_| unreachable!());
                f(i, j, &mut *t, s);
                let (p_i, mixed) = (p[i], &mut *mixed);
                vectorized(
                    #[inline(always)]
                    move || mix_into(i, p_i, mixed, t),
                );
            }
        });
    // SAFETY: the column chunks cover all n values and copy 0's `mix_into` wrote each.
    unsafe { out.set_len(n) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over several column chunks and a short last one: every copy updated once, and the
    /// next kernel mixed from the updated copies in copy order (the bits of `mix`).
    #[test]
    fn an_update_pass_mixes_the_updated_copies_ahead() {
        let (k, n) = (3, 2 * CHUNK + 1000);
        let theta0: Vec<f32> = (0..k * n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.01)
            .collect();
        let p = [0.2f32, 0.5, 0.3];
        let update = |i: usize, j0: usize, t: &mut [f32], [v]: [&mut [f32]; 1]| {
            for (j, (w, v)) in t.iter_mut().zip(v.iter_mut()).enumerate() {
                *v += 1.0;
                *w -= 0.1 * (i + 1) as f32 + 1e-6 * (j0 + j) as f32;
            }
        };
        let (mut plain, mut v_plain) = (theta0.clone(), vec![0.0f32; k * n]);
        for_each_chunk(&mut plain, [&mut v_plain], n, None, update);
        let (mut fused, mut v_fused, mut mixed) = (theta0, vec![0.0f32; k * n], Vec::new());
        let ahead = MixAhead {
            p: &p,
            out: &mut mixed,
        };
        for_each_chunk(&mut fused, [&mut v_fused], n, Some(ahead), update);
        assert!(fused == plain && v_fused == v_plain, "the same update");
        assert!(
            v_fused.iter().all(|&v| v == 1.0),
            "each element updated once"
        );
        let expected: Vec<f32> = (0..n)
            .map(|j| (0..k).fold(0.0f32, |sum, i| sum + p[i] * plain[i * n + j]))
            .collect();
        assert!(mixed == expected, "mixed from the updated copies");
    }
}
