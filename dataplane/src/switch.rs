//! The switch as the control plane sees it: worker threads, their command channels and the
//! published snapshot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use brink_conntrack::Table;
use crossbeam_channel::{bounded, Receiver, Sender};

use crate::capture::Capture;
use crate::counters::{PortCounters, WorkerCounters, MAX_WORKERS};
use crate::ct_events::CtEvents;
use crate::fdb::FdbRow;
use crate::port::{Backend, PortError, PortMode, SocketStats};
use crate::snapshot::{NetworkId, PortId, Snapshot, SnapshotCell};
use crate::worker::{self, Command, Polled, Shared, WorkerConfig};

/// How long the control thread waits for a worker to answer a command.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Commands a worker's queue holds.
const COMMAND_DEPTH: usize = 64;

/// Settings of the whole switch.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    /// One worker per entry, pinned to that core (`None`: not pinned).
    pub cores: Vec<Option<usize>>,
    /// Settings shared by every worker.
    pub worker: WorkerConfig,
    /// Connection table settings.
    pub conntrack: brink_conntrack::Config,
}

struct WorkerHandle<S> {
    core: Option<usize>,
    commands: Sender<Command<S>>,
    counters: Arc<WorkerCounters>,
    thread: Option<JoinHandle<()>>,
}

/// Running worker threads and the state they share.
pub struct Switch<B: Backend> {
    workers: Vec<WorkerHandle<B::Spec>>,
    shared: Shared,
    stop: Arc<AtomicBool>,
}

