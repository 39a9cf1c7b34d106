//! `tunnel.*`, `network.peer.*`, `fdb.add`/`fdb.del`: networks beyond the host. A VXLAN
//! network's uplink port is a kernel VXLAN device brink makes and attaches to like any port;
//! l2population's flood list and remote MACs program that device's forwarding table, and the
//! remote MACs are static FDB entries on the uplink port. A flat network's uplink port is the
//! uplink interface itself; a VLAN network's is a logical port on its uplink's trunk (`trunk`).

use std::collections::BTreeSet;
use std::net::IpAddr;

use brink_api::protocol::RpcError;
use brink_api::types::{
    EndpointInfo, FdbAdd, FdbDel, NetworkPeer, PortAdd, PortKind, TunnelInfo, TunnelNetwork,
    TunnelSet,
};

use super::stats::drop_map;
use super::Service;
use crate::host::Host;
use crate::iface::IfaceError;
use crate::model::ModelError;
use crate::overlay::{self, Overlay, OverlayError, Tunnel};
use crate::vxlan::VxlanOp;

impl<H: Host> Service<H> {
    pub(super) fn tunnel_set(&mut self, p: &TunnelSet) -> Result<(), RpcError> {
        let tunnel = Tunnel::parse(p).map_err(ModelError::from)?;
        if !self.host.exists(&tunnel.dev) {
            return Err(IfaceError::Missing(tunnel.dev).into());
        }
        self.model.set_tunnel(tunnel)?;
        self.refilter()?;
        self.commit()?;
        Ok(())
    }

    pub(super) fn tunnel_show(&self) -> TunnelInfo {
        let mut endpoints: BTreeSet<IpAddr> = BTreeSet::new();
        for (_, o) in self.model.overlays() {
            endpoints.extend(o.endpoints());
        }
        let list: Vec<IpAddr> = endpoints.into_iter().collect();
        let counters = self.host.tunnel_counters(self.model.tunnel(), &list);
        let vxlans = || self.model.overlays().filter(|(_, o)| o.vni().is_some());
        TunnelInfo {
            local: self.model.tunnel().map(Tunnel::to_api),
            unknown_vni: counters.unknown_vni,
            endpoints: list
                .iter()
                .map(|ep| {
                    let (rx, tx) = counters.endpoints.get(ep).copied().unwrap_or_default();
                    EndpointInfo {
                        ip: ep.to_string(),
                        flood: vxlans()
                            .filter(|(_, o)| o.peers.contains(ep))
                            .map(|(n, _)| n.to_string())
                            .collect(),
                        macs: vxlans()
                            .map(|(_, o)| o.remotes.values().filter(|r| r.endpoint == *ep).count())
                            .sum(),
                        rx_packets: rx.packets,
                        rx_bytes: rx.bytes,
                        tx_packets: tx.packets,
                        tx_bytes: tx.bytes,
                    }
                })
                .collect(),
            networks: vxlans()
                .filter_map(|(name, o)| {
                    let device = o.uplink_iface();
                    let mut c = self.host.device_counters(&device);
                    // What brink dropped on the way to the uplink (frames over the MTU).
                    if let Some(up) = self.running.get(&overlay::uplink_port(name)) {
                        c.drops.extend(drop_map(&up.counters.tx_drops));
                    }
                    Some(TunnelNetwork {
                        network: name.to_string(),
                        vni: o.vni()?,
                        device,
                        rx_packets: c.rx_packets,
                        tx_packets: c.tx_packets,
                        drops: c.drops,
                    })
                })
                .collect(),
        }
    }

    pub(super) fn network_peer_add(&mut self, p: &NetworkPeer) -> Result<(), RpcError> {
        let Some(ip) = self.model.add_peer(&p.network, &p.ip)? else {
            return Ok(());
        };
        let dev = self.vxlan_device(&p.network)?;
        let flooded = self.host.vxlan(VxlanOp::Flood {
            dev: &dev,
            ip,
            add: true,
        });
        if let Err(e) = flooded {
            self.model.del_peer(&p.network, &p.ip)?;
            return Err(e.into());
        }
        self.refilter()?;
        self.save()
    }

    pub(super) fn network_peer_del(&mut self, p: &NetworkPeer) -> Result<(), RpcError> {
        let ip = self.model.del_peer(&p.network, &p.ip)?;
        let dev = self.vxlan_device(&p.network)?;
        let op = VxlanOp::Flood {
            dev: &dev,
            ip,
            add: false,
        };
        if let Err(e) = self.host.vxlan(op) {
            tracing::warn!(network = %p.network, %ip, error = %e, "could not remove flood entry");
        }
        self.refilter()?;
        self.save()
    }

    pub(super) fn fdb_add(&mut self, p: &FdbAdd) -> Result<(), RpcError> {
        let (mac, remote, previous) =
            self.model
                .add_remote(&p.network, &p.mac, &p.remote, p.ip.as_deref())?;
        let dev = self.vxlan_device(&p.network)?;
        let op = VxlanOp::Remote {
            dev: &dev,
            mac,
            endpoint: Some(remote.endpoint),
        };
        let programmed = self
            .host
            .vxlan(op)
            .and_then(|()| self.set_learning(&p.network, &dev));
        if let Err(e) = programmed {
            self.model.put_remote(&p.network, mac, previous)?;
            return Err(e.into());
        }
        self.refilter()?;
        self.commit()?;
        Ok(())
    }

