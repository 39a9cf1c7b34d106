//! A one-worker switch on in-memory replay ports, shared by the benchmark and the allocation test.

use std::sync::Arc;
use std::time::Duration;

use brink_dataplane::counters::{PortCounters, WorkerCounters};
use brink_dataplane::egress::Egress;
use brink_dataplane::port::memory::{MemBackend, MemPort};
use brink_dataplane::snapshot::{NetworkId, PortEntry, Snapshot, SnapshotCell};
use brink_dataplane::wire::MacAddr;
use brink_dataplane::worker::{Command, Shared, Worker, WorkerConfig};
use crossbeam_channel::bounded;

/// A 64-byte UDP frame of flow `i`: its own source MAC, IP and port, to `dst_mac`.
fn udp_frame(i: usize, dst_mac: MacAddr) -> Vec<u8> {
    let b = (i as u32).to_be_bytes();
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 1, b[2], b[3]], dst_mac.0)
        .ipv4([10, b[1], b[2], b[3]], [10, 255, 0, 1], 64)
        .udp(1024 + (i % 50_000) as u16, 53);
    let mut f = Vec::new();
    builder.write(&mut f, &[0u8; 18]).unwrap();
    f
}

/// Port 0 replays `flows` 64-byte UDP frames, each from its own source MAC, IP and port, to
/// port 1's configured MAC; port 1 discards what it is sent. Both ports are in network 1 on one
/// worker, and track connections if `conntrack` is set.
pub fn worker(flows: usize, conntrack: bool) -> (Worker<MemBackend>, Arc<PortCounters>) {
    let shared = Shared {
        snapshot: Arc::new(SnapshotCell::default()),
        ct: Arc::new(brink_conntrack::Table::new(brink_conntrack::Config {
            max_connections: 1024,
            shards: 1,
        })),
        epoch: std::time::Instant::now(),
    };
    let (tx, rx) = bounded(4);
    let wc = Arc::new(WorkerCounters::default());
    let egress = Egress::new(0, MemBackend::new(4096), vec![None], Arc::clone(&wc));
    let config = WorkerConfig {
        idle_sleep: false,
        fdb_capacity: 65_536,
        fdb_aging: Duration::from_secs(300),
    };
    let mut worker = Worker::new(egress, vec![], rx, shared.clone(), wc, config);
    let sink_mac = MacAddr([2, 0, 0, 0, 0xff, 0xff]);
    let frames = (0..flows).map(|i| udp_frame(i, sink_mac)).collect();
    let sink_counters = Arc::new(PortCounters::default());
    for (id, spec, counters) in [
        (
            0,
            MemPort::Replay(frames),
            Arc::new(PortCounters::default()),
        ),
        (1, MemPort::Replay(vec![]), Arc::clone(&sink_counters)),
    ] {
        let (reply, answer) = bounded(1);
        tx.send(Command::AddPort {
            id,
            spec,
            counters,
            reply,
        })
        .unwrap();
        worker.poll_once(std::time::Instant::now());
        answer.try_recv().unwrap().unwrap();
    }
    let entry = |mac| PortEntry {
        network: NetworkId(1),
        worker: 0,
        mac,
        conntrack,
        filter: None,
    };
    shared.snapshot.publish(Snapshot::new(
        1,
        [(0, entry(None)), (1, entry(Some(sink_mac)))],
    ));
    (worker, sink_counters)
}
