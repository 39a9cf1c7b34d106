//! Deterministic pipeline tests: workers on in-memory ports, driven by hand with a fake clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use brink_conntrack::Addr;
use brink_dataplane::acl::{PortFilter, PortSecurity};
use brink_dataplane::counters::DropReason;
use brink_dataplane::snapshot::NetworkId;
use brink_dataplane::wire::MacAddr;
use common::*;

/// Ports 1-3 in network 1 and port 4 in network 2, all on one worker, with MACs 1-4.
fn two_networks() -> Rig {
    let mut rig = Rig::new(1, Duration::from_secs(300));
    for id in 1..=3 {
        rig.add(id, 0, 1, Some(mac(id as u8)));
    }
    rig.add(4, 0, 2, Some(mac(4)));
    rig
}

#[test]
fn unicast_to_configured_mac_reaches_only_that_port() {
    let mut rig = two_networks();
    let f = frame(mac(2), mac(1), 100);
    rig.send(1, f.clone());
    rig.poll();
    assert_eq!(rig.received(2), vec![f]);
    assert!(rig.received(3).is_empty());
    assert!(rig.received(4).is_empty());
    assert_eq!(rig.port(1).counters.rx_packets.get(), 1);
    assert_eq!(rig.port(1).counters.rx_bytes.get(), 100);
    assert_eq!(rig.port(2).counters.tx_packets.get(), 1);
    assert_eq!(rig.port(2).counters.tx_bytes.get(), 100);
    rig.assert_pools_full();
}

#[test]
fn broadcast_and_unknown_unicast_flood_within_the_network_only() {
    let mut rig = two_networks();
    let bcast = frame(MacAddr::BROADCAST, mac(1), 60);
    let unknown = frame(mac(99), mac(1), 60);
    rig.send(1, bcast.clone());
    rig.send(1, unknown.clone());
    rig.poll();
    for id in [2, 3] {
        assert_eq!(
            rig.received(id),
            vec![bcast.clone(), unknown.clone()],
            "port {id}"
        );
    }
    assert!(rig.received(1).is_empty(), "no echo to the sender");
    assert!(rig.received(4).is_empty(), "no frame may cross networks");
    rig.assert_pools_full();
}

#[test]
fn a_configured_mac_of_another_network_is_not_a_destination() {
    let mut rig = two_networks();
    rig.send(1, frame(mac(4), mac(1), 60));
    rig.poll();
    assert!(
        rig.received(4).is_empty(),
        "network 2's MAC must not be reachable from network 1"
    );
    assert_eq!(
        rig.received(2).len(),
        1,
        "unknown in network 1, so flooded there"
    );
}

#[test]
fn a_stream_is_learned_once_a_move_counted_once_and_a_full_fdb_refuses_every_frame() {
    let mut rig = Rig::new(1, Duration::from_secs(300));
    for id in 1..=3 {
        rig.add(id, 0, 1, None);
    }
    // One batch: three frames of one stream, one of another source between them.
    for src in [10, 10, 11, 10] {
        rig.send(1, frame(mac(20), mac(src), 60));
    }
    rig.poll();
    assert_eq!(rig.received(2).len(), 4, "flooded: mac(20) is unknown");
    rig.received(3);
    assert_eq!(rig.counters[0].fdb_learned.get(), 2, "mac(10) and mac(11)");
    // The stream moves to port 3 within a batch: learned as a move once, then forwarded.
    rig.send(3, frame(mac(20), mac(10), 60));
    rig.send(3, frame(mac(20), mac(10), 60));
    rig.poll();
    rig.received(1);
    rig.received(2);
    rig.send(2, frame(mac(10), mac(20), 60));
    rig.poll();
    assert_eq!(rig.counters[0].fdb_learned.get(), 4, "the move and mac(20)");
    assert_eq!(rig.received(3).len(), 1, "to where mac(10) moved");
    assert!(rig.received(1).is_empty());

    // Fill the FDB (1,024 entries), then a batch of one stream from a new MAC: each of its
    // frames is refused learning.
    let host = |n: u16| MacAddr([2, 0, 0, 1, (n >> 8) as u8, n as u8]);
    for chunk in (0..1024u16).collect::<Vec<_>>().chunks(32) {
        for &n in chunk {
            rig.send(1, frame(mac(20), host(n), 60));
        }
        rig.poll();
    }
    rig.received(2);
    rig.received(3);
    let full = rig.counters[0].fdb_full.get();
    assert!(full > 0, "the FDB is full");
    for _ in 0..3 {
        rig.send(1, frame(mac(20), host(5000), 60));
    }
    rig.poll();
    assert_eq!(rig.counters[0].fdb_full.get() - full, 3);
    rig.received(2);
    rig.received(3);
    rig.assert_pools_full();
}