    pub(super) fn fdb_del(&mut self, p: &FdbDel) -> Result<(), RpcError> {
        let (mac, gone) = self.model.del_remote(&p.network, &p.mac, p.ip.as_deref())?;
        // With only one of its IPs gone, the device keeps the MAC; the neighbour responder
        // forgets the IP at the commit.
        if gone {
            let dev = self.vxlan_device(&p.network)?;
            let op = VxlanOp::Remote {
                dev: &dev,
                mac,
                endpoint: None,
            };
            if let Err(e) = self
                .host
                .vxlan(op)
                .and_then(|()| self.set_learning(&p.network, &dev))
            {
                tracing::warn!(network = %p.network, %mac, error = %e, "could not remove remote entry");
            }
        }
        self.refilter()?;
        self.commit()?;
        Ok(())
    }

    /// Checks that network frames of `mtu` bytes fit the underlay once encapsulated.
    pub(super) fn check_underlay(&self, o: &Overlay, mtu: u16) -> Result<(), RpcError> {
        let (Some(_), Some(tunnel)) = (o.vni(), self.model.tunnel()) else {
            return Ok(());
        };
        let Some(underlay) = self.host.mtu(&tunnel.dev) else {
            return Ok(());
        };
        let overhead = tunnel.overhead();
        if u32::from(mtu) + u32::from(overhead) > u32::from(underlay) {
            let dev = tunnel.dev.clone();
            let e = OverlayError::MtuTooLarge {
                mtu,
                overhead,
                dev,
                underlay,
            };
            return Err(ModelError::from(e).into());
        }
        Ok(())
    }

    /// Makes network `name`'s uplink: its VXLAN device, programmed from the model, then the
    /// uplink port on it. When `restoring`, a port that cannot be opened is kept down.
    pub(super) fn attach_uplink(&mut self, name: &str, restoring: bool) -> Result<(), RpcError> {
        let Some(o) = self.model.overlay(name).cloned() else {
            return Ok(());
        };
        let iface = o.uplink_iface();
        if let (Some(vni), Some(tunnel)) = (o.vni(), self.model.tunnel()) {
            let create = VxlanOp::Create {
                dev: &iface,
                vni,
                tunnel,
            };
            self.host.vxlan(create)?;
            let programmed = self.program(&o, &iface);
            if let Err(e) = programmed {
                let _ = self.host.vxlan(VxlanOp::Delete { dev: &iface });
                return Err(e);
            }
        }
        let spec = PortAdd {
            kind: PortKind::Uplink,
            port_security: false,
            ..PortAdd::new(&overlay::uplink_port(name), &iface, name)
        };
        if restoring {
            return self.restore_port(spec);
        }
        let record = self.check_port(&spec)?;
        if let Err(e) = self.bring_up(&record, false) {
            self.detach_device(&o);
            if o.vlan().is_some() {
                self.close_unused_trunk(&o.uplink_iface());
            }
            return Err(e);
        }
        self.model.insert_port(record);
        Ok(())
    }

    /// Removes network `name`'s uplink port and VXLAN device.
    pub(super) fn detach_uplink(&mut self, name: &str) -> Result<(), RpcError> {
        let Some(o) = self.model.overlay(name).cloned() else {
            return Ok(());
        };
        self.remove_port(&overlay::uplink_port(name))?;
        self.detach_device(&o);
        if o.vlan().is_some() {
            self.close_unused_trunk(&o.uplink_iface());
        }
        Ok(())
    }

    fn detach_device(&self, o: &Overlay) {
        if o.vni().is_some() {
            let dev = o.uplink_iface();
            if let Err(e) = self.host.vxlan(VxlanOp::Delete { dev: &dev }) {
                tracing::warn!(%dev, error = %e, "could not delete VXLAN device");
            }
        }
    }

    /// Makes the uplinks of every network with a segment, after a restart.
    pub(super) fn restore_uplinks(&mut self) -> Result<(), RpcError> {
        let names: Vec<String> = self.model.overlays().map(|(n, _)| n.to_string()).collect();
        for name in names {
            self.attach_uplink(&name, true)?;
        }
        self.refilter()
    }

    /// Programs device `dev` with `o`'s flood list, remote MACs and learning.
    fn program(&self, o: &Overlay, dev: &str) -> Result<(), RpcError> {
        for &ip in &o.peers {
            self.host.vxlan(VxlanOp::Flood { dev, ip, add: true })?;
        }
        for (mac, remote) in o.remote_macs() {
            let op = VxlanOp::Remote {
                dev,
                mac,
                endpoint: Some(remote.endpoint),
            };
            self.host.vxlan(op)?;
        }
        let on = o.learns();
        Ok(self.host.vxlan(VxlanOp::Learning { dev, on })?)
    }

    /// Learning on network `name`'s device follows whether l2population gave remote MACs.
    fn set_learning(&self, name: &str, dev: &str) -> Result<(), IfaceError> {
        let on = self.model.overlay(name).is_some_and(Overlay::learns);
        self.host.vxlan(VxlanOp::Learning { dev, on })
    }

    /// The VXLAN device of network `name`.
    fn vxlan_device(&self, name: &str) -> Result<String, ModelError> {
        let o = self.model.overlay(name);
        let o = o.filter(|o| o.vni().is_some());
        o.map(Overlay::uplink_iface)
            .ok_or_else(|| OverlayError::NotVxlan(name.into()).into())
    }

    /// Rewrites the tunnel filter: the VNIs networks have and the endpoints they name.
    pub(super) fn refilter(&self) -> Result<(), RpcError> {
        let Some(tunnel) = self.model.tunnel() else {
            return Ok(());
        };
        let mut vnis = Vec::new();
        let mut endpoints = BTreeSet::new();
        for (_, o) in self.model.overlays() {
            vnis.extend(o.vni());
            endpoints.extend(o.endpoints());
        }
        let endpoints: Vec<IpAddr> = endpoints.into_iter().collect();
        Ok(self.host.vxlan(VxlanOp::Filter {
            tunnel,
            vnis: &vnis,
            endpoints: &endpoints,
        })?)
    }
}
