//! The plan of an experiment: every (dataset, method, k, seed) run with a stable id.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::spec::Experiment;
use super::tune::{GridPoint, Scored, choose, grid_edge};
use crate::models::ModelSpec;
use crate::train::Recipe;

/// What a run is for: choosing a value (`tune`, on the validation slice) or the tables
/// (`final`, trained at the chosen value on the experiment's seeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Tune,
    #[default]
    Final,
}

impl std::str::FromStr for Phase {
    type Err = crate::error::Error;

    fn from_str(text: &str) -> crate::error::Result<Self> {
        match text {
            "tune" => Ok(Phase::Tune),
            "final" => Ok(Phase::Final),
            other => Err(crate::error::Error::Usage(format!(
                "--phase `{other}`: expected `tune` (the tuning runs) or `final` (the runs the \
                 tables report)"
            ))),
        }
    }
}

impl Phase {
    pub fn is_final(&self) -> bool {
        *self == Phase::Final
    }

    /// The name stored in the `role` column.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Tune => "tune",
            Phase::Final => "final",
        }
    }
}

/// Everything that determines a run's result. Its hash is the run's identity: a run whose
/// file exists with this id is never trained again.
#[derive(Debug, Clone, Serialize)]
pub struct RunSpec {
    pub experiment: String,
    pub dataset: String,
    pub model: ModelSpec,
    pub recipe: Recipe,
    pub method: String,
    pub options: serde_json::Value,
    /// Copies per kernel for MK; the factor for methods that use it; 1 for methods that don't.
    pub k: usize,
    pub seed: u64,
    /// A tuning run or a final one (final runs hash as they did before tuning existed).
    #[serde(skip_serializing_if = "Phase::is_final")]
    pub phase: Phase,
    /// Content fingerprint of the dataset (see `DataSplits::fingerprint`).
    pub data: String,
    /// Numerics version of the code (`results::provenance::NUMERICS_VERSION`): runs of code
    /// that computes differently get other ids.
    pub code_version: u32,
    #[serde(skip)]
    pub dataset_index: usize,
    #[serde(skip)]
    pub method_index: usize,
}

impl RunSpec {
    /// SHA-256 of the canonical JSON of the spec (hex).
    pub fn config_hash(&self) -> String {
        let json = serde_json::to_string(self).expect("run specs serialise");
        Sha256::digest(json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The ids the same run had under earlier numerics versions, newest first.
    pub fn earlier_ids(&self) -> Vec<(u32, String)> {
        (1..self.code_version)
            .rev()
            .map(|version| {
                let spec = RunSpec {
                    code_version: version,
                    ..self.clone()
                };
                (version, spec.id())
            })
            .collect()
    }

    /// Stable, readable run id, e.g. `mnist-mk-k4-s0-1a2b3c4d5e6f`.
    pub fn id(&self) -> String {
        format!(
            "{}-{}-k{}-s{}-{}",
            self.dataset,
            self.method,
            self.k,
            self.seed,
            &self.config_hash()[..12]
        )
    }
}

/// The runs of an experiment: its tuning grid (when it has a `tune` block) and its final runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every tuning run: per (dataset, method entry, k), every grid point on every tuning seed.
    pub tuning: Vec<RunSpec>,
    /// The runs the tables report, in table order.
    pub finals: Vec<FinalRun>,
}

/// One final run: trained at its group's chosen grid point once all of the group's tuning runs
/// are stored (at the recipe's values when the experiment tunes nothing).
#[derive(Debug, Clone)]
pub struct FinalRun {
    /// The run to train; `None` while its tuning runs are not all stored.
    pub spec: Option<RunSpec>,
    /// The same run as planned before validation slices and tuning existed (the recipe's
    /// values, no validation slice): what older stored runs of it were.
    pub legacy: RunSpec,
    /// The same run at every other point of its group's grid: what it was when an earlier
    /// tuning (other code, grid or data) chose differently.
    pub alternatives: Vec<RunSpec>,
    /// The state of its group's tuning (`None` when the experiment tunes nothing).
    pub tuning: Option<TuningState>,
}

/// How far the tuning of one (dataset, method entry, k) group is.
#[derive(Debug, Clone)]
pub struct TuningState {
    pub stored: usize,
    pub needed: usize,
    /// The winning grid point and its mean validation score, once every run is stored.
    pub choice: Option<(GridPoint, f64)>,
    /// The winning learning rate is the grid's smallest or largest: the best value may lie
    /// beyond the grid.
    pub at_edge: bool,
}

impl FinalRun {
    /// Ids the table may show until this run is trained under the current code and protocol,
    /// and that its result replaces: its own spec's under earlier numerics versions, the same
    /// run at the grid's other points (every version), then the legacy spec's (every version).
    pub fn earlier_ids(&self) -> Vec<String> {
        let own = self.spec.as_ref().map(RunSpec::id);
        let every_version = |spec: &RunSpec| {
            std::iter::once(spec.id()).chain(spec.earlier_ids().into_iter().map(|(_, id)| id))
        };
        let mut ids: Vec<String> = self
            .spec
            .iter()
            .flat_map(|s| s.earlier_ids().into_iter().map(|(_, id)| id))
            .chain(self.alternatives.iter().flat_map(every_version))
            .chain(every_version(&self.legacy))
            .filter(|id| Some(id) != own.as_ref())
            .collect();
        let mut seen = std::collections::HashSet::new();
        ids.retain(|id| seen.insert(id.clone()));
        ids
    }
}

impl Plan {
    /// Final runs ready to train.
    pub fn ready(&self) -> impl Iterator<Item = &RunSpec> {
        self.finals.iter().filter_map(|f| f.spec.as_ref())
    }

