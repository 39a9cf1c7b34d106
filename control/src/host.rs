//! Where ports' interfaces live: the kernel (AF_XDP on real interfaces, taps brink creates)
//! or memory (in-memory links, so the whole service runs in tests without root).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use brink_api::types::{VhostMode, MAX_VHOST_QUEUES};
use brink_dataplane::port::afxdp::{self, XdpBackend, XdpSpec};
use brink_dataplane::port::memory::{MemBackend, MemLink, MemPort};
use brink_dataplane::port::vhost::device::MAX_PAIRS;
use brink_dataplane::port::vhost::{self, VhostPort, VhostShare, VhostSpec};
use brink_dataplane::port::{Backend, PortSpec};

use crate::iface::{self, IfaceError};
use crate::overlay::Tunnel;
use crate::vxlan::{self, DeviceCounters, TunnelCounters, VxlanOp};

// brinkctl's limit is the dataplane's.
const _: () = assert!(MAX_VHOST_QUEUES as usize == MAX_PAIRS);

/// The interfaces ports attach to, and the dataplane backend that opens them.
pub trait Host {
    /// The workers' backend.
    type Backend: Backend + 'static;

    /// Whether interface `iface` exists now.
    fn exists(&self, iface: &str) -> bool;
    /// Creates tap device `iface` for a tap port.
    fn create_tap(&self, iface: &str) -> Result<(), IfaceError>;
    /// Deletes the tap device `iface` brink created.
    fn delete_tap(&self, iface: &str) -> Result<(), IfaceError>;
    /// Sets the MTU of `iface`, so it carries its network's frames.
    fn set_mtu(&self, iface: &str, mtu: u16) -> Result<(), IfaceError>;
    /// How many receive queues `iface` has.
    fn rx_queues(&self, iface: &str) -> u32;
    /// What the backend needs to open receive `queues` of `iface` (all for none), in a network
    /// of MTU `mtu`; fails if `iface` does not exist.
    fn spec(
        &self,
        iface: &str,
        mtu: u16,
        queues: Vec<u32>,
    ) -> Result<<Self::Backend as Backend>::Spec, IfaceError>;
    /// Opens a vhost-user port on `socket`, created by `mode`'s side, with one queue pair for
    /// each entry of `shares`; returns what each worker needs to poll its share of the pairs.
    /// The port closes once every worker has closed its share.
    fn vhost_specs(
        &self,
        socket: &str,
        mode: VhostMode,
        shares: &[Vec<u32>],
    ) -> Result<Vec<<Self::Backend as Backend>::Spec>, IfaceError>;
    /// The MTU of `iface`, if the host has one for it.
    fn mtu(&self, iface: &str) -> Option<u16>;
    /// Changes the kernel's VXLAN state: devices, their forwarding tables, the tunnel filter.
    fn vxlan(&self, op: VxlanOp<'_>) -> Result<(), IfaceError>;
    /// What the filter of `tunnel` (none: nothing) counted, for `endpoints`.
    fn tunnel_counters(&self, tunnel: Option<&Tunnel>, endpoints: &[IpAddr]) -> TunnelCounters;
    /// What VXLAN device `dev` counted.
    fn device_counters(&self, dev: &str) -> DeviceCounters;
}

/// The kernel's interfaces, opened with AF_XDP.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kernel;

impl Host for Kernel {
    type Backend = XdpBackend;

    fn exists(&self, name: &str) -> bool {
        iface::exists(name)
    }

    fn create_tap(&self, name: &str) -> Result<(), IfaceError> {
        iface::create_tap(name)
    }

    fn delete_tap(&self, name: &str) -> Result<(), IfaceError> {
        iface::delete(name)
    }

    fn set_mtu(&self, name: &str, mtu: u16) -> Result<(), IfaceError> {
        iface::set_mtu(name, mtu)
    }

    fn rx_queues(&self, name: &str) -> u32 {
        afxdp::rx_queue_count(name)
    }

    fn spec(&self, name: &str, mtu: u16, queues: Vec<u32>) -> Result<PortSpec, IfaceError> {
        iface::require(name)?;
        Ok(PortSpec::Xdp(XdpSpec {
            iface: name.to_string(),
            mtu,
            queues,
        }))
    }

    fn mtu(&self, name: &str) -> Option<u16> {
        iface::mtu(name)
    }

    fn vxlan(&self, op: VxlanOp<'_>) -> Result<(), IfaceError> {
        vxlan::apply(op)
    }

