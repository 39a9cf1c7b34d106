//! Packet capture through the pipeline on in-memory ports: a captured port's received and sent
//! frames, or only its dropped ones with their reasons; nothing of other ports.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use brink_dataplane::capture::Way;
use brink_dataplane::counters::DropReason;
use common::*;

fn rig() -> Rig {
    let mut rig = Rig::new(1, Duration::from_secs(300));
    for id in 1..=3 {
        rig.add(id, 0, 1, Some(mac(id as u8)));
    }
    rig
}

#[test]
fn a_capture_sees_what_its_port_receives_and_sends() {
    let mut rig = rig();
    let capture = std::sync::Arc::clone(&rig.shared.capture);
    capture.start(1, false);
    rig.send(1, frame(mac(2), mac(1), 100));
    rig.send(2, frame(mac(1), mac(2), 80));
    rig.send(2, frame(mac(3), mac(2), 70));
    rig.poll();
    let got = capture.take(100);
    let seen: Vec<(Way, u32)> = got.iter().map(|c| (c.way, c.len)).collect();
    assert_eq!(seen, [(Way::In, 100), (Way::Out, 80)], "nothing of 2 -> 3");
    assert_eq!(got[0].bytes(), frame(mac(2), mac(1), 100).as_slice());
    capture.stop();
    rig.send(1, frame(mac(2), mac(1), 100));
    rig.poll();
    assert!(capture.take(100).is_empty(), "stopped");
}

#[test]
fn a_drop_capture_sees_only_drops_with_their_reasons() {
    let mut rig = rig();
    let capture = std::sync::Arc::clone(&rig.shared.capture);
    capture.start(1, true);
    rig.send(1, frame(mac(2), mac(1), 100));
    rig.send(1, frame(mac(1), mac(1), 60));
    rig.poll();
    let got = capture.take(100);
    let seen: Vec<Way> = got.iter().map(|c| c.way).collect();
    assert_eq!(seen, [Way::Dropped(DropReason::Hairpin)]);
    assert_eq!(rig.drops(1, DropReason::Hairpin), 1);
}