    /// How many runs the plan has in all (waiting final runs included).
    pub fn len(&self) -> usize {
        self.tuning.len() + self.finals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One (dataset, method entry, k) of an experiment: what is tuned together.
struct Group {
    dataset_index: usize,
    method_index: usize,
    k: usize,
}

/// Expands an experiment into its runs, in a stable order. Methods that do not depend on k
/// run once per seed. `fingerprints[i]` identifies the content of dataset entry `i`;
/// `code_version` is the numerics version of the code that will train them; `stored_score`
/// gives the validation score of a stored run by id (`Some(NaN)` when it has none, `None`
/// when it is not stored), from which final runs get their tuned values. The experiment was
/// checked when it was loaded, so planning cannot fail.
pub fn plan(
    experiment: &Experiment,
    fingerprints: &[String],
    code_version: u32,
    stored_score: &dyn Fn(&str) -> Option<f64>,
) -> Plan {
    let mut groups = Vec::new();
    for (dataset_index, entry) in experiment.datasets.iter().enumerate() {
        for (method_index, method) in experiment.methods.iter().enumerate() {
            if !method.runs_on(&entry.dataset) {
                continue;
            }
            for k in experiment.method_ks(method_index) {
                groups.push(Group {
                    dataset_index,
                    method_index,
                    k,
                });
            }
        }
    }
    let spec = |group: &Group, seed: u64, phase: Phase, point: GridPoint| {
        let entry = &experiment.datasets[group.dataset_index];
        let method = &experiment.methods[group.method_index].method;
        let mut recipe = entry.recipe.clone();
        recipe.optimizer = point.apply(&recipe.optimizer);
        RunSpec {
            experiment: experiment.name.clone(),
            dataset: entry.dataset.clone(),
            model: entry.model.clone(),
            recipe,
            method: method.name().to_string(),
            options: method.spec().options(),
            k: group.k,
            seed,
            phase,
            data: fingerprints[group.dataset_index].clone(),
            code_version,
            dataset_index: group.dataset_index,
            method_index: group.method_index,
        }
    };

    let mut tuning = Vec::new();
    let mut finals = Vec::new();
    for group in &groups {
        let tune = experiment.tune_for(group.dataset_index);
        let state = tune.as_ref().map(|tune| {
            let mut stored = 0;
            let mut needed = 0;
            let scored: Vec<Scored> = tune
                .grid()
                .into_iter()
                .map(|point| {
                    let scores: Vec<Option<f64>> = tune
                        .seeds
                        .iter()
                        .map(|&seed| {
                            let run = spec(group, seed, Phase::Tune, point);
                            let score = stored_score(&run.id());
                            tuning.push(run);
                            score
                        })
                        .collect();
                    needed += scores.len();
                    stored += scores.iter().flatten().count();
                    let mean = scores
                        .iter()
                        .copied()
                        .collect::<Option<Vec<f64>>>()
                        .map(|s| s.iter().sum::<f64>() / s.len() as f64);
                    Scored { point, mean }
                })
                .collect();
            let choice = choose(&scored);
            TuningState {
                stored,
                needed,
                choice,
                at_edge: choice.is_some_and(|(p, _)| {
                    grid_edge(&[p.lr_multiplier], &tune.lr_multipliers).is_some()
                }),
            }
        });
        for &seed in experiment.seeds_for(group.dataset_index) {
            let at_recipe = spec(group, seed, Phase::Final, GridPoint::RECIPE);
            let mut legacy = at_recipe.clone();
            legacy.recipe.validation = None;
            let chosen = state
                .as_ref()
                .and_then(|s| s.choice)
                .map(|(point, _)| point);
            let alternatives: Vec<RunSpec> = tune
                .iter()
                .flat_map(|tune| tune.grid())
                .filter(|&point| Some(point) != chosen)
                .map(|point| spec(group, seed, Phase::Final, point))
                .collect();
            let spec = match (&state, chosen) {
                (None, _) => Some(at_recipe),
                (Some(_), chosen) => chosen.map(|point| spec(group, seed, Phase::Final, point)),
            };
            finals.push(FinalRun {
                spec,
                legacy,
                alternatives,
                tuning: state.clone(),
            });
        }
    }
    // The same run listed twice (two identical method entries) is planned once; the key is
    // the run at the recipe's values, which does not depend on what is stored.
    let mut seen = std::collections::HashSet::new();
    tuning.retain(|r| seen.insert(r.id()));
    finals.retain(|f| {
        let mut key = f.legacy.clone();
        key.recipe.validation = experiment.datasets[key.dataset_index].recipe.validation;
        seen.insert(key.id())
    });
    Plan { tuning, finals }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUNED: &str = r#"
name: demo
datasets:
  - dataset: mnist
    model: {family: mlp, hidden: [32]}
    recipe: {epochs: 2, batch_size: 64, validation: 100, optimizer: {name: sgd, lr: 0.1}}
methods: [baseline, {name: mk, mixing: uniform}]
k: [2, 4]
seeds: [0, 1]
tune: {lr_multipliers: [2, 0.5, 1], seeds: [100]}
"#;

    /// `TUNED` without its `tune` block and validation slice: the ids stored before tuning
    /// existed.
    fn untuned() -> String {
        TUNED
            .replace("tune: {lr_multipliers: [2, 0.5, 1], seeds: [100]}", "")
            .replace("validation: 100, ", "")
    }

    fn experiment(text: &str) -> Experiment {
        let experiment: Experiment = serde_norway::from_str(text).unwrap();
        experiment.validate().unwrap();
        experiment
    }

    #[test]
    fn every_method_and_k_gets_the_same_grid_and_waits_for_it() {
        let experiment = experiment(TUNED);
        let plan = plan(&experiment, &["data".into()], 3, &|_| None);
        // Groups: baseline (k-free), mk at k = 2 and 4; 3 grid points x 1 tuning seed each.
        assert_eq!(plan.tuning.len(), 3 * 3);
        assert!(
            plan.tuning
                .iter()
                .all(|r| r.phase == Phase::Tune && r.seed == 100)
        );
        let lrs: Vec<f64> = plan.tuning[..3]
            .iter()
            .map(|r| r.recipe.optimizer.lr())
            .collect();
        assert_eq!(
            lrs,
            [0.05, 0.1, 0.2],
            "grid order: smaller learning rates first"
        );
        assert_eq!(plan.finals.len(), 3 * 2, "3 groups x 2 final seeds");
        assert!(plan.finals.iter().all(|f| f.spec.is_none()));
        let state = plan.finals[0].tuning.as_ref().unwrap();
        assert_eq!((state.stored, state.needed), (0, 3));
    }

    #[test]
    fn final_runs_train_at_the_best_validation_score_of_their_own_group() {
        let experiment = experiment(TUNED);
        let first = plan(&experiment, &["data".into()], 3, &|_| None);
        // baseline's best is x2, mk k = 2 ties (smaller lr wins), mk k = 4 is missing a run.
        let scores: std::collections::HashMap<String, f64> = first
            .tuning
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 8)
            .map(|(i, r)| {
                let score = match i {
                    0..=2 => [0.5, 0.6, 0.7][i],
                    _ => 0.9,
                };
                (r.id(), score)
            })
            .collect();
        let plan = plan(&experiment, &["data".into()], 3, &|id| {
            scores.get(id).copied()
        });
        let chosen: Vec<Option<f64>> = plan
            .finals
            .iter()
            .map(|f| f.spec.as_ref().map(|s| s.recipe.optimizer.lr()))
            .collect();
        assert_eq!(
            chosen,
            [Some(0.2), Some(0.2), Some(0.05), Some(0.05), None, None]
        );
        let f = &plan.finals[0];
        let spec = f.spec.as_ref().unwrap();
        assert_eq!((spec.phase, spec.seed), (Phase::Final, 0));
        assert_eq!(spec.recipe.validation, Some(100));
        assert_eq!(f.legacy.recipe.validation, None);
        assert_eq!(f.legacy.recipe.optimizer.lr(), 0.1);
        assert!(f.earlier_ids().contains(&f.legacy.id()));
        assert_eq!(f.tuning.as_ref().unwrap().choice.unwrap().1, 0.7);
    }

    #[test]
    fn a_dataset_with_its_own_seeds_trains_those_and_keeps_the_run_ids() {
        let two = TUNED.replace(
            "methods:",
            "  - dataset: cifar10\n    model: {family: resnet, blocks: [1], widths: [8]}\n    \
             recipe: {epochs: 1, batch_size: 64, validation: 100, optimizer: {name: sgd, lr: 0.1}}\n\
             methods:",
        );
        let five = two.replace(
            "validation: 100, optimizer: {name: sgd, lr: 0.1}}\n  - dataset: cifar10",
            "validation: 100, optimizer: {name: sgd, lr: 0.1}}\n    seeds: [0, 1, 2, 3, 4]\n  - dataset: cifar10",
        );
        let (two, five) = (experiment(&two), experiment(&five));
        assert_eq!(five.seeds_for(0), [0, 1, 2, 3, 4]);
        assert_eq!(five.seeds_for(1), [0, 1], "the experiment's seeds");
        let data = ["mnist".to_string(), "cifar10".to_string()];
        let seeds = |e: &Experiment, dataset: &str| -> Vec<u64> {
            plan(e, &data, 3, &|_| None)
                .finals
                .iter()
                .map(|f| &f.legacy)
                .filter(|s| s.dataset == dataset && s.method == "baseline")
                .map(|s| s.seed)
                .collect()
        };
        assert_eq!(seeds(&five, "mnist"), [0, 1, 2, 3, 4]);
        assert_eq!(seeds(&five, "cifar10"), [0, 1]);
        // Seeds 0 and 1 are the same runs as without the field: stored runs are found.
        let ids = |e: &Experiment| -> Vec<String> {
            plan(e, &data, 3, &|_| None)
                .finals
                .iter()
                .map(|f| f.legacy.id())
                .collect()
        };
        let (before, after) = (ids(&two), ids(&five));
        assert!(before.iter().all(|id| after.contains(id)));
        assert_eq!(
            after.len(),
            before.len() + 3 * 3,
            "3 more seeds x 3 mnist groups"
        );
        // A tuning seed may not be any dataset's final seed.
        let mut clash = five.clone();
        clash.datasets[0].seeds = Some(vec![0, 100]);
        let err = clash.validate().unwrap_err();
        assert!(err.contains("seed 100 is also a final seed"), "{err}");
        clash.datasets[0].seeds = Some(vec![]);
        assert!(
            clash
                .validate()
                .unwrap_err()
                .contains("datasets.0.seeds is empty")
        );
    }

    #[test]
    fn a_dataset_with_its_own_grid_tunes_on_it_and_keeps_the_shared_points() {
        let two = TUNED.replace(
            "methods:",
            "  - dataset: cifar10\n    model: {family: resnet, blocks: [1], widths: [8]}\n    \
             recipe: {epochs: 1, batch_size: 64, validation: 100, optimizer: {name: sgd, lr: 0.1}}\n\
             methods:",
        );
        let short = two.replace(
            "optimizer: {name: sgd, lr: 0.1}}\nmethods:",
            "optimizer: {name: sgd, lr: 0.1}}\n    lr_multipliers: [1, 2]\nmethods:",
        );
        let (two, short) = (experiment(&two), experiment(&short));
        assert_eq!(short.tune_for(0).unwrap().lr_multipliers, [2.0, 0.5, 1.0]);
        assert_eq!(short.tune_for(1).unwrap().lr_multipliers, [1.0, 2.0]);
        assert_eq!(short.tune_for(1).unwrap().seeds, [100]);
        let data = ["mnist".to_string(), "cifar10".to_string()];
        let lrs = |e: &Experiment, dataset: &str| -> Vec<f64> {
            plan(e, &data, 3, &|_| None)
                .tuning
                .iter()
                .filter(|s| s.dataset == dataset && s.method == "baseline")
                .map(|s| s.recipe.optimizer.lr())
                .collect()
        };
        assert_eq!(lrs(&short, "mnist"), [0.05, 0.1, 0.2]);
        assert_eq!(lrs(&short, "cifar10"), [0.1, 0.2]);
        // The points both grids share are the same runs: stored tuning runs are found.
        let ids = |e: &Experiment| -> Vec<String> {
            plan(e, &data, 3, &|_| None)
                .tuning
                .iter()
                .map(|s| s.id())
                .collect()
        };
        let (all, fewer) = (ids(&two), ids(&short));
        assert!(fewer.iter().all(|id| all.contains(id)));
        assert_eq!(
            fewer.len(),
            all.len() - 3,
            "one point fewer for 3 cifar10 groups"
        );
        // Bad grids name the dataset's key.
        let mut bad = short.clone();
        bad.datasets[1].lr_multipliers = Some(vec![]);
        let err = bad.validate().unwrap_err();
        assert!(err.contains("datasets.1.lr_multipliers is empty"), "{err}");
        bad.datasets[1].lr_multipliers = Some(vec![-1.0]);
        let err = bad.validate().unwrap_err();
        assert!(
            err.contains("datasets.1.lr_multipliers must be positive"),
            "{err}"
        );
        bad.tune = None;
        let err = bad.validate().unwrap_err();
        assert!(err.contains("no `tune` block"), "{err}");
    }

    #[test]
    fn run_ids_of_untuned_experiments_are_pinned() {
        // Written down once: a change of the spec's serialised form (a new field without
        // `skip_serializing_if`, a renamed key) would orphan every stored run.
        let untuned = untuned();
        let plan = plan(&experiment(&untuned), &["data".into()], 3, &|_| None);
        let ids: Vec<String> = plan
            .finals
            .iter()
            .take(3)
            .map(|f| f.spec.as_ref().unwrap().id())
            .collect();
        assert_eq!(ids, PINNED_IDS);
    }

    /// The ids the code before tuning existed gave these runs (the committed quick results,
    /// stored by that code, are found under the same serialisation).
    const PINNED_IDS: [&str; 3] = [
        "mnist-baseline-k1-s0-615add8962b4",
        "mnist-baseline-k1-s1-3d0d70700ff0",
        "mnist-mk-k2-s0-820c65bb859f",
    ];

    #[test]
    fn submodular_ids_keep_the_default_fine_tuning_rate_out_and_pin_the_factor() {
        // Stored runs are found by their ids: `finetune_lr_factor` at its default (1) must
        // serialise as no key at all, so runs stored before the option existed keep their
        // ids, and 0.1 (Table 2's recipe) as one fixed form.
        let ids = |entry: &str| -> Vec<String> {
            let text = untuned().replace(
                "[baseline, {name: mk, mixing: uniform}]",
                &format!("[{entry}]"),
            );
            plan(&experiment(&text), &["data".into()], 3, &|_| None)
                .finals
                .iter()
                .take(1)
                .map(|f| f.spec.as_ref().unwrap().id())
                .collect()
        };
        let plain = ids("{name: submodular, finetune_epochs: 10}");
        assert_eq!(
            ids("{name: submodular, finetune_epochs: 10, finetune_lr_factor: 1}"),
            plain
        );
        let tenth = ids("{name: submodular, finetune_epochs: 10, finetune_lr_factor: 0.1}");
        assert_eq!(
            (plain[0].as_str(), tenth[0].as_str()),
            PINNED_SUBMODULAR_IDS
        );
    }

    /// Written down by the code that stored Table 2's version-3 `submodular` runs (commit
    /// 99a1511's serialisation), for this toy experiment: without, then with the factor.
    const PINNED_SUBMODULAR_IDS: (&str, &str) = (
        "mnist-submodular-k2-s0-53bb46513a62",
        "mnist-submodular-k2-s0-de3781877770",
    );

    #[test]
    fn without_tuning_final_runs_keep_their_ids() {
        let untuned = untuned();
        let plan = plan(&experiment(&untuned), &["data".into()], 3, &|_| None);
        assert!(plan.tuning.is_empty());
        for f in &plan.finals {
            let spec = f.spec.as_ref().unwrap();
            assert_eq!(
                spec.id(),
                f.legacy.id(),
                "no validation, no tuning: the same run"
            );
            assert!(!f.earlier_ids().contains(&spec.id()));
        }
    }
}
