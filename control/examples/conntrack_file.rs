//! How long brinkd takes to save and load its connection table across a restart: fills a table
//! with N established TCP connections (default 1,000,000), saves it as brinkd does on SIGTERM,
//! and loads it into a fresh table as brinkd does at start-up.
//!
//! `cargo run --release -p brink-control --example conntrack_file -- [N]`

use std::time::Instant;

use brink_conntrack::key::proto;
use brink_conntrack::tcp::flags::{ACK, SYN};
use brink_conntrack::{Addr, Config, Packet, Table, TcpSegment, Tuple, L4};
use brink_control::connections;

fn segment(t: Tuple, flags: u8, seq: u32, ack: u32) -> Packet {
    let seg = TcpSegment {
        seq,
        ack,
        window: 64_240,
        flags,
        payload_len: 0,
        wscale: Some(7),
    };
    Packet {
        tuple: t,
        l4: L4::Tcp(seg),
        len: 60,
    }
}

fn main() -> anyhow::Result<()> {
    let n: u32 = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 1_000_000,
    };
    let config = Config {
        max_connections: n as usize,
        ..Config::default()
    };
    let table = Table::new(config);
    for i in 0..n {
        let [a, b, c, d] = i.to_be_bytes();
        let t = Tuple {
            zone: 1,
            v6: false,
            proto: proto::TCP,
            src: Addr::v4([10, a, b, c]),
            dst: Addr::v4([10, 200, 0, 1]),
            sport: 1024 + u16::from(d),
            dport: 80,
        };
        table.process(&segment(t, SYN, 1000, 0), 0);
        table.process(&segment(t.reversed(), SYN | ACK, 5000, 1001), 0);
        table.process(&segment(t, ACK, 1001, 5001), 0);
    }
    let entries = table.stats().entries;
    let dir = std::env::temp_dir().join(format!("brink-ct-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(connections::FILE);
    let names = vec![(1, "blue".to_string())];

    let t0 = Instant::now();
    let saved = connections::save(&path, &table, 0, names.clone(), names)?;
    let save = t0.elapsed();
    let size = std::fs::metadata(&path)?.len();
    drop(table);

    let fresh = Table::new(config);
    let t0 = Instant::now();
    let mut imported = 0u64;
    connections::load(&path, |_, s| {
        imported += u64::from(fresh.import(&s, 0).is_ok())
    })?;
    let load = t0.elapsed();
    std::fs::remove_dir_all(&dir)?;

    println!(
        "{entries} connections: save {:.0} ms ({saved} written, {:.1} MB, {:.0} bytes each), load {:.0} ms ({imported} imported)",
        save.as_secs_f64() * 1e3,
        size as f64 / 1e6,
        size as f64 / saved.max(1) as f64,
        load.as_secs_f64() * 1e3,
    );
    Ok(())
}
