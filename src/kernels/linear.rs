//! The dense layer `y = x W + b` on host buffers, row-major `x` `[rows, d_in]`, `W`
//! `[d_in, d_out]`: the same `gemm` products burn-flex computes (same operands and strides,
//! so the same bits), into buffers that are written once, and products with few rows split
//! by columns across the threads. burn-flex allocates each product's output zeroed and then
//! copies it into a 16-byte-aligned buffer (`FlexTensor::empty`): two extra passes over every
//! output, 5% of the MLP's step.

use super::linalg::{Dst, Operand, matmul_column_blocks, matmul_threads, written_by};

/// `[rows, d_in, d_out]`.
pub type LinearDims = [usize; 3];

/// A product with at most this many rows and at least this many columns has its columns
/// split across the threads ([`matmul_column_blocks`]). Measured on a 2-core Intel Xeon with
/// the gemm crate (the same bits either way): up to 49% faster at 64-256 rows and 512
/// columns (the MLP's products, Transformer kernel gradients with 128 inputs; one
/// measurement at 256 rows 2% slower); slower at 512 rows and more; mixed at 128 columns.
const FEW_ROWS: usize = 256;
const MANY_COLUMNS: usize = 256;

/// `dst[m, n] = lhs[m, k] * rhs[k, n]` into fresh memory, threaded as burn-flex threads it
/// (every worker thread from 192^3 multiply-adds up, one below), except that a product with
/// few rows is cut into column blocks, one per thread (the same bits, faster).
fn product(
    [m, n, k]: [usize; 3],
    dst: &mut [std::mem::MaybeUninit<f32>],
    lhs: Operand,
    rhs: Operand,
) {
    let threads = rayon::current_num_threads();
    if m.saturating_mul(n).saturating_mul(k) < 192 * 192 * 192 {
        matmul_threads(
            [m, n, k],
            Dst::Write(dst),
            lhs,
            rhs,
            gemm::Parallelism::None,
        )
    } else if m <= FEW_ROWS && n >= MANY_COLUMNS && threads > 1 {
        matmul_column_blocks([m, n, k], dst, lhs, rhs, threads)
    } else {
        matmul_threads(
            [m, n, k],
            Dst::Write(dst),
            lhs,
            rhs,
            gemm::Parallelism::Rayon(0),
        )
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
        product(
            [rows, d_out, d_in],
            y,
            Operand::rows(x, d_in),
            Operand::rows(w, d_out),
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
        product(
            [rows, d_in, d_out],
            dx,
            Operand::rows(dy, d_out),
            Operand::transposed(w, d_out),
        )
    })
}

/// `dL/dW = x^T dy`, `[d_in, d_out]`.
pub fn weight_gradient([rows, d_in, d_out]: LinearDims, x: &[f32], dy: &[f32]) -> Vec<f32> {
    written_by(d_in * d_out, |dw| {
        product(
            [d_in, d_out, rows],
            dw,
            Operand::transposed(x, d_in),
            Operand::rows(dy, d_out),
        )
    })
}
