//! Connection table behaviour under virtual time: states, expiry, capacity, zones, filters,
//! export and import across a restart, peeks, events, a reference-model property test and a
//! multi-threaded stress test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;

use brink_conntrack::key::proto;
use brink_conntrack::tcp::flags::*;
use brink_conntrack::*;
use proptest::prelude::*;

const SEC: u64 = 1_000_000_000;

fn v4(last: u8) -> Addr {
    Addr::v4([10, 0, 0, last])
}

fn udp(zone: u16, src: u8, sport: u16, dst: u8, dport: u16) -> Packet {
    Packet {
        tuple: Tuple {
            v6: false,
            zone,
            proto: proto::UDP,
            src: v4(src),
            dst: v4(dst),
            sport,
            dport,
        },
        l4: L4::Udp,
        len: 100,
    }
}

fn reply(p: &Packet) -> Packet {
    Packet {
        tuple: p.tuple.reversed(),
        ..*p
    }
}

fn tcp(t: Tuple, flags: u8, seq: u32, ack: u32, len: u32) -> Packet {
    let seg = TcpSegment {
        seq,
        ack,
        window: 64_240,
        flags,
        payload_len: len,
        wscale: None,
    };
    Packet {
        tuple: t,
        l4: L4::Tcp(seg),
        len: 40 + len,
    }
}

/// A TCP client 10.0.0.1:40000 talking to 10.0.0.2:80 in zone 1.
fn client() -> Tuple {
    Tuple {
        v6: false,
        zone: 1,
        proto: proto::TCP,
        src: v4(1),
        dst: v4(2),
        sport: 40000,
        dport: 80,
    }
}

fn small() -> Table {
    Table::new(Config {
        max_connections: 1000,
        shards: 4,
    })
}

const NEW: CtState = CtState(CtState::TRACKED.0 | CtState::NEW.0);
const EST: CtState = CtState(CtState::TRACKED.0 | CtState::ESTABLISHED.0);
const EST_RPL: CtState = CtState(EST.0 | CtState::REPLY.0);
const INV: CtState = CtState(CtState::TRACKED.0 | CtState::INVALID.0);

#[test]
fn udp_is_new_until_a_reply_then_established() {
    let t = small();
    let p = udp(1, 1, 5000, 2, 53);
    assert_eq!(t.process(&p, 0), NEW);
    assert_eq!(t.process(&p, SEC), NEW, "still no reply");
    assert_eq!(t.process(&reply(&p), 2 * SEC), EST_RPL);
    assert_eq!(t.process(&p, 3 * SEC), EST);
    let c = &t.dump(&Filter::default(), 10)[0];
    assert_eq!(c.original, p.tuple);
    assert_eq!((c.packets, c.bytes), ([3, 1], [300, 100]));
    assert_eq!((c.created, c.last_seen), (0, 3 * SEC));
    assert_eq!(t.stats().inserts, 1);
}

#[test]
fn timeouts_count_from_the_second_of_the_last_packet_rounded_up() {
    let t = small();
    let (p, q) = (udp(1, 1, 5000, 2, 53), udp(1, 1, 5001, 2, 53));
    t.process(&p, SEC / 2);
    t.process(&q, SEC / 2);
    let seen: Vec<u64> = t
        .dump(&Filter::default(), 2)
        .iter()
        .map(|c| c.last_seen)
        .collect();
    assert_eq!(seen, [SEC, SEC], "recorded as second 1");
    // Unreplied UDP lives 30 s from second 1: never less than its timeout, at most 1 s more.
    assert_eq!(t.process(&reply(&p), 31 * SEC - 1), EST_RPL, "still there");
    assert_eq!(t.process(&reply(&q), 31 * SEC), NEW, "timed out: a new one");
}

#[test]
fn udp_times_out_unreplied_after_30s_and_replied_after_120s() {
    let t = small();
    let p = udp(1, 1, 5000, 2, 53);
    t.process(&p, 0);
    assert_eq!(t.process(&p, 29 * SEC), NEW, "refreshed at 29 s");
    assert_eq!(t.process(&reply(&p), 59 * SEC - 1), EST_RPL);
    assert_eq!(t.process(&p, (59 + 119) * SEC), EST);
    assert_eq!(
        t.expire(300 * SEC, 100)
            + t.expire(300 * SEC, 100)
            + t.expire(300 * SEC, 100)
            + t.expire(300 * SEC, 100),
        1
    );
    assert_eq!(
        t.process(&p, 300 * SEC + 1),
        NEW,
        "a new connection after expiry"
    );
    assert_eq!(t.stats().expired, 1);
}

#[test]
fn an_expired_entry_is_never_used_even_before_the_sweep() {
    let t = small();
    let p = udp(1, 1, 5000, 2, 53);
    t.process(&p, 0);
    t.process(&reply(&p), SEC);
    assert_eq!(
        t.process(&reply(&p), 1000 * SEC),
        NEW,
        "the old entry expired; this opens a new one"
    );
}

