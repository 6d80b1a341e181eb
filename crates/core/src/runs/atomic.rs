use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};

/// A sibling of `path` named `.<file name><suffix>`, hidden so that listings of checkpoints skip it.
fn sibling(path: &Path, suffix: &str) -> Result<PathBuf> {
    let name = path.file_name().with_context(|| format!("{} has no file name", path.display()))?;
    let mut hidden = OsString::from(".");
    hidden.push(name);
    hidden.push(suffix);
    Ok(path.with_file_name(hidden))
}

/// Flushes a folder's entry list, so that a rename inside it survives a power cut.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let d = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        File::open(d).and_then(|f| f.sync_all()).with_context(|| format!("syncing folder {}", d.display()))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one: the bytes go to a
/// temporary file in the same folder, which is synced and then renamed over `path`.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = sibling(path, &format!(".tmp-{}-{n}", std::process::id()))?;
    let write = || -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Where to write a folder's contents before [`atomic_replace_dir`] moves them to `final_dir`: the hidden sibling
/// `.<name>.partial`, on the same file system so that the move is a rename.
pub fn staging_dir(final_dir: &Path) -> Result<PathBuf> {
    sibling(final_dir, ".partial")
}

/// The hidden sibling that holds the previous `final_dir` while [`atomic_replace_dir`] swaps folders.
fn replaced_dir(final_dir: &Path) -> Result<PathBuf> {
    sibling(final_dir, ".replaced")
}

/// Moves the fully written folder `staging` to `final_dir`, replacing any folder there, such that a complete
/// `final_dir` exists at every moment except between two renames, and [`recover_replaced_dir`] repairs even that:
/// the old folder is renamed aside, the new one renamed in, and only then the old one deleted.
///
/// Fails, leaving `final_dir` untouched, when `staging` is missing or not a folder. `staging` must be on the same
/// file system as `final_dir`; [`staging_dir`] names a suitable place.
pub fn atomic_replace_dir(staging: &Path, final_dir: &Path) -> Result<()> {
    if !staging.is_dir() {
        bail!("cannot move {} into place: it is not a folder (was it written?)", staging.display());
    }
    let old = replaced_dir(final_dir)?;
    if old.exists() {
        // A leftover of an interrupted replace: restore it if it is the only copy, else it is stale.
        if final_dir.exists() {
            fs::remove_dir_all(&old).with_context(|| format!("removing stale {}", old.display()))?;
        } else {
            fs::rename(&old, final_dir)
                .with_context(|| format!("restoring {} from {}", final_dir.display(), old.display()))?;
        }
    }
    let had_old = final_dir.exists();
    if had_old {
        fs::rename(final_dir, &old)
            .with_context(|| format!("moving {} aside to {}", final_dir.display(), old.display()))?;
    }
    if let Err(e) = fs::rename(staging, final_dir) {
        if had_old {
            // Put the previous folder back so that nothing is lost.
            let _ = fs::rename(&old, final_dir);
        }
        return Err(e).with_context(|| format!("renaming {} to {}", staging.display(), final_dir.display()));
    }
    sync_dir(final_dir.parent().unwrap_or(Path::new(".")))?;
    if had_old {
        // The new folder is in place, so failing to delete the old one is not a failed replace; a later
        // `recover_replaced_dir` or replace removes it.
        let _ = fs::remove_dir_all(&old);
    }
    Ok(())
}

/// Repairs what an interrupted [`atomic_replace_dir`] left next to `final_dir`: if `final_dir` is missing but its
/// moved-aside predecessor exists, that is renamed back; otherwise a stale predecessor is deleted. A leftover
/// staging folder is incomplete by definition and is deleted too. Returns whether anything was repaired.
pub fn recover_replaced_dir(final_dir: &Path) -> Result<bool> {
    let old = replaced_dir(final_dir)?;
    let staging = staging_dir(final_dir)?;
    let mut changed = false;
    if old.exists() {
        if final_dir.exists() {
            fs::remove_dir_all(&old).with_context(|| format!("removing stale {}", old.display()))?;
        } else {
            fs::rename(&old, final_dir)
                .with_context(|| format!("restoring {} from {}", final_dir.display(), old.display()))?;
        }
        changed = true;
    }
    if staging.exists() {
        fs::remove_dir_all(&staging).with_context(|| format!("removing incomplete {}", staging.display()))?;
        changed = true;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_dir(dir: &Path, content: &str) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("weights.bin"), content).unwrap();
    }

    fn read(dir: &Path) -> String {
        fs::read_to_string(dir.join("weights.bin")).unwrap()
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        atomic_write(&p, b"a = 1\n").unwrap();
        atomic_write(&p, b"a = 2\n").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "a = 2\n");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let err = atomic_write(&dir.path().join("missing/x.toml"), b"").unwrap_err();
        assert!(format!("{err:#}").contains("missing/.x.toml.tmp"), "{err:#}");
    }

    #[test]
    fn replace_dir_swaps_in_the_new_folder() {
        let dir = tempfile::tempdir().unwrap();
        let fin = dir.path().join("step-00000010");
        let staging = staging_dir(&fin).unwrap();
        write_dir(&staging, "first");
        atomic_replace_dir(&staging, &fin).unwrap();
        assert_eq!(read(&fin), "first");
        write_dir(&staging, "second");
        atomic_replace_dir(&staging, &fin).unwrap();
        assert_eq!(read(&fin), "second");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["step-00000010"], "no staging or replaced folder may be left");
    }

    #[test]
    fn replace_dir_keeps_the_old_folder_when_staging_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let fin = dir.path().join("best");
        write_dir(&fin, "old");
        let err = atomic_replace_dir(&staging_dir(&fin).unwrap(), &fin).unwrap_err().to_string();
        assert!(err.contains(".best.partial") && err.contains("not a folder"), "{err}");
        assert_eq!(read(&fin), "old");
        // A file where the staging folder should be is refused the same way.
        fs::write(staging_dir(&fin).unwrap(), "x").unwrap();
        assert!(atomic_replace_dir(&staging_dir(&fin).unwrap(), &fin).is_err());
        assert_eq!(read(&fin), "old");
    }

    #[test]
    fn recovery_restores_a_folder_moved_aside_by_an_interrupted_replace() {
        let dir = tempfile::tempdir().unwrap();
        let fin = dir.path().join("final");
        // State after a crash between the two renames: the old folder aside, the new one still staged.
        write_dir(&replaced_dir(&fin).unwrap(), "old");
        write_dir(&staging_dir(&fin).unwrap(), "half-written");
        assert!(recover_replaced_dir(&fin).unwrap());
        assert_eq!(read(&fin), "old");
        assert!(!staging_dir(&fin).unwrap().exists());
        // A stale moved-aside folder next to a complete final one is dropped.
        write_dir(&replaced_dir(&fin).unwrap(), "older");
        assert!(recover_replaced_dir(&fin).unwrap());
        assert_eq!(read(&fin), "old");
        assert!(!replaced_dir(&fin).unwrap().exists());
        assert!(!recover_replaced_dir(&fin).unwrap());
    }
}