    fn tunnel_counters(&self, tunnel: Option<&Tunnel>, endpoints: &[IpAddr]) -> TunnelCounters {
        tunnel.map_or_else(TunnelCounters::default, |t| vxlan::counters(t, endpoints))
    }

    fn device_counters(&self, dev: &str) -> DeviceCounters {
        vxlan::device_counters(dev)
    }

    fn vhost_specs(
        &self,
        socket: &str,
        mode: VhostMode,
        shares: &[Vec<u32>],
    ) -> Result<Vec<PortSpec>, IfaceError> {
        let spec = VhostSpec {
            socket: socket.into(),
            mode: match mode {
                VhostMode::Client => vhost::VhostMode::Client,
                VhostMode::Server => vhost::VhostMode::Server,
            },
            pairs: shares.iter().map(Vec::len).sum(),
        };
        let port = VhostPort::open(&spec).map_err(|e| IfaceError::Vhost(e.to_string()))?;
        Ok(shares
            .iter()
            .map(|pairs| {
                PortSpec::VhostUser(VhostShare {
                    port: Arc::clone(&port),
                    pairs: pairs.iter().map(|&k| k as usize).collect(),
                })
            })
            .collect())
    }
}

/// Interfaces made of in-memory links: a test plugs one in under a name, then sends and
/// receives frames on it. Clones share the same interfaces.
#[derive(Debug, Default, Clone)]
pub struct Memory {
    links: Arc<Mutex<BTreeMap<String, Arc<MemLink>>>>,
}

/// Frames each way an in-memory interface queues.
const LINK_DEPTH: usize = 256;

impl Memory {
    /// The interfaces; a panic elsewhere while holding them leaves them usable.
    fn links(&self) -> MutexGuard<'_, BTreeMap<String, Arc<MemLink>>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates interface `name` (replacing one of that name) and returns its test side.
    pub fn plug(&self, name: &str) -> Arc<MemLink> {
        let link = MemLink::new(LINK_DEPTH);
        self.links().insert(name.to_string(), Arc::clone(&link));
        link
    }

    /// Removes interface `name`, as when a VM goes away.
    pub fn unplug(&self, name: &str) {
        self.links().remove(name);
    }
}

impl Host for Memory {
    type Backend = MemBackend;

    fn exists(&self, name: &str) -> bool {
        self.links().contains_key(name)
    }

    fn create_tap(&self, name: &str) -> Result<(), IfaceError> {
        iface::check_name(name)?;
        if self.exists(name) {
            return Err(IfaceError::Exists(name.into()));
        }
        self.plug(name);
        Ok(())
    }

    fn delete_tap(&self, name: &str) -> Result<(), IfaceError> {
        self.unplug(name);
        Ok(())
    }

    /// In-memory links carry any frame: nothing to set.
    fn set_mtu(&self, _name: &str, _mtu: u16) -> Result<(), IfaceError> {
        Ok(())
    }

    /// An in-memory link is one queue.
    fn rx_queues(&self, _name: &str) -> u32 {
        1
    }

    /// In-memory links have no MTU.
    fn mtu(&self, _name: &str) -> Option<u16> {
        None
    }

    /// A VXLAN device is an in-memory link: the one a test plugged in under its name, else a
    /// new one. Its forwarding table and the filter are the kernel's business: nothing to do.
    fn vxlan(&self, op: VxlanOp<'_>) -> Result<(), IfaceError> {
        match op {
            VxlanOp::Create { dev, .. } if !self.exists(dev) => {
                self.plug(dev);
            }
            VxlanOp::Delete { dev } => self.unplug(dev),
            _ => {}
        }
        Ok(())
    }

    /// No kernel, no tunnel counters.
    fn tunnel_counters(&self, _: Option<&Tunnel>, _: &[IpAddr]) -> TunnelCounters {
        TunnelCounters::default()
    }

    /// No kernel, no device counters.
    fn device_counters(&self, _dev: &str) -> DeviceCounters {
        DeviceCounters::default()
    }

    /// In-memory hosts have no vhost-user sockets.
    fn vhost_specs(
        &self,
        socket: &str,
        _mode: VhostMode,
        _shares: &[Vec<u32>],
    ) -> Result<Vec<MemPort>, IfaceError> {
        Err(IfaceError::Unsupported(format!(
            "vhost-user socket {socket:?}: in-memory hosts have none"
        )))
    }

    fn spec(&self, name: &str, _mtu: u16, _queues: Vec<u32>) -> Result<MemPort, IfaceError> {
        iface::check_name(name)?;
        let link = self.links().get(name).cloned();
        link.map(MemPort::Link)
            .ok_or_else(|| IfaceError::Missing(name.into()))
    }
}
