//! What verifying (and completing) a transport checksum costs per frame: a 64-byte frame's UDP
//! datagram and a full-size TCP segment, the two ends of what VMs send.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use brink_dataplane::wire::checksum::{pseudo_header, segment};
use brink_dataplane::wire::ip;
use brink_dataplane::wire::{EtherType, L3};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

/// An IPv4 packet (no Ethernet header) of `proto` 6 or 17 with `len` payload bytes.
fn packet(tcp: bool, len: usize) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
    let mut out = vec![];
    let payload = vec![0x5a; len];
    if tcp {
        b.tcp(40000, 80, 1, 64000)
            .ack(1)
            .write(&mut out, &payload)
            .unwrap();
    } else {
        b.udp(40000, 53).write(&mut out, &payload).unwrap();
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Elements(1));
    for (name, tcp, len, field) in [("udp_64B", false, 18, 6), ("tcp_1514B", true, 1460, 16)] {
        let p = packet(tcp, len);
        let seg = &p[20..];
        let sum = pseudo_header(&p[12..16], &p[16..20], p[9], seg.len() as u16);
        g.bench_function(format!("verify_{name}"), |b| {
            b.iter(|| segment(black_box(&sum), black_box(seg), field))
        });
        g.bench_function(format!("parse_{name}"), |b| {
            let (mut l3, mut ct) = (L3::Other, None);
            b.iter(|| {
                let out = ip::Out {
                    l3: &mut l3,
                    ct: &mut ct,
                };
                ip::parse(EtherType::Ipv4, black_box(&p), 1, out)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