#[test]
fn learned_mac_is_forwarded_directly_and_ages_out() {
    let mut rig = Rig::new(1, Duration::from_secs(10));
    for id in 1..=3 {
        rig.add(id, 0, 1, None);
    }
    rig.send(2, frame(MacAddr::BROADCAST, mac(20), 60));
    rig.poll();
    rig.received(1);
    rig.received(3);
    assert_eq!(rig.counters[0].fdb_learned.get(), 1);

    rig.send(1, frame(mac(20), mac(10), 60));
    rig.poll();
    assert_eq!(rig.received(2).len(), 1);
    assert!(
        rig.received(3).is_empty(),
        "a learned MAC must not be flooded"
    );

    rig.now += Duration::from_secs(11);
    rig.send(1, frame(mac(20), mac(10), 60));
    rig.poll();
    assert_eq!(rig.received(2).len(), 1);
    assert_eq!(rig.received(3).len(), 1, "an aged-out MAC is unknown again");
    assert!(rig.counters[0].fdb_aged.get() >= 1);
}

#[test]
fn mac_moves_to_the_port_it_was_last_seen_on() {
    let mut rig = Rig::new(1, Duration::from_secs(300));
    for id in 1..=3 {
        rig.add(id, 0, 1, None);
    }
    rig.send(2, frame(mac(1), mac(20), 60));
    rig.poll();
    rig.send(3, frame(mac(1), mac(20), 60));
    rig.poll();
    rig.received(1);
    rig.received(2);
    rig.received(3);
    rig.send(1, frame(mac(20), mac(1), 60));
    rig.poll();
    assert!(rig.received(2).is_empty());
    assert_eq!(rig.received(3).len(), 1);
}

#[test]
fn bad_frames_are_dropped_and_counted() {
    let mut rig = two_networks();
    rig.send(1, vec![0u8; 10]);
    rig.send(1, frame(mac(2), MacAddr::BROADCAST, 60));
    rig.send(1, frame(mac(2), MacAddr([0; 6]), 60));
    rig.send(1, frame(mac(1), mac(1), 60));
    rig.poll();
    assert_eq!(rig.drops(1, DropReason::Runt), 1);
    assert_eq!(rig.drops(1, DropReason::BadSourceMac), 2);
    assert_eq!(rig.drops(1, DropReason::Hairpin), 1);
    assert_eq!(rig.port(1).counters.rx_packets.get(), 4);
    for id in 2..=4 {
        assert!(rig.received(id).is_empty());
    }
    rig.assert_pools_full();
}

#[test]
fn lone_port_floods_are_counted_as_drops() {
    let mut rig = Rig::new(1, Duration::from_secs(300));
    rig.add(1, 0, 1, None);
    rig.send(1, frame(MacAddr::BROADCAST, mac(1), 60));
    rig.poll();
    assert_eq!(rig.drops(1, DropReason::NoOtherPort), 1);
    rig.assert_pools_full();
}

#[test]
fn removed_port_gets_nothing_and_its_learned_macs_are_forgotten() {
    let mut rig = Rig::new(1, Duration::from_secs(300));
    for id in 1..=3 {
        rig.add(id, 0, 1, None);
    }
    rig.send(2, frame(MacAddr::BROADCAST, mac(20), 60));
    rig.poll();
    rig.remove(2);
    rig.send(1, frame(mac(20), mac(10), 60));
    rig.poll();
    assert_eq!(
        rig.received(3).len(),
        2,
        "the MAC behind the removed port is unknown again"
    );
    rig.assert_pools_full();
}

#[test]
fn frames_cross_to_the_worker_that_owns_the_destination() {
    let mut rig = Rig::new(2, Duration::from_secs(300));
    rig.add(1, 0, 1, Some(mac(1)));
    rig.add(2, 1, 1, Some(mac(2)));
    rig.add(3, 1, 1, Some(mac(3)));
    let uni = frame(mac(2), mac(1), 200);
    let bcast = frame(MacAddr::BROADCAST, mac(1), 80);
    rig.send(1, uni.clone());
    rig.send(1, bcast.clone());
    rig.poll();
    assert_eq!(rig.received(2), vec![uni, bcast.clone()]);
    assert_eq!(rig.received(3), vec![bcast]);
    assert_eq!(rig.counters[0].cross_tx.get(), 3);
    assert_eq!(rig.counters[1].cross_rx.get(), 3);
    assert_eq!(rig.port(2).counters.tx_packets.get(), 2);
    rig.send(2, frame(mac(1), mac(2), 64));
    rig.poll();
    assert_eq!(rig.received(1).len(), 1, "and back");
    rig.assert_pools_full();
}

