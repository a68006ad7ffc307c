//! Selection: which n of m units (or channels) to keep, by lazy-greedy maximisation of a
//! facility-location score over the units' activations on a calibration batch.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Facility location `f(S) = sum_j max_{i in S} sim[i][j]` (`sim` non-negative, `m x m`).
pub fn facility_location(sim: &[f64], m: usize, selected: &[usize]) -> f64 {
    (0..m)
        .map(|j| selected.iter().map(|&i| sim[i * m + j]).fold(0.0, f64::max))
        .sum()
}

#[derive(PartialEq)]
struct Candidate {
    gain: f64,
    unit: usize,
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    // Largest gain first; ties to the smaller index, so the result is deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        self.gain
            .total_cmp(&other.gain)
            .then(other.unit.cmp(&self.unit))
    }
}

/// Lazy greedy maximisation of facility location: `n` of the `m` units, in selection order.
/// Marginal gains only shrink as the set grows (submodularity), so a stale gain is an upper
/// bound and most candidates are never re-evaluated.
pub fn lazy_greedy(sim: &[f64], m: usize, n: usize) -> Vec<usize> {
    let mut best = vec![0.0f64; m]; // max similarity of each point to the selected set
    let gain_of = |unit: usize, best: &[f64]| -> f64 {
        (0..m).map(|j| (sim[unit * m + j] - best[j]).max(0.0)).sum()
    };
    let mut heap: BinaryHeap<Candidate> = (0..m)
        .map(|unit| Candidate {
            gain: gain_of(unit, &best),
            unit,
        })
        .collect();
    let mut selected = Vec::with_capacity(n);
    while selected.len() < n.min(m) {
        let Some(top) = heap.pop() else { break };
        let fresh = gain_of(top.unit, &best);
        if heap.peek().is_none_or(|next| fresh >= next.gain) {
            selected.push(top.unit);
            for (j, b) in best.iter_mut().enumerate() {
                *b = b.max(sim[top.unit * m + j]);
            }
        } else {
            heap.push(Candidate {
                gain: fresh,
                unit: top.unit,
            });
        }
    }
    selected
}

/// Cosine similarity of the columns of `acts` (`rows x m`), mapped to [0, 1].
pub(super) fn unit_similarity(acts: &[f32], rows: usize, m: usize) -> Vec<f64> {
    let norms: Vec<f64> = (0..m)
        .map(|u| {
            (0..rows)
                .map(|r| (acts[r * m + u] as f64).powi(2))
                .sum::<f64>()
                .sqrt()
                .max(1e-12)
        })
        .collect();
    let mut sim = vec![0.0; m * m];
    for a in 0..m {
        for b in a..m {
            let dot: f64 = (0..rows)
                .map(|r| acts[r * m + a] as f64 * acts[r * m + b] as f64)
                .sum();
            let s = 0.5 * (1.0 + dot / (norms[a] * norms[b]));
            sim[a * m + b] = s;
            sim[b * m + a] = s;
        }
    }
    sim
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn subsets(m: usize, n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        (0..m)
            .flat_map(|last| {
                subsets(last, n - 1).into_iter().map(move |mut s| {
                    s.push(last);
                    s
                })
            })
            .collect()
    }

    #[test]
    fn lazy_greedy_is_greedy_and_near_the_brute_force_optimum() {
        let mut rng = StdRng::seed_from_u64(9);
        for trial in 0..30 {
            let m = 6 + trial % 4;
            let n = 1 + trial % 4;
            let mut sim = vec![0.0; m * m];
            for a in 0..m {
                for b in a..m {
                    let s = if a == b { 1.0 } else { rng.random::<f64>() };
                    sim[a * m + b] = s;
                    sim[b * m + a] = s;
                }
            }
            let lazy = lazy_greedy(&sim, m, n);
            // Plain greedy: re-evaluate every candidate every round.
            let mut plain: Vec<usize> = Vec::new();
            for _ in 0..n {
                let base = facility_location(&sim, m, &plain);
                let next = (0..m)
                    .filter(|u| !plain.contains(u))
                    .max_by(|&a, &b| {
                        let ga =
                            facility_location(&sim, m, &[plain.clone(), vec![a]].concat()) - base;
                        let gb =
                            facility_location(&sim, m, &[plain.clone(), vec![b]].concat()) - base;
                        ga.total_cmp(&gb).then(b.cmp(&a))
                    })
                    .unwrap();
                plain.push(next);
            }
            // Same choices up to exact ties (gains rounded differently pick either).
            let (f_lazy, f_plain) = (
                facility_location(&sim, m, &lazy),
                facility_location(&sim, m, &plain),
            );
            assert!(
                (f_lazy - f_plain).abs() < 1e-9,
                "lazy {lazy:?} ({f_lazy}) vs greedy {plain:?} ({f_plain})"
            );
            assert_eq!(lazy.len(), n);
            let optimum = subsets(m, n)
                .iter()
                .map(|s| facility_location(&sim, m, s))
                .fold(0.0, f64::max);
            let value = facility_location(&sim, m, &lazy);
            assert!(
                value >= (1.0 - 1.0 / std::f64::consts::E) * optimum - 1e-12,
                "{value} vs {optimum}"
            );
        }
    }
}
