//! Which rules judge which packet (the admission matrix of docs/SECURITY.md), cell by cell, on
//! in-memory ports; and a property test that, for random sequences of unicast and flooded frames
//! in both directions, every port receives exactly what a reference model of Neutron's
//! stateful semantics delivers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use brink_conntrack::key::proto;
use brink_conntrack::{Addr, Filter};
use brink_dataplane::acl::security::link_local;
use brink_dataplane::acl::{PortFilter, PortSecurity, Prefix, Rule, RuleSet};
use brink_dataplane::counters::DropReason;
use brink_dataplane::firewall::SnapshotGate;
use brink_dataplane::snapshot::PortId;
use brink_dataplane::snapshot::NO_PORT;
use brink_dataplane::wire::MacAddr;
use common::*;
use etherparse::{Icmpv6Type, PacketBuilder};
use proptest::prelude::*;

/// The IPv4 address of port `n`.
fn ip(n: u8) -> [u8; 4] {
    [10, 0, 0, n]
}

/// A rule allowing `proto` (`None`: any) to destination ports `ports` from or to anywhere.
fn allow(id: u32, proto: Option<u8>, ports: (u16, u16)) -> Rule {
    Rule {
        id,
        proto,
        ports,
        remotes: vec![Prefix::ANY],
        hits: Arc::default(),
    }
}

/// Port `n`'s filter: port security for its MAC and IP, IPv4 `ingress` and `egress` rules.
fn filter(n: u8, stateful: bool, ingress: &[Rule], egress: &[Rule]) -> PortFilter {
    PortFilter {
        stateful,
        ingress: [RuleSet::compile(ingress), RuleSet::default()],
        egress: [RuleSet::compile(egress), RuleSet::default()],
        security: PortSecurity::new(mac(n), &[Addr::v4(ip(n))], &[], &[]),
    }
}

/// Everything out.
fn all_out() -> Vec<Rule> {
    vec![allow(1, None, (0, u16::MAX))]
}

/// A UDP frame from port `src` (its MAC and IP) to `dst_mac` and IP `dst`.
fn udp(src: u8, dst_mac: MacAddr, dst: u8, sport: u16, dport: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src).0, dst_mac.0)
        .ipv4(ip(src), ip(dst), 64)
        .udp(sport, dport);
    let mut out = vec![];
    b.write(&mut out, b"payload").unwrap();
    out
}

/// Ports 1-3 in network 1 on one worker, with MACs 1-3, conntrack on, filtered as given.
fn three(filters: [Option<PortFilter>; 3]) -> Rig {
    let mut rig = Rig::new(1, Duration::from_secs(300));
    for (i, f) in filters.into_iter().enumerate() {
        let n = i as u8 + 1;
        rig.add_port(PortId::from(n), 0, 1, Some(mac(n)), true, f);
    }
    rig
}

/// Sends `f` on `from`, polls, and returns which ports received a frame.
fn deliver(rig: &mut Rig, from: PortId, f: Vec<u8>) -> BTreeSet<PortId> {
    rig.send(from, f);
    rig.poll();
    (1..=3)
        .filter(|&p| rig.ports.get(usize::from(p)).is_some_and(Option::is_some))
        .filter(|&p| !rig.received(p).is_empty())
        .collect()
}

fn set(ports: &[PortId]) -> BTreeSet<PortId> {
    ports.iter().copied().collect()
}

/// The (opener, receiver) ports of every tracked connection.
fn ends(rig: &Rig) -> Vec<[u16; 2]> {
    let conns = rig.shared.ct.dump(&Filter::default(), 100);
    conns.iter().map(|c| c.admission.ports).collect()
}

