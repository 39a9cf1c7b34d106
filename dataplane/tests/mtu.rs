//! Network MTUs through the pipeline on in-memory ports: TCP superframes (what a guest with
//! segmentation offload sends) leave as segments that fit, other oversize frames are dropped and
//! counted, and jumbo frames cross a network whose MTU allows them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use brink_dataplane::counters::DropReason;
use brink_dataplane::snapshot::NetworkId;
use common::*;
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

fn rig(mtu: Option<u16>) -> Rig {
    let mut rig = Rig::new(1, Duration::from_secs(300));
    if let Some(mtu) = mtu {
        rig.mtus.push((NetworkId(1), mtu));
    }
    rig.add(1, 0, 1, Some(mac(1)));
    rig.add(2, 0, 1, Some(mac(2)));
    rig
}

fn ipv4(payload_len: usize, tcp: bool) -> (Vec<u8>, Vec<u8>) {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 13) as u8).collect();
    let b = PacketBuilder::ethernet2(mac(1).0, mac(2).0).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
    let mut frame = Vec::new();
    if tcp {
        b.tcp(40000, 80, 5, 64_000)
            .ack(1)
            .psh()
            .write(&mut frame, &payload)
            .unwrap();
    } else {
        b.udp(40000, 53).write(&mut frame, &payload).unwrap();
    }
    (frame, payload)
}

#[test]
fn a_tcp_superframe_leaves_as_segments_that_fit_the_mtu() {
    let mut rig = rig(None);
    let (frame, payload) = ipv4(20_000, true);
    rig.send(1, frame);
    rig.poll();
    let got = rig.received(2);
    assert_eq!(got.len(), 20_000usize.div_ceil(1460), "segments");
    let mut joined = Vec::new();
    for s in &got {
        assert!(s.len() <= 1514, "a {}-byte segment", s.len());
        let p = SlicedPacket::from_ethernet(s).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = p.transport else {
            panic!("not TCP");
        };
        assert_eq!(tcp.sequence_number(), 5 + joined.len() as u32);
        joined.extend_from_slice(tcp.payload());
    }
    assert_eq!(joined, payload);
    assert_eq!(rig.counters[0].segmented.get(), got.len() as u64);
    assert_eq!(rig.drops(1, DropReason::MtuExceeded), 0);
    rig.assert_pools_full();
}

#[test]
fn other_frames_larger_than_the_mtu_are_dropped_and_counted_on_both_ports() {
    // The receiving port on the sender's worker, then on the other worker.
    for to_worker in [0, 1] {
        let mut rig = Rig::new(2, Duration::from_secs(300));
        rig.add(1, 0, 1, Some(mac(1)));
        rig.add(2, to_worker, 1, Some(mac(2)));
        rig.send(1, ipv4(4000, false).0);
        rig.send(1, ipv4(1472, false).0);
        rig.poll();
        let got = rig.received(2);
        assert_eq!(got.len(), 1, "only the datagram that fits");
        assert_eq!(got[0].len(), 1514);
        assert_eq!(rig.drops(1, DropReason::MtuExceeded), 1, "from port 1");
        let for_2 = rig.port(2).counters.tx_drops.get(DropReason::MtuExceeded);
        assert_eq!(for_2, 1, "for port 2, on worker {to_worker}");
        rig.assert_pools_full();
    }
}

#[test]
fn jumbo_frames_cross_a_network_with_mtu_9000() {
    let mut rig = rig(Some(9000));
    let (udp, _) = ipv4(8972, false);
    let (tcp, _) = ipv4(30_000, true);
    rig.send(1, udp.clone());
    rig.send(1, tcp);
    rig.poll();
    let got = rig.received(2);
    assert_eq!(got[0], udp, "a 9,014-byte frame, whole");
    assert_eq!(
        got.len(),
        1 + 30_000usize.div_ceil(8960),
        "TCP cut at MTU 9000"
    );
    assert!(got.iter().all(|f| f.len() <= 9014));
    assert_eq!(rig.drops(1, DropReason::MtuExceeded), 0);
    rig.assert_pools_full();
}

#[test]
fn jumbo_frames_and_segments_cross_workers() {
    let mut rig = Rig::new(2, Duration::from_secs(300));
    rig.mtus.push((NetworkId(1), 9000));
    rig.add(1, 0, 1, Some(mac(1)));
    rig.add(2, 1, 1, Some(mac(2)));
    let (udp, _) = ipv4(8972, false);
    let (tcp, payload) = ipv4(20_000, true);
    rig.send(1, udp.clone());
    rig.send(1, tcp);
    rig.poll();
    let got = rig.received(2);
    assert_eq!(
        got[0], udp,
        "a 9,014-byte frame, whole, through the other worker"
    );
    let joined: Vec<u8> = got[1..]
        .iter()
        .flat_map(|s| s[14 + 20 + 20..].to_vec())
        .collect();
    assert_eq!(joined, payload, "the superframe's segments");
    assert_eq!(rig.counters[0].cross_tx.get(), got.len() as u64);
    assert_eq!(rig.drops(1, DropReason::TooBig), 0);
    rig.assert_pools_full();
}
