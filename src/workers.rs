//! The threads a command's work runs on.
//!
//! The CPU kernels split each operation across rayon's worker threads. Called from a thread
//! outside the pool (a binary's main thread), every parallel operation is handed to a sleeping
//! worker and the caller blocks until a worker wakes it again, hundreds of times a training
//! step. Run on a worker of the pool, the same operation starts at once on the calling thread.
//! Measured on a 2-core Intel Xeon (docs/MEASUREMENTS.md): a small parallel operation 14-23 us
//! from the main thread against 2.3-2.5 us from a worker; the Transformer 2x128 step at batch
//! 32 faster in 8 of 8 alternating pairs (by up to 14%), the MLP's in 9 of 10.

/// Stack of each worker thread, as large as a main thread's usual 8 MiB: the whole command
/// (model building, the autodiff graph, reports) runs on a worker, not only the kernels.
const STACK_BYTES: usize = 8 << 20;

/// Runs `work` on a worker of a rayon pool with the default number of threads
/// (`RAYON_NUM_THREADS`, else one per hardware thread, as rayon's global pool), so that the
/// kernels' parallel operations are called from inside the pool. Where the pool cannot be
/// built (the system refuses threads), `work` runs on the calling thread with the global pool.
pub fn run_on_worker_threads<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    match rayon::ThreadPoolBuilder::new()
        .stack_size(STACK_BYTES)
        .thread_name(|i| format!("worker-{i}"))
        .build()
    {
        Ok(pool) => pool.install(work),
        Err(_) => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_on_a_worker_of_a_pool_as_large_as_the_global_one() {
        assert!(rayon::current_thread_index().is_none(), "a test thread");
        let (index, threads) =
            run_on_worker_threads(|| (rayon::current_thread_index(), rayon::current_num_threads()));
        assert!(index.is_some(), "inside the pool");
        assert_eq!(threads, rayon::current_num_threads());
    }

    #[test]
    fn results_and_panics_come_back_to_the_caller() {
        assert_eq!(run_on_worker_threads(|| 6 * 7), 42);
        let caught = std::panic::catch_unwind(|| run_on_worker_threads(|| panic!("inside")));
        assert!(caught.is_err());
    }
}
