//! What image and text data share: the label type and seeded subsets of rows.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// A class label. 16 bits: ImageNet-1k has 1000 classes.
pub type Label = u16;

/// Sorted indices of a seeded random subset of `n` of `len` examples; `None` when `n >= len`
/// (the whole set).
pub fn subset_indices(len: usize, n: usize, seed: u64) -> Option<Vec<usize>> {
    if n >= len {
        return None;
    }
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    order.truncate(n);
    order.sort_unstable();
    Some(order)
}
