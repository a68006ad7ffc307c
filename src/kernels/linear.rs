//! The dense layer `y = x W + b` on host buffers, row-major `x` `[rows, d_in]`, `W`
//! `[d_in, d_out]`: the same `gemm` calls burn-flex makes (same operands, strides and
//! threading rule, so the same bits), into buffers that are written once. burn-flex allocates
//! each product's output zeroed and then copies it into a 16-byte-aligned buffer
//! (`FlexTensor::empty`): two extra passes over every output, 5% of the MLP's step.

use super::linalg::{Dst, Operand, matmul_threads, written_by};

/// `[rows, d_in, d_out]`.
pub type LinearDims = [usize; 3];

/// burn-flex's rule: every worker thread from 192^3 multiply-adds up, one below.
fn threads(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    if m.saturating_mul(n).saturating_mul(k) >= 192 * 192 * 192 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// `x W (+ b)`, `[rows, d_out]`; the bias is added after the product, as burn does.
pub fn forward(
    [rows, d_in, d_out]: LinearDims,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut y = written_by(rows * d_out, |y| {
        matmul_threads(
            [rows, d_out, d_in],
            Dst::Write(y),
            Operand::rows(x, d_in),
            Operand::rows(w, d_out),
            threads(rows, d_out, d_in),
        )
    });
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(d_out) {
            for (v, &b) in row.iter_mut().zip(b) {
                *v += b;
            }
        }
    }
    y
}

/// `dL/dx = dy W^T`, `[rows, d_in]`.
pub fn input_gradient([rows, d_in, d_out]: LinearDims, w: &[f32], dy: &[f32]) -> Vec<f32> {
    written_by(rows * d_in, |dx| {
        matmul_threads(
            [rows, d_in, d_out],
            Dst::Write(dx),
            Operand::rows(dy, d_out),
            Operand::transposed(w, d_out),
            threads(rows, d_in, d_out),
        )
    })
}

/// `dL/dW = x^T dy`, `[d_in, d_out]`.
pub fn weight_gradient([rows, d_in, d_out]: LinearDims, x: &[f32], dy: &[f32]) -> Vec<f32> {
    written_by(d_in * d_out, |dw| {
        matmul_threads(
            [d_in, d_out, rows],
            Dst::Write(dw),
            Operand::transposed(x, d_in),
            Operand::rows(dy, d_out),
            threads(d_in, d_out, rows),
        )
    })
}
