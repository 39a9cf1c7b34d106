//! What a VLAN trunk costs per frame: splitting a received batch of 32 tagged frames by VLAN
//! (the tag popped) and pushing the tag back on each, as transmission does. 64-byte and
//! 1514-byte frames: tagging moves every byte after the MAC addresses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use brink_dataplane::batch::BATCH_SIZE;
use brink_dataplane::port::memory::{MemBackend, MemFrame};
use brink_dataplane::port::Backend;
use brink_dataplane::trunk::{self, Demux, Trunks, VlanPort};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const TRUNK: u16 = 9;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("vlan");
    g.throughput(Throughput::Elements(BATCH_SIZE as u64));
    let mut trunks = Trunks::default();
    for (port, vid) in [(1, 100), (2, 200)] {
        trunks.add(port, VlanPort { trunk: TRUNK, vid });
    }
    for len in [64usize, 1514] {
        let mut backend = MemBackend::new(64);
        let mut demux = Demux::default();
        for (i, f) in demux.frames.iter_mut().enumerate() {
            let mut bytes = vec![0xab; len + 4];
            let vid = if i % 2 == 0 { 100 } else { 200 };
            bytes[12..16].copy_from_slice(&[0x81, 0, 0, vid]);
            *f = backend.alloc_copy(&bytes).unwrap();
        }
        let mut group = [MemFrame::default(); BATCH_SIZE];
        g.bench_function(format!("split_and_tag_{len}B"), |b| {
            b.iter(|| {
                demux.split(&mut backend, &trunks, TRUNK, BATCH_SIZE, |_| true);
                let mut back = 0;
                while let Some((port, n)) = demux.next_group(&mut group) {
                    for f in &mut group[..n] {
                        trunk::tag(&mut backend, f, port * 100);
                        demux.frames[back] = *f;
                        back += 1;
                    }
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
