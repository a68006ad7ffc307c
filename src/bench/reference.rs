//! What `reproduce bench` prints: its rows as a markdown table, and beside the rows of a
//! reference implementation (the PyTorch CSV of `benches/reference/pytorch_step.py`).

use std::path::Path;

use super::Stamp;
use crate::error::Result;
use crate::results::bench::{BenchRecord, reference_rows};

/// The rows of one invocation (`batch`, `repeats` as asked) as a markdown table.
pub(super) fn markdown(
    rows: &[BenchRecord],
    batch: usize,
    repeats: usize,
    stamp: &Stamp,
) -> String {
    let Stamp {
        backend,
        machine,
        threads,
        ..
    } = stamp;
    let mut out = format!(
        "MK (k copies) vs baseline training step, batch {batch}, median of {repeats} alternating repeats; backend {backend}, {machine}, {threads} worker threads\n\n\
         | family | model | optimizer | k | baseline ms/step | mk ms/step | ratio | baseline examples/s | mk examples/s | first step s |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} | {:.2} |\n",
            row.family,
            row.model,
            row.optimizer,
            row.k,
            row.baseline_ms,
            row.mk_ms,
            row.ratio,
            1e3 * row.batch as f64 / row.baseline_ms,
            1e3 * row.batch as f64 / row.mk_ms,
            row.first_step_s,
        ));
    }
    out
}

/// The rows of a reference CSV (`family`, `k`, `baseline_ms`, `mk_ms`, `dtype`, `torch`) beside
/// this run's: ours / reference step time, and both MK ratios.
pub(super) fn against(path: &Path, rows: &[BenchRecord]) -> Result<String> {
    let mut out = String::from(
        "\nAgainst the reference (same machine, separate process):\n\n\
         | family | k | ours baseline ms | reference baseline ms | ours / reference | ours MK ratio | reference MK ratio | reference |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for reference in reference_rows(path)? {
        let Some(ours) = rows
            .iter()
            .find(|r| r.family == reference.family && r.k == reference.k)
        else {
            continue;
        };
        out.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | PyTorch {} {} |\n",
            ours.family,
            ours.k,
            ours.baseline_ms,
            reference.baseline_ms,
            ours.baseline_ms / reference.baseline_ms,
            ours.ratio,
            reference.mk_ms / reference.baseline_ms,
            reference.torch,
            reference.dtype,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::bench::sample_row;

    #[test]
    fn reference_rows_are_matched_by_family_and_k() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("ref.csv");
        std::fs::write(
            &csv,
            "family,batch,k,dtype,device,threads,baseline_ms,mk_ms,ratio,torch,host,cpu\n\
             mlp,128,4,fp32,cpu,2,4.0,6.0,1.5,2.11.0,vm,x86_64\n\
             resnet,128,4,fp32,cpu,2,100.0,101.0,1.01,2.11.0,vm,x86_64\n",
        )
        .unwrap();
        let row = BenchRecord {
            model: "mlp-784-512-512-10".into(),
            batch: 128,
            mk_ms: 2.5,
            ratio: 1.25,
            first_step_s: 0.0,
            steps: 1,
            device: "vm (x86_64, 2 threads)".into(),
            ..sample_row(4)
        };
        let table = against(&csv, &[row]).unwrap();
        assert!(
            table.contains(
                "| mlp | 4 | 2.000 | 4.000 | 0.500 | 1.250 | 1.500 | PyTorch 2.11.0 fp32 |"
            ),
            "{table}"
        );
        assert!(
            !table.contains("| resnet"),
            "no row of ours to compare: {table}"
        );
        std::fs::write(&csv, "family,k\nmlp,4\n").unwrap();
        let err = against(&csv, &[]).unwrap_err().to_string();
        assert!(
            err.contains("baseline_ms") && err.contains("ref.csv"),
            "{err}"
        );
    }
}
