//! `MEASUREMENTS.md`'s generated blocks: the stored `reproduce bench` rows per machine (step
//! times and MK/baseline ratios) and the PyTorch reference CSVs beside them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Block, folder_name};
use crate::error::Result;
use crate::results::provenance::machine_parts;

/// One stored bench row, as the docs show it.
struct BenchRow {
    family: String,
    model: String,
    dataset: String,
    optimizer: String,
    batch: i64,
    k: i64,
    baseline_ms: f64,
    mk_ms: f64,
    first_step_s: f64,
    steps: i64,
    /// Everything else that says where and how it was measured.
    setting: String,
    host: String,
    cpu: String,
}

fn bench_rows(path: &Path) -> Result<Vec<BenchRow>> {
    Ok(crate::results::bench::read(path)?
        .into_iter()
        .map(|r| {
            let (host, cpu) = machine_parts(&r.device);
            let (host, cpu) = (host.to_string(), cpu.to_string());
            BenchRow {
                setting: format!(
                    "machine {}, backend {}, {} worker threads, batch {}, median of {} repeats, \
                     code {}",
                    r.device, r.backend, r.threads, r.batch, r.repeats, r.git_commit
                ),
                host,
                cpu,
                family: r.family,
                model: r.model,
                dataset: r.dataset,
                optimizer: r.optimizer,
                batch: r.batch,
                k: r.k,
                baseline_ms: r.baseline_ms,
                mk_ms: r.mk_ms,
                first_step_s: r.first_step_s,
                steps: r.steps,
            }
        })
        .collect())
}

/// Files in `dir` with extension `ext`, sorted.
fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string()
}

/// The blocks of `MEASUREMENTS.md`: the step times `reproduce bench` stored in `bench_dir`
/// (per file: baseline ms/step and the MK/baseline ratio per k), and the PyTorch reference
/// CSVs beside the rows of the same machine.
pub fn measurements_blocks(bench_dir: &Path, plots_dir: &Path) -> Result<Vec<Block>> {
    let bench = match bench_dir.parent().map(folder_name) {
        Some(parent) if parent != "." => format!("{parent}/{}", folder_name(bench_dir)),
        _ => folder_name(bench_dir),
    };
    let mut text = format!(
        "## MK overhead: `reproduce bench`\n\nFull training steps of the plain model and of its \
         MK twin, from the rows `reproduce bench` stored in `{bench}/`; ratio = MK step / \
         baseline step.\n\n"
    );
    let mut all = Vec::new();
    let files = files_with(bench_dir, "parquet");
    for path in &files {
        let rows = bench_rows(path)?;
        let mut settings: Vec<&str> = rows.iter().map(|r| r.setting.as_str()).collect();
        settings.sort_unstable();
        settings.dedup();
        let mut ks: Vec<i64> = rows.iter().map(|r| r.k).collect();
        ks.sort_unstable();
        ks.dedup();
        let _ = writeln!(text, "`{}`: {}.\n", file_name(path), settings.join("; "));
        let _ = write!(
            text,
            "| family | model | data | optimiser | timed steps | baseline ms/step | first step (s) |"
        );
        for k in &ks {
            let _ = write!(text, " k = {k} |");
        }
        let _ = write!(text, "\n|---|---|---|---|---:|---:|---:|");
        text.push_str(&"---:|".repeat(ks.len()));
        text.push('\n');
        // One line per benchmarked model, in the order measured.
        let mut models: Vec<(&str, &str)> = Vec::new();
        for r in &rows {
            if !models.contains(&(r.family.as_str(), r.model.as_str())) {
                models.push((&r.family, &r.model));
            }
        }
        for (family, model) in models {
            let of: Vec<&BenchRow> = rows
                .iter()
                .filter(|r| r.family == family && r.model == model)
                .collect();
            let first = of[0];
            let _ = write!(
                text,
                "| {family} | {model} | {} | {} | {} | {:.2} | {:.2} |",
                first.dataset, first.optimizer, first.steps, first.baseline_ms, first.first_step_s
            );
            for k in &ks {
                match of.iter().find(|r| r.k == *k) {
                    Some(r) => {
                        let _ = write!(text, " {:.3} |", r.mk_ms / r.baseline_ms);
                    }
                    None => text.push_str(" — |"),
                }
            }
            text.push('\n');
        }
        text.push('\n');
        all.extend(rows);
    }
    if files.is_empty() {
        text.push_str("No stored bench rows yet.\n");
    }
    let figure = plots_dir.join("overhead-vs-k.png");
    if figure.is_file() {
        let _ = writeln!(
            text,
            "![MK step-time overhead against k](../{}/overhead-vs-k.png)",
            folder_name(plots_dir)
        );
    }
    let mut blocks = vec![Block {
        name: "bench".into(),
        text,
    }];
    let csvs = files_with(bench_dir, "csv");
    if !csvs.is_empty() {
        let mut text = String::from(
            "## Against PyTorch on the same machine\n\nThe CSVs of \
             `benches/reference/pytorch_step.py` beside the stored rows of the same machine \
             (host name and CPU model; family and k matched); ratio = MK step / baseline \
             step.\n\n",
        );
        for path in &csvs {
            reference_table(path, &all, &mut text)?;
        }
        blocks.push(Block {
            name: "bench-reference".into(),
            text,
        });
    }
    Ok(blocks)
}

