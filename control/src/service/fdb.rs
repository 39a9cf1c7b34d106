//! `fdb.*`: the forwarding database.

use std::net::IpAddr;

use brink_api::protocol::RpcError;
use brink_api::types::{FdbEntry, NetworkFilter};

use super::{dataplane_error, Service};
use crate::host::Host;

impl<H: Host> Service<H> {
    pub(super) fn fdb_show(&self, filter: NetworkFilter) -> Result<Vec<FdbEntry>, RpcError> {
        let only = filter
            .network
            .map(|n| self.model.network_id(&n))
            .transpose()?;
        let mut rows = self.switch.fdb_rows().map_err(dataplane_error)?;
        rows.sort_by_key(|r| (r.network, r.mac));
        Ok(rows
            .into_iter()
            .filter(|r| only.is_none_or(|n| n == r.network))
            .filter_map(|r| {
                let network = self.model.network_name(r.network)?;
                let mac = r.mac.to_string();
                // Only static entries can be l2population's.
                let remote = r
                    .age
                    .is_none()
                    .then(|| self.model.overlay(network)?.remotes.get(&mac))
                    .flatten();
                Some(FdbEntry {
                    network: network.to_string(),
                    port: self.model.port_by_id(r.port)?.spec.name.clone(),
                    age_secs: r.age.map(|a| a.as_secs_f64()),
                    remote: remote.map(|r| r.endpoint.to_string()),
                    ips: remote
                        .into_iter()
                        .flat_map(|r| r.ips.iter().map(IpAddr::to_string))
                        .collect(),
                    mac,
                })
            })
            .collect())
    }

    pub(super) fn fdb_flush(&self, filter: NetworkFilter) -> Result<(), RpcError> {
        let network = filter
            .network
            .map(|n| self.model.network_id(&n))
            .transpose()?;
        self.switch.fdb_flush(network).map_err(dataplane_error)
    }
}
