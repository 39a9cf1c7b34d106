//! The poll-mode worker: one thread, pinned to a core, owning its ports and frame pool.
//!
//! Each iteration of [`Worker::poll_once`] reads the clock and the published snapshot once,
//! applies control commands, then for every owned port receives one batch and runs it through
//! the stages, takes frames other workers forwarded here, and services the rings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brink_conntrack::table::DEFAULT_EXPIRE_BUDGET;
use brink_conntrack::Table;
use crossbeam_channel::{bounded, Receiver, Sender};

use crate::batch::{Batch, BATCH_SIZE};
use crate::capture::{Capture, Way};
use crate::counters::{DropReason, PortCounters, WorkerCounters};
use crate::cross::{self, CrossQueue};
use crate::ct_events::CtEvents;
use crate::egress::Egress;
use crate::fdb::{Fdb, FdbRow};
use crate::pipeline as stage;
use crate::port::{Backend, PortError, PortMode, QueueStats, SocketStats};
use crate::snapshot::{NetworkId, PortEntry, PortId, Snapshot, SnapshotCell};
use crate::trunk::{Demux, Trunks, VlanPort};

/// How long an idle worker sleeps when idle sleeping is on.
pub const IDLE_SLEEP: Duration = Duration::from_micros(200);
/// Idle iterations in a row before an idle worker starts sleeping.
const IDLE_SPIN: u32 = 64;
/// How often learned FDB entries are swept for aging.
const AGING_SWEEP: Duration = Duration::from_secs(1);
/// How often a worker expires a slice of the connection table.
const CT_EXPIRE_EVERY: Duration = Duration::from_millis(1);

/// A port a worker polls, which of its receive queues, and what they moved (if the backend
/// counts per queue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    /// The port.
    pub port: PortId,
    /// Its queues this worker polls.
    pub queues: Vec<u32>,
    /// What each of them moved, on a backend that counts per queue.
    pub moved: Vec<QueueStats>,
}

/// A request from the control thread, applied between batches.
pub enum Command<S> {
    /// Open a port and start polling it once the snapshot lists it.
    AddPort {
        /// Port id.
        id: PortId,
        /// How to open it.
        spec: S,
        /// Where to count its traffic.
        counters: Arc<PortCounters>,
        /// Receives the outcome.
        reply: Sender<Result<PortMode, PortError>>,
    },
    /// Start sending to logical VLAN port `id`, tagged on trunk `at.trunk` (a port this
    /// worker polls), and taking frames of VLAN `at.vid` from it.
    AddVlan {
        /// Port id of the logical port.
        id: PortId,
        /// Its trunk and VLAN id.
        at: VlanPort,
        /// Where to count its traffic.
        counters: Arc<PortCounters>,
        /// Answered once done.
        reply: Sender<()>,
    },
    /// Stop polling a port (or a logical VLAN port) and close it.
    RemovePort {
        /// Port id.
        id: PortId,
        /// Answered once the port is closed.
        reply: Sender<()>,
    },
    /// Report the learned FDB entries.
    FdbRows {
        /// Receives the rows.
        reply: Sender<Vec<FdbRow>>,
    },
    /// Report the kernel's socket counters of every owned port that has a socket.
    SocketStats {
        /// Receives one entry per such port.
        reply: Sender<Vec<(PortId, SocketStats)>>,
    },
    /// Report the ports this worker polls, with their queues.
    Polls {
        /// Receives one entry per owned port.
        reply: Sender<Vec<Polled>>,
    },
    /// Forget learned entries of one network, or all.
    FdbFlush {
        /// The network, or `None` for all.
        network: Option<NetworkId>,
        /// Answered once done.
        reply: Sender<()>,
    },
}

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Sleep when idle instead of busy polling.
    pub idle_sleep: bool,
    /// Learned FDB entries per worker.
    pub fdb_capacity: usize,
    /// FDB aging time.
    pub fdb_aging: Duration,
}

/// What every worker shares: the published snapshot, the connection table, the time origin
/// conntrack's nanosecond clock counts from, the capture and the connection events.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Ports and networks.
    pub snapshot: Arc<SnapshotCell>,
    /// Connection table.
    pub ct: Arc<Table>,
    /// Conntrack time zero.
    pub epoch: Instant,
    /// The packet capture, off unless the control thread starts one.
    pub capture: Arc<Capture>,
    /// Connection events, off unless the control thread subscribes.
    pub events: Arc<CtEvents>,
}

