//! A one-worker switch on in-memory replay ports, shared by the benchmark and the allocation test.
//! Its connection table has the default configuration (256 shards, 1M connections).

use std::sync::Arc;
use std::time::Duration;

use brink_conntrack::key::proto;
use brink_conntrack::{Addr, CtState, Packet, Table, Tuple, L4};
use brink_dataplane::acl::{PortFilter, PortSecurity, Prefix, Rule, RuleSet};
use brink_dataplane::batch::BATCH_SIZE;
use brink_dataplane::counters::PortCounters;
use brink_dataplane::firewall::FrameGate;
use brink_dataplane::port::memory::{MemBackend, MemPort};
use brink_dataplane::snapshot::{NetworkId, PortEntry, Snapshot, SnapshotCell};
use brink_dataplane::wire::ip::{self, Parsed};
use brink_dataplane::wire::{EtherType, MacAddr, L3};
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

/// What the flows carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// 64-byte UDP datagrams from port 0 to port 1, no replies.
    Udp,
    /// Established TCP connections (opened before the first poll): 64-byte data segments from
    /// port 0 and port 1's ACKs of them. One poll moves a batch each way.
    Tcp,
}

/// The sending VM's MAC when port security is on (one VM, many flows).
const VM_MAC: MacAddr = MacAddr([2, 0, 0, 1, 0, 0]);
/// The receiving VM's MAC and address.
const SINK_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0xff, 0xff]);
const SINK_IP: [u8; 4] = [10, 255, 0, 1];
/// The opener's and the responder's initial TCP sequence numbers.
const ISN: [u32; 2] = [1_000, 9_000];
/// TCP payload bytes of a 64-byte data segment.
const TCP_DATA: usize = 10;

/// Flow `i`'s sending end: MAC (its own unless `one_vm`), IP address and port.
fn flow_end(i: usize, one_vm: bool) -> (MacAddr, [u8; 4], u16) {
    let b = (i as u32).to_be_bytes();
    let mac = if one_vm {
        VM_MAC
    } else {
        MacAddr([2, 0, 0, 1, b[2], b[3]])
    };
    (mac, [10, b[1], b[2], b[3]], 1024 + (i % 50_000) as u16)
}

/// A 64-byte UDP frame of flow `i` to the sink.
fn udp_frame(i: usize, one_vm: bool) -> Vec<u8> {
    let (mac, ip, port) = flow_end(i, one_vm);
    let builder = etherparse::PacketBuilder::ethernet2(mac.0, SINK_MAC.0)
        .ipv4(ip, SINK_IP, 64)
        .udp(port, 53);
    let mut f = Vec::new();
    builder.write(&mut f, &[0u8; 18]).unwrap();
    f
}

/// The TCP segments of flow `i` (to a port the receiver's rules allow) in handshake order:
/// SYN, SYN-ACK, ACK, then the steady state of a bulk transfer: a data segment and its ACK.
/// The last two may be sent again and again (a retransmission, a duplicate ACK) and stay valid.
fn tcp_frames(i: usize, one_vm: bool) -> [Vec<u8>; 5] {
    let (mac, ip, port) = flow_end(i, one_vm);
    let server_port = 8000 + (i % 50) as u16;
    let [c, s] = ISN;
    let data = TCP_DATA as u32;
    let segment = |reply: bool, syn: bool, seq: u32, ack: Option<u32>, len: usize| {
        let b = if reply {
            etherparse::PacketBuilder::ethernet2(SINK_MAC.0, mac.0)
                .ipv4(SINK_IP, ip, 64)
                .tcp(server_port, port, seq, 64_000)
        } else {
            etherparse::PacketBuilder::ethernet2(mac.0, SINK_MAC.0)
                .ipv4(ip, SINK_IP, 64)
                .tcp(port, server_port, seq, 64_000)
        };
        let b = if syn { b.syn() } else { b };
        let b = match ack {
            Some(a) => b.ack(a),
            None => b,
        };
        let b = if len > 0 { b.psh() } else { b };
        let mut f = Vec::new();
        b.write(&mut f, &vec![0u8; len]).unwrap();
        f
    };
    [
        segment(false, true, c, None, 0),
        segment(true, true, s, Some(c + 1), 0),
        segment(false, false, c + 1, Some(s + 1), 0),
        segment(false, false, c + 1, Some(s + 1), TCP_DATA),
        segment(true, false, s + 1, Some(c + 1 + data), 0),
    ]
}

/// What conntrack is told about `frame`, and the flow the rules judge.
fn conntrack_view(frame: &[u8]) -> (Packet, ip::Flow) {
    let (mut l3, mut ct) = (L3::Other, None);
    let out = ip::Out {
        l3: &mut l3,
        ct: &mut ct,
    };
    match (ip::parse(EtherType::Ipv4, &frame[14..], 1, out), ct, l3) {
        (Some(Parsed::Ip(_)), Some(packet), L3::Ip(flow)) => (packet, flow),
        other => panic!("not a tracked IPv4 frame: {other:?}"),
    }
}

