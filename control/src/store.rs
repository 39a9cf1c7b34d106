//! Persistence: the configuration saved as JSON in the state directory after every change.

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
    #[error("{path} is not valid brink state: {source}")]
    Corrupt {
        /// The file.
        path: String,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// `state.json` in a state directory.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
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
        })
    }

    /// The saved state; empty if nothing was saved yet.
    pub fn load(&self) -> Result<State, StoreError> {
        let path = self.path.display().to_string();
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Saves `state` atomically: a crash leaves either the old or the new file.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let tmp = self.path.with_extension("json.tmp");
        let io = |source| StoreError::Io {
            path: tmp.display().to_string(),
            source,
        };
        let json = serde_json::to_vec_pretty(state).map_err(|source| StoreError::Corrupt {
            path: tmp.display().to_string(),
            source,
        })?;
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(&json).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_and_reports_corruption() {
        let dir = std::env::temp_dir().join(format!("brk-store-{}", std::process::id()));
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.load().unwrap(), State::default());
        let state = State {
            networks: vec!["blue".into()],
            ..State::default()
        };
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), state);
        fs::write(dir.join("state.json"), b"{not json").unwrap();
        assert!(matches!(store.load(), Err(StoreError::Corrupt { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
