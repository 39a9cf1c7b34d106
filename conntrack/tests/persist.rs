//! Export and import: connections carried from one table to another (a restart), under
//! virtual time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use brink_conntrack::key::proto;
use brink_conntrack::tcp::flags::*;
use brink_conntrack::*;

const SEC: u64 = 1_000_000_000;

fn table(max: usize) -> Table {
    Table::new(Config {
        max_connections: max,
        shards: 1,
    })
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

fn client(sport: u16) -> Tuple {
    Tuple {
        v6: false,
        zone: 1,
        proto: proto::TCP,
        src: Addr::v4([10, 0, 0, 1]),
        dst: Addr::v4([10, 0, 0, 2]),
        sport,
        dport: 80,
    }
}

/// An established connection from `sport` at time `now`, with 100 bytes sent by the client.
fn established(t: &Table, sport: u16, now: u64) {
    let c = client(sport);
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
    let old = table(16);
    established(&old, 40000, 100 * SEC);
    let all = saved(&old, 103 * SEC);
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].age, all[0].idle), (3 * SEC, 3 * SEC));

    // The new process's clock starts again; pickup is off, so only the imported entry lets a
    // mid-stream segment through.
    let new = table(16);
    let c = client(40000);
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
    let old = table(16);
    for sport in [1, 2, 3] {
        established(&old, sport, 0);
    }
    let all = saved(&old, 10 * SEC);
    assert_eq!(all.len(), 3);

    let new = table(2);
    new.import(&all[0], 0).unwrap();
    assert_eq!(new.import(&all[0], 0), Err(NotImported::Exists));
    new.import(&all[1], 0).unwrap();
    assert_eq!(new.import(&all[2], 0), Err(NotImported::Full));

    // Idle past its timeout (a short ESTABLISHED timeout in the new table's zone).
    let short = table(16);
    let mut policy = ZonePolicy::default();
    policy.timeouts.tcp_established = 10;
    short.set_policy(1, Some(policy));
    assert_eq!(short.import(&all[0], 0), Err(NotImported::Expired));
    assert_eq!(short.stats().entries, 0);
}

#[test]
fn a_zone_limit_holds_for_imports_and_counts_them() {
    let old = table(16);
    for sport in [1, 2, 3] {
        established(&old, sport, 0);
    }
    let all = saved(&old, 0);
    let new = table(16);
    let policy = ZonePolicy {
        limit: Some(2),
        ..ZonePolicy::default()
    };
    new.set_policy(1, Some(policy));
    new.import(&all[0], 0).unwrap();
    new.import(&all[1], 0).unwrap();
    assert_eq!(new.import(&all[2], 0), Err(NotImported::Full));
    // The imported two count against the limit for new connections too.
    let syn = tcp(client(9), SYN, 1, 0, 0);
    assert!(new.process(&syn, 0).contains(CtState::INVALID));
}

#[test]
fn timed_out_connections_are_not_exported() {
    let old = table(16);
    established(&old, 1, 0);
    let udp = Packet {
        tuple: Tuple {
            proto: proto::UDP,
            ..client(2)
        },
        l4: L4::Udp,
        len: 60,
    };
    old.process(&udp, 0);
    // Unreplied UDP lives 30 s; the TCP connection a day.
    assert_eq!(saved(&old, 31 * SEC).len(), 1);
}
