//! What the control tests share: a small switch on in-memory ports.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use brink_dataplane::port::memory::MemBackend;
use brink_dataplane::switch::{Switch, SwitchConfig};
use brink_dataplane::worker::WorkerConfig;

/// Most connections the test switch tracks.
pub const CT_MAX: usize = 64;

/// One unpinned worker, idle-sleeping, over 256 in-memory frames.
pub fn switch() -> Switch<MemBackend> {
    let config = SwitchConfig {
        cores: vec![None],
        worker: WorkerConfig {
            idle_sleep: true,
            fdb_capacity: 64,
            fdb_aging: Duration::from_secs(300),
        },
        conntrack: brink_conntrack::Config {
            max_connections: CT_MAX,
            shards: 1,
        },
    };
    Switch::start(config, || Ok(MemBackend::new(256))).unwrap()
}