/// Stateful, tracked, unicast, first packet: the sender's egress and the receiver's ingress
/// rules judge it, before the connection is created.
#[test]
fn a_unicast_first_packet_is_judged_by_both_ends() {
    let dns_in = vec![allow(7, Some(proto::UDP), (53, 53))];
    let mut rig = three([
        Some(filter(
            1,
            true,
            &[],
            &[allow(1, Some(proto::UDP), (53, 80))],
        )),
        Some(filter(2, true, &dns_in, &[])),
        None,
    ]);
    assert_eq!(deliver(&mut rig, 1, udp(1, mac(2), 2, 1000, 80)), set(&[]));
    assert_eq!(rig.drops(1, DropReason::IngressDenied), 1);
    assert_eq!(deliver(&mut rig, 1, udp(1, mac(2), 2, 1000, 443)), set(&[]));
    assert_eq!(rig.drops(1, DropReason::EgressDenied), 1);
    assert!(
        ends(&rig).is_empty(),
        "refused connections are never created"
    );
    assert_eq!(deliver(&mut rig, 1, udp(1, mac(2), 2, 1000, 53)), set(&[2]));
    assert_eq!(ends(&rig), vec![[1, 2]]);
    // Later packets and replies pass on the connection's word (port 1 has no ingress rule).
    assert_eq!(deliver(&mut rig, 1, udp(1, mac(2), 2, 1000, 53)), set(&[2]));
    assert_eq!(deliver(&mut rig, 2, udp(2, mac(1), 1, 53, 1000)), set(&[1]));
    rig.assert_pools_full();
}

/// A batch of several flows: each flow's frames back to back are tracked and judged as one run,
/// and every frame is delivered or dropped, and counted, as if it came alone.
#[test]
fn runs_of_one_flow_in_a_batch_are_judged_once_and_counted_frame_by_frame() {
    let dns_in = allow(7, Some(proto::UDP), (53, 53));
    let dns_hits = Arc::clone(&dns_in.hits);
    let mut rig = three([
        Some(filter(1, true, &[], &all_out())),
        Some(filter(2, true, &[dns_in], &[])),
        None,
    ]);
    let dns = udp(1, mac(2), 2, 1000, 53);
    let web = udp(1, mac(2), 2, 1000, 80);
    let flood = udp(1, MacAddr::BROADCAST, 2, 1001, 53);
    // Port 1 sending from port 3's IP address and from its MAC, between and after its own frames.
    let mut spoofed = udp(3, mac(2), 2, 1000, 53);
    spoofed[6..12].copy_from_slice(&mac(1).0);
    let mut spoofed_mac = dns.clone();
    spoofed_mac[6..12].copy_from_slice(&mac(3).0);
    let sent = [
        &dns,
        &dns,
        &spoofed,
        &dns,
        &web,
        &web,
        &dns,
        &flood,
        &flood,
        &dns,
        &spoofed_mac,
        &spoofed_mac,
    ];
    for f in sent {
        rig.send(1, f.clone());
    }
    rig.poll();
    let got = rig.received(2);
    assert_eq!(got.len(), 7, "five DNS frames and two flood copies");
    assert!(got.iter().all(|f| *f == dns || *f == flood));
    assert!(
        rig.received(3).len() == 2,
        "port 3 takes the flood unfiltered"
    );
    assert_eq!(rig.drops(1, DropReason::IngressDenied), 2);
    assert_eq!(rig.drops(1, DropReason::SpoofedIp), 1);
    assert_eq!(rig.drops(1, DropReason::SpoofedMac), 2);
    let mut conns = rig.shared.ct.dump(&Filter::default(), 10);
    conns.sort_by_key(|c| c.original.sport);
    let counts: Vec<_> = conns
        .iter()
        .map(|c| (c.original.sport, c.packets))
        .collect();
    assert_eq!(counts, vec![(1000, [5, 0]), (1001, [2, 0])]);
    assert_eq!(
        rig.shared.ct.stats().denied,
        2,
        "both refused frames counted"
    );
    assert_eq!(dns_hits.get(), 2, "each connection admitted once");
    rig.assert_pools_full();
}

