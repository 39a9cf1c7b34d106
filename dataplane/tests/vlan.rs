//! VLAN networks on one trunk, on in-memory ports: frames leave tagged with their network's
//! VLAN, tagged frames enter only their VLAN's network untagged, and frames of no known VLAN
//! are dropped and counted on the trunk.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use brink_dataplane::counters::DropReason;
use brink_dataplane::wire::vlan;
use common::*;

const TRUNK: u16 = 10;
/// VLAN 100 is network 1's logical port 11, VLAN 200 network 2's port 12.
const VM_A: u16 = 1;
const VM_B: u16 = 2;

/// Two workers: the trunk and its VLAN ports on worker 0, the VMs on worker 1, so that
/// frames also cross between workers both ways.
fn rig() -> Rig {
    let mut rig = Rig::new(2, Duration::from_secs(300));
    rig.add_trunk(TRUNK, 0);
    rig.add_vlan(11, 0, 1, TRUNK, 100);
    rig.add_vlan(12, 0, 2, TRUNK, 200);
    rig.add(VM_A, 1, 1, Some(mac(1)));
    rig.add(VM_B, 1, 2, Some(mac(2)));
    rig
}

fn tagged(vid: u16, f: &[u8]) -> Vec<u8> {
    let mut t = f.to_vec();
    t.extend([0; 4]);
    assert!(vlan::push(&mut t, vid));
    t
}

#[test]
fn frames_leave_the_trunk_tagged_with_their_networks_vlan() {
    let mut rig = rig();
    let from_a = frame(mac(0xff), mac(1), 60);
    let from_b = frame(mac(0xff), mac(2), 80);
    rig.send(VM_A, from_a.clone());
    rig.send(VM_B, from_b.clone());
    rig.poll();
    let out = rig.received(TRUNK);
    assert_eq!(out.len(), 2, "one flood copy each, on the trunk");
    assert!(out.contains(&tagged(100, &from_a)));
    assert!(out.contains(&tagged(200, &from_b)));
    assert!(rig.received(VM_A).is_empty() && rig.received(VM_B).is_empty());
    assert_eq!(rig.port(11).counters.tx_packets.get(), 1);
    assert_eq!(rig.port(12).counters.tx_bytes.get(), 80);
    assert_eq!(rig.port(TRUNK).counters.tx_packets.get(), 2);
    assert_eq!(rig.port(TRUNK).counters.tx_bytes.get(), 60 + 80 + 8);
    rig.assert_pools_full();
}

#[test]
fn a_tagged_frame_enters_only_its_vlans_network_untagged() {
    let mut rig = rig();
    let to_a = frame(mac(1), mac(0x51), 64);
    let to_b = frame(mac(0xff), mac(0x52), 64);
    rig.send(TRUNK, tagged(100, &to_a));
    rig.send(TRUNK, tagged(200, &to_b));
    rig.send(TRUNK, tagged(100, &to_b));
    rig.poll();
    assert_eq!(rig.received(VM_A), vec![to_a, to_b.clone()]);
    assert_eq!(rig.received(VM_B), vec![to_b]);
    assert!(
        rig.received(TRUNK).is_empty(),
        "no frame goes back out on the trunk"
    );
    assert_eq!(rig.port(11).counters.rx_packets.get(), 2);
    assert_eq!(rig.port(12).counters.rx_packets.get(), 1);
    assert_eq!(rig.port(TRUNK).counters.rx_packets.get(), 3);
    rig.assert_pools_full();
}

#[test]
fn frames_of_no_known_vlan_are_dropped_and_counted_on_the_trunk() {
    let mut rig = rig();
    let f = frame(mac(0xff), mac(0x51), 64);
    rig.send(TRUNK, tagged(300, &f));
    rig.send(TRUNK, f.clone());
    rig.send(TRUNK, tagged(100, &f));
    rig.poll();
    assert_eq!(rig.received(VM_A), vec![f]);
    assert!(rig.received(VM_B).is_empty());
    assert_eq!(rig.drops(TRUNK, DropReason::UnknownVlan), 2);
    rig.assert_pools_full();
}

#[test]
fn a_removed_vlan_port_takes_no_more_frames() {
    let mut rig = rig();
    rig.remove(12);
    let f = frame(mac(0xff), mac(0x52), 64);
    rig.send(TRUNK, tagged(200, &f));
    rig.send(VM_B, frame(mac(0xff), mac(2), 64));
    rig.poll();
    assert!(rig.received(VM_B).is_empty());
    assert!(rig.received(TRUNK).is_empty());
    assert_eq!(rig.drops(TRUNK, DropReason::UnknownVlan), 1);
    rig.assert_pools_full();
}
