//! `reproduce plan`'s cost estimate: the training arithmetic of every planned run, from the
//! models' multiply-adds ([`crate::models::flops`]), the examples each run trains on and the
//! passes its method makes ([`crate::methods::MethodSpec::training_passes`]). An estimate
//! for hardware this project has not measured (a GPU's budget): it says so, and turns FLOPs
//! into hours only at a rate the user gives.

use std::fmt::Write;

use super::datasets::Datasets;
use crate::experiment::{Experiment, Plan, RunSpec};
use crate::models::InputShape;
use crate::models::flops::TRAINING_FLOPS_PER_MAC;

/// The training FLOPs of one run (evaluation passes, normalisation, activations and the
/// optimiser left out).
fn run_flops(experiment: &Experiment, datasets: &Datasets<'_>, run: &RunSpec) -> f64 {
    let index = run.dataset_index;
    let splits = datasets.splits(index);
    // The entry's recipe, not the run's: a final run still waiting for its tuning is listed
    // by its pre-protocol spec, which holds out no validation slice. Only the learning rate
    // differs between the two.
    let recipe = &experiment.datasets[index].recipe;
    let examples = recipe.trained_examples(splits.train.len()) as f64;
    let input = input_shape(datasets, index);
    let classes = splits.train.num_classes();
    let small = datasets.model(index);
    experiment.methods[run.method_index]
        .method
        .spec()
        .training_passes(small, run.k, recipe.epochs)
        .iter()
        .map(|(model, passes)| {
            passes * examples * TRAINING_FLOPS_PER_MAC * model.forward_macs(input, classes)
        })
        .sum()
}

/// What one example of dataset entry `index` looks like to its model: an image, or the
/// model's longest sequence (an upper bound: batches are padded to their longest example).
fn input_shape(datasets: &Datasets<'_>, index: usize) -> InputShape {
    match (datasets.splits(index).train.images(), datasets.model(index)) {
        (Some(images), _) => {
            let [channels, height, width] = images.image_shape;
            InputShape::Image {
                channels,
                height,
                width,
            }
        }
        (None, crate::models::ModelSpec::Transformer(spec)) => {
            InputShape::Tokens { len: spec.max_len }
        }
        (None, _) => InputShape::Tokens { len: 0 },
    }
}

/// The estimate's text: one line per (dataset, method entry, k) with its runs and the FLOPs
/// of one run, then the total of the runs this invocation owns (stored ones included).
pub(super) fn estimate(
    experiment: &Experiment,
    plan: &Plan,
    datasets: &Datasets<'_>,
    owned: &dyn Fn(usize) -> bool,
    tflops: Option<f64>,
) -> String {
    let runs = plan
        .tuning
        .iter()
        .chain(
            plan.finals
                .iter()
                .map(|f| f.spec.as_ref().unwrap_or(&f.legacy)),
        )
        .enumerate()
        .filter(|(position, _)| owned(*position))
        .map(|(_, run)| run);
    // Rows in plan order: (dataset, method index, k) -> (runs, FLOPs of each). The runs of a
    // row differ only in seed and learning rate, so they cost the same.
    let mut rows: Vec<((usize, usize, usize), usize, f64)> = Vec::new();
    for run in runs {
        let key = (run.dataset_index, run.method_index, run.k);
        match rows.iter_mut().find(|(k, ..)| *k == key) {
            Some(row) => row.1 += 1,
            None => rows.push((key, 1, run_flops(experiment, datasets, run))),
        }
    }
    let total: f64 = rows
        .iter()
        .map(|(_, count, flops)| *count as f64 * flops)
        .sum();
    let hours = |flops: f64| tflops.map(|rate| flops / (rate * 1e12) / 3600.0);
    let mut out = String::from(
        "\nEstimated training cost (arithmetic of the architectures, not a measurement): 6 FLOPs \
         per multiply-add of a forward pass, per training example and pass; evaluation, \
         normalisation, activations and the optimiser left out; trained models runs share \
         (ensemble members, the wide model, the training of MK entries that differ only in \
         bn_recalibration) counted in every run that uses them, as if none were stored yet.\n",
    );
    let _ = writeln!(
        out,
        "{:>5}  {:<14} {:<34} {:>3} {:>14}{}",
        "runs",
        "dataset",
        "method",
        "k",
        "per run",
        match tflops {
            Some(rate) => format!("  hours per run at {rate} TFLOP/s"),
            None => String::new(),
        }
    );
    for ((dataset, method, k), count, flops) in &rows {
        let entry = &experiment.methods[*method];
        let _ = writeln!(
            out,
            "{count:>5}  {:<14} {:<34} {k:>3} {:>14}{}",
            experiment.datasets[*dataset].dataset,
            format!("{} (methods[{method}])", entry.method.name()),
            format!("{}FLOP", si(*flops)),
            hours(*flops).map_or(String::new(), |h| format!("  {h:>10.2}")),
        );
    }
    let count: usize = rows.iter().map(|r| r.1).sum();
    let _ = write!(out, "total: {count} runs, {}FLOP", si(total));
    match hours(total) {
        Some(h) => {
            let _ = writeln!(
                out,
                ", {h:.1} hours at a sustained {} TFLOP/s",
                tflops.unwrap_or_default()
            );
        }
        None => out.push_str(
            " (`--tflops R`: hours at a sustained R TFLOP/s, a rate measured with `reproduce \
             bench` or stated as an assumption)\n",
        ),
    }
    out
}

/// `x` with an SI prefix and a space before the unit that follows: `45.7 G`, `1.80 P`.
fn si(x: f64) -> String {
    const PREFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    let mut value = x;
    let mut prefix = 0;
    while value >= 1000.0 && prefix + 1 < PREFIXES.len() {
        value /= 1000.0;
        prefix += 1;
    }
    format!("{value:.3} {}", PREFIXES[prefix])
}

#[cfg(test)]
mod tests {
    use super::si;

    #[test]
    fn flops_read_with_si_prefixes() {
        assert_eq!(si(45.7e6), "45.700 M");
        assert_eq!(si(1.8e18), "1.800 E");
        assert_eq!(si(2.0e21), "2000.000 E");
        assert_eq!(si(12.0), "12.000 ");
    }
}