#[test]
fn zones_keep_identical_tuples_apart() {
    let t = small();
    t.process(&udp(1, 1, 5000, 2, 53), 0);
    assert_eq!(
        t.process(&reply(&udp(2, 1, 5000, 2, 53)), 0),
        NEW,
        "zone 2 has no such connection"
    );
    let mut counts = t.zone_counts();
    counts.sort();
    assert_eq!(counts, [(1, 1), (2, 1)]);
}

#[test]
fn icmp_echo_and_errors() {
    let t = small();
    let echo = |src, dst, reply| Packet {
        tuple: Tuple {
            v6: false,
            zone: 1,
            proto: proto::ICMP,
            src: v4(src),
            dst: v4(dst),
            sport: 77,
            dport: 77,
        },
        l4: L4::IcmpEcho { reply },
        len: 84,
    };
    assert_eq!(
        t.process(&echo(2, 1, true), 0),
        INV,
        "a reply without a request"
    );
    assert_eq!(t.process(&echo(1, 2, false), 0), NEW);
    assert_eq!(t.process(&echo(2, 1, true), 0), EST_RPL);

    let flow = udp(1, 1, 5000, 2, 53);
    t.process(&flow, 0);
    let error = |quoted| Packet {
        tuple: Tuple {
            v6: false,
            zone: 1,
            proto: proto::ICMP,
            src: v4(9),
            dst: v4(1),
            sport: 0,
            dport: 0,
        },
        l4: L4::IcmpError { quoted },
        len: 70,
    };
    let rel = CtState::TRACKED | CtState::RELATED | CtState::REPLY;
    assert_eq!(t.process(&error(flow.tuple), SEC), rel);
    let unknown = udp(1, 1, 5001, 2, 53).tuple;
    assert_eq!(t.process(&error(unknown), SEC), INV);
    assert_eq!(t.stats().invalid[InvalidReason::IcmpUnrelated as usize], 2);
}