impl<B: Backend + 'static> Switch<B> {
    /// Starts one worker per configured core. Each worker builds its backend with
    /// `make_backend` on its own thread after pinning itself, so its frame pool is allocated
    /// near its core.
    pub fn start<F>(config: SwitchConfig, make_backend: F) -> Result<Self, PortError>
    where
        F: Fn() -> Result<B, PortError> + Send + Clone + 'static,
    {
        if config.cores.len() > MAX_WORKERS {
            return Err(PortError::TooManyWorkers(config.cores.len()));
        }
        let mut switch = Switch {
            workers: Vec::new(),
            shared: Shared {
                snapshot: Arc::new(SnapshotCell::default()),
                ct: Arc::new(Table::new(config.conntrack)),
                epoch: std::time::Instant::now(),
                capture: Arc::default(),
                events: Arc::default(),
            },
            stop: Arc::new(AtomicBool::new(false)),
        };
        let wiring = worker::wire(config.cores.len(), COMMAND_DEPTH);
        for (id, ((wiring, link), &core)) in wiring.into_iter().zip(&config.cores).enumerate() {
            let (ready_tx, ready_rx) = bounded(1);
            let shared = switch.shared.clone();
            let stop = Arc::clone(&switch.stop);
            let wcfg = config.worker.clone();
            let make = make_backend.clone();
            let thread = std::thread::Builder::new()
                .name(format!("brink-worker-{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                            tracing::warn!(worker = id, core, "could not pin worker to core");
                        }
                    }
                    let backend = match make() {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    wiring.into_worker(backend, shared, wcfg).run(&stop);
                })
                .map_err(|e| PortError::Pool(format!("cannot spawn worker: {e}")))?;
            switch.workers.push(WorkerHandle {
                core,
                commands: link.commands,
                counters: link.counters,
                thread: Some(thread),
            });
            // On failure `switch` is dropped here, which stops the workers already started.
            ready_rx
                .recv_timeout(REPLY_TIMEOUT)
                .map_err(|_| PortError::WorkerGone(id))??;
        }
        Ok(switch)
    }

    /// Number of workers.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Publishes a new snapshot to every worker and returns it.
    pub fn publish(&self, snap: Snapshot) -> Arc<Snapshot> {
        self.shared.snapshot.publish(snap)
    }

    /// The snapshot the workers use now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        arc_swap::Guard::into_inner(self.shared.snapshot.load())
    }

    /// The connection table.
    pub fn conntrack(&self) -> &Table {
        &self.shared.ct
    }

    /// Stops every worker (each closes its ports) and hands back the connection table, which
    /// no packet changes any more.
    pub fn stop(self) -> Arc<Table> {
        let table = Arc::clone(&self.shared.ct);
        drop(self);
        table
    }

    /// The packet capture.
    pub fn capture(&self) -> &Capture {
        &self.shared.capture
    }

    /// The connection events queue.
    pub fn ct_events(&self) -> &CtEvents {
        &self.shared.events
    }

    /// Conntrack's clock: nanoseconds since the switch started.
    pub fn now_ns(&self) -> u64 {
        self.shared.ns(std::time::Instant::now())
    }

    /// Opens port `id` on `worker`. Publish a snapshot listing it for traffic to flow.
    pub fn open_port(
        &self,
        worker: usize,
        id: PortId,
        spec: B::Spec,
        counters: Arc<PortCounters>,
    ) -> Result<PortMode, PortError> {
        self.ask(worker, |reply| Command::AddPort {
            id,
            spec,
            counters,
            reply,
        })?
    }

    /// Closes port `id` on `worker`. Publish a snapshot without it first.
    pub fn close_port(&self, worker: usize, id: PortId) -> Result<(), PortError> {
        self.ask(worker, |reply| Command::RemovePort { id, reply })
    }

    /// Every FDB entry: static ones from the snapshot, then each worker's learned ones.
    pub fn fdb_rows(&self) -> Result<Vec<FdbRow>, PortError> {
        let mut rows: Vec<FdbRow> = self
            .shared
            .snapshot
            .load()
            .static_entries()
            .map(|(network, mac, port)| FdbRow {
                network,
                mac,
                port,
                age: None,
            })
            .collect();
        for w in 0..self.workers.len() {
            rows.extend(self.ask(w, |reply| Command::FdbRows { reply })?);
        }
        Ok(rows)
    }

    /// Forgets learned entries of `network` (or all) on every worker.
    pub fn fdb_flush(&self, network: Option<NetworkId>) -> Result<(), PortError> {
        for w in 0..self.workers.len() {
            self.ask(w, |reply| Command::FdbFlush { network, reply })?;
        }
        Ok(())
    }

    /// The kernel's socket counters of every port that has a socket, asked of each worker that
    /// polls some of its queues (a system call per socket, made between two of its batches) and
    /// summed per port, in port order.
    pub fn socket_stats(&self) -> Result<Vec<(PortId, SocketStats)>, PortError> {
        let mut all = std::collections::BTreeMap::new();
        for w in 0..self.workers.len() {
            for (id, s) in self.ask(w, |reply| Command::SocketStats { reply })? {
                all.entry(id).or_insert_with(SocketStats::default).add(&s);
            }
        }
        Ok(all.into_iter().collect())
    }

    /// The ports each worker polls, with their queues, by worker.
    pub fn polls(&self) -> Result<Vec<Vec<Polled>>, PortError> {
        (0..self.workers.len())
            .map(|w| self.ask(w, |reply| Command::Polls { reply }))
            .collect()
    }

    /// Each worker's core and counters.
    pub fn worker_counters(&self) -> impl Iterator<Item = (Option<usize>, &WorkerCounters)> {
        self.workers.iter().map(|w| (w.core, &*w.counters))
    }

    fn ask<T>(
        &self,
        worker: usize,
        make: impl FnOnce(Sender<T>) -> Command<B::Spec>,
    ) -> Result<T, PortError> {
        let gone = PortError::WorkerGone(worker);
        let handle = self.workers.get(worker).ok_or(gone.clone())?;
        let (reply, answer): (Sender<T>, Receiver<T>) = bounded(1);
        handle
            .commands
            .send(make(reply))
            .map_err(|_| gone.clone())?;
        answer.recv_timeout(REPLY_TIMEOUT).map_err(|_| gone)
    }
}

