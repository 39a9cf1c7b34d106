//! `network.*`: isolated L2 networks.

use brink_api::protocol::RpcError;
use brink_api::types::{NetworkAdd, NetworkName};
use brink_conntrack::Filter;

use super::Service;
use crate::host::Host;

impl<H: Host> Service<H> {
    pub(super) fn network_add(&mut self, p: &NetworkAdd) -> Result<(), RpcError> {
        self.model.add_network(&p.name, p.mtu)?;
        self.commit()?;
        Ok(())
    }

    pub(super) fn network_del(&mut self, p: &NetworkName) -> Result<(), RpcError> {
        let zone = self.model.network_id(&p.name)?.0;
        self.model.del_network(&p.name)?;
        self.commit()?;
        // A later network may get the same zone: it starts clean.
        let ct = self.switch.conntrack();
        ct.set_policy(zone, None);
        ct.flush(&Filter {
            zone: Some(zone),
            ..Filter::default()
        });
        Ok(())
    }
}