impl Shared {
    /// Nanoseconds from the epoch to `now`.
    #[inline]
    pub fn ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

/// What one worker is connected to before it has a backend: its queues to and from the other
/// workers, its command channel and its counters. [`wire`] makes them for a whole switch; the
/// switch, the tests and the benchmarks all build their workers this way.
pub struct Wiring<S> {
    id: usize,
    to_workers: Vec<Option<CrossQueue>>,
    from_workers: Vec<CrossQueue>,
    commands: Receiver<Command<S>>,
    counters: Arc<WorkerCounters>,
}

/// The control side of one worker's [`Wiring`].
pub struct WorkerLink<S> {
    /// Where to send it commands.
    pub commands: Sender<Command<S>>,
    /// Its counters.
    pub counters: Arc<WorkerCounters>,
}

/// The wiring of `n` workers, each with a command queue of `depth` commands: the worker side
/// and the control side of each.
pub fn wire<S>(n: usize, depth: usize) -> Vec<(Wiring<S>, WorkerLink<S>)> {
    let mesh = cross::mesh(n);
    (0..n)
        .map(|id| {
            let (commands, command_rx) = bounded(depth);
            let counters = Arc::new(WorkerCounters::default());
            let wiring = Wiring {
                id,
                to_workers: mesh[id].clone(),
                from_workers: mesh.iter().filter_map(|row| row[id].clone()).collect(),
                commands: command_rx,
                counters: Arc::clone(&counters),
            };
            (wiring, WorkerLink { commands, counters })
        })
        .collect()
}

impl<S> Wiring<S> {
    /// The worker this wiring is for, around `backend`.
    pub fn into_worker<B: Backend<Spec = S>>(
        self,
        backend: B,
        shared: Shared,
        config: WorkerConfig,
    ) -> Worker<B> {
        let egress = Egress::new(
            self.id,
            backend,
            self.to_workers,
            Arc::clone(&self.counters),
            Arc::clone(&shared.capture),
        );
        Worker::new(
            self.id,
            egress,
            self.from_workers,
            self.commands,
            shared,
            self.counters,
            config,
        )
    }
}

/// One poll-mode worker.
pub struct Worker<B: Backend> {
    /// This worker's index in the switch (its slot in per-worker counters).
    id: usize,
    egress: Egress<B>,
    fdb: Fdb,
    batch: Batch<B::Frame>,
    /// Ports this worker owns, in the order they were added.
    owned: Vec<PortId>,
    /// Logical VLAN ports on the trunks among `owned`.
    trunks: Trunks,
    /// A trunk's batch, split by VLAN.
    demux: Demux<B::Frame>,
    from_workers: Vec<CrossQueue>,
    commands: Receiver<Command<B::Spec>>,
    shared: Shared,
    counters: Arc<WorkerCounters>,
    config: WorkerConfig,
    seen_generation: u64,
    last_aging: Instant,
    last_ct_expire: Instant,
}

impl<B: Backend> Worker<B> {
    /// A worker around `egress`, reading commands from `commands` and frames other workers
    /// forward to it from `from_workers`.
    fn new(
        id: usize,
        egress: Egress<B>,
        from_workers: Vec<CrossQueue>,
        commands: Receiver<Command<B::Spec>>,
        shared: Shared,
        counters: Arc<WorkerCounters>,
        config: WorkerConfig,
    ) -> Self {
        Worker {
            id,
            fdb: Fdb::new(config.fdb_capacity, config.fdb_aging),
            egress,
            batch: Batch::default(),
            owned: Vec::with_capacity(crate::snapshot::MAX_PORTS),
            trunks: Trunks::default(),
            demux: Demux::default(),
            from_workers,
            commands,
            shared,
            counters,
            config,
            seen_generation: 0,
            last_aging: Instant::now(),
            last_ct_expire: Instant::now(),
        }
    }

    /// The worker's backend, for inspection.
    pub fn backend(&self) -> &B {
        &self.egress.backend
    }

