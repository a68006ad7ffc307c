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
    unsafe { gemm_at([m, n, k], ptr, row_stride, accumulate, lhs, rhs, threads) }
}

/// The one call into the `gemm` crate: `dst[m, n] (=|+=) lhs * rhs` at `dst`, rows
/// `row_stride` apart.
///
/// # Safety
/// Every index of `dst`, `lhs` and `rhs` the product touches must lie in its buffer, `dst`
/// must alias neither operand nor memory another thread touches, and it must be initialised
/// when `accumulate` is true.
unsafe fn gemm_at(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    row_stride: usize,
    accumulate: bool,
    lhs: Operand,
    rhs: Operand,
    threads: gemm::Parallelism,
) {
    // SAFETY: the caller's contract above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
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

/// `dst[m, n] = lhs[m, k] * rhs[k, n]` written into fresh row-major memory, the columns of
/// `dst` cut into `blocks` runs computed side by side on rayon's threads, one single-threaded
/// gemm each. For products with few rows (a batch of 128 against a 512-wide layer) this beats
/// the `gemm` crate's own split (its threads divide the work differently and each packs
/// more): 6-32% faster on the MLP's 128-row products on a 2-core Intel Xeon, and the very
/// same bits (each value's sum runs in the same order).
pub fn matmul_column_blocks(
    [m, n, k]: [usize; 3],
    dst: &mut [MaybeUninit<f32>],
    lhs: Operand,
    rhs: Operand,
    blocks: usize,
) {
    use rayon::prelude::*;
    assert!(m > 0 && n > 0 && k > 0, "empty matrix product");
    assert!(m * n <= dst.len(), "gemm destination too small");
    assert!(lhs.last(m, k) < lhs.data.len() && rhs.last(k, n) < rhs.data.len());
    let width = n.div_ceil(blocks.clamp(1, n));
    // The destination's address as an integer, so that the tasks can share it: each writes
    // only its own columns.
    let dst_at = dst.as_mut_ptr() as usize;
    (0..n).into_par_iter().step_by(width).for_each(|first| {
        let cols = width.min(n - first);
        let rhs_block = Operand {
            data: &rhs.data[first * rhs.col_stride..],
            ..rhs
        };
        // SAFETY: the asserts above keep every index inside the slices (`rhs_block` starts
        // `first` columns in, and `first + cols <= n`); the blocks write disjoint columns of
        // `dst`, which aliases no operand; uninitialised memory is only written.
        unsafe {
            gemm_at(
                [m, cols, k],
                (dst_at as *mut f32).add(first),
                n,
                false,
                lhs,
                rhs_block,
                gemm::Parallelism::None,
            )
        }
    });
}

/// A work buffer of `len` values taken from this thread's spare buffers, handed back when
/// dropped. Its values are left over from earlier uses: for buffers whose every value read is
/// first written (patch matrices, operand copies). Saves zeroing them and faulting in fresh
/// pages at every call (about 3% of a ResNet-18 step).
pub struct Scratch {
    values: Vec<f32>,
    len: usize,
}

/// Spare buffers kept per thread (the largest ones).
const SPARES_KEPT: usize = 4;

thread_local! {
    static SPARES: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Scratch {
    pub fn new(len: usize) -> Self {
        let spare = SPARES.with(|spares| {
            let mut spares = spares.borrow_mut();
            let at = spares.iter().position(|v| v.len() >= len)?;
            Some(spares.swap_remove(at))
        });
        Self {
            values: spare.unwrap_or_else(|| vec![0.0; len]),
            len,
        }
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.values[..self.len]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.values[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let values = std::mem::take(&mut self.values);
        if values.is_empty() {
            return;
        }
        SPARES.with(|spares| {
            let mut spares = spares.borrow_mut();
            spares.push(values);
            if spares.len() > SPARES_KEPT {
                let smallest = (0..spares.len())
                    .min_by_key(|&i| spares[i].len())
                    .expect("not empty");
                spares.swap_remove(smallest);
            }
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_blocks_give_the_bits_of_one_product() {
        let values = |len: usize, seed: u32| -> Vec<f32> {
            (0..len as u32)
                .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 997.0 - 0.5)
                .collect()
        };
        // Odd widths (blocks of unequal size), more blocks than columns, a transposed operand.
        for ([m, n, k], blocks, transposed) in [
            ([128, 512, 784], 2, false),
            ([7, 13, 33], 3, true),
            ([5, 2, 9], 4, false),
            ([1, 1, 1], 2, true),
        ] {
            let (lhs, rhs) = (values(m * k, 1), values(k * n, 2));
            let rhs_op = if transposed {
                Operand::transposed(&rhs, k)
            } else {
                Operand::rows(&rhs, n)
            };
            let whole = written_by(m * n, |dst| {
                matmul([m, n, k], Dst::Write(dst), Operand::rows(&lhs, k), rhs_op)
            });
            let split = written_by(m * n, |dst| {
                matmul_column_blocks([m, n, k], dst, Operand::rows(&lhs, k), rhs_op, blocks)
            });
            assert!(
                whole
                    .iter()
                    .zip(&split)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "[{m}, {n}, {k}] in {blocks} blocks"
            );
        }
    }
}
