//! The in-memory switch rig the deterministic pipeline tests share: workers on in-memory
//! ports, driven by hand with a fake clock, and frame builders.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use brink_conntrack::{Addr, Table};
use brink_dataplane::acl::PortFilter;
use brink_dataplane::counters::{DropReason, PortCounters, WorkerCounters};
use brink_dataplane::port::memory::{MemBackend, MemLink, MemPort};
use brink_dataplane::snapshot::{NetworkId, PortEntry, PortId, Snapshot, SnapshotCell};
use brink_dataplane::trunk::VlanPort;
use brink_dataplane::wire::ethernet::emit_header;
use brink_dataplane::wire::{EtherType, MacAddr};
use brink_dataplane::worker::{self, Command, Shared, Worker, WorkerConfig};
use crossbeam_channel::{bounded, Sender};

pub const POOL: u32 = 256;

pub fn mac(b: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, b])
}

pub fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
    let mut f = vec![0xab; len.max(14)];
    emit_header(&mut f, dst, src, EtherType::Ipv4).unwrap();
    f
}

pub struct Port {
    pub link: Arc<MemLink>,
    pub counters: Arc<PortCounters>,
    pub entry: PortEntry,
    /// In the snapshot (a VLAN trunk is not: it is in no network).
    pub listed: bool,
}

/// A switch of `n` workers on in-memory ports, polled by hand.
pub struct Rig {
    pub workers: Vec<Worker<MemBackend>>,
    pub commands: Vec<Sender<Command<MemPort>>>,
    pub counters: Vec<Arc<WorkerCounters>>,
    pub shared: Shared,
    pub ports: Vec<Option<Port>>,
    pub generation: u64,
    pub now: Instant,
    /// Network MTUs other than the default, published with the ports.
    pub mtus: Vec<(NetworkId, u16)>,
    /// Neighbour responder answers `(network, ip, mac, uplink)`, published with the ports.
    pub neighbours: Vec<(NetworkId, Addr, MacAddr, PortId)>,
}

impl Rig {
    pub fn new(n: usize, aging: Duration) -> Rig {
        let now = Instant::now();
        let shared = Shared {
            snapshot: Arc::new(SnapshotCell::default()),
            ct: Arc::new(Table::new(brink_conntrack::Config {
                max_connections: 1000,
                shards: 4,
            })),
            epoch: now,
            capture: Arc::default(),
            events: Arc::default(),
        };
        let mut rig = Rig {
            workers: vec![],
            commands: vec![],
            counters: vec![],
            shared: shared.clone(),
            ports: vec![],
            generation: 0,
            mtus: Vec::new(),
            neighbours: Vec::new(),
            now,
        };
        let config = WorkerConfig {
            idle_sleep: false,
            fdb_capacity: 1024,
            fdb_aging: aging,
        };
        for (wiring, link) in worker::wire(n, 16) {
            let backend = MemBackend::new(POOL);
            rig.workers
                .push(wiring.into_worker(backend, shared.clone(), config.clone()));
            rig.commands.push(link.commands);
            rig.counters.push(link.counters);
        }
        rig
    }

    /// Adds port `id` on `worker` in `network`, with an optional configured MAC, no conntrack.
    pub fn add(&mut self, id: PortId, worker: usize, network: u16, mac: Option<MacAddr>) {
        self.add_port(id, worker, network, mac, false, None);
    }

    /// Adds port `id` with conntrack as given and port security `filter` (`None`: off).
    pub fn add_port(
        &mut self,
        id: PortId,
        worker: usize,
        network: u16,
        mac: Option<MacAddr>,
        conntrack: bool,
        filter: Option<PortFilter>,
    ) {
        let entry = PortEntry {
            network: NetworkId(network),
            worker,
            mac,
            conntrack,
            filter: filter.map(Arc::new),
        };
        self.add_linked(id, MemLink::new(64), entry);
    }

    /// Adds port `id` as a guest with checksum offload: it sends and receives frames with their
    /// checksum state, and takes partial checksums if `takes_partial` (`GUEST_CSUM`).
    pub fn add_guest(
        &mut self,
        id: PortId,
        worker: usize,
        mac: MacAddr,
        conntrack: bool,
        takes_partial: bool,
    ) {
        let entry = PortEntry {
            network: NetworkId(1),
            worker,
            mac: Some(mac),
            conntrack,
            filter: None,
        };
        self.add_linked(id, MemLink::with_offload(64, takes_partial), entry);
    }