#[test]
fn icmpv6_packet_too_big_is_related_to_its_tcp_connection() {
    let t = small();
    let a = Addr("fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    let b = Addr("fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
    let conn = Tuple {
        v6: true,
        zone: 3,
        proto: proto::TCP,
        src: a,
        dst: b,
        sport: 40000,
        dport: 443,
    };
    assert_eq!(t.process(&tcp(conn, SYN, 100, 0, 0), 0), NEW);
    let ptb = Packet {
        tuple: Tuple {
            v6: true,
            zone: 3,
            proto: proto::ICMPV6,
            src: Addr([0xfe; 16]),
            dst: a,
            sport: 0,
            dport: 0,
        },
        l4: L4::IcmpError { quoted: conn },
        len: 1280,
    };
    assert!(t.process(&ptb, SEC).contains(CtState::RELATED));
    let other_zone = Packet {
        l4: L4::IcmpError {
            quoted: Tuple { zone: 4, ..conn },
        },
        ..ptb
    };
    assert_eq!(t.process(&other_zone, SEC), INV);
}

#[test]
fn tcp_through_the_table_to_time_wait_expiry_and_reuse() {
    let t = small();
    let c = client();
    let s = c.reversed();
    assert_eq!(t.process(&tcp(c, SYN, 1000, 0, 0), 0), NEW);
    assert_eq!(
        t.process(&tcp(c, SYN, 1000, 0, 0), SEC),
        NEW,
        "a retransmitted SYN is still new"
    );
    assert_eq!(t.process(&tcp(s, SYN | ACK, 5000, 1001, 0), SEC), EST_RPL);
    assert_eq!(t.process(&tcp(c, ACK, 1001, 5001, 0), SEC), EST);
    assert_eq!(t.process(&tcp(c, ACK, 1001, 5001, 500), SEC), EST);
    assert_eq!(
        t.process(&tcp(c, ACK, 900_000_000, 5001, 500), SEC),
        INV,
        "out of window"
    );
    assert_eq!(
        t.process(&tcp(c, SYN | FIN, 1501, 0, 0), SEC),
        INV,
        "bad flags"
    );
    let info = |t: &Table| t.dump(&Filter::default(), 1)[0].clone();
    assert_eq!(info(&t).tcp_state, Some(TcpState::Established));
    assert!(info(&t).assured);
    t.process(&tcp(c, FIN | ACK, 1501, 5001, 0), 2 * SEC);
    t.process(&tcp(s, FIN | ACK, 5001, 1502, 0), 2 * SEC);
    t.process(&tcp(c, ACK, 1502, 5002, 0), 2 * SEC);
    assert_eq!(info(&t).tcp_state, Some(TcpState::TimeWait));
    assert_eq!(info(&t).expires, 2 * SEC + 120 * SEC);
    // A shortened TIME_WAIT via the zone policy.
    let mut policy = ZonePolicy::default();
    policy.timeouts.tcp_time_wait = 1;
    t.set_policy(1, Some(policy));
    for _ in 0..4 {
        t.expire(4 * SEC, 100);
    }
    assert_eq!(t.stats().entries, 0);
    // And a SYN on a TIME_WAIT connection reopens it.
    t.process(&tcp(c, SYN, 7000, 0, 0), 10 * SEC);
    t.process(&tcp(s, SYN | ACK, 8000, 7001, 0), 10 * SEC);
    t.process(&tcp(c, ACK, 7001, 8001, 0), 10 * SEC);
    t.process(&tcp(c, FIN | ACK, 7001, 8001, 0), 10 * SEC);
    t.process(&tcp(s, FIN | ACK, 8001, 7002, 0), 10 * SEC);
    t.process(&tcp(c, ACK, 7002, 8002, 0), 10 * SEC);
    assert_eq!(t.process(&tcp(c, SYN, 99_000, 0, 0), 10 * SEC + 1), NEW);
    assert_eq!(info(&t).tcp_state, Some(TcpState::SynSent));
    assert_eq!(info(&t).packets, [1, 0], "a fresh entry");
}

#[test]
fn tcp_without_syn_is_invalid_unless_the_zone_picks_up() {
    let t = small();
    let c = client();
    assert_eq!(t.process(&tcp(c, ACK, 5, 5, 10), 0), INV);
    assert_eq!(
        t.stats().invalid[InvalidReason::TcpNoConnection as usize],
        1
    );
    t.set_policy(
        1,
        Some(ZonePolicy {
            tcp_pickup: true,
            ..ZonePolicy::default()
        }),
    );
    assert_eq!(t.process(&tcp(c, ACK, 5, 5, 10), 0), NEW);
    assert_eq!(t.process(&tcp(c.reversed(), ACK, 5, 15, 10), 0), EST_RPL);
}

#[test]
fn a_full_table_evicts_unreplied_connections_and_refuses_when_all_are_assured() {
    let t = Table::new(Config {
        max_connections: 8,
        shards: 1,
    });
    for i in 0..8 {
        assert_eq!(t.process(&udp(1, 1, 1000 + i, 2, 53), 0), NEW);
    }
    assert_eq!(
        t.process(&udp(1, 1, 2000, 2, 53), 0),
        NEW,
        "an unreplied entry made room"
    );
    assert_eq!(t.stats().early_drops, 1);
    assert_eq!(t.stats().entries, 8);
    // Make every entry assured: nothing can be evicted any more.
    for c in t.dump(&Filter::default(), 100) {
        t.process(
            &Packet {
                tuple: c.original.reversed(),
                l4: L4::Udp,
                len: 1,
            },
            0,
        );
    }
    assert_eq!(t.process(&udp(1, 1, 3000, 2, 53), 0), INV);
    let s = t.stats();
    assert_eq!(
        (
            s.refused,
            s.invalid[InvalidReason::TableFull as usize],
            s.entries
        ),
        (1, 1, 8)
    );
}

#[test]
fn zone_limits_are_enforced() {
    let t = small();
    t.set_policy(
        5,
        Some(ZonePolicy {
            limit: Some(2),
            ..ZonePolicy::default()
        }),
    );
    assert_eq!(t.process(&udp(5, 1, 1, 2, 53), 0), NEW);
    assert_eq!(t.process(&udp(5, 1, 2, 2, 53), 0), NEW);
    assert_eq!(t.process(&udp(5, 1, 3, 2, 53), 0), INV);
    assert_eq!(
        t.process(&udp(6, 1, 3, 2, 53), 0),
        NEW,
        "other zones are not limited"
    );
    t.flush(&Filter {
        zone: Some(5),
        port: Some(1),
        ..Filter::default()
    });
    assert_eq!(
        t.process(&udp(5, 1, 3, 2, 53), 0),
        NEW,
        "room again after a flush"
    );
}

#[test]
fn dump_and_flush_filters() {
    let t = small();
    t.process(&udp(1, 1, 1000, 2, 53), 0);
    t.process(&udp(1, 3, 1000, 4, 123), 0);
    t.process(&reply(&udp(1, 3, 1000, 4, 123)), 0);
    t.process(&udp(2, 1, 1000, 2, 53), 0);
    let c = client();
    t.process(&tcp(c, SYN, 1, 0, 0), 0);
    let count = |f: Filter| t.dump(&f, 100).len();
    assert_eq!(
        count(Filter::default()),
        4,
        "the reply joined its connection"
    );
    assert_eq!(
        count(Filter {
            zone: Some(1),
            ..Filter::default()
        }),
        3
    );
    assert_eq!(
        count(Filter {
            addr: Some(v4(2)),
            ..Filter::default()
        }),
        3
    );
    assert_eq!(
        count(Filter {
            port: Some(123),
            ..Filter::default()
        }),
        1
    );
    assert_eq!(
        count(Filter {
            proto: Some(proto::TCP),
            ..Filter::default()
        }),
        1
    );
    assert_eq!(
        count(Filter {
            state: Some(StateFilter::Established),
            ..Filter::default()
        }),
        1
    );
    assert_eq!(
        count(Filter {
            state: Some(StateFilter::Tcp(TcpState::SynSent)),
            ..Filter::default()
        }),
        1
    );
    assert_eq!(
        count(Filter {
            mark: Some(7),
            ..Filter::default()
        }),
        0
    );
    assert_eq!(t.dump(&Filter::default(), 2).len(), 2, "limit");
    assert_eq!(
        t.flush(&Filter {
            proto: Some(proto::UDP),
            zone: Some(1),
            ..Filter::default()
        }),
        2
    );
    assert_eq!(count(Filter::default()), 2);
    assert_eq!(t.stats().flushed, 2);
}

#[test]
fn fragments_are_invalid_and_counted() {
    let t = small();
    let p = Packet {
        l4: L4::Fragment,
        ..udp(1, 1, 0, 2, 0)
    };
    assert_eq!(t.process(&p, 0), INV);
    assert_eq!(t.stats().invalid[InvalidReason::Fragment as usize], 1);
    assert_eq!(t.stats().entries, 0);
}

#[test]
fn expire_looks_at_no_more_than_its_budget() {
    let t = Table::new(Config {
        max_connections: 10_000,
        shards: 1,
    });
    for i in 0..5000 {
        t.process(&udp(1, 1, i, 2, 53), 0);
    }
    assert_eq!(t.expire(1000 * SEC, 64), 64);
    assert_eq!(t.stats().entries, 5000 - 64);
    let mut total = 64;
    while total < 5000 {
        let n = t.expire(1000 * SEC, 64);
        assert!(n > 0 && n <= 64);
        total += n;
    }
    assert_eq!(t.stats().entries, 0);
}

/// Reference model of UDP tracking: a map from the unordered tuple to (opener, replied, last).
type End = (Addr, u16);
type ModelKey = (u16, [End; 2]);
/// Opener address and port, replied, last seen.
type ModelConn = (Addr, u16, bool, u64);
#[derive(Default)]
struct Model(HashMap<ModelKey, ModelConn>);

impl Model {
    fn process(&mut self, p: &Packet, now: u64) -> CtState {
        let t = p.tuple;
        let mut ends = [(t.src, t.sport), (t.dst, t.dport)];
        ends.sort();
        let key = (t.zone, ends);
        // A packet is recorded as seen at the end of its second.
        let seen = now.div_ceil(SEC) * SEC;
        if let Some(&(oa, op, replied, last)) = self.0.get(&key) {
            let timeout = if replied { 120 } else { 30 } * SEC;
            if last + timeout > now {
                let is_reply = (t.src, t.sport) != (oa, op);
                let replied = replied || is_reply;
                self.0.insert(key, (oa, op, replied, seen));
                let s = if replied { EST } else { NEW };
                return if is_reply {
                    CtState(s.0 | CtState::REPLY.0)
                } else {
                    s
                };
            }
        }
        self.0.insert(key, (t.src, t.sport, false, seen));
        NEW
    }
}

proptest! {
    #[test]
    /// Steps of 0 to 50 s in milliseconds: many packets share a second, so the lock-free path
    /// of established packets (which takes packets of a second already seen) is checked too.
    fn udp_tracking_agrees_with_a_reference_model(
        events in proptest::collection::vec((0u8..3, 0u16..3, any::<bool>(), 0u64..50_000), 1..200)
    ) {
        let t = small();
        let mut m = Model::default();
        let mut now = 0;
        for (zone_pick, port, rev, dt) in events {
            now += dt * (SEC / 1000);
            let p = udp(u16::from(zone_pick % 2), 1, 1000 + port, 2, 53);
            let p = if rev { reply(&p) } else { p };
            prop_assert_eq!(t.process(&p, now), m.process(&p, now), "at {}s: {:?}", now / SEC, p.tuple);
        }
    }
}

#[test]
fn many_threads_insert_and_look_up_without_losing_or_doubling_anything() {
    const THREADS: u16 = 4;
    const PER_THREAD: u16 = 20_000;
    let t = Arc::new(Table::new(Config {
        max_connections: 200_000,
        shards: 64,
    }));
    let handles: Vec<_> = (0..THREADS)
        .map(|th| {
            let t = Arc::clone(&t);
            std::thread::spawn(move || {
                // Inside a second, so established packets take the lock-free path.
                let now = SEC / 2;
                for i in 0..PER_THREAD {
                    // Every thread also touches the same shared flows, in both directions.
                    let own = udp(1, 10 + th as u8, i, 2, 53);
                    assert_eq!(t.process(&own, now), NEW);
                    let shared = udp(1, 1, i % 100, 2, 53);
                    let shared = if th % 2 == 0 { shared } else { reply(&shared) };
                    t.process(&shared, now);
                    assert!(t.process(&reply(&own), now).contains(CtState::ESTABLISHED));
                    assert_eq!(t.process(&own, now), EST);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = t.stats();
    let expected = u64::from(THREADS) * u64::from(PER_THREAD) + 100;
    assert_eq!(s.entries, expected);
    assert_eq!(s.inserts, expected, "a double insert would show here");
    let all = t.dump(&Filter::default(), usize::MAX);
    let unique: std::collections::HashSet<_> =
        all.iter().map(|c| ConnKey::of(&c.original).0).collect();
    assert_eq!(unique.len(), all.len());
    for c in &all {
        assert!(c.seen_reply, "{:?} lost its reply", c.original);
    }
    let (shared, own): (Vec<_>, Vec<_>) = all
        .iter()
        .partition(|c| c.original.src == v4(1) || c.original.dst == v4(1));
    assert!(own.iter().all(|c| c.packets == [2, 1]), "no packet lost");
    let shared_packets: u64 = shared.iter().map(|c| c.packets[0] + c.packets[1]).sum();
    assert_eq!(
        shared_packets,
        u64::from(THREADS) * u64::from(PER_THREAD),
        "every shared-flow packet counted once"
    );
}

/// A gate that admits UDP to the ports in `allowed` from switch port 1 to switch port 2, lets
/// original-direction packets through only towards their admitted receiver (`to`), and records
/// what it was asked.
struct PortGate {
    generation: u32,
    allowed: Vec<u16>,
    admitted: u32,
    rechecked: u32,
    /// The switch port the next packet is bound for.
    to: u16,
}

impl PortGate {
    fn new(generation: u32, allowed: &[u16]) -> Self {
        PortGate {
            generation,
            allowed: allowed.to_vec(),
            admitted: 0,
            rechecked: 0,
            to: 2,
        }
    }

    fn judge(&self, t: &Tuple) -> Option<Admission> {
        self.allowed.contains(&t.dport).then_some(Admission {
            rules: [u32::from(t.dport), 0],
            generation: self.generation,
            ports: [1, 2],
        })
    }
}

impl Gate for PortGate {
    fn generation(&self) -> u32 {
        self.generation
    }
    fn admit(&mut self, pkt: &Packet) -> Option<Admission> {
        self.admitted += 1;
        self.judge(&pkt.tuple)
    }
    fn recheck(&mut self, original: &Tuple, was: &Admission) -> Option<Admission> {
        self.rechecked += 1;
        assert_eq!(was.ports, [1, 2]);
        self.judge(original)
    }
    fn pass(&mut self, _: &Connection<'_>, dir: Dir, admission: &mut Admission) -> bool {
        dir == Dir::Reply || admission.bound_for(dir) == self.to
    }
}

#[test]
fn a_refused_connection_is_never_inserted() {
    let t = small();
    let mut gate = PortGate::new(1, &[53]);
    let denied = udp(1, 1, 5000, 2, 80);
    assert_eq!(t.process_gated(&denied, 0, &mut gate), CtState::default());
    assert_eq!(t.process_gated(&denied, 1, &mut gate), CtState::default());
    assert_eq!(t.stats().entries, 0);
    assert_eq!(t.stats().denied, 2);
    // The reply of a refused connection is a new connection of its own, judged again.
    assert_eq!(
        t.process_gated(&reply(&denied), 2, &mut gate),
        CtState::default()
    );
    let allowed = udp(1, 1, 5000, 2, 53);
    assert_eq!(t.process_gated(&allowed, 3, &mut gate), NEW);
    assert_eq!(t.process_gated(&reply(&allowed), 4, &mut gate), EST_RPL);
    assert_eq!(gate.admitted, 4, "established packets are not judged");
    let info = &t.dump(&Filter::default(), 10)[0];
    assert_eq!(info.admission.rules, [53, 0]);
    assert_eq!(info.admission.generation, 1);
}

#[test]
fn a_new_generation_rechecks_on_the_next_packet_and_cuts_what_it_denies() {
    let t = small();
    let mut old = PortGate::new(1, &[53, 80]);
    let dns = udp(1, 1, 5000, 2, 53);
    let web = udp(1, 1, 5001, 2, 80);
    for p in [dns, web] {
        t.process_gated(&p, 0, &mut old);
        t.process_gated(&reply(&p), 1, &mut old);
    }
    let mut new = PortGate::new(2, &[53]);
    // A reply packet rechecks with the original direction's tuple.
    assert_eq!(t.process_gated(&reply(&dns), 2, &mut new), EST_RPL);
    assert_eq!(
        t.process_gated(&reply(&web), 2, &mut new),
        CtState::default()
    );
    assert_eq!(new.rechecked, 2);
    assert_eq!(t.process_gated(&dns, 3, &mut new), EST);
    assert_eq!(new.rechecked, 2, "a rechecked entry is current again");
    let s = t.stats();
    assert_eq!((s.recheck_kept, s.recheck_cut, s.entries), (1, 1, 1));
    // The cut connection's next packet is judged as a new connection, and refused.
    assert_eq!(t.process_gated(&web, 4, &mut new), CtState::default());
}

#[test]
fn the_recheck_sweep_keeps_what_is_allowed_and_cuts_the_rest() {
    let t = small();
    let mut old = PortGate::new(1, &[53, 80]);
    for i in 0..100u16 {
        let dport = if i % 4 == 0 { 80 } else { 53 };
        t.process_gated(&udp(1, 1, 1000 + i, 2, dport), 0, &mut old);
    }
    let mut new = PortGate::new(2, &[53]);
    assert_eq!(t.recheck(&mut new), Recheck { kept: 75, cut: 25 });
    assert_eq!(
        t.recheck(&mut new),
        Recheck::default(),
        "nothing stale is left"
    );
    assert_eq!(t.stats().entries, 75);
    assert!(t
        .dump(&Filter::default(), 100)
        .iter()
        .all(|c| c.admission.generation == 2 && c.original.dport == 53));
}

#[test]
fn a_packet_the_gate_does_not_pass_changes_nothing_and_is_counted() {
    let t = small();
    let mut gate = PortGate::new(1, &[53]);
    let dns = udp(1, 1, 5000, 2, 53);
    assert_eq!(t.process_gated(&dns, 0, &mut gate), NEW);
    gate.to = 3;
    assert_eq!(t.process_gated(&dns, SEC, &mut gate), CtState::default());
    assert_eq!(t.stats().denied, 1);
    let info = &t.dump(&Filter::default(), 1)[0];
    assert_eq!((info.packets, info.last_seen), ([1, 0], 0), "untouched");
    // An ICMP error about the connection is asked too: towards the receiver it is refused.
    let error = Packet {
        tuple: Tuple {
            proto: proto::ICMP,
            sport: 0,
            dport: 0,
            ..reply(&dns).tuple
        },
        l4: L4::IcmpError {
            quoted: reply(&dns).tuple,
        },
        len: 56,
    };
    assert_eq!(t.process_gated(&error, SEC, &mut gate), CtState::default());
    gate.to = 2;
    assert!(t
        .process_gated(&error, SEC, &mut gate)
        .contains(CtState::RELATED));
    assert_eq!(t.process_gated(&dns, SEC, &mut gate), NEW);
    // The same on the lock-free path, which takes packets inside the second the connection was
    // last seen in: refused, counted, and the entry untouched.
    let inside = SEC + SEC / 2;
    assert_eq!(t.process_gated(&dns, inside, &mut gate), NEW);
    gate.to = 3;
    assert_eq!(
        t.process_gated(&dns, inside + 1, &mut gate),
        CtState::default()
    );
    assert_eq!(t.stats().denied, 3);
    let info = &t.dump(&Filter::default(), 1)[0];
    assert_eq!(
        (info.packets, info.last_seen),
        ([3, 0], 2 * SEC),
        "untouched"
    );
}

/// `packets` packets like `p`, of `bytes` in all, as one run.
fn run_of(
    t: &Table,
    p: &Packet,
    packets: u32,
    bytes: u64,
    now: u64,
    gate: &mut impl Gate,
) -> CtState {
    t.process_prepared(p, &t.prepare(p), Run { packets, bytes }, now, gate)
}

#[test]
fn a_run_is_counted_packet_by_packet_and_judged_once() {
    let t = small();
    let mut gate = PortGate::new(1, &[53]);
    let dns = udp(1, 1, 5000, 2, 53);
    // A new connection's first run: created once, every packet counted. Then runs on the
    // locked path (a new second) and on the lock-free one (inside that second).
    let inside = SEC / 2;
    assert_eq!(run_of(&t, &dns, 3, 250, 0, &mut gate), NEW);
    assert_eq!(run_of(&t, &dns, 4, 400, inside, &mut gate), NEW);
    assert_eq!(run_of(&t, &dns, 5, 500, inside + 1, &mut gate), NEW);
    // Refusals count every packet of the run, on both paths, and change nothing.
    gate.to = 3;
    assert_eq!(
        run_of(&t, &dns, 6, 600, inside + 2, &mut gate),
        CtState::default()
    );
    assert_eq!(run_of(&t, &reply(&dns), 2, 200, SEC, &mut gate), EST_RPL);
    assert_eq!(
        run_of(&t, &dns, 7, 700, SEC + 1, &mut gate),
        CtState::default()
    );
    let web = udp(1, 1, 5001, 2, 80);
    assert_eq!(
        run_of(&t, &web, 5, 500, SEC + 2, &mut gate),
        CtState::default()
    );
    assert_eq!(gate.admitted, 2, "each run's connection is judged once");
    let s = t.stats();
    assert_eq!((s.inserts, s.entries, s.denied), (1, 1, 18));
    let info = &t.dump(&Filter::default(), 10)[0];
    assert_eq!((info.packets, info.bytes), ([12, 2], [1150, 200]));
    let fragment = Packet {
        l4: L4::Fragment,
        ..dns
    };
    assert_eq!(run_of(&t, &fragment, 8, 800, 2 * SEC, &mut gate), INV);
    assert_eq!(t.stats().invalid[InvalidReason::Fragment as usize], 8);
}

#[test]
fn an_ipv6_packet_with_mapped_addresses_never_matches_an_ipv4_connection() {
    let t = small();
    let v4_conn = tcp(client(), SYN, 100, 0, 0);
    assert_eq!(t.process(&v4_conn, 0), NEW);
    // The same 16 address bytes (::ffff:10.0.0.x) in an IPv6 SYN-ACK: not a reply of it.
    let mapped = Tuple {
        v6: true,
        ..client().reversed()
    };
    assert_eq!(
        t.process(&tcp(mapped, SYN | ACK, 500, 101, 0), SEC),
        INV,
        "a SYN-ACK for no IPv6 connection"
    );
    assert_eq!(t.process(&tcp(mapped.reversed(), SYN, 7, 0, 0), SEC), NEW);
    assert_eq!(t.stats().entries, 2, "two connections, one per family");
    let info = t.dump(&Filter::default(), 10);
    assert!(info.iter().any(|c| c.original.v6) && info.iter().any(|c| !c.original.v6));
}

#[test]
fn a_peek_shows_the_live_entry_and_what_a_packet_would_do_without_changing_anything() {
    let t = small();
    let c = client();
    t.process(&tcp(c, SYN, 1000, 0, 0), 0);
    t.process(&tcp(c.reversed(), SYN | ACK, 5000, 1001, 0), 0);
    t.process(&tcp(c, ACK, 1001, 5001, 0), SEC);
    let (table_before, stats_before) = (t.dump(&Filter::default(), 10), t.stats());

    let next = t.peek(&tcp(c, ACK, 1001, 5001, 100), 2 * SEC, &mut Open);
    assert_eq!(next.entry.as_ref(), table_before.first());
    assert_eq!(next.entry.unwrap().tcp_state, Some(TcpState::Established));
    assert_eq!((next.state, next.invalid, next.creates), (EST, None, None));
    let back = t.peek(&tcp(c.reversed(), ACK, 5001, 1001, 0), 2 * SEC, &mut Open);
    assert_eq!(back.state, EST_RPL);
    let wild = t.peek(&tcp(c, ACK, 900_000_000, 5001, 100), 2 * SEC, &mut Open);
    assert_eq!(
        (wild.state, wild.invalid),
        (INV, Some(InvalidReason::TcpWindow))
    );

    let other = Tuple { sport: 40001, ..c };
    let syn = t.peek(&tcp(other, SYN, 1, 0, 0), 2 * SEC, &mut Open);
    assert_eq!((syn.entry, syn.state), (None, NEW));
    assert!(syn.creates.is_some());
    let midstream = t.peek(&tcp(other, ACK, 1, 1, 0), 2 * SEC, &mut Open);
    assert_eq!(midstream.invalid, Some(InvalidReason::TcpNoConnection));

    assert_eq!(
        t.dump(&Filter::default(), 10),
        table_before,
        "entries unchanged"
    );
    assert_eq!(t.stats(), stats_before, "counters unchanged");
}

/// A gate that admits everything and keeps the events it is given.
#[derive(Default)]
struct Recorder(Vec<(EventKind, Option<TcpState>)>);

impl Gate for Recorder {
    fn generation(&self) -> u32 {
        0
    }
    fn admit(&mut self, p: &Packet) -> Option<Admission> {
        Open.admit(p)
    }
    fn recheck(&mut self, t: &Tuple, was: &Admission) -> Option<Admission> {
        Open.recheck(t, was)
    }
    fn pass(&mut self, _: &Connection<'_>, _: Dir, _: &mut Admission) -> bool {
        true
    }
    fn wants_events(&self) -> bool {
        true
    }
    fn event(&mut self, e: &Event) {
        self.0.push((e.kind, e.tcp_state));
    }
}

#[test]
fn events_follow_a_connection_from_new_to_expired() {
    use EventKind::*;
    let t = small();
    let mut rec = Recorder::default();
    let c = client();
    for (p, at) in [
        (tcp(c, SYN, 1000, 0, 0), 0),
        (tcp(c.reversed(), SYN | ACK, 5000, 1001, 0), 0),
        (tcp(c, ACK, 1001, 5001, 0), 0),
        (tcp(c, ACK, 1001, 5001, 10), 0),
        (tcp(c, FIN | ACK, 1011, 5001, 0), SEC),
        (tcp(c.reversed(), FIN | ACK, 5001, 1012, 0), SEC),
        (tcp(c, ACK, 1012, 5002, 0), SEC),
    ] {
        t.process_gated(&p, at, &mut rec);
    }
    let u = udp(1, 1, 5000, 2, 53);
    t.process_gated(&u, 0, &mut rec);
    t.process_gated(&reply(&u), 0, &mut rec);
    assert_eq!(
        rec.0,
        [
            (New, Some(TcpState::SynSent)),
            (Established, Some(TcpState::Established)),
            (Closed, Some(TcpState::TimeWait)),
            (New, None),
            (Established, None),
        ]
    );
    // The sweep reports what it removes; an entry found expired by a packet is reported too.
    let mut swept = vec![];
    for _ in 0..4 {
        t.expire_with(200 * SEC, 1000, |e| swept.push(e.kind));
    }
    assert_eq!(swept, [Expired, Expired]);
    t.process_gated(&u, 300 * SEC, &mut rec);
    t.process_gated(&u, 400 * SEC, &mut rec);
    assert_eq!(rec.0[5..], [(New, None), (Expired, None), (New, None)]);
    assert!(!Open.wants_events(), "plain tracking builds no events");
}

/// A table of one shard holding `max` connections, for exact capacity.
fn one_shard(max: usize) -> Table {
    Table::new(Config {
        max_connections: max,
        shards: 1,
    })
}

/// An established connection from `sport` at time `now`, with 100 bytes sent by the client.
fn established(t: &Table, sport: u16, now: u64) {
    let c = Tuple { sport, ..client() };
    t.process(&tcp(c, SYN, 1000, 0, 0), now);
    t.process(&tcp(c.reversed(), SYN | ACK, 5000, 1001, 0), now);
    t.process(&tcp(c, ACK, 1001, 5001, 0), now);
    t.process(&tcp(c, ACK | PSH, 1001, 5001, 100), now);
}

fn saved(t: &Table, now: u64) -> Vec<Saved> {
    let mut out = Vec::new();
    t.export(now, |s| out.push(*s));
    out
}

#[test]
fn an_exported_connection_goes_on_in_the_importing_table_mid_stream() {
    let old = one_shard(16);
    established(&old, 40000, 100 * SEC);
    let all = saved(&old, 103 * SEC);
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].age, all[0].idle), (3 * SEC, 3 * SEC));

    // The new process's clock starts again; pickup is off, so only the imported entry lets a
    // mid-stream segment through.
    let new = one_shard(16);
    let c = client();
    let next = tcp(c, ACK | PSH, 1101, 5001, 100);
    assert!(new.process(&next, 5 * SEC).contains(CtState::INVALID));
    new.import(&all[0], 5 * SEC).unwrap();
    let info = &new.dump(&Filter::default(), 1)[0];
    assert_eq!(info.tcp_state, Some(TcpState::Established));
    assert_eq!((info.packets, info.bytes), ([3, 1], [220, 40]));
    assert_eq!((info.created, info.last_seen), (2 * SEC, 2 * SEC));
    let est = CtState::TRACKED | CtState::ESTABLISHED;
    assert_eq!(new.process(&next, 6 * SEC), est);
    // Its windows came along: a segment far outside them is still refused.
    let wild = tcp(c, ACK, 900_000_000, 5001, 100);
    assert!(new.process(&wild, 6 * SEC).contains(CtState::INVALID));
    assert_eq!(new.stats().inserts, 0, "an import is not an insert");
}

#[test]
fn expired_duplicate_and_overflowing_connections_are_not_imported() {
    let old = one_shard(16);
    for sport in [1, 2, 3] {
        established(&old, sport, 0);
    }
    let all = saved(&old, 10 * SEC);
    assert_eq!(all.len(), 3);

    let new = one_shard(2);
    new.import(&all[0], 0).unwrap();
    assert_eq!(new.import(&all[0], 0), Err(NotImported::Exists));
    new.import(&all[1], 0).unwrap();
    assert_eq!(new.import(&all[2], 0), Err(NotImported::Full));

    // Idle past its timeout (a short ESTABLISHED timeout in the new table's zone).
    let short = one_shard(16);
    let mut policy = ZonePolicy::default();
    policy.timeouts.tcp_established = 10;
    short.set_policy(1, Some(policy));
    assert_eq!(short.import(&all[0], 0), Err(NotImported::Expired));
    assert_eq!(short.stats().entries, 0);
}

#[test]
fn a_zone_limit_holds_for_imports_and_counts_them() {
    let old = one_shard(16);
    for sport in [1, 2, 3] {
        established(&old, sport, 0);
    }
    let all = saved(&old, 0);
    let new = one_shard(16);
    let policy = ZonePolicy {
        limit: Some(2),
        ..ZonePolicy::default()
    };
    new.set_policy(1, Some(policy));
    new.import(&all[0], 0).unwrap();
    new.import(&all[1], 0).unwrap();
    assert_eq!(new.import(&all[2], 0), Err(NotImported::Full));
    // The imported two count against the limit for new connections too.
    let syn = tcp(
        Tuple {
            sport: 9,
            ..client()
        },
        SYN,
        1,
        0,
        0,
    );
    assert!(new.process(&syn, 0).contains(CtState::INVALID));
}

#[test]
fn timed_out_connections_are_not_exported() {
    let old = one_shard(16);
    established(&old, 1, 0);
    let udp = Packet {
        tuple: Tuple {
            proto: proto::UDP,
            sport: 2,
            ..client()
        },
        l4: L4::Udp,
        len: 60,
    };
    old.process(&udp, 0);
    // Unreplied UDP lives 30 s; the TCP connection a day.
    assert_eq!(saved(&old, 31 * SEC).len(), 1);
}