/// One reference CSV (`family`, `k`, `baseline_ms`, `mk_ms`, `torch`, `dtype`, `host`) as a
/// table beside `ours`, the stored rows of its host.
fn reference_table(path: &Path, ours: &[BenchRow], out: &mut String) -> Result<()> {
    let rows = crate::results::bench::reference_rows(path)?;
    // family -> (batch, reference baseline, k -> reference ratio); first seen order kept.
    type Reference = (Option<i64>, f64, BTreeMap<i64, f64>);
    let mut order: Vec<String> = Vec::new();
    let mut reference: BTreeMap<String, Reference> = BTreeMap::new();
    let (mut about, mut csv_host, mut csv_cpu) = (String::new(), String::new(), String::new());
    for row in rows {
        let entry = reference.entry(row.family.clone()).or_insert_with(|| {
            order.push(row.family.clone());
            (row.batch, 0.0, BTreeMap::new())
        });
        entry.1 = row.baseline_ms;
        entry.2.insert(row.k, row.mk_ms / row.baseline_ms);
        about = format!("PyTorch {} {}, host {}", row.torch, row.dtype, row.host);
        if !generic_cpu(&row.cpu) {
            let _ = write!(about, " ({})", row.cpu);
        }
        csv_host = row.host;
        csv_cpu = row.cpu;
    }
    let same_machine = |r: &BenchRow| same_machine(r, &csv_host, &csv_cpu);
    if !ours.iter().any(same_machine) {
        about.push_str(" (no stored rows of ours on that machine)");
    }
    let mut ks: Vec<i64> = reference
        .values()
        .flat_map(|(_, _, by_k)| by_k.keys().copied())
        .collect();
    ks.sort_unstable();
    ks.dedup();
    let _ = writeln!(out, "`{}`: {about}.\n", file_name(path));
    let _ = write!(
        out,
        "| family | ours baseline ms | PyTorch baseline ms | ours / PyTorch |"
    );
    for k in &ks {
        let _ = write!(out, " MK ratio k = {k}: ours / PyTorch |");
    }
    let _ = write!(out, "\n|---|---:|---:|---:|");
    out.push_str(&"---|".repeat(ks.len()));
    out.push('\n');
    for name in &order {
        let (batch, base, by_k) = &reference[name];
        // Our rows of the same family, host and (where the CSV says) batch; of several models
        // of a family, the first stored.
        let paired = |r: &&BenchRow| {
            r.family == *name && same_machine(r) && batch.is_none_or(|b| b == r.batch)
        };
        let first_model = ours.iter().find(paired).map(|r| &r.model);
        let mine: Vec<&BenchRow> = ours
            .iter()
            .filter(|r| paired(r) && Some(&r.model) == first_model)
            .collect();
        let ours_base = mine.first().map(|r| r.baseline_ms);
        let _ = write!(
            out,
            "| {name} | {} | {base:.2} | {} |",
            ours_base.map_or("—".into(), |b| format!("{b:.2}")),
            ours_base.map_or("—".into(), |b| format!("{:.2}", b / base)),
        );
        for k in &ks {
            let ours_ratio = mine
                .iter()
                .find(|r| r.k == *k)
                .map_or("—".into(), |r| format!("{:.3}", r.mk_ms / r.baseline_ms));
            let theirs = by_k.get(k).map_or("—".into(), |v| format!("{v:.3}"));
            let _ = write!(out, " {ours_ratio} / {theirs} |");
        }
        out.push('\n');
    }
    out.push('\n');
    Ok(())
}

