//! The matrix product every kernel here is built on (the `gemm` crate flex itself uses, with
//! explicit strides, so transposes and strided head views cost no copy) and buffers that are
//! written once without being zeroed first.

use std::mem::MaybeUninit;

/// A matrix operand: values and strides in elements.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Operand<'a> {
    /// A row-major matrix whose rows start `row_stride` values apart.
    pub fn rows(data: &'a [f32], row_stride: usize) -> Self {
        Self {
            data,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `row_stride`.
    pub fn transposed(data: &'a [f32], row_stride: usize) -> Self {
        Self::rows(data, row_stride).transposed_view()
    }

    /// This operand transposed.
    pub fn transposed_view(self) -> Self {
        Self {
            data: self.data,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Index of element `(rows - 1, cols - 1)`.
    fn last(&self, rows: usize, cols: usize) -> usize {
        (rows - 1) * self.row_stride + (cols - 1) * self.col_stride
    }
}

/// Where a product goes (row-major; rows `row_stride` apart for the strided variants):
/// written into fresh memory, over old values, or added to them.
pub enum Dst<'a> {
    Write(&'a mut [MaybeUninit<f32>]),
    WriteStrided(&'a mut [MaybeUninit<f32>], usize),
    Overwrite(&'a mut [f32]),
    OverwriteStrided(&'a mut [f32], usize),
    Add(&'a mut [f32]),
}

/// `dst[m, n] (=|+=) lhs[m, k] * rhs[k, n]` on the calling thread.
pub fn matmul(dims: [usize; 3], dst: Dst, lhs: Operand, rhs: Operand) {
    matmul_threads(dims, dst, lhs, rhs, gemm::Parallelism::None)
}

/// [`matmul`] with the given parallelism.
pub fn matmul_threads(
    [m, n, k]: [usize; 3],
    dst: Dst,
    lhs: Operand,
    rhs: Operand,
    threads: gemm::Parallelism,
) {
    let (ptr, len, row_stride, accumulate) = match dst {
        Dst::Write(d) => (d.as_mut_ptr().cast::<f32>(), d.len(), n, false),
        Dst::WriteStrided(d, rs) => (d.as_mut_ptr().cast::<f32>(), d.len(), rs, false),
        Dst::Overwrite(d) => (d.as_mut_ptr(), d.len(), n, false),
        Dst::OverwriteStrided(d, rs) => (d.as_mut_ptr(), d.len(), rs, false),
        Dst::Add(d) => (d.as_mut_ptr(), d.len(), n, true),
    };
    assert!(m > 0 && n > 0 && k > 0, "empty matrix product");
    assert!(
        row_stride >= n && (m - 1) * row_stride + n <= len,
        "gemm destination too small"
    );
    assert!(lhs.last(m, k) < lhs.data.len() && rhs.last(k, n) < rhs.data.len());
    // SAFETY: the asserts above keep every index the gemm reads or writes inside the slices,
    // `dst` does not alias the operands (it is a distinct `&mut`), and uninitialised memory
    // is only ever written (`accumulate` is false for the `Write` variants).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            ptr,
            1,
            row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            threads,
        );
    }
}

/// A vector of `len` values, each written by `fill`, which must write every one of them
/// (saves zeroing buffers that are overwritten anyway: ~8% of a ResNet step).
pub fn written_by(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut values = Vec::with_capacity(len);
    fill(&mut values.spare_capacity_mut()[..len]);
    // SAFETY: `fill` initialised all `len` values (the contract above).
    unsafe { values.set_len(len) };
    values
}
