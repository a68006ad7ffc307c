//! The tuning protocol: one grid of learning-rate multipliers (and optionally weight decays)
//! that every method entry gets at every k, trained on the tuning seeds, scored on the
//! validation slice at the end of training. The final runs train at the winning value.
//!
//! The choice reads only validation scores of the deployed model at the end of training:
//! never the test set, never the best epoch. Ties go to the smaller learning rate (then the
//! smaller weight decay), so a grid that cannot tell values apart keeps the safer one.

use serde::{Deserialize, Serialize};

use crate::optim::OptimizerSpec;

/// An experiment's `tune:` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuneSpec {
    /// Multipliers of the recipe's learning rate, e.g. `[0.25, 0.5, 1, 2, 4]`.
    pub lr_multipliers: Vec<f64>,
    /// Weight decays to try (absolute values; none: the recipe's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_decays: Vec<f64>,
    /// Seeds of the tuning runs: distinct from the experiment's `seeds`, so the final runs
    /// are not the runs the choice was made on.
    pub seeds: Vec<u64>,
}

/// One point of the grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridPoint {
    pub lr_multiplier: f64,
    /// `None`: the recipe's weight decay.
    pub weight_decay: Option<f64>,
}

impl GridPoint {
    /// The recipe's own values.
    pub const RECIPE: GridPoint = GridPoint {
        lr_multiplier: 1.0,
        weight_decay: None,
    };

    /// The optimiser at this point.
    pub fn apply(&self, optimizer: &OptimizerSpec) -> OptimizerSpec {
        let scaled = optimizer.scaled(self.lr_multiplier, 1.0);
        match self.weight_decay {
            Some(decay) => scaled.with_weight_decay(decay),
            None => scaled,
        }
    }

    /// `lr x0.5`, `lr x2, wd 0.001`.
    pub fn label(&self) -> String {
        match self.weight_decay {
            Some(decay) => format!("lr x{}, wd {decay}", self.lr_multiplier),
            None => format!("lr x{}", self.lr_multiplier),
        }
    }
}

impl TuneSpec {
    /// Every grid point, smaller learning rates (then weight decays) first.
    pub fn grid(&self) -> Vec<GridPoint> {
        let mut lrs = self.lr_multipliers.clone();
        lrs.sort_by(f64::total_cmp);
        let mut decays: Vec<Option<f64>> = self.weight_decays.iter().copied().map(Some).collect();
        decays.sort_by(|a, b| a.unwrap_or(0.0).total_cmp(&b.unwrap_or(0.0)));
        if decays.is_empty() {
            decays.push(None);
        }
        lrs.iter()
            .flat_map(|&lr_multiplier| {
                decays.iter().map(move |&weight_decay| GridPoint {
                    lr_multiplier,
                    weight_decay,
                })
            })
            .collect()
    }

    /// Checks the values the types cannot; the message names the key.
    pub fn validate(&self, final_seeds: &[u64]) -> Result<(), String> {
        self.validate_as(final_seeds, "`tune.lr_multipliers`", "`tune`")
    }

    /// [`TuneSpec::validate`], naming the multipliers `lr_key` and the grid `grid_key` in
    /// messages (a dataset entry's own `lr_multipliers` merged into the experiment's grid).
    pub fn validate_as(
        &self,
        final_seeds: &[u64],
        lr_key: &str,
        grid_key: &str,
    ) -> Result<(), String> {
        if self.lr_multipliers.is_empty() {
            return Err(format!(
                "{lr_key} is empty: list at least one (1 is the recipe's)"
            ));
        }
        if let Some(m) = self
            .lr_multipliers
            .iter()
            .find(|m| !(m.is_finite() && **m > 0.0))
        {
            return Err(format!("{lr_key} must be positive, got {m}"));
        }
        if let Some(d) = self
            .weight_decays
            .iter()
            .find(|d| !(d.is_finite() && **d >= 0.0))
        {
            return Err(format!("`tune.weight_decays` must be at least 0, got {d}"));
        }
        if self.seeds.is_empty() {
            return Err("`tune.seeds` is empty: list at least one".into());
        }
        if let Some(seed) = self.seeds.iter().find(|s| final_seeds.contains(s)) {
            return Err(format!(
                "`tune.seeds`: seed {seed} is also a final seed; tuning seeds must differ from \
                 `seeds` so the reported runs are not the ones the choice was made on"
            ));
        }
        let mut seen = Vec::new();
        for point in self.grid() {
            if seen.contains(&point) {
                return Err(format!(
                    "{grid_key}: grid point {} is listed twice",
                    point.label()
                ));
            }
            seen.push(point);
        }
        Ok(())
    }
}

/// The mean validation score of each grid point (over the tuning seeds), in grid order.
#[derive(Debug, Clone)]
pub struct Scored {
    pub point: GridPoint,
    /// `None` while a tuning run of this point is not stored yet.
    pub mean: Option<f64>,
}