/// The reported hole: a flooded first packet used to create a connection on the sender's rules
/// alone, which later unicast packets then rode past the victim's ingress rules.
#[test]
fn a_flooded_first_packet_opens_nothing_its_receivers_refuse() {
    let ssh_in = vec![allow(7, Some(proto::TCP), (22, 22))];
    let mut rig = three([
        Some(filter(1, true, &ssh_in, &all_out())),
        Some(filter(2, true, &ssh_in, &all_out())),
        Some(filter(3, true, &ssh_in, &all_out())),
    ]);
    for dst in [MacAddr::BROADCAST, MacAddr([1, 0, 0x5e, 0, 0, 1]), mac(9)] {
        rig.send(1, tcp_frame(1, 2, 50800, 80, "S", 1, 0));
        let mut flooded = tcp_frame(1, 2, 50800, 80, "S", 1, 0);
        flooded[..6].copy_from_slice(&dst.0);
        rig.send(1, flooded);
        rig.poll();
        assert!(rig.received(2).is_empty() && rig.received(3).is_empty());
    }
    assert!(ends(&rig).is_empty());
    // Three unicast SYNs refused by port 2, and three floods no port admits: one drop each,
    // before any copy is made.
    assert_eq!(rig.drops(1, DropReason::IngressDenied), 3 + 3);
    // An allowed port goes through the same way, and its connection records its receiver.
    assert_eq!(
        deliver(&mut rig, 1, tcp_frame(1, 2, 50801, 22, "S", 1, 0)),
        set(&[2])
    );
    assert_eq!(ends(&rig), vec![[1, 2]]);
    rig.assert_pools_full();
}

/// Stateful, tracked, later packets: one bound for the admitting end passes; one sent to any
/// other port is judged by that port, which becomes the receiver of a connection that had none.
#[test]
fn later_packets_reach_only_the_ports_that_admit_them() {
    let dns_in = vec![allow(7, Some(proto::UDP), (53, 53))];
    let mut rig = three([
        Some(filter(1, true, &[], &all_out())),
        Some(filter(2, true, &[], &all_out())),
        Some(filter(3, true, &dns_in, &all_out())),
    ]);
    // Flooded: port 3 admits it, port 2 does not.
    let bcast = udp(1, MacAddr::BROADCAST, 2, 1000, 53);
    assert_eq!(deliver(&mut rig, 1, bcast.clone()), set(&[3]));
    assert_eq!(ends(&rig), vec![[1, NO_PORT]], "no receiver yet");
    // Unicast to port 2, which never admitted it: refused there.
    assert_eq!(deliver(&mut rig, 1, udp(1, mac(2), 2, 1000, 53)), set(&[]));
    assert_eq!(ends(&rig), vec![[1, NO_PORT]]);
    // Unicast to port 3: admitted, and port 3 is the receiver from now on.
    assert_eq!(deliver(&mut rig, 1, udp(1, mac(3), 2, 1000, 53)), set(&[3]));
    assert_eq!(ends(&rig), vec![[1, 3]]);
    // A later flood reaches the receiver on the connection's word, and port 2 still not.
    assert_eq!(deliver(&mut rig, 1, bcast), set(&[3]));
    assert_eq!(rig.drops(1, DropReason::IngressDenied), 1 + 1 + 1);
    assert_eq!(rig.shared.ct.stats().denied, 1, "the refused unicast");
    // A reply (from the address's owner, port 2) passes to the opener only: flooded, port 3
    // judges its copy and refuses it.
    let reply = udp(2, MacAddr::BROADCAST, 1, 53, 1000);
    assert_eq!(deliver(&mut rig, 2, reply), set(&[1]));
    assert_eq!(rig.drops(2, DropReason::IngressDenied), 1);
    rig.assert_pools_full();
}

