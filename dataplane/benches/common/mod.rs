//! A one-worker switch on in-memory replay ports, shared by the benchmark and the allocation test.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use brink_conntrack::{Addr, Table};
use brink_dataplane::acl::{PortFilter, PortSecurity, Prefix, Rule, RuleSet};
use brink_dataplane::counters::PortCounters;
use brink_dataplane::port::memory::{MemBackend, MemPort};
use brink_dataplane::snapshot::{NetworkId, PortEntry, Snapshot, SnapshotCell};
use brink_dataplane::wire::MacAddr;
use brink_dataplane::worker::{self, Command, Shared, Worker, WorkerConfig};
use crossbeam_channel::bounded;

/// What the two ports do besides switching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Plain L2 switching.
    L2,
    /// Conntrack on, port security off.
    Conntrack,
    /// Conntrack, port security and security groups on both ports: the sender's group allows
    /// everything out, the receiver's allows UDP 53 from 10.0.0.0/8 among 50 other rules.
    Firewall,
}

/// The sending VM's MAC when port security is on (one VM, many flows).
const VM_MAC: MacAddr = MacAddr([2, 0, 0, 1, 0, 0]);

/// A 64-byte UDP frame of flow `i` to `dst_mac`, from its own source IP and port, and from its
/// own source MAC unless `one_vm`.
fn udp_frame(i: usize, dst_mac: MacAddr, one_vm: bool) -> Vec<u8> {
    let b = (i as u32).to_be_bytes();
    let src_mac = if one_vm {
        VM_MAC.0
    } else {
        [2, 0, 0, 1, b[2], b[3]]
    };
    let builder = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac.0)
        .ipv4([10, b[1], b[2], b[3]], [10, 255, 0, 1], 64)
        .udp(1024 + (i % 50_000) as u16, 53);
    let mut f = Vec::new();
    builder.write(&mut f, &[0u8; 18]).unwrap();
    f
}

fn rule(id: u32, proto: Option<u8>, ports: (u16, u16), remote: Prefix) -> Rule {
    Rule {
        id,
        proto,
        ports,
        remotes: vec![remote],
        hits: Arc::new(AtomicU64::new(0)),
    }
}

/// The filters of [`Setup::Firewall`]: (sender, receiver).
fn filters(sink_mac: MacAddr) -> (PortFilter, PortFilter) {
    let ten = Prefix::new("10.0.0.0".parse().unwrap(), 8).unwrap();
    let sender = PortFilter {
        stateful: true,
        egress: [
            RuleSet::compile(&[rule(1, None, (0, u16::MAX), Prefix::ANY)]),
            RuleSet::default(),
        ],
        security: PortSecurity::new(VM_MAC, &[], &[(ten, None)], &[]),
        ..PortFilter::default()
    };
    let mut rules: Vec<Rule> = (0..50)
        .map(|i| {
            rule(
                100 + i,
                Some(6),
                (8000 + i as u16, 8000 + i as u16),
                Prefix::ANY,
            )
        })
        .collect();
    rules.push(rule(2, Some(17), (53, 53), ten));
    let receiver = PortFilter {
        stateful: true,
        ingress: [RuleSet::compile(&rules), RuleSet::default()],
        security: PortSecurity::new(sink_mac, &[Addr::v4([10, 255, 0, 1])], &[], &[]),
        ..PortFilter::default()
    };
    (sender, receiver)
}

/// A worker and what a benchmark or test looks at.
pub struct Rig {
    /// The worker.
    pub worker: Worker<MemBackend>,
    /// Counters of the receiving port.
    pub sink: Arc<PortCounters>,
    /// The connection table.
    pub ct: Arc<Table>,
}

/// Port 0 replays `flows` 64-byte UDP frames to port 1's configured MAC; port 1 discards what it
/// is sent. Both ports are in network 1 on one worker, set up as `setup` says.
pub fn worker(flows: usize, setup: Setup) -> Rig {
    let ct = Arc::new(Table::new(brink_conntrack::Config {
        max_connections: (2 * flows).max(1024),
        shards: 1,
    }));
    let shared = Shared {
        snapshot: Arc::new(SnapshotCell::default()),
        ct: Arc::clone(&ct),
        epoch: std::time::Instant::now(),
        capture: Arc::default(),
    };
    let pool = flows as u32 + 4096;
    let config = WorkerConfig {
        idle_sleep: false,
        fdb_capacity: 65_536,
        fdb_aging: Duration::from_secs(300),
    };
    let (wiring, link) = worker::wire(1, 4).pop().expect("one worker wired");
    let tx = link.commands;
    let mut worker = wiring.into_worker(MemBackend::new(pool), shared.clone(), config);
    let sink_mac = MacAddr([2, 0, 0, 0, 0xff, 0xff]);
    let one_vm = setup == Setup::Firewall;
    let frames = (0..flows).map(|i| udp_frame(i, sink_mac, one_vm)).collect();
    let sink = Arc::new(PortCounters::default());
    for (id, spec, counters) in [
        (
            0,
            MemPort::Replay(frames),
            Arc::new(PortCounters::default()),
        ),
        (1, MemPort::Replay(vec![]), Arc::clone(&sink)),
    ] {
        let (reply, answer) = bounded(1);
        tx.send(Command::AddPort {
            id,
            spec,
            counters,
            reply,
        })
        .unwrap();
        worker.poll_once(std::time::Instant::now());
        answer.try_recv().unwrap().unwrap();
    }
    let (sender, receiver) = match setup {
        Setup::Firewall => {
            let (s, r) = filters(sink_mac);
            (Some(Arc::new(s)), Some(Arc::new(r)))
        }
        Setup::L2 | Setup::Conntrack => (None, None),
    };
    let entry = |mac, filter| PortEntry {
        network: NetworkId(1),
        worker: 0,
        mac,
        conntrack: setup != Setup::L2,
        filter,
    };
    shared.snapshot.publish(Snapshot::new(
        1,
        [
            (0, entry(one_vm.then_some(VM_MAC), sender)),
            (1, entry(Some(sink_mac), receiver)),
        ],
    ));
    Rig { worker, sink, ct }
}
