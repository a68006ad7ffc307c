//! Files from the Hugging Face Hub: the local cache first (works offline), then the network
//! unless `HF_HUB_OFFLINE=1`. `HF_HOME` / `HF_ENDPOINT` are honoured as by the Python client.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use polars::prelude::*;

use crate::error::{Error, Result};

/// Where Hub files come from: a cache folder, and whether the network may be used.
#[derive(Debug, Clone)]
pub struct HubAccess {
    pub cache: Cache,
    pub offline: bool,
}

impl HubAccess {
    /// The standard cache (`$HF_HOME/hub`, else `~/.cache/huggingface/hub`); offline when
    /// `HF_HUB_OFFLINE` is `1` or `true`.
    pub fn from_env() -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
        Self {
            cache: Cache::from_env(),
            offline,
        }
    }
}

/// Path of `file` in the Hub dataset `repo`, from the cache or downloaded into it.
/// `local_hint` says what was looked for locally, for the error when both fail.
pub fn dataset_file(hub: &HubAccess, repo: &str, file: &str, local_hint: &str) -> Result<PathBuf> {
    repo_file(hub, RepoType::Dataset, repo, file, local_hint)
}

/// Path of `file` in the Hub model `repo` (a checkpoint's `config.json`, `model.safetensors`,
/// ...), from the cache or downloaded into it; errors as [`dataset_file`]'s.
pub fn model_file(hub: &HubAccess, repo: &str, file: &str, local_hint: &str) -> Result<PathBuf> {
    repo_file(hub, RepoType::Model, repo, file, local_hint)
}

fn repo_file(
    hub: &HubAccess,
    kind: RepoType,
    repo: &str,
    file: &str,
    local_hint: &str,
) -> Result<PathBuf> {
    let what = match kind {
        RepoType::Dataset => "dataset",
        _ => "model",
    };
    let repo_ref = Repo::new(repo.to_string(), kind);
    let cache = &hub.cache;
    if let Some(path) = cache.repo(repo_ref.clone()).get(file) {
        return Ok(path);
    }
    let offline = hub.offline;
    let unavailable = |why: String| {
        Error::MissingData(format!(
            "{local_hint}; and the Hugging Face Hub {what} `{repo}` file `{file}` is {why}. \
             Put the files in a directory and pass `--data-dir DIR`, or run once with network \
             access to fill the hub cache at {}",
            cache.path().display()
        ))
    };
    if offline {
        return Err(unavailable(
            "not in the cache (HF_HUB_OFFLINE is set)".into(),
        ));
    }
    let api = ApiBuilder::from_cache(cache.clone())
        .with_progress(false)
        .build()
        .map_err(|e| unavailable(format!("unreachable ({e})")))?;
    api.repo(repo_ref)
        .get(file)
        .map_err(|e| unavailable(format!("not downloadable ({e})")))
}

/// Reads a Hub image-classification parquet file: the struct column `column`'s `bytes` field
/// (`image` for MNIST, `img` for CIFAR-10) and the integer `label` column.
pub fn read_image_parquet(path: &Path, column: &str) -> Result<(Vec<Vec<u8>>, Vec<i64>)> {
    let parquet = |source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let df = read_parquet(path)?;
    let images = df
        .column(column)
        .and_then(|c| c.struct_().cloned())
        .and_then(|s| s.field_by_name("bytes"))
        .map_err(|_| {
            Error::data(
                path,
                format!("expected a struct column `{column}` with a binary field `bytes`"),
            )
        })?;
    let images: Vec<Vec<u8>> = images
        .binary()
        .map_err(parquet)?
        .iter()
        .map(|b| b.map(|b| b.to_vec()).unwrap_or_default())
        .collect();
    Ok((images, read_labels(&df, path)?))
}

/// Reads a parquet file whole (a Hub dataset's, or a stored results file).
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|source| Error::Parquet {
            path: path.to_path_buf(),
            source,
        })
}

/// The integer `label` column of a Hub dataset frame read from `path` (-1 for nulls).
pub fn read_labels(df: &DataFrame, path: &Path) -> Result<Vec<i64>> {
    let labels = df
        .column("label")
        .and_then(|c| c.cast(&DataType::Int64))
        .map_err(|_| Error::data(path, "expected an integer column `label`"))?;
    let labels = labels.i64().map_err(|source| Error::Parquet {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(labels.iter().map(|l| l.unwrap_or(-1)).collect())
}

/// Decodes an 8-bit grayscale PNG into its pixel bytes.
pub fn decode_png_gray(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().map_err(|e| format!("bad PNG: {e}"))?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG too large")?];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("bad PNG: {e}"))?;
    if info.color_type != png::ColorType::Grayscale || info.bit_depth != png::BitDepth::Eight {
        return Err(format!(
            "expected 8-bit grayscale, got {:?} {:?}",
            info.color_type, info.bit_depth
        ));
    }
    buf.truncate(info.buffer_size());
    Ok(buf)
}