/// An ICMP error about a connection does not make a port its receiver: only the connection's
/// own flow, admitted by the port's rules, does.
#[test]
fn an_icmp_error_does_not_bind_a_receiver_that_refuses_the_connection() {
    let icmp_in = vec![allow(7, Some(proto::ICMP), (0, u16::MAX))];
    let web_in = vec![allow(8, Some(proto::TCP), (80, 80))];
    let mut rig = three([
        Some(filter(1, true, &[], &all_out())),
        Some(filter(2, true, &icmp_in, &all_out())),
        Some(filter(3, true, &web_in, &all_out())),
    ]);
    let mut syn = tcp_frame(1, 2, 41100, 80, "S", 1, 0);
    syn[..6].copy_from_slice(&MacAddr::BROADCAST.0);
    assert_eq!(
        deliver(&mut rig, 1, syn),
        set(&[3]),
        "port 3 admits the flood"
    );
    // Port 1 tells port 2 its "reply" 10.0.0.2:80 -> 10.0.0.1:41100 was unreachable.
    let mut quoted = vec![];
    PacketBuilder::ipv4(ip(2), ip(1), 64)
        .tcp(80, 41100, 5, 1000)
        .write(&mut quoted, &[])
        .unwrap();
    let mut error = vec![];
    PacketBuilder::ethernet2(mac(1).0, mac(2).0)
        .ipv4(ip(1), ip(2), 64)
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::Port,
        ))
        .write(&mut error, &quoted[..28])
        .unwrap();
    assert_eq!(deliver(&mut rig, 1, error), set(&[2]), "ICMP is allowed in");
    assert_eq!(ends(&rig), vec![[1, NO_PORT]], "but it binds nothing");
    let syn = tcp_frame(1, 2, 41100, 80, "S", 1, 0);
    assert_eq!(deliver(&mut rig, 1, syn), set(&[]));
    assert_eq!(rig.drops(1, DropReason::IngressDenied), 2);
}

/// A rule change rechecks both ends that admitted a connection, the receiver included when it
/// was recorded after a flood.
#[test]
fn a_rule_change_rechecks_the_receiver_a_flood_found() {
    let dns_in = vec![allow(7, Some(proto::UDP), (53, 53))];
    let mut rig = three([
        Some(filter(1, true, &[], &all_out())),
        Some(filter(2, true, &dns_in, &all_out())),
        None,
    ]);
    deliver(&mut rig, 1, udp(1, MacAddr::BROADCAST, 2, 1000, 53));
    deliver(&mut rig, 1, udp(1, mac(2), 2, 1000, 53));
    assert_eq!(ends(&rig), vec![[1, 2]]);
    rig.ports[2].as_mut().unwrap().entry.filter = Some(Arc::new(filter(2, true, &[], &[])));
    rig.publish();
    let snap = rig.shared.snapshot.load();
    let done = rig.shared.ct.recheck(&mut SnapshotGate(&snap));
    assert_eq!((done.kept, done.cut), (0, 1));
    assert_eq!(deliver(&mut rig, 1, udp(1, mac(2), 2, 1000, 53)), set(&[]));
}

/// Stateless ports judge every packet, both ways; a stateless sender tracks nothing.
#[test]
fn stateless_ports_judge_every_packet() {
    let dns_in = vec![allow(7, Some(proto::UDP), (53, 53))];
    let mut rig = three([
        Some(filter(1, false, &[], &all_out())),
        Some(filter(2, false, &dns_in, &[])),
        None,
    ]);
    assert_eq!(deliver(&mut rig, 1, udp(1, mac(2), 2, 1000, 53)), set(&[2]));
    assert!(ends(&rig).is_empty(), "a stateless sender is not tracked");
    // The reply needs rules of its own: port 2 has no egress rule.
    assert_eq!(deliver(&mut rig, 2, udp(2, mac(1), 1, 53, 1000)), set(&[]));
    assert_eq!(rig.drops(2, DropReason::EgressDenied), 1);
    // Flooded: each receiver judges its copy, every time (port 3 has no port security).
    assert_eq!(
        deliver(&mut rig, 1, udp(1, MacAddr::BROADCAST, 2, 1000, 80)),
        set(&[3])
    );
}

