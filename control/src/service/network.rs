//! `network.*`: isolated L2 networks, some of which leave the host (see `tunnel`).

use brink_api::protocol::RpcError;
use brink_api::types::{NetworkAdd, NetworkName};
use brink_conntrack::Filter;
use brink_dataplane::snapshot::DEFAULT_MTU;

use super::Service;
use crate::host::Host;
use crate::model::ModelError;
use crate::name;
use crate::overlay::{Overlay, OverlayError};

impl<H: Host> Service<H> {
    pub(super) fn network_add(&mut self, p: &NetworkAdd) -> Result<(), RpcError> {
        name::check_external_ids(&p.external_ids).map_err(ModelError::from)?;
        let overlay = match &p.segment {
            Some(segment) => {
                let o = Overlay::new(segment.clone(), p.arp_responder).map_err(ModelError::from)?;
                self.model.check_overlay(&o)?;
                self.check_underlay(&o, p.mtu.unwrap_or(DEFAULT_MTU))?;
                Some(o)
            }
            None if p.arp_responder => {
                return Err(ModelError::from(OverlayError::ArpNeedsVxlan).into())
            }
            None => None,
        };
        self.model.add_network(&p.name, p.mtu)?;
        self.model
            .set_network_external_ids(&p.name, &p.external_ids)?;
        if let Some(o) = overlay {
            self.model.insert_overlay(&p.name, o);
            if let Err(e) = self.attach_uplink(&p.name, false) {
                let _ = self.model.del_network(&p.name);
                return Err(e);
            }
            self.refilter()?;
        }
        self.commit()?;
        Ok(())
    }

    pub(super) fn network_del(&mut self, p: &NetworkName) -> Result<(), RpcError> {
        let zone = self.model.network_id(&p.name)?.0;
        // Refused while VM ports remain, before the uplink goes.
        self.model.check_network_unused(&p.name)?;
        self.detach_uplink(&p.name)?;
        self.model.del_network(&p.name)?;
        self.refilter()?;
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
