//! The frame parser and the whole pipeline fuzzed on every test run: 20,000 frames, random and
//! mutated from real ones (bit flips, cut short, bytes overwritten), go through real workers on
//! ports with conntrack and port security, and through `trace`. Nothing may panic, leak a frame
//! buffer, or go uncounted; the trace of each frame must change nothing. Seeded, so a failure
//! reproduces.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use brink_conntrack::{Addr, Filter};
use brink_dataplane::acl::{PortFilter, PortSecurity, Prefix, Rule, RuleSet};
use brink_dataplane::counters::DropReason;
use brink_dataplane::trace;
use brink_dataplane::wire::MacAddr;
use common::*;
use etherparse::PacketBuilder;

/// Frames fed in.
const FRAMES: usize = 20_000;

/// xorshift64: deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Real frames from port 1 to port 2 to start mutating from: TCP, UDP, ICMP, IPv6, ARP.
fn seeds() -> Vec<Vec<u8>> {
    let eth = || PacketBuilder::ethernet2(mac(1).0, mac(2).0);
    let v4 = || eth().ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
    let v6 = || {
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        let mut b = a;
        a[15] = 1;
        b[15] = 2;
        eth().ipv6(a, b, 64)
    };
    let mut out = vec![
        tcp_frame(1, 2, 40000, 80, "S", 1, 0),
        tcp_frame(1, 2, 40000, 80, "A", 2, 1),
    ];
    let mut push = |write: &dyn Fn(&mut Vec<u8>)| {
        let mut f = vec![];
        write(&mut f);
        out.push(f);
    };
    push(&|f| v4().udp(5000, 53).write(f, &[1, 2, 3, 4]).unwrap());
    push(&|f| v4().icmpv4_echo_request(7, 1).write(f, &[0; 8]).unwrap());
    push(&|f| v6().tcp(40000, 80, 1, 1000).syn().write(f, &[]).unwrap());
    push(&|f| v6().icmpv6_echo_request(7, 1).write(f, &[0; 8]).unwrap());
    let mut arp = frame(MacAddr::BROADCAST, mac(1), 42);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    out.push(arp);
    out
}

/// One frame: a seed with a few mutations, or random bytes.
fn mutant(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(10) == 0 {
        return (0..rng.below(200)).map(|_| rng.next() as u8).collect();
    }
    let mut f = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        match rng.below(4) {
            0 if !f.is_empty() => {
                let i = rng.below(f.len());
                f[i] ^= 1 << rng.below(8);
            }
            1 if !f.is_empty() => {
                let i = rng.below(f.len());
                f[i] = rng.next() as u8;
            }
            2 => f.truncate(rng.below(f.len() + 1)),
            _ => f.extend((0..rng.below(16)).map(|_| rng.next() as u8)),
        }
    }
    f
}

/// Everything allowed, as rule 1.
fn any() -> RuleSet {
    RuleSet::compile(&[Rule {
        id: 1,
        proto: None,
        ports: (0, u16::MAX),
        remotes: vec![Prefix::ANY],
        hits: Arc::default(),
    }])
}

fn secured(n: u8) -> PortFilter {
    PortFilter {
        stateful: true,
        ingress: [any(), any()],
        egress: [any(), any()],
        security: PortSecurity::new(mac(n), &[Addr::v4([10, 0, 0, n])], &[], &[]),
    }
}

#[test]
fn mutated_and_random_frames_never_panic_leak_or_go_uncounted_and_traces_change_nothing() {
    let mut rig = Rig::new(1, Duration::from_secs(300));
    rig.add_port(1, 0, 1, Some(mac(1)), true, Some(secured(1)));
    rig.add_port(2, 0, 1, Some(mac(2)), true, Some(secured(2)));
    rig.add_port(3, 0, 1, None, true, None);
    let seeds = seeds();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let snap = rig.shared.snapshot.load();
    for i in 0..FRAMES {
        let f = mutant(&mut rng, &seeds);
        let from = 1 + (i % 3) as u16;
        if i % 10 == 0 {
            let before = (
                rig.shared.ct.stats(),
                rig.shared.ct.dump(&Filter::default(), 100),
            );
            let now = rig.shared.ns(rig.now);
            let traced = trace::trace(&f, from, &snap, &rig.shared.ct, now, |_, _| Some(2));
            assert!(traced.is_some() || f.len() > 2048, "{f:02x?}");
            let after = (
                rig.shared.ct.stats(),
                rig.shared.ct.dump(&Filter::default(), 100),
            );
            assert_eq!(before, after, "a trace changed the table: {f:02x?}");
        }
        rig.send(from, f);
        if i % 16 == 15 {
            rig.poll();
            for p in 1..=3 {
                rig.received(p);
            }
        }
    }
    rig.poll();
    for p in 1..=3 {
        rig.received(p);
    }
    rig.assert_pools_full();
    // Everything received was delivered or dropped with a reason: the counters add up.
    let received: u64 = (1..=3).map(|p| rig.port(p).counters.rx_packets.get()).sum();
    assert_eq!(received, FRAMES as u64, "frames lost before the pipeline");
    let dropped: u64 = (1..=3)
        .map(|p| {
            DropReason::ALL
                .iter()
                .map(|&r| rig.drops(p, r))
                .sum::<u64>()
        })
        .sum();
    assert!(
        dropped > FRAMES as u64 / 4,
        "mutants were judged: {dropped} dropped"
    );
}
