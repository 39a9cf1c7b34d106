//! Connections carried across a restart: the table saved when brinkd stops and put back when it
//! starts, translated from the numbers of the old process to those of the new one by network
//! and port name. Connections whose network or ports are gone are dropped.

use std::collections::HashMap;
use std::path::Path;

use brink_conntrack::{Admission, NotImported, Saved, Tuple};
use brink_dataplane::snapshot::{PortId, NO_PORT};

use super::Service;
use crate::connections::{self, ConnectionsError, Header};
use crate::host::Host;
use crate::model::Model;

/// What putting a saved table back did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    /// Connections put back.
    pub imported: u64,
    /// Dropped: their network or one of their ports is gone.
    pub gone: u64,
    /// Dropped: timed out while brinkd was down.
    pub expired: u64,
    /// Dropped: the table or the zone is full (a smaller `--ct-max`, a zone limit), or a new
    /// packet re-created the connection first.
    pub refused: u64,
}

/// The old process's zone and port numbers mapped to the new one's.
struct Renumber {
    zones: HashMap<u16, u16>,
    ports: HashMap<PortId, PortId>,
}

impl Renumber {
    fn new(header: &Header, model: &Model) -> Self {
        let zones = header
            .networks
            .iter()
            .filter_map(|(old, name)| Some((*old, model.network_id(name).ok()?.0)))
            .collect();
        let ports = header
            .ports
            .iter()
            .filter_map(|(old, name)| Some((*old, model.port(name).ok()?.id)))
            .collect();
        Renumber { zones, ports }
    }

    fn port(&self, old: PortId) -> Option<PortId> {
        match old {
            NO_PORT => Some(NO_PORT),
            _ => self.ports.get(&old).copied(),
        }
    }

    /// `saved` in the new numbers, if its network and ports still exist. Its admission is
    /// marked as of no generation, so the current rules recheck it.
    fn apply(&self, saved: Saved) -> Option<Saved> {
        let [opener, receiver] = saved.admission.ports;
        Some(Saved {
            original: Tuple {
                zone: *self.zones.get(&saved.original.zone)?,
                ..saved.original
            },
            admission: Admission {
                ports: [self.port(opener)?, self.port(receiver)?],
                generation: 0,
                ..saved.admission
            },
            ..saved
        })
    }
}

impl<H: Host> Service<H> {
    /// Stops the workers (closing every port) and then saves the connection table to `path`,
    /// so that no packet changes it during or after the save; returns how many were saved.
    pub fn stop_and_save_connections(self, path: &Path) -> Result<u64, ConnectionsError> {
        let now = self.switch.now_ns();
        let networks = self
            .model
            .networks()
            .into_iter()
            .map(|n| (n.id, n.name))
            .collect();
        let ports = self
            .model
            .ports()
            .map(|p| (p.id, p.spec.name.clone()))
            .collect();
        let table = self.switch.stop();
        connections::save(path, &table, now, networks, ports)
    }

    /// Puts back the connections saved in `path` (none if there is no such file) and rechecks
    /// them against the current rules. The file is removed once read, so that a later crash
    /// does not bring back an old table; a damaged file is moved to `path` + `.bad`, keeping
    /// the connections read before the damage.
    pub fn load_connections(&mut self, path: &Path) -> Result<Option<Carried>, ConnectionsError> {
        let mut carried = Carried::default();
        let mut renumber = None;
        let table = self.switch.conntrack();
        let now = self.switch.now_ns();
        let model = &self.model;
        let loaded = connections::load(path, |header, saved| {
            let renumber = renumber.get_or_insert_with(|| Renumber::new(header, model));
            let Some(saved) = renumber.apply(saved) else {
                carried.gone += 1;
                return;
            };
            match table.import(&saved, now) {
                Ok(()) => carried.imported += 1,
                Err(NotImported::Expired) => carried.expired += 1,
                Err(NotImported::Full | NotImported::Exists) => carried.refused += 1,
            }
        });
        let moved = match &loaded {
            Ok(None) => Ok(()),
            Ok(Some(_)) => std::fs::remove_file(path),
            Err(_) => std::fs::rename(path, path.with_extension("bin.bad")),
        };
        if let Err(e) = moved {
            tracing::warn!(path = %path.display(), error = %e, "could not move the saved connection table away");
        }
        if carried.imported > 0 {
            self.publish();
        }
        Ok(loaded?.map(|_| carried))
    }
}