fn rule(id: u32, proto: Option<u8>, ports: (u16, u16), remote: Prefix) -> Rule {
    Rule {
        id,
        proto,
        ports,
        remotes: vec![remote],
        hits: Arc::default(),
    }
}

/// The filters of [`Setup::Firewall`]: (sender, receiver).
fn filters() -> (PortFilter, PortFilter) {
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
        security: PortSecurity::new(SINK_MAC, &[Addr::v4(SINK_IP)], &[], &[]),
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
    /// Counters of the sending port.
    pub source: Arc<PortCounters>,
    /// The connection table.
    pub ct: Arc<Table>,
    /// Frames one `poll_once` moves.
    pub per_poll: usize,
}

impl Rig {
    /// Fills the table with `n` replied UDP connections of network 1 that no port sends (their
    /// addresses are outside 10.0.0.0/8), as a busy switch holds.
    pub fn prefill(&self, n: u32) {
        for i in 0..n {
            let b = i.to_be_bytes();
            let t = Tuple {
                zone: 1,
                v6: false,
                proto: proto::UDP,
                src: Addr::v4([172, b[1], b[2], b[3]]),
                dst: Addr::v4([192, 168, b[3], b[2]]),
                sport: 1024 + (i % 50_000) as u16,
                dport: 53,
            };
            for tuple in [t, t.reversed()] {
                let packet = Packet {
                    tuple,
                    l4: L4::Udp,
                    len: 64,
                };
                self.ct.process(&packet, 0);
            }
        }
    }
}

/// Port 0 replays `flows` flows of `traffic` to port 1's configured MAC; port 1 replays the
/// replies, if any, and discards what it is sent. Both ports are in network 1 on one worker,
/// set up as `setup` says. TCP connections are open (through the same gate the pipeline
/// uses) before this returns.
pub fn worker(flows: usize, setup: Setup, traffic: Traffic) -> Rig {
    let ct = Arc::new(Table::new(brink_conntrack::Config::default()));
    let shared = Shared {
        snapshot: Arc::new(SnapshotCell::default()),
        ct: Arc::clone(&ct),
        epoch: std::time::Instant::now(),
        capture: Arc::default(),
        events: Arc::default(),
    };
    let pool = 2 * flows as u32 + 4096;
    let config = WorkerConfig {
        idle_sleep: false,
        fdb_capacity: 65_536,
        fdb_aging: Duration::from_secs(300),
    };
    let (wiring, link) = worker::wire(1, 4).pop().expect("one worker wired");
    let tx = link.commands;
    let mut worker = wiring.into_worker(MemBackend::new(pool), shared.clone(), config);
    let one_vm = setup == Setup::Firewall;
    let tcp: Vec<[Vec<u8>; 5]> = match traffic {
        Traffic::Udp => vec![],
        Traffic::Tcp => (0..flows).map(|i| tcp_frames(i, one_vm)).collect(),
    };
    let (sent, replies) = match traffic {
        Traffic::Udp => ((0..flows).map(|i| udp_frame(i, one_vm)).collect(), vec![]),
        Traffic::Tcp => (
            tcp.iter().map(|f| f[3].clone()).collect(),
            tcp.iter().map(|f| f[4].clone()).collect(),
        ),
    };
    let sink = Arc::new(PortCounters::default());
    let source = Arc::new(PortCounters::default());
    for (id, spec, counters) in [
        (0, MemPort::Replay(sent), Arc::clone(&source)),
        (1, MemPort::Replay(replies), Arc::clone(&sink)),
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
            let (s, r) = filters();
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
    let snap = shared.snapshot.publish(Snapshot::new(
        1,
        [
            (0, entry(one_vm.then_some(VM_MAC), sender)),
            (1, entry(Some(SINK_MAC), receiver)),
        ],
    ));
    let tracked_tcp = if setup == Setup::L2 { &[][..] } else { &tcp };
    let now = shared.ns(std::time::Instant::now());
    for frames in tracked_tcp {
        for (frame, from, to) in [(&frames[0], 0, 1), (&frames[1], 1, 0), (&frames[2], 0, 1)] {
            let (packet, flow) = conntrack_view(frame);
            let mut gate = FrameGate::new(&snap, &flow, NetworkId(1), from, Some(to), 0);
            let state = ct.process_gated(&packet, now, &mut gate);
            assert!(
                state.contains(CtState::TRACKED),
                "the handshake must open it"
            );
        }
    }
    let per_poll = match traffic {
        Traffic::Udp => BATCH_SIZE,
        Traffic::Tcp => 2 * BATCH_SIZE,
    };
    Rig {
        worker,
        sink,
        source,
        ct,
        per_poll,
    }
}