    /// Polls until `stop` is set. Kept out of line, so that profilers find the worker loop
    /// under its name (`bench/scripts/vhost-count.sh` counts inside it).
    #[inline(never)]
    pub fn run(mut self, stop: &AtomicBool) {
        let mut idle_streak = 0u32;
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let moved = self.poll_once(last);
            if moved == 0 && self.config.idle_sleep {
                idle_streak = idle_streak.saturating_add(1);
                if idle_streak > IDLE_SPIN {
                    std::thread::sleep(IDLE_SLEEP);
                }
            } else {
                idle_streak = 0;
            }
            let now = Instant::now();
            let ns = now.duration_since(last).as_nanos() as u64;
            if moved > 0 {
                self.counters.busy_polls.add(1);
                self.counters.busy_ns.add(ns);
            } else {
                self.counters.idle_polls.add(1);
                self.counters.idle_ns.add(ns);
            }
            last = now;
        }
        for id in std::mem::take(&mut self.owned) {
            self.egress.backend.close(id);
        }
    }

    /// One iteration at time `now`; returns the number of frames moved.
    pub fn poll_once(&mut self, now: Instant) -> usize {
        while let Ok(cmd) = self.commands.try_recv() {
            self.apply(cmd, now);
        }
        let snap = self.shared.snapshot.load();
        if snap.generation() != self.seen_generation {
            self.seen_generation = snap.generation();
            self.fdb.sync(&snap, now);
        }
        let now_ns = self.shared.ns(now);
        let capture = self.shared.capture.target();
        self.egress.capture_at(capture, now_ns);
        let mut moved = 0;
        for i in 0..self.owned.len() {
            let port = self.owned[i];
            // A port is polled only once the snapshot knows its network; a trunk is in none.
            let Some(entry) = snap.port(port) else {
                if self.trunks.carries(port) {
                    moved += self.poll_trunk(port, &snap, now, now_ns, capture.traffic_of(port));
                }
                continue;
            };
            let n = self.egress.backend.rx(port, &mut self.batch.frames);
            if n == 0 {
                continue;
            }
            if capture.traffic_of(port) {
                self.record_in(&self.batch.frames[..n], now_ns);
            }
            self.start_batch(port, entry, n, &snap);
            self.run_batch(&snap, now, now_ns);
            moved += n;
        }
        moved += self.take_cross();
        moved += self.egress.backend.service();
        if now.duration_since(self.last_ct_expire) >= CT_EXPIRE_EVERY {
            self.last_ct_expire = now;
            match self.shared.events.active() {
                Some(events) => {
                    let ct = &self.shared.ct;
                    ct.expire_with(now_ns, DEFAULT_EXPIRE_BUDGET, |e| events.push(e));
                }
                None => {
                    self.shared.ct.expire(now_ns, DEFAULT_EXPIRE_BUDGET);
                }
            }
        }
        if now.duration_since(self.last_aging) >= AGING_SWEEP {
            self.last_aging = now;
            let aged = self.fdb.age(now);
            self.counters.fdb_aged.add(aged as u64);
        }
        moved
    }

    /// Receives a batch on VLAN trunk `trunk` and runs each VLAN's frames, untagged, as a batch
    /// from that VLAN's logical port; frames of no known VLAN are dropped on the trunk.
    /// `captured`: the trunk's traffic is being captured (as received, tagged).
    fn poll_trunk(
        &mut self,
        trunk: PortId,
        snap: &Snapshot,
        now: Instant,
        now_ns: u64,
        captured: bool,
    ) -> usize {
        let n = self.egress.backend.rx(trunk, &mut self.demux.frames);
        if n == 0 {
            return 0;
        }
        if captured {
            self.record_in(&self.demux.frames[..n], now_ns);
        }
        if let Some(c) = self.egress.port_counters(trunk) {
            let backend = &self.egress.backend;
            let bytes: usize = self.demux.frames[..n]
                .iter()
                .map(|f| backend.bytes(f).len())
                .sum();
            c.rx_packets.add_shared(n as u64);
            c.rx_bytes.add_shared(bytes as u64);
        }
        let up = |p| snap.port(p).is_some();
        let backend = &mut self.egress.backend;
        let aside = self.demux.split(backend, &self.trunks, trunk, n, up);
        for &f in aside {
            self.egress.drop_rx(trunk, DropReason::UnknownVlan, f);
        }
        while let Some((port, len)) = self.demux.next_group(&mut self.batch.frames) {
            // `split` kept only frames of ports the snapshot has.
            if let Some(entry) = snap.port(port) {
                self.start_batch(port, entry, len, snap);
                self.run_batch(snap, now, now_ns);
            }
        }
        n
    }

