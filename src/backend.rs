//! Backend selection: which burn backends this binary was compiled with, and how a name on the
//! command line becomes a concrete backend type.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The burn version pinned in Cargo.toml (`burn = "=0.21.0"`), recorded in every result row.
pub const BURN_VERSION: &str = "0.21.0";

/// The CPU backend used when none is named (chosen by the step-time measurement in README).
#[cfg(feature = "flex")]
pub type DefaultCpu = burn::backend::Flex;
#[cfg(all(not(feature = "flex"), feature = "ndarray"))]
pub type DefaultCpu = burn::backend::NdArray;

/// Backend that unit tests run on.
#[cfg(any(feature = "flex", feature = "ndarray"))]
pub type TestBackend = DefaultCpu;
/// Autodiff wrapper of [`TestBackend`].
#[cfg(any(feature = "flex", feature = "ndarray"))]
pub type TestAutodiffBackend = burn::backend::Autodiff<TestBackend>;

/// A backend that can be named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Flex,
    Ndarray,
    Cuda,
}

impl BackendKind {
    /// Every backend known to the harness, compiled in or not.
    pub const ALL: [BackendKind; 3] = [BackendKind::Flex, BackendKind::Ndarray, BackendKind::Cuda];

    /// Whether this binary was built with the backend's cargo feature.
    pub fn compiled(self) -> bool {
        match self {
            BackendKind::Flex => cfg!(feature = "flex"),
            BackendKind::Ndarray => cfg!(feature = "ndarray"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The first compiled backend in the order cuda, flex, ndarray.
    pub fn default_compiled() -> Result<Self> {
        [BackendKind::Cuda, BackendKind::Flex, BackendKind::Ndarray]
            .into_iter()
            .find(|b| b.compiled())
            .ok_or_else(|| Error::Usage("this binary was built without any backend feature".into()))
    }

    /// Name as used on the command line and in result rows.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::Ndarray => "ndarray",
            BackendKind::Cuda => "cuda",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let kind = BackendKind::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "unknown backend `{s}`: expected flex, ndarray or cuda"
                ))
            })?;
        if !kind.compiled() {
            return Err(Error::Usage(format!(
                "backend `{s}` is not compiled into this binary: rebuild with `--features {s}`"
            )));
        }
        Ok(kind)
    }
}

/// Prepares the runtime of `kind` before its first use. For CUDA (cubecl): compiled kernels
/// (PTX) and autotune results are cached on disk under `cache_dir/cubecl`, and autotuning runs
/// at the `minimal` level. cubecl's defaults keep no kernel cache at all and tune at `balanced`,
/// which is why the first step on a fresh GPU machine took minutes (every kernel compiled with
/// NVRTC and many candidates benchmarked). A `cubecl.toml` in the working directory or above, or
/// `CUBECL_AUTOTUNE_LEVEL`, overrides these choices.
pub fn prepare(kind: BackendKind, cache_dir: &std::path::Path) -> Result<()> {
    #[cfg(feature = "cuda")]
    if kind == BackendKind::Cuda {
        gpu::driver_present()?;
        gpu::configure(cache_dir);
    }
    let _ = (kind, cache_dir);
    Ok(())
}

#[cfg(feature = "cuda")]
mod gpu {
    use cubecl_runtime::config::autotune::AutotuneLevel;
    use cubecl_runtime::config::cache::CacheConfig;
    use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};

    /// The NVIDIA driver library must be loadable: without it cudarc panics deep in a worker
    /// thread. Looked for where the dynamic loader looks.
    pub fn driver_present() -> crate::error::Result<()> {
        let mut dirs: Vec<std::path::PathBuf> = std::env::var("LD_LIBRARY_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|d| !d.is_empty())
            .map(Into::into)
            .collect();
        for dir in [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
            "/lib/x86_64-linux-gnu",
            "/usr/local/cuda/lib64",
            "/usr/local/cuda/compat",
            "/usr/lib/wsl/lib",
            "/usr/local/nvidia/lib64",
        ] {
            dirs.push(dir.into());
        }
        let found = dirs.iter().any(|d| {
            ["libcuda.so.1", "libcuda.so"]
                .iter()
                .any(|f| d.join(f).exists())
        })
            // The dynamic loader's own cache knows folders this list misses.
            || std::process::Command::new("ldconfig")
                .arg("-p")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so"))
            || std::env::var("MK_SKIP_DRIVER_CHECK").is_ok_and(|v| v == "1");
        if found {
            Ok(())
        } else {
            Err(crate::error::Error::Usage(
                "backend cuda: the NVIDIA driver library (libcuda.so.1) was not found in \
                 LD_LIBRARY_PATH or the system library folders: this machine has no usable GPU \
                 driver. Use --backend flex, or set LD_LIBRARY_PATH to the driver's folder \
                 (MK_SKIP_DRIVER_CHECK=1 skips this check)"
                    .into(),
            ))
        }
    }

    pub fn configure(cache_dir: &std::path::Path) {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let has_file = std::env::current_dir().ok().is_some_and(|mut dir| {
                loop {
                    if ["cubecl.toml", "CubeCL.toml", "burn.toml", "Burn.toml"]
                        .iter()
                        .any(|f| dir.join(f).is_file())
                    {
                        break true;
                    }
                    if !dir.pop() {
                        break false;
                    }
                }
            });
            let mut config = CubeClRuntimeConfig::from_current_dir();
            if !has_file {
                let root = cache_dir.join("cubecl");
                config.compilation.cache = Some(CacheConfig::File(root.clone()));
                config.autotune.cache = CacheConfig::File(root);
                config.autotune.level = AutotuneLevel::Minimal;
            }
            CubeClRuntimeConfig::set(config.override_from_env());
        });
    }
}

/// Runs `$body` with `$B` bound to the autodiff backend type named by `$kind`.
#[macro_export]
macro_rules! with_backend {
    ($kind:expr, $B:ident => $body:expr) => {{
        match $kind {
            #[cfg(feature = "flex")]
            $crate::backend::BackendKind::Flex => {
                type $B = burn::backend::Autodiff<burn::backend::Flex>;
                $body
            }
            #[cfg(feature = "ndarray")]
            $crate::backend::BackendKind::Ndarray => {
                type $B = burn::backend::Autodiff<burn::backend::NdArray>;
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::backend::BackendKind::Cuda => {
                type $B = burn::backend::Autodiff<burn::backend::Cuda>;
                $body
            }
            #[allow(unreachable_patterns)]
            other => Err($crate::error::Error::Usage(format!(
                "backend `{other}` is not compiled into this binary"
            ))),
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_backend_is_named_in_the_error() {
        let err = "tpu".parse::<BackendKind>().unwrap_err().to_string();
        assert!(err.contains("`tpu`") && err.contains("flex"), "{err}");
    }

    #[test]
    fn flex_is_available_in_the_default_build() {
        if cfg!(feature = "flex") {
            assert_eq!("flex".parse::<BackendKind>().unwrap(), BackendKind::Flex);
        }
    }
}
