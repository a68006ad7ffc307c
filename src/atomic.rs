//! The one way this crate writes a file: to a temporary name in the target's folder, flushed
//! to disk, renamed into place, and the folder flushed. A reader sees the old content or the
//! new, never a part of it, and once a call returns the new content survives a crash (a
//! rename is only durable once its folder is).

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Prefix of every temporary name. Readers skip such files; audits remove old ones, which
/// only a killed writer leaves behind.
pub const TEMP_PREFIX: &str = ".tmp";

/// Writes `bytes` to `path`.
pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |file| {
        file.write_all(bytes).map_err(|e| Error::io(path, e))
    })
}

/// Writes `path` through `fill`, which gets the open temporary file (it may seek and
/// rewrite); nothing is renamed into place when `fill` fails.
pub fn write_with<T>(path: &Path, fill: impl FnOnce(&mut File) -> Result<T>) -> Result<T> {
    let dir = folder_of(path)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let value = fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_folder(dir)?;
    Ok(value)
}

/// Writes `path` through `fill`, which gets a temporary path (with the target's extension)
/// to create itself: for writers that open files by name, such as burn's recorders.
pub fn write_to_path<T>(path: &Path, fill: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let dir = folder_of(path)?;
    let suffix = path
        .extension()
        .map(|x| format!(".{}", x.to_string_lossy()))
        .unwrap_or_default();
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(&suffix)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?
        .into_temp_path();
    let value = fill(&tmp)?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_folder(dir)?;
    Ok(value)
}

/// Builds the folder `target` through `fill` (which writes into the temporary folder it
/// gets), flushes its files and itself, then replaces `target` with it.
pub fn write_folder(target: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = folder_of(target)?;
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempdir_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    fill(tmp.path())?;
    for entry in fs::read_dir(tmp.path())
        .map_err(|e| Error::io(tmp.path(), e))?
        .flatten()
    {
        let path = entry.path();
        if path.is_file() {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&path, e))?;
        }
    }
    sync_folder(tmp.path())?;
    let _ = fs::remove_dir_all(target);
    fs::rename(tmp.keep(), target).map_err(|e| Error::io(target, e))?;
    sync_folder(dir)
}

/// The folder `path` lives in, created when missing.
fn folder_of(path: &Path) -> Result<&Path> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    Ok(dir)
}

/// Flushes a folder's entries (names created or renamed in it) to disk.
fn sync_folder(dir: &Path) -> Result<()> {
    // Folders cannot be opened as files on Windows; its renames are durable as they are.
    if cfg!(unix) {
        File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_is_left() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/out.txt");
        write(&path, b"first").unwrap();
        write(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(names(&tmp.path().join("sub")), ["out.txt"]);
    }

    #[test]
    fn a_failed_writer_leaves_the_old_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("out.bin");
        write(&path, b"old").unwrap();
        let failed = write_with(&path, |file| {
            file.write_all(b"partial").unwrap();
            Err::<(), _>(Error::Usage("stopped".into()))
        });
        assert!(failed.is_err());
        let failed = write_to_path(&path, |tmp| {
            assert!(tmp.to_string_lossy().ends_with(".bin"), "{}", tmp.display());
            fs::write(tmp, b"partial").unwrap();
            Err::<(), _>(Error::Usage("stopped".into()))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names(tmp.path()), ["out.bin"]);
        write_to_path(&path, |tmp| {
            fs::write(tmp, b"new").map_err(|e| Error::io(tmp, e))
        })
        .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn a_folder_replaces_the_old_one() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("epoch-0001");
        for text in ["a", "b"] {
            write_folder(&target, |dir| {
                fs::write(dir.join("state.json"), text).map_err(|e| Error::io(dir, e))
            })
            .unwrap();
        }
        assert_eq!(fs::read(target.join("state.json")).unwrap(), b"b");
        assert_eq!(names(tmp.path()), ["epoch-0001"]);
    }
}
