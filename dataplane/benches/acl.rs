//! Security-group rule evaluation: the lookup a new connection costs, with 10, 1,000 and
//! 10,000 rules on one port (direction and ethertype). Rules mix what real groups hold: single
//! TCP ports, UDP ranges, ICMP types and any-protocol rules, from prefixes of many lengths and
//! from remote groups of 8 members. Packets are a fixed random mix of allowed and denied ones.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use brink_conntrack::Addr;
use brink_dataplane::acl::{Prefix, Rule, RuleSet};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// xorshift64: reproducible numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn addr(&mut self) -> Addr {
        let b = (self.next() as u32).to_be_bytes();
        Addr::v4([10, b[1], b[2], b[3]])
    }
}

fn rules(n: usize, rng: &mut Rng) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            let len = 96 + 8 + rng.below(25) as u8; // /8 to /32
            let remotes = match rng.below(10) {
                0 => vec![Prefix::ANY],
                1 => (0..8).map(|_| Prefix::host(rng.addr())).collect(),
                _ => vec![Prefix::raw(rng.addr(), len)],
            };
            let (proto, ports) = match rng.below(10) {
                0..=5 => {
                    let p = 1 + rng.below(65_535) as u16;
                    (Some(6), (p, p))
                }
                6 | 7 => {
                    let lo = 1 + rng.below(60_000) as u16;
                    (Some(17), (lo, lo + rng.below(1000) as u16))
                }
                8 => {
                    let t = rng.below(20) as u16;
                    (Some(1), (t << 8, t << 8 | 0xff))
                }
                _ => (None, (0, u16::MAX)),
            };
            let remotes = if proto.is_none() && remotes == [Prefix::ANY] {
                vec![Prefix::raw(rng.addr(), len)]
            } else {
                remotes
            };
            Rule {
                id: i as u32 + 1,
                proto,
                ports,
                remotes,
                hits: Arc::default(),
            }
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("acl");
    g.throughput(Throughput::Elements(1));
    for n in [10, 1_000, 10_000] {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ n as u64);
        let rules = rules(n, &mut rng);
        let set = RuleSet::compile(&rules);
        // Half the packets are built from a rule (so allowed), half come from outside every
        // prefix but the catch-all ones (so mostly denied, the slowest case).
        let packets: Vec<(u8, u16, Addr)> = (0..1024)
            .map(|i| {
                let r = &rules[rng.below(n as u64) as usize];
                if i % 2 == 0 {
                    let proto = r.proto.unwrap_or(6);
                    (proto, r.ports.0, Addr(r.remotes[0].bits().to_be_bytes()))
                } else {
                    let b = (rng.next() as u16).to_be_bytes();
                    (
                        6,
                        rng.below(65_536) as u16,
                        Addr::v4([192, 168, b[0], b[1]]),
                    )
                }
            })
            .collect();
        let allowed = packets
            .iter()
            .filter(|&&(p, port, a)| set.lookup(p, port, a).is_some())
            .count();
        println!("acl/{n}: {allowed} of 1024 packets allowed");
        let mut i = 0;
        g.bench_function(format!("lookup_{n}_rules"), |b| {
            b.iter(|| {
                i = (i + 1) & 1023;
                let (p, port, a) = packets[i];
                black_box(set.lookup(p, port, black_box(a)).map(|h| h.id))
            });
        });
    }
    g.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