/// The winning point once every tuning run is stored: the highest mean validation score (a
/// diverged or unscored run counts as the worst score), ties to the earlier (smaller) point.
pub fn choose(scored: &[Scored]) -> Option<(GridPoint, f64)> {
    let mut best: Option<(GridPoint, f64)> = None;
    for s in scored {
        let mean = s.mean?;
        let value = if mean.is_nan() {
            f64::NEG_INFINITY
        } else {
            mean
        };
        if best.is_none_or(|(_, b)| value > b) {
            best = Some((s.point, value));
        }
    }
    best
}

/// Which end of its grid a chosen value lies at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridEdge {
    Bottom,
    Top,
}

/// Whether every `chosen` value (e.g. the learning rates of a row's seeds) is the smallest or
/// the largest value `tried`: the best value may then lie beyond the grid. `None` when the
/// grid has one value or the choices are not all at one edge (equal within 1e-9 relative).
pub fn grid_edge(chosen: &[f64], tried: &[f64]) -> Option<GridEdge> {
    let (low, high) = tried
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let all_at = |edge: f64| {
        !chosen.is_empty()
            && chosen
                .iter()
                .all(|&v| (v - edge).abs() <= 1e-9 * edge.abs())
    };
    if low >= high {
        None
    } else if all_at(high) {
        Some(GridEdge::Top)
    } else if all_at(low) {
        Some(GridEdge::Bottom)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_choice_at_either_end_of_the_grid_is_an_edge() {
        let grid = [0.5, 1.0, 2.0, 4.0];
        assert_eq!(grid_edge(&[4.0, 4.0], &grid), Some(GridEdge::Top));
        assert_eq!(grid_edge(&[0.5], &grid), Some(GridEdge::Bottom));
        assert_eq!(grid_edge(&[1.0], &grid), None);
        // Seeds that chose differently, no choice, or a one-point grid: no edge.
        assert_eq!(grid_edge(&[0.5, 4.0], &grid), None);
        assert_eq!(grid_edge(&[], &grid), None);
        assert_eq!(grid_edge(&[1.0], &[1.0]), None);
        // Learning rates computed as base x multiplier compare within rounding.
        assert_eq!(grid_edge(&[0.1 * 3.0], &[0.1, 0.3]), Some(GridEdge::Top));
    }

    fn spec(lrs: &[f64], decays: &[f64]) -> TuneSpec {
        TuneSpec {
            lr_multipliers: lrs.to_vec(),
            weight_decays: decays.to_vec(),
            seeds: vec![100],
        }
    }

    #[test]
    fn the_grid_runs_from_small_to_large() {
        let grid = spec(&[2.0, 0.5, 1.0], &[0.01, 0.0]).grid();
        let labels: Vec<String> = grid.iter().map(GridPoint::label).collect();
        assert_eq!(
            labels,
            [
                "lr x0.5, wd 0",
                "lr x0.5, wd 0.01",
                "lr x1, wd 0",
                "lr x1, wd 0.01",
                "lr x2, wd 0",
                "lr x2, wd 0.01"
            ]
        );
    }

    #[test]
    fn the_choice_is_the_best_mean_with_ties_to_the_smaller_lr() {
        let grid = spec(&[0.5, 1.0, 2.0], &[]).grid();
        let scored = |means: [f64; 3]| -> Vec<Scored> {
            grid.iter()
                .zip(means)
                .map(|(&point, mean)| Scored {
                    point,
                    mean: Some(mean),
                })
                .collect()
        };
        let (point, score) = choose(&scored([0.90, 0.95, 0.93])).unwrap();
        assert_eq!((point.lr_multiplier, score), (1.0, 0.95));
        let (tie, _) = choose(&scored([0.95, 0.95, 0.95])).unwrap();
        assert_eq!(
            tie.lr_multiplier, 0.5,
            "ties go to the smaller learning rate"
        );
        let (no_nan, _) = choose(&scored([f64::NAN, 0.2, f64::NAN])).unwrap();
        assert_eq!(no_nan.lr_multiplier, 1.0, "a diverged point never wins");
        let mut pending = scored([0.9, 0.9, 0.9]);
        pending[2].mean = None;
        assert!(
            choose(&pending).is_none(),
            "no choice before every point is stored"
        );
    }

    #[test]
    fn bad_grids_name_the_key() {
        let cases = [
            (spec(&[], &[]), vec![0], "`tune.lr_multipliers` is empty"),
            (spec(&[0.0], &[]), vec![0], "must be positive, got 0"),
            (spec(&[1.0], &[-1.0]), vec![0], "at least 0, got -1"),
            (
                spec(&[1.0], &[]),
                vec![100],
                "seed 100 is also a final seed",
            ),
            (spec(&[1.0, 1.0], &[]), vec![0], "listed twice"),
        ];
        for (tune, seeds, expected) in cases {
            let err = tune.validate(&seeds).unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }
}