#[test]
fn many_frames_are_all_delivered_in_order() {
    let mut rig = two_networks();
    let mut sent = vec![];
    for round in 0..20u8 {
        for i in 0..40u8 {
            let mut f = frame(mac(3), mac(1), 64 + usize::from(i));
            f[20] = round;
            f[21] = i;
            sent.push(f.clone());
            rig.send(1, f);
        }
        rig.poll();
        let got = rig.received(3);
        assert_eq!(got, sent, "round {round}");
        sent.clear();
    }
    assert_eq!(rig.port(3).counters.tx_packets.get(), 800);
    rig.assert_pools_full();
}

/// Ports 1 and 2 in network 1 with MACs 1 and 2; conntrack on as given.
fn tracked_pair(conntrack: bool) -> Rig {
    let mut rig = Rig::new(1, Duration::from_secs(300));
    rig.add_port(1, 0, 1, Some(mac(1)), conntrack, None);
    rig.add_port(2, 0, 1, Some(mac(2)), conntrack, None);
    rig
}

#[test]
fn conntrack_passes_a_handshake_and_drops_what_fits_no_connection() {
    let mut rig = tracked_pair(true);
    // An ACK for a connection nobody opened: invalid.
    rig.send(1, tcp_frame(1, 2, 40000, 80, "A", 1, 1));
    rig.poll();
    assert!(rig.received(2).is_empty());
    assert_eq!(rig.drops(1, DropReason::CtInvalid), 1);
    // A proper handshake passes both ways.
    rig.send(1, tcp_frame(1, 2, 40000, 80, "S", 1000, 0));
    rig.poll();
    rig.send(2, tcp_frame(2, 1, 80, 40000, "SA", 5000, 1001));
    rig.poll();
    rig.send(1, tcp_frame(1, 2, 40000, 80, "A", 1001, 5001));
    rig.poll();
    assert_eq!(rig.received(2).len(), 2, "SYN and ACK");
    assert_eq!(rig.received(1).len(), 1, "SYN-ACK");
    let conns = rig.shared.ct.dump(&brink_conntrack::Filter::default(), 10);
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].original.zone, 1, "the network is the zone");
    assert_eq!(
        conns[0].tcp_state,
        Some(brink_conntrack::TcpState::Established)
    );
    assert_eq!(conns[0].packets, [2, 1]);
    // A SYN-ACK from the client side is invalid for this connection.
    rig.send(1, tcp_frame(1, 2, 40000, 80, "SA", 1001, 5001));
    rig.poll();
    assert!(rig.received(2).is_empty());
    assert_eq!(rig.drops(1, DropReason::CtInvalid), 2);
    rig.assert_pools_full();
}

#[test]
fn ports_without_conntrack_and_non_ip_frames_are_not_tracked() {
    let mut rig = tracked_pair(false);
    rig.send(1, tcp_frame(1, 2, 40000, 80, "A", 1, 1));
    rig.poll();
    assert_eq!(rig.received(2).len(), 1, "no conntrack, no invalid drop");
    assert_eq!(rig.shared.ct.stats().entries, 0);

    let mut rig = tracked_pair(true);
    rig.send(1, frame(MacAddr::BROADCAST, mac(1), 60)); // IPv4 ethertype, garbage payload
    let mut arp = frame(MacAddr::BROADCAST, mac(1), 42);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    rig.send(1, arp);
    rig.poll();
    assert_eq!(rig.drops(1, DropReason::MalformedIp), 1);
    assert_eq!(rig.received(2).len(), 1, "ARP passes untracked");
    assert_eq!(rig.shared.ct.stats().entries, 0);
}

/// An ARP request from MAC `mac(from)`, IP 10.0.0.`from`, for 10.0.0.`target`.
fn arp_request(from: u8, target: u8) -> Vec<u8> {
    let mut f = frame(MacAddr::BROADCAST, mac(from), 42);
    f[12..22].copy_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac(from).0);
    f[28..32].copy_from_slice(&[10, 0, 0, from]);
    f[32..38].fill(0);
    f[38..42].copy_from_slice(&[10, 0, 0, target]);
    f
}

#[test]
fn the_arp_responder_answers_local_requests_for_remote_ips_only() {
    // Port 1 a VM, port 2 the network's uplink; 10.0.0.9 lives behind the uplink.
    let mut rig = Rig::new(1, Duration::from_secs(300));
    rig.add(1, 0, 1, Some(mac(1)));
    rig.add(2, 0, 1, None);
    rig.neighbours = vec![(NetworkId(1), Addr::v4([10, 0, 0, 9]), mac(9), 2)];
    rig.publish();

    rig.send(1, arp_request(1, 9));
    rig.poll();
    let replies = rig.received(1);
    assert_eq!(replies.len(), 1, "answered to the asking port");
    let r = &replies[0];
    assert_eq!(&r[0..6], &mac(1).0, "to the requester");
    assert_eq!(&r[20..22], &[0, 2], "a reply");
    assert_eq!(&r[22..32], &[&mac(9).0[..], &[10, 0, 0, 9]].concat()[..]);
    assert!(rig.received(2).is_empty(), "nothing crosses the tunnel");

    // Another IP is flooded as usual; a request arriving from the uplink is not answered.
    rig.send(1, arp_request(1, 8));
    rig.send(2, arp_request(7, 9));
    rig.poll();
    assert_eq!(rig.received(2), vec![arp_request(1, 8)]);
    assert_eq!(rig.received(1), vec![arp_request(7, 9)]);
    rig.assert_pools_full();
}

