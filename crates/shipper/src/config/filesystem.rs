//! `type: FILESYSTEM` — Thanos' `filesystem.Config`: a directory used as the bucket, through
//! object_store's [`LocalFileSystem`].
//!
//! | key | effect |
//! |---|---|
//! | `directory` | required ("missing directory for filesystem bucket"); created if missing; relative paths are taken from the working directory |
//!
//! Differences from Thanos:
//!
//! * Unknown keys are refused (Thanos reads this section leniently).
//! * Writes are durable: every object is written to a staging file, synced, and renamed into
//!   place with its directory synced, so an uploaded object survives a crash and is never seen
//!   half-written (Thanos writes in place without syncing).
//! * As in Thanos, deleting an object removes the directories it leaves empty.
//!
//! The bucket name is Thanos' `fs: <absolute directory>`. Large files are written in 64 MiB
//! parts so that an upload never holds a whole file in memory.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use serde::Deserialize;

use super::de as yaml;
use super::{BuiltBucket, ConfigError};

/// The provider name used in messages.
pub const PROVIDER: &str = "FILESYSTEM";

/// Part size for large files.
const PART_SIZE: usize = 64 * 1024 * 1024;

/// `type: FILESYSTEM` configuration (Thanos' `filesystem.Config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of FILESYSTEM settings")]
pub struct FilesystemConfig {
    /// The directory holding the objects (required).
    #[serde(deserialize_with = "yaml::nullable")]
    pub directory: String,
}

impl FilesystemConfig {
    /// Parse-time checks (none: every value is valid until the directory is used).
    pub(crate) fn prepare(&mut self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// The absolute, lexically cleaned directory (Go's `filepath.Abs`).
    pub fn absolute_directory(&self) -> Result<PathBuf, ConfigError> {
        let absolute = std::path::absolute(&self.directory).map_err(|e| ConfigError::File {
            provider: PROVIDER,
            key: "directory",
            path: self.directory.clone(),
            message: format!("cannot make the path absolute: {e}"),
        })?;
        Ok(clean(&absolute))
    }

    /// Creates the directory if needed and builds the store.
    pub(crate) fn build(&self) -> Result<BuiltBucket, ConfigError> {
        if self.directory.is_empty() {
            return Err(ConfigError::Invalid {
                provider: PROVIDER,
                message: "missing directory for filesystem bucket".to_owned(),
            });
        }
        let directory = self.absolute_directory()?;
        std::fs::create_dir_all(&directory).map_err(|e| ConfigError::File {
            provider: PROVIDER,
            key: "directory",
            path: self.directory.clone(),
            message: format!("cannot create the directory: {e}"),
        })?;
        let store = LocalFileSystem::new_with_prefix(&directory)
            .map_err(|source| ConfigError::Build { provider: PROVIDER, source })?
            .with_fsync(true)
            .with_automatic_cleanup(true);
        let shown = directory.display().to_string();
        Ok(BuiltBucket {
            store: Arc::new(store),
            name: format!("fs: {shown}"),
            endpoint: shown,
            multipart_part_size: Some(PART_SIZE),
            attributes: object_store::Attributes::new(),
        })
    }
}

/// Lexical cleaning of an absolute path: drops `.`, resolves `..` against the parent.
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use object_store::ObjectStoreExt;
    use object_store::path::Path as ObjectPath;

    use super::super::{Provider, parse};
    use super::*;

    #[test]
    fn readme_listing_parses() {
        let config = parse("type: FILESYSTEM\nconfig:\n  directory: \"\"\nprefix: \"\"\n").unwrap();
        assert_eq!(config.kind(), "FILESYSTEM");
        let Provider::Filesystem(c) = &config.provider else { panic!("not FILESYSTEM") };
        assert_eq!(c, &FilesystemConfig::default());
        assert_eq!(
            config.build().unwrap_err().to_string(),
            "objstore config: FILESYSTEM config: missing directory for filesystem bucket"
        );
    }

    #[test]
    fn cleans_paths_like_go() {
        assert_eq!(clean(Path::new("/a/./b/../c/")), PathBuf::from("/a/c"));
        assert_eq!(clean(Path::new("/../a")), PathBuf::from("/a"));
    }

    #[test]
    fn uncreatable_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let config = parse(&format!("type: FILESYSTEM\nconfig:\n  directory: {}/sub\n", file.display())).unwrap();
        let err = config.build().unwrap_err().to_string();
        assert!(
            err.starts_with("objstore config: FILESYSTEM config: directory: ") && err.contains("file/sub"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn builds_and_round_trips_an_object() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bucket/nested");
        let config =
            parse(&format!("type: filesystem\nconfig:\n  directory: {}/./\nprefix: tenant\n", root.display())).unwrap();
        let built = config.build().unwrap();
        assert!(root.is_dir(), "the directory is created");
        assert_eq!(built.name, format!("fs: {}", root.display()));
        assert_eq!(built.endpoint, root.display().to_string());
        assert_eq!(built.multipart_part_size, Some(64 * 1024 * 1024));
        assert!(built.attributes.is_empty());

        let location = ObjectPath::from("01ABC/chunks/000001");
        built.store.put(&location, Bytes::from_static(b"hello").into()).await.unwrap();
        assert_eq!(std::fs::read(root.join("01ABC/chunks/000001")).unwrap(), b"hello");
        let got = built.store.get(&location).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), b"hello");

        // Deleting removes the directories left empty, as Thanos does.
        built.store.delete(&location).await.unwrap();
        assert!(!root.join("01ABC").exists());
        assert!(root.is_dir());
    }
}