/// Whether a CSV's `cpu` names only the architecture (older CSVs; Python's
/// `platform.machine()`), not the CPU model.
fn generic_cpu(cpu: &str) -> bool {
    matches!(
        cpu.trim(),
        "" | "x86_64" | "amd64" | "AMD64" | "i386" | "i686" | "aarch64" | "arm64"
    )
}

/// Whether our stored row ran on the CSV's machine: the same host name and, where the CSV
/// names a CPU model, the same model (several machines may share a host name such as `vm`).
fn same_machine(row: &BenchRow, host: &str, cpu: &str) -> bool {
    row.host == host && (generic_cpu(cpu) || row.cpu == cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::bench::{BenchRecord, sample_row, write};

    fn record(device: &str, baseline_ms: f64) -> BenchRecord {
        BenchRecord {
            batch: 128,
            baseline_ms,
            mk_ms: 2.0 * baseline_ms,
            ratio: 2.0,
            device: device.into(),
            ..sample_row(4)
        }
    }

    #[test]
    fn a_reference_csv_pairs_with_the_rows_of_its_cpu_when_machines_share_a_host_name() {
        let dir = tempfile::tempdir().unwrap();
        let bench = dir.path().join("bench");
        std::fs::create_dir_all(&bench).unwrap();
        write(
            &bench.join("flex-vm-amd.parquet"),
            &[record("vm (AMD EPYC, 2 threads)", 3.25)],
        )
        .unwrap();
        write(
            &bench.join("flex-vm-intel.parquet"),
            &[record("vm (Intel(R) Xeon(R) Processor, 2 threads)", 7.75)],
        )
        .unwrap();
        let header = "family,batch,k,dtype,device,threads,baseline_ms,mk_ms,ratio,torch,host,cpu";
        let csv =
            |cpu: &str| format!("{header}\nmlp,128,4,fp32,cpu,2,5.0,7.5,1.5,2.15.0,vm,{cpu}\n");
        let reference_block = |cpu: &str| {
            std::fs::write(bench.join("pytorch.csv"), csv(cpu)).unwrap();
            let blocks = measurements_blocks(&bench, dir.path()).unwrap();
            blocks
                .into_iter()
                .find(|b| b.name == "bench-reference")
                .unwrap()
                .text
        };
        let amd = reference_block("AMD EPYC");
        assert!(
            amd.contains("| mlp | 3.25 | 5.00 | 0.65 | 2.000 / 1.500 |"),
            "{amd}"
        );
        assert!(amd.contains("host vm (AMD EPYC)"), "{amd}");
        let intel = reference_block("Intel(R) Xeon(R) Processor");
        assert!(intel.contains("| mlp | 7.75 | 5.00 | 1.55 |"), "{intel}");
        let elsewhere = reference_block("Ampere Altra");
        assert!(elsewhere.contains("| mlp | — | 5.00 | — |"), "{elsewhere}");
        assert!(
            elsewhere.contains("no stored rows of ours on that machine"),
            "{elsewhere}"
        );
        // An older CSV naming only the architecture pairs by host name, as before.
        assert!(reference_block("x86_64").contains("| mlp | 3.25 |"));
    }
}