/// IPv6 address fd00::`n`.
fn v6(n: u8) -> [u8; 16] {
    let mut a = [0; 16];
    (a[0], a[15]) = (0xfd, n);
    a
}

/// A neighbour solicitation from MAC `mac(from)`, IPv6 `source`, for fd00::`target`, to its
/// solicited-node group, with the source link-layer address option, as Linux sends it.
fn solicitation(from: u8, source: [u8; 16], target: u8) -> Vec<u8> {
    let group = MacAddr([0x33, 0x33, 0xff, 0, 0, target]);
    let mut f = frame(group, mac(from), 86);
    f[12..14].copy_from_slice(&[0x86, 0xdd]);
    f[14..22].copy_from_slice(&[0x60, 0, 0, 0, 0, 32, 58, 255]);
    f[22..38].copy_from_slice(&source);
    f[38..54].copy_from_slice(&[0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, target]);
    f[54..62].fill(0);
    f[54] = 135;
    f[62..78].copy_from_slice(&v6(target));
    f[78..80].copy_from_slice(&[1, 1]);
    f[80..86].copy_from_slice(&mac(from).0);
    // The ICMPv6 checksum: parse verifies it on a port with port security.
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&f[22..54]);
    pseudo.extend_from_slice(&[0, 0, 0, 32, 0, 0, 0, 58]);
    pseudo.extend_from_slice(&f[54..86]);
    let sum = pseudo
        .chunks(2)
        .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    let folded = (sum & 0xffff) + (sum >> 16);
    let folded = !(((folded & 0xffff) + (folded >> 16)) as u16);
    f[56..58].copy_from_slice(&folded.to_be_bytes());
    f
}

#[test]
fn the_neighbour_responder_answers_solicitations_for_remote_ipv6_addresses_only() {
    // Port 1 a VM with port security and conntrack (no rules: neighbour discovery is allowed
    // by the base rules), port 2 the network's uplink; fd00::9 lives behind the uplink.
    let mut rig = Rig::new(1, Duration::from_secs(300));
    let security = PortSecurity::new(mac(1), &[Addr(v6(1))], &[], &[]);
    let filter = PortFilter {
        stateful: true,
        security,
        ..PortFilter::default()
    };
    rig.add_port(1, 0, 1, Some(mac(1)), true, Some(filter));
    rig.add(2, 0, 1, None);
    rig.neighbours = vec![(NetworkId(1), Addr(v6(9)), mac(9), 2)];
    rig.publish();

    rig.send(1, solicitation(1, v6(1), 9));
    rig.poll();
    let replies = rig.received(1);
    assert_eq!(replies.len(), 1, "answered to the asking port");
    let r = &replies[0];
    assert_eq!(r.len(), 86);
    assert_eq!(
        &r[0..12],
        &[mac(1).0, mac(9).0].concat()[..],
        "to the asker"
    );
    assert_eq!(&r[22..38], &v6(9), "from the target");
    assert_eq!(&r[38..54], &v6(1), "to the asker's address");
    assert_eq!(
        (r[54], r[58]),
        (136, 0x60),
        "a solicited, overriding advertisement"
    );
    assert_eq!(&r[62..78], &v6(9));
    assert_eq!(&r[80..86], &mac(9).0, "the target's link-layer address");
    assert!(rig.received(2).is_empty(), "nothing crosses the tunnel");
    assert_eq!(rig.counters[0].neighbour_answers.get(), 1);

    // Another address, duplicate address detection (from `::`) and a solicitation arriving
    // from the uplink are flooded as usual.
    let other = solicitation(1, v6(1), 8);
    let dad = solicitation(1, [0; 16], 9);
    let from_uplink = solicitation(7, v6(7), 9);
    rig.send(1, other.clone());
    rig.send(1, dad.clone());
    rig.send(2, from_uplink.clone());
    rig.poll();
    assert_eq!(rig.received(2), vec![other, dad]);
    assert_eq!(rig.received(1), vec![from_uplink]);
    assert_eq!(rig.counters[0].neighbour_answers.get(), 1);
    rig.assert_pools_full();
}