/// A port without conntrack judges every packet on its stateful rules.
#[test]
fn untracked_ports_judge_every_packet() {
    let dns_in = vec![allow(7, Some(proto::UDP), (53, 53))];
    let mut rig = Rig::new(1, Duration::from_secs(300));
    rig.add_port(
        1,
        0,
        1,
        Some(mac(1)),
        false,
        Some(filter(1, true, &[], &all_out())),
    );
    rig.add_port(
        2,
        0,
        1,
        Some(mac(2)),
        false,
        Some(filter(2, true, &dns_in, &[])),
    );
    assert_eq!(deliver(&mut rig, 1, udp(1, mac(2), 2, 1000, 53)), set(&[2]));
    assert_eq!(deliver(&mut rig, 1, udp(1, mac(2), 2, 1000, 80)), set(&[]));
    assert_eq!(deliver(&mut rig, 2, udp(2, mac(1), 1, 53, 1000)), set(&[]));
    assert_eq!(rig.drops(2, DropReason::EgressDenied), 1);
    assert!(ends(&rig).is_empty());
}

/// Not IP: ARP passes on port security alone; other EtherTypes need to be permitted by the
/// sender and, unicast or flooded, by each receiver.
#[test]
fn non_ip_frames_need_permission_at_both_ends() {
    let permitted = |n: u8| PortFilter {
        security: PortSecurity::new(mac(n), &[Addr::v4(ip(n))], &[], &[0x88b5]),
        ..filter(n, true, &[], &[])
    };
    let mut rig = three([Some(permitted(1)), Some(filter(2, true, &[], &[])), None]);
    // An ARP request from port 1 for port 2's address.
    let mut arp = frame(MacAddr::BROADCAST, mac(1), 42);
    arp[12..22].copy_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp[22..28].copy_from_slice(&mac(1).0);
    arp[28..32].copy_from_slice(&ip(1));
    arp[32..38].fill(0);
    arp[38..42].copy_from_slice(&ip(2));
    assert_eq!(deliver(&mut rig, 1, arp), set(&[2, 3]));
    let local = |dst: MacAddr| {
        let mut f = frame(dst, mac(1), 60);
        f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        f
    };
    assert_eq!(deliver(&mut rig, 1, local(MacAddr::BROADCAST)), set(&[3]));
    assert_eq!(deliver(&mut rig, 1, local(mac(2))), set(&[]));
    assert_eq!(rig.drops(1, DropReason::EthertypeDenied), 2);
    assert_eq!(deliver(&mut rig, 2, local(mac(1))), set(&[]));
    assert_eq!(rig.drops(2, DropReason::SpoofedMac), 1, "not port 2's MAC");
}