    /// Adds port `id`, described by `entry`, on `link`.
    fn add_linked(&mut self, id: PortId, link: Arc<MemLink>, entry: PortEntry) {
        let worker = entry.worker;
        let counters = Arc::new(PortCounters::default());
        let (reply, answer) = bounded(1);
        self.commands[worker]
            .send(Command::AddPort {
                id,
                spec: MemPort::Link(Arc::clone(&link)),
                counters: Arc::clone(&counters),
                reply,
            })
            .unwrap();
        self.poll();
        answer.try_recv().unwrap().unwrap();
        let id = usize::from(id);
        if self.ports.len() <= id {
            self.ports.resize_with(id + 1, || None);
        }
        self.ports[id] = Some(Port {
            link,
            counters,
            entry,
            listed: true,
        });
        self.publish();
    }

    /// Adds port `id` on `worker` as a VLAN trunk: polled, but in no network.
    pub fn add_trunk(&mut self, id: PortId, worker: usize) {
        self.add(id, worker, 0, None);
        self.ports[usize::from(id)].as_mut().unwrap().listed = false;
        self.publish();
    }

    /// Adds logical port `id` of VLAN `vid` on `trunk` (on `worker`) in `network`, no conntrack.
    pub fn add_vlan(&mut self, id: PortId, worker: usize, network: u16, trunk: PortId, vid: u16) {
        let counters = Arc::new(PortCounters::default());
        let (reply, answer) = bounded(1);
        let at = VlanPort { trunk, vid };
        let counters2 = Arc::clone(&counters);
        self.commands[worker]
            .send(Command::AddVlan {
                id,
                at,
                counters: counters2,
                reply,
            })
            .unwrap();
        self.poll();
        answer.try_recv().unwrap();
        let entry = PortEntry {
            network: NetworkId(network),
            worker,
            mac: None,
            conntrack: false,
            filter: None,
        };
        let id = usize::from(id);
        if self.ports.len() <= id {
            self.ports.resize_with(id + 1, || None);
        }
        self.ports[id] = Some(Port {
            link: MemLink::new(1),
            counters,
            entry,
            listed: true,
        });
        self.publish();
    }

    pub fn remove(&mut self, id: PortId) {
        let port = self.ports[usize::from(id)].take().unwrap();
        self.publish();
        let (reply, answer) = bounded(1);
        self.commands[port.entry.worker]
            .send(Command::RemovePort { id, reply })
            .unwrap();
        self.poll();
        answer.try_recv().unwrap();
    }

    pub fn publish(&mut self) {
        self.generation += 1;
        let entries = self.ports.iter().enumerate().filter_map(|(i, p)| {
            Some((i as PortId, p.as_ref().filter(|p| p.listed)?.entry.clone()))
        });
        let counters = self
            .ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i as PortId, Arc::clone(&p.as_ref()?.counters))));
        self.shared.snapshot.publish(
            Snapshot::new(self.generation, entries)
                .with_mtus(self.mtus.clone())
                .with_neighbour_answers(self.neighbours.clone())
                .with_port_counters(counters),
        );
    }

    pub fn port(&self, id: PortId) -> &Port {
        self.ports[usize::from(id)].as_ref().unwrap()
    }

    pub fn send(&self, id: PortId, f: Vec<u8>) {
        self.port(id).link.send(f).unwrap();
    }

    /// Polls every worker a few times so cross-worker frames settle.
    pub fn poll(&mut self) {
        for _ in 0..3 {
            for w in &mut self.workers {
                w.poll_once(self.now);
            }
        }
    }

    pub fn received(&self, id: PortId) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| self.port(id).link.recv()).collect()
    }

    pub fn drops(&self, id: PortId, reason: DropReason) -> u64 {
        self.port(id).counters.drops.get(reason)
    }

    pub fn assert_pools_full(&self) {
        for w in &self.workers {
            assert_eq!(
                w.backend().free_frames(),
                POOL as usize,
                "a frame buffer leaked"
            );
        }
    }
}

/// A TCP frame from `src` MAC/IP index to `dst`, built with etherparse.
pub fn tcp_frame(
    src: u8,
    dst: u8,
    sport: u16,
    dport: u16,
    flags: &str,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(mac(src).0, mac(dst).0)
        .ipv4([10, 0, 0, src], [10, 0, 0, dst], 64)
        .tcp(sport, dport, seq, 64_000);
    let b = if flags.contains('S') { b.syn() } else { b };
    let b = if flags.contains('A') { b.ack(ack) } else { b };
    let mut out = vec![];
    b.write(&mut out, &[]).unwrap();
    out
}
