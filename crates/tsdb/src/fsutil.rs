//! Small filesystem helpers: directory fsync, the advisory lock file, read-once file mappings.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// fsyncs a directory so that entries created or renamed in it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `data` atomically and durably: `<path>.tmp`, fsync, rename, directory
/// fsync. A crash leaves the old file or the new one (and perhaps a stray `.tmp`).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    fsync_dir(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
}

/// An exclusive `flock` on `<dir>/lock`, held until dropped (as Prometheus' `lock` file).
#[derive(Debug)]
pub struct LockFile {
    _file: File,
    path: PathBuf,
}

impl LockFile {
    /// Takes the lock or fails if another process holds it.
    pub fn acquire(dir: &Path) -> io::Result<LockFile> {
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("lock {} (is another process using this directory?): {err}", path.display()),
            ));
        }
        Ok(LockFile { _file: file, path })
    }

    /// Path of the lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Total size in bytes of the regular files directly or indirectly under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// A file mapped for reading front to back, once (WAL segments on replay and checkpoints,
/// head chunk files on open). Pages already read can be handed back with
/// [`MappedFile::release_before`], so reading a 128 MiB file does not hold all of it in the
/// resident set.
pub struct MappedFile {
    map: Option<memmap2::Mmap>,
    released: std::cell::Cell<usize>,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile").field("len", &self.data().len()).finish()
    }
}

impl MappedFile {
    /// Maps `path` (an empty file maps to no bytes).
    pub fn open(path: &Path) -> io::Result<Self> {
        let f = File::open(path)?;
        let len = f.metadata()?.len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: callers map files nobody writes while they read them (finished WAL
            // segments, head chunk files before the writer starts).
            Some(unsafe { memmap2::Mmap::map(&f) }?)
        };
        Ok(MappedFile { map, released: std::cell::Cell::new(0) })
    }

    /// The segment's bytes.
    pub fn data(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Drops the pages before `off` from the resident set once 8 MiB more have been read (they
    /// are read from the file again if touched).
    pub fn release_before(&self, off: usize) {
        const STEP: usize = 8 << 20;
        let Some(map) = &self.map else { return };
        let upto = off & !(STEP - 1);
        if upto > self.released.get() {
            // SAFETY: a read-only private file mapping: dropped pages are re-read from the
            // unchanged file on access, so no data changes under any reader.
            let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, upto) };
            self.released.set(upto);
        }
    }
}

/// Removes the directory of something left unfinished by a failure (a block, a checkpoint), so
/// that a full disk gets its space back at once; a failure to remove it is logged (the next
/// start removes it then).
pub fn remove_unfinished(dir: &Path, what: &str) {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), err = %e, "removing an unfinished {what} failed");
        }
        _ => {}
    }
}