/// An ICMPv6 message from port 1 (its link-local address) to the all-nodes group.
fn icmpv6(kind: u8) -> Vec<u8> {
    let src = link_local(mac(1)).0;
    let all_nodes = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    // Bytes 4-7 of the message and, for neighbour messages, the target: port 1's own address.
    let body: Vec<u8> = if matches!(kind, 135 | 136) {
        src.to_vec()
    } else {
        vec![0; 16]
    };
    let b = PacketBuilder::ethernet2(mac(1).0, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(src, all_nodes, 255)
        .icmpv6(Icmpv6Type::Unknown {
            type_u8: kind,
            code_u8: 0,
            bytes5to8: [0; 4],
        });
    let mut out = vec![];
    b.write(&mut out, &body).unwrap();
    out
}

/// Exactly Neutron's ICMPv6 base rules: out MLD query, RS, NS, NA; in MLD query, NS, NA.
#[test]
fn icmpv6_base_types_are_exactly_neutrons() {
    let mut rig = three([
        Some(filter(1, true, &[], &[])),
        Some(filter(2, true, &[], &[])),
        Some(filter(3, true, &[], &[])),
    ]);
    for kind in [130, 135, 136] {
        assert_eq!(
            deliver(&mut rig, 1, icmpv6(kind)),
            set(&[2, 3]),
            "type {kind}"
        );
    }
    // A router solicitation may leave, but no VM takes one without a rule.
    assert_eq!(deliver(&mut rig, 1, icmpv6(133)), set(&[]));
    assert_eq!(rig.drops(1, DropReason::IngressDenied), 2);
    for kind in [131, 132, 137, 143] {
        assert_eq!(deliver(&mut rig, 1, icmpv6(kind)), set(&[]), "type {kind}");
    }
    assert_eq!(rig.drops(1, DropReason::EgressDenied), 4);
    assert_eq!(deliver(&mut rig, 1, icmpv6(134)), set(&[]));
    assert_eq!(rig.drops(1, DropReason::RouterAdvert), 1);
}

/// A wrong checksum is dropped before conntrack sees it; a partial (offloaded) one is not.
#[test]
fn bad_checksums_never_reach_conntrack() {
    let mut rig = three([
        Some(filter(1, true, &[], &all_out())),
        Some(filter(2, true, &[allow(7, None, (0, u16::MAX))], &[])),
        None,
    ]);
    let good = udp(1, mac(2), 2, 1000, 53);
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    assert_eq!(deliver(&mut rig, 1, bad), set(&[]));
    assert_eq!(rig.drops(1, DropReason::BadChecksum), 1);
    assert!(ends(&rig).is_empty());
    // What a sender with checksum offload leaves: the pseudo-header sum, not complemented.
    let mut partial = good.clone();
    let sum: u32 = [0x0a00u32, 0x0001, 0x0a00, 0x0002, 17, 15].iter().sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    partial[40..42].copy_from_slice(&(folded as u16).to_be_bytes());
    rig.send(1, partial.clone());
    rig.poll();
    assert_eq!(rig.received(2), vec![good.clone()], "completed on the way");
    // On a plain port too (no conntrack, no port security), flooded: every copy is complete.
    rig.add_port(4, 0, 1, Some(mac(4)), false, None);
    let mut flooded = partial;
    flooded[..6].copy_from_slice(&MacAddr::BROADCAST.0);
    let mut want = good.clone();
    want[..6].copy_from_slice(&MacAddr::BROADCAST.0);
    rig.send(4, flooded);
    rig.poll();
    assert!(rig.received(1).is_empty(), "port 1 takes no UDP 53");
    for p in [2, 3] {
        let got = rig.received(p);
        assert_eq!(got.len(), 1, "port {p}");
        assert_eq!(got[0][34..], want[34..], "port {p}: UDP checksum completed");
    }
    // A bad TCP RST does not close a connection.
    let mut bad_rst = tcp_frame(1, 2, 40000, 80, "A", 1001, 5001);
    bad_rst[47] |= 0x04; // RST, with the checksum of the segment without it
    deliver(&mut rig, 1, tcp_frame(1, 2, 40000, 80, "S", 1000, 0));
    deliver(&mut rig, 2, tcp_frame(2, 1, 80, 40000, "SA", 5000, 1001));
    assert_eq!(deliver(&mut rig, 1, bad_rst), set(&[]));
    assert_eq!(rig.drops(1, DropReason::BadChecksum), 2);
    let tcp = rig.shared.ct.dump(&Filter::default(), 10);
    assert!(tcp.iter().any(|c| c
        .tcp_state
        .is_some_and(|s| s != brink_conntrack::TcpState::Close)));
}

// ---- The property: brink delivers what a reference model of Neutron's semantics does ----

/// One port's rules in the model: UDP destination ports allowed in and out (`None`: any).
#[derive(Debug, Clone)]
struct Policy {
    ingress: Vec<u16>,
    egress: Option<Vec<u16>>,
    secured: bool,
}

impl Policy {
    fn admits_in(&self, dport: u16) -> bool {
        !self.secured || self.ingress.contains(&dport)
    }
    fn admits_out(&self, dport: u16) -> bool {
        !self.secured || self.egress.as_ref().is_none_or(|e| e.contains(&dport))
    }
    fn compile(&self, n: u8) -> Option<PortFilter> {
        let rules = |ports: &[u16]| -> Vec<Rule> {
            ports
                .iter()
                .map(|&p| allow(u32::from(p), Some(proto::UDP), (p, p)))
                .collect()
        };
        let egress = match &self.egress {
            Some(ports) => rules(ports),
            None => all_out(),
        };
        self.secured
            .then(|| filter(n, true, &rules(&self.ingress), &egress))
    }
}

/// One frame of a test sequence: a UDP datagram from port `from` to port `to`'s address, sent to
/// the MAC of port `via`, or broadcast.
#[derive(Debug, Clone, Copy)]
struct Send {
    from: u8,
    to: u8,
    via: Option<u8>,
    sport: u16,
    dport: u16,
}

/// Neutron's stateful semantics, written as plainly as possible: a packet leaves its sender if
/// it belongs to a connection or the sender's egress rules allow it; a copy reaches a port if
/// that port's ingress rules allow it, or it is a reply going back to the connection's opener.
/// A connection is made by the first packet that reaches some port.
#[derive(Default)]
struct Model {
    /// Canonical (address, port) pair -> the opener's (address, port).
    conns: HashMap<[(u8, u16); 2], (u8, u16)>,
}

impl Model {
    fn deliver(&mut self, s: &Send, policies: &[Policy; 3]) -> BTreeSet<PortId> {
        let (src, dst) = ((s.from, s.sport), (s.to, s.dport));
        let key = if src < dst { [src, dst] } else { [dst, src] };
        let opener = self.conns.get(&key).copied();
        let sender = &policies[usize::from(s.from - 1)];
        if opener.is_none() && !sender.admits_out(s.dport) {
            return BTreeSet::new();
        }
        let receivers: Vec<u8> = match s.via {
            Some(v) => vec![v],
            None => (1..=3).filter(|&p| p != s.from).collect(),
        };
        let got: BTreeSet<PortId> = receivers
            .into_iter()
            .filter(|&r| {
                let reply_home = opener.is_some_and(|o| o != src && r == o.0);
                reply_home || policies[usize::from(r - 1)].admits_in(s.dport)
            })
            .map(PortId::from)
            .collect();
        if opener.is_none() && !got.is_empty() {
            self.conns.insert(key, src);
        }
        got
    }
}

fn policy() -> impl Strategy<Value = Policy> {
    let ports = proptest::sample::subsequence(vec![53u16, 80, 1000], 0..=3);
    (
        ports.clone(),
        proptest::option::of(ports),
        proptest::bool::weighted(0.85),
    )
        .prop_map(|(ingress, egress, secured)| Policy {
            ingress,
            egress,
            secured,
        })
}

fn send() -> impl Strategy<Value = Send> {
    let port = [53u16, 80, 1000];
    (
        1u8..=3,
        1u8..=2,
        proptest::option::weighted(0.6, 1u8..=2),
        proptest::sample::select(port.to_vec()),
        proptest::sample::select(port.to_vec()),
    )
        .prop_map(|(from, to_off, via_off, sport, dport)| {
            // Other ports than the sender, counted from it.
            let other = |off: u8| (from - 1 + off) % 3 + 1;
            Send {
                from,
                to: other(to_off),
                via: via_off.map(other),
                sport,
                dport,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_port_receives_what_neutron_would_deliver(
        policies in [policy(), policy(), policy()],
        sends in proptest::collection::vec(send(), 1..25),
    ) {
        let mut rig = three([
            policies[0].compile(1),
            policies[1].compile(2),
            policies[2].compile(3),
        ]);
        let mut model = Model::default();
        for (i, s) in sends.iter().enumerate() {
            let dst_mac = s.via.map_or(MacAddr::BROADCAST, mac);
            let got = deliver(&mut rig, PortId::from(s.from), udp(s.from, dst_mac, s.to, s.sport, s.dport));
            let want = model.deliver(s, &policies);
            prop_assert_eq!(got, want, "frame {} of {:?}", i, sends);
        }
        rig.assert_pools_full();
    }
}
