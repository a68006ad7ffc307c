//! Where a result came from: numerics version, code version, machine and time.

/// Version of the numerics: bump it in any change that alters the result of an existing run
/// (initialisation, data order, arithmetic), so that stored runs are not mistaken for runs of
/// the new code. Part of every run id and of every stored model's key.
///
/// 2: the fused optimiser (MK copies mixed outside autodiff) and flex's AVX-512 matrix kernels
/// change the rounding of training steps.
/// 3: the project's CPU convolution and fused BatchNorm(+add+ReLU) kernels (`kernels`) sum in
/// a different order than burn's operations.
pub const NUMERICS_VERSION: u32 = 3;

/// The commit this binary was built from (`git rev-parse --short=12 HEAD` at build time), with
/// `-dirty` when the sources differed from it, or `unknown` when built outside a checkout.
pub fn git_commit() -> String {
    env!("MK_GIT_COMMIT").to_string()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Describes the machine a run executes on, for the `machine` and `device` columns.
pub fn machine_description() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.into());
    format!("{host} ({cpu}, {} threads)", hardware_threads())
}

/// The host name and CPU model of a [`machine_description`], `host (CPU model, N threads)`;
/// the CPU is empty for a description of another form.
pub fn machine_parts(description: &str) -> (&str, &str) {
    let (host, rest) = description.split_once(" (").unwrap_or((description, ""));
    let cpu = rest.rsplit_once(", ").map_or("", |(cpu, _threads)| cpu);
    (host, cpu)
}

/// The threads the machine offers this process.
fn hardware_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The machine as a training run's `machine` column names it: with its worker threads when
/// `RAYON_NUM_THREADS` limits them, since its step times are then not the whole machine's.
/// (Benchmark rows carry the thread count in a column of their own.)
pub fn run_machine_description() -> String {
    let machine = machine_description();
    let workers = rayon::current_num_threads();
    if workers == hardware_threads() {
        machine
    } else {
        let plural = if workers == 1 { "" } else { "s" };
        let hardware = machine.strip_suffix(')').unwrap_or(&machine);
        format!("{hardware}, {workers} worker thread{plural})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_limited_to_fewer_worker_threads_says_so() {
        let machine = machine_description();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(run_machine_description);
        if hardware_threads() > 1 {
            assert_eq!(
                one,
                format!("{}, 1 worker thread)", machine.strip_suffix(')').unwrap())
            );
        } else {
            assert_eq!(one, machine);
        }
        // Benchmarks name the hardware alone (their rows count the threads).
        assert!(!machine.contains("worker"));
    }

    #[test]
    fn a_machine_description_splits_into_host_and_cpu_model() {
        assert_eq!(
            machine_parts("vm (Intel(R) Xeon(R) Processor, 2 threads)"),
            ("vm", "Intel(R) Xeon(R) Processor")
        );
        assert_eq!(
            machine_parts("vm (AMD EPYC, 2 threads)"),
            ("vm", "AMD EPYC")
        );
        assert_eq!(machine_parts("bare-host"), ("bare-host", ""));
        let machine = machine_description();
        let (host, cpu) = machine_parts(&machine);
        assert!(!host.is_empty() && !cpu.is_empty(), "{host} / {cpu}");
    }
}