    /// Records received `frames` in the capture.
    fn record_in(&self, frames: &[B::Frame], now_ns: u64) {
        for f in frames {
            let bytes = self.egress.backend.bytes(f);
            self.shared.capture.record(now_ns, Way::In, bytes);
        }
    }

    /// Makes the batch `n` frames received on `port`, described by `entry`.
    fn start_batch(&mut self, port: PortId, entry: &PortEntry, n: usize, snap: &Snapshot) {
        self.batch.len = n;
        self.batch.in_port = port;
        self.batch.network = entry.network;
        self.batch.track = entry.tracks();
        self.batch.inspect = self.batch.track || snap.is_filtered(entry.network);
    }

    fn run_batch(&mut self, snap: &Snapshot, now: Instant, now_ns: u64) {
        let b = &mut self.batch;
        stage::parse(b, &self.egress.backend);
        stage::port_security(b, snap);
        stage::l2(b, &mut self.fdb, now, &self.counters);
        stage::neighbour_responder(b, &mut self.egress.backend, snap, &self.counters);
        let events = self.shared.events.active();
        stage::conntrack(b, &self.shared.ct, snap, now_ns, self.id, events);
        stage::rules(b, snap, self.id);
        stage::finish_checksums(b, &mut self.egress.backend);
        stage::tx(b, &mut self.egress, snap);
        self.counters.batches.add(1);
        if let Some(c) = self.egress.port_counters(b.in_port) {
            c.rx_packets.add_shared(b.len as u64);
            c.rx_bytes.add_shared(b.rx_bytes);
        }
    }

    fn take_cross(&mut self) -> usize {
        let mut taken = 0;
        for q in &self.from_workers {
            for _ in 0..BATCH_SIZE {
                if !q.pop(|to, bytes| self.egress.accept_cross(to, bytes)) {
                    break;
                }
                taken += 1;
            }
        }
        self.egress.flush();
        taken
    }

    fn apply(&mut self, cmd: Command<B::Spec>, now: Instant) {
        // A closed reply channel means the requester gave up; the work is done regardless.
        match cmd {
            Command::AddPort {
                id,
                spec,
                counters,
                reply,
            } => {
                let opened = self.egress.backend.open(id, spec);
                if opened.is_ok() {
                    self.egress.attach(id, counters, None);
                    self.owned.push(id);
                }
                let _ = reply.send(opened);
            }
            Command::AddVlan {
                id,
                at,
                counters,
                reply,
            } => {
                // A port cannot be its own trunk.
                if at.trunk != id {
                    self.trunks.add(id, at);
                    self.egress.attach(id, counters, Some(at));
                }
                let _ = reply.send(());
            }
            Command::RemovePort { id, reply } => {
                self.owned.retain(|&p| p != id);
                self.trunks.remove(id);
                self.egress.detach(id);
                self.egress.backend.close(id);
                let _ = reply.send(());
            }
            Command::FdbRows { reply } => {
                let _ = reply.send(self.fdb.rows(now).collect());
            }
            Command::SocketStats { reply } => {
                let backend = &self.egress.backend;
                let stats = self
                    .owned
                    .iter()
                    .filter_map(|&id| Some((id, backend.socket_stats(id)?)))
                    .collect();
                let _ = reply.send(stats);
            }
            Command::Polls { reply } => {
                let backend = &self.egress.backend;
                let polls = self
                    .owned
                    .iter()
                    .map(|&port| Polled {
                        port,
                        queues: backend.queues(port),
                        moved: backend.queue_stats(port),
                    })
                    .collect();
                let _ = reply.send(polls);
            }
            Command::FdbFlush { network, reply } => {
                self.fdb.flush(network);
                let _ = reply.send(());
            }
        }
    }
}