impl<B: Backend> Drop for Switch<B> {
    /// Stops every worker; each closes its ports (detaching XDP) before its thread ends.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                if t.join().is_err() {
                    tracing::error!(core = ?w.core, "worker thread panicked");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::memory::{MemBackend, MemFrame, MemLink, MemPort};
    use crate::port::SocketStats;

    /// In-memory ports that pretend to have a kernel socket whose `rx_dropped` is the port id.
    struct WithSockets(MemBackend);

    impl Backend for WithSockets {
        type Frame = MemFrame;
        type Spec = MemPort;

        fn open(&mut self, id: PortId, spec: MemPort) -> Result<PortMode, PortError> {
            self.0.open(id, spec)
        }
        fn close(&mut self, id: PortId) {
            self.0.close(id)
        }
        fn rx(&mut self, id: PortId, out: &mut [MemFrame]) -> usize {
            self.0.rx(id, out)
        }
        fn bytes(&self, frame: &MemFrame) -> &[u8] {
            self.0.bytes(frame)
        }
        fn patch(&mut self, frame: &mut MemFrame, at: usize, bytes: &[u8]) {
            self.0.patch(frame, at, bytes)
        }
        fn tx(&mut self, id: PortId, frames: &[MemFrame]) -> usize {
            self.0.tx(id, frames)
        }
        fn free(&mut self, frame: MemFrame) {
            self.0.free(frame)
        }
        fn alloc_copy(&mut self, bytes: &[u8]) -> Option<MemFrame> {
            self.0.alloc_copy(bytes)
        }
        fn clone_frame(&mut self, frame: &MemFrame) -> Option<MemFrame> {
            self.0.clone_frame(frame)
        }
        fn service(&mut self) -> usize {
            self.0.service()
        }
        fn socket_stats(&self, id: PortId) -> Option<SocketStats> {
            Some(SocketStats {
                rx_dropped: u64::from(id),
                ..SocketStats::default()
            })
        }
    }

    fn config(workers: usize) -> SwitchConfig {
        SwitchConfig {
            cores: vec![None; workers],
            worker: WorkerConfig {
                idle_sleep: true,
                fdb_capacity: 16,
                fdb_aging: Duration::from_secs(300),
            },
            conntrack: brink_conntrack::Config {
                max_connections: 16,
                shards: 1,
            },
        }
    }

    fn start<B: Backend<Spec = MemPort> + 'static>(workers: usize, make: fn() -> B) -> Switch<B> {
        Switch::start(config(workers), move || Ok(make())).unwrap()
    }

    #[test]
    fn more_workers_than_counter_slots_are_refused() {
        let too_many = Switch::start(config(MAX_WORKERS + 1), || Ok(MemBackend::new(16)));
        assert!(matches!(too_many, Err(PortError::TooManyWorkers(17))));
    }

    fn open(switch: &Switch<impl Backend<Spec = MemPort> + 'static>, worker: usize, id: PortId) {
        let link = MemPort::Link(MemLink::new(4));
        let counters = Arc::new(PortCounters::default());
        switch.open_port(worker, id, link, counters).unwrap();
    }

    #[test]
    fn each_worker_reports_the_socket_stats_of_the_ports_it_owns() {
        let switch = start(2, || WithSockets(MemBackend::new(16)));
        assert_eq!(switch.socket_stats().unwrap(), vec![]);
        open(&switch, 0, 3);
        open(&switch, 1, 5);
        open(&switch, 1, 7);
        switch.close_port(1, 5).unwrap();
        let mut got: Vec<_> = switch
            .socket_stats()
            .unwrap()
            .into_iter()
            .map(|(id, s)| (id, s.rx_dropped))
            .collect();
        got.sort();
        assert_eq!(got, vec![(3, 3), (7, 7)]);
    }

    #[test]
    fn in_memory_ports_have_no_socket_stats() {
        let switch = start(1, || MemBackend::new(16));
        open(&switch, 0, 3);
        assert_eq!(switch.socket_stats().unwrap(), vec![]);
    }
}
