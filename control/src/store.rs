//! Persistence: the configuration saved as JSON in the state directory after every change,
//! with the file it replaced kept as a backup.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::model::State;

/// Why the saved state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid state JSON.
    #[error("{path} is not valid brink state: {source}; {backup}")]
    Corrupt {
        /// The file.
        path: String,
        /// The JSON error.
        source: serde_json::Error,
        /// Where the backup is, if there is one, and what to do.
        backup: String,
    },
}

/// `state.json` in a state directory, and its backup `state.json.bak`.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    backup: PathBuf,
}

impl Store {
    /// Uses `dir`, creating it if needed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Store {
            path: dir.join("state.json"),
            backup: dir.join("state.json.bak"),
        })
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; empty if nothing was saved yet. A file that is not valid state is an
    /// error that names the backup: brinkd does not start over it.
    pub fn load(&self) -> Result<State, StoreError> {
        let path = self.path.display().to_string();
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                backup: self.backup_hint(),
                path,
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    fn backup_hint(&self) -> String {
        let (path, backup) = (self.path.display(), self.backup.display());
        if self.backup.exists() {
            format!("the state before the last change is in {backup}: check it and copy it over {path}, or move {path} away to start empty")
        } else {
            format!("there is no backup ({backup}): repair {path}, or move it away to start empty")
        }
    }

    /// Saves `state` atomically: a crash leaves either the old or the new file. The file it
    /// replaces becomes the backup.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(state).map_err(|source| StoreError::Corrupt {
            path: self.path.display().to_string(),
            source,
            backup: String::new(),
        })?;
        let tmp = self.path.with_extension("json.tmp");
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| StoreError::Io { path, source }
        };
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&json).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        if self.path.exists() {
            let backup_tmp = self.backup.with_extension("bak.tmp");
            fs::copy(&self.path, &backup_tmp).map_err(io(&backup_tmp))?;
            fs::rename(&backup_tmp, &self.backup).map_err(io(&self.backup))?;
        }
        fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        // The renames are durable once the directory is.
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_keep_a_backup_and_corruption_names_it() {
        let dir = std::env::temp_dir().join(format!("brk-store-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.load().unwrap(), State::default());
        let one = State {
            networks: vec!["blue".into()],
            ..State::default()
        };
        let two = State {
            networks: vec!["blue".into(), "red".into()],
            ..State::default()
        };
        store.save(&one).unwrap();
        assert!(
            !dir.join("state.json.bak").exists(),
            "nothing to back up yet"
        );
        store.save(&two).unwrap();
        assert_eq!(store.load().unwrap(), two);
        let backup: State =
            serde_json::from_slice(&fs::read(dir.join("state.json.bak")).unwrap()).unwrap();
        assert_eq!(backup, one);
        fs::write(dir.join("state.json"), b"{not json").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("state.json is not valid brink state"), "{err}");
        assert!(err.contains("state.json.bak"), "{err}");
        // A save that cannot write fails: here the temporary file's name is a directory.
        fs::create_dir(dir.join("state.json.tmp")).unwrap();
        assert!(matches!(store.save(&one), Err(StoreError::Io { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
