//! Checksum offload end to end on in-memory ports that stand for vhost-user guests: a checksum
//! a guest left partial reaches a guest that takes it so untouched, and is completed once, in
//! software, for every other destination (a port without `GUEST_CSUM`, another worker's port,
//! each copy of a flood). A partial checksum that is not where parse finds the TCP or UDP
//! checksum field is dropped as a bad offload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use brink_dataplane::counters::DropReason;
use brink_dataplane::port::offload::Checksum;
use brink_dataplane::wire::checksum::{pseudo_header, Partial};
use brink_dataplane::wire::MacAddr;
use common::*;

/// Guests 1 and 2 take partial checksums, guest 3 does not; guest 4, on the other worker, takes
/// them too. All in network 1, with conntrack as given.
fn guests(conntrack: bool) -> Rig {
    let mut rig = Rig::new(2, Duration::from_secs(300));
    rig.add_guest(1, 0, mac(1), conntrack, true);
    rig.add_guest(2, 0, mac(2), conntrack, true);
    rig.add_guest(3, 0, mac(3), conntrack, false);
    rig.add_guest(4, 1, mac(4), conntrack, true);
    rig
}

/// A complete TCP SYN (`udp`: a UDP datagram) from guest `src` to `dst` with `payload` bytes,
/// and the same frame as a guest with checksum offload sends it: the checksum field holding
/// the pseudo-header sum, and where it lies.
fn frames(src: u8, dst: MacAddr, udp: bool, payload: usize) -> (Vec<u8>, Vec<u8>, Partial) {
    let b = etherparse::PacketBuilder::ethernet2(mac(src).0, dst.0).ipv4(
        [10, 0, 0, src],
        [10, 0, 0, 9],
        64,
    );
    let data: Vec<u8> = (0..payload).map(|i| (i * 7) as u8).collect();
    let mut good = vec![];
    let offset = if udp {
        b.udp(1000, 53).write(&mut good, &data).unwrap();
        6
    } else {
        b.tcp(40000, 80, 1000, 64_000)
            .syn()
            .write(&mut good, &data)
            .unwrap();
        16
    };
    let proto = if udp { 17 } else { 6 };
    let pseudo = pseudo_header(
        &good[26..30],
        &good[30..34],
        proto,
        (good.len() - 34) as u16,
    );
    let mut partial = good.clone();
    let field = 34 + offset;
    partial[field..field + 2].copy_from_slice(&(!pseudo.ones_complement()).to_ne_bytes());
    assert_ne!(partial, good);
    let at = Partial {
        start: 34,
        offset: offset as u16,
    };
    (good, partial, at)
}

fn completed(rig: &Rig) -> u64 {
    rig.counters
        .iter()
        .map(|c| c.checksums_completed.get())
        .sum()
}

#[test]
fn a_partial_checksum_stays_partial_only_to_a_guest_that_takes_it() {
    for (conntrack, udp) in [(false, false), (true, false), (true, true)] {
        let mut rig = guests(conntrack);
        let case = format!("conntrack={conntrack} udp={udp}");
        for (to, want_partial) in [(2, true), (3, false), (4, false)] {
            let (good, partial, at) = frames(1, mac(to), udp, 1000);
            let before = completed(&rig);
            rig.port(1)
                .link
                .send_with(partial.clone(), Checksum::Partial(at))
                .unwrap();
            rig.poll();
            let got = rig.port(u16::from(to)).link.recv_with();
            let (bytes, checksum) = got.unwrap_or_else(|| panic!("{case}: nothing for {to}"));
            if want_partial {
                assert_eq!(bytes, partial, "{case}: untouched for {to}");
                assert_eq!(checksum, Checksum::Partial(at), "{case}");
                assert_eq!(completed(&rig), before, "{case}: nothing summed");
            } else {
                assert_eq!(bytes, good, "{case}: completed for {to}");
                assert_ne!(checksum, Checksum::Partial(at), "{case}");
                assert_eq!(completed(&rig), before + 1, "{case}: summed once");
            }
        }
        rig.assert_pools_full();
    }
}

#[test]
fn each_copy_of_a_flood_gets_what_its_port_takes() {
    let mut rig = guests(false);
    let (good, partial, at) = frames(1, MacAddr::BROADCAST, false, 500);
    rig.port(1)
        .link
        .send_with(partial.clone(), Checksum::Partial(at))
        .unwrap();
    rig.poll();
    let (bytes, checksum) = rig.port(2).link.recv_with().unwrap();
    assert_eq!((bytes, checksum), (partial, Checksum::Partial(at)));
    for p in [3, 4] {
        assert_eq!(rig.received(p), vec![good.clone()], "port {p}");
    }
    assert_eq!(completed(&rig), 2);
    rig.assert_pools_full();
}

#[test]
fn a_partial_checksum_anywhere_else_is_dropped_as_a_bad_offload() {
    let (_, partial, at) = frames(1, mac(2), true, 100);
    // Not the UDP checksum field: the IP header, the TCP field's place, the payload. Parse
    // reads the headers on a port with conntrack. (One outside the frame never gets this far:
    // the rings refuse it, `rings::tests`.)
    let mut rig = guests(true);
    let wrong = [
        Partial {
            start: 14,
            offset: 10,
        },
        Partial { offset: 16, ..at },
        Partial { start: 42, ..at },
    ];
    for p in wrong {
        rig.port(1)
            .link
            .send_with(partial.clone(), Checksum::Partial(p))
            .unwrap();
    }
    rig.poll();
    assert!(rig.received(2).is_empty());
    assert_eq!(rig.drops(1, DropReason::BadOffload), wrong.len() as u64);
    // Where it belongs, the same frame passes.
    rig.port(1)
        .link
        .send_with(partial.clone(), Checksum::Partial(at))
        .unwrap();
    rig.poll();
    assert_eq!(rig.received(2), vec![partial]);
    rig.assert_pools_full();
}
