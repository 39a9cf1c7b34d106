//! The forwarder: the smallest AF_XDP switch there is, the reference for brink's own cost.
//! One thread, pinned to the switch core, moves every frame from one VM's host interface to
//! the other's through brink's AF_XDP port (one UMEM, no copy in userspace), with no parsing,
//! no forwarding table and no firewall.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use brink_dataplane::port::afxdp::XdpBackend;
use brink_dataplane::port::Backend;

use super::{Rig, Switch, SwitchClock};
use crate::pktgen::xdp_spec;
use crate::BenchError;

/// Frames moved per ring per iteration.
const BATCH: usize = 64;

/// A running forwarder thread, stopped on drop.
#[derive(Debug)]
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    busy_ns: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Opens both VMs' host interfaces and starts forwarding between them on `core`.
    pub fn start(rig: &Rig, core: usize) -> Result<Forwarder, BenchError> {
        let [a, b] = [0, 1].map(|n| rig.vms.get(n).map(|vm| vm.host_if.clone()));
        let (Some(a), Some(b)) = (a, b) else {
            return Err(BenchError::Config("the forwarder needs two VMs".into()));
        };
        let stop = Arc::new(AtomicBool::new(false));
        let busy_ns = Arc::new(AtomicU64::new(0));
        let (ready, opened) = mpsc::channel();
        let (s, busy) = (stop.clone(), busy_ns.clone());
        let thread = std::thread::spawn(move || {
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
            match open(&a, &b) {
                Ok(xdp) => {
                    let _ = ready.send(Ok(()));
                    forward(xdp, &s, &busy);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
        });
        let fwd = Forwarder {
            stop,
            busy_ns,
            thread: Some(thread),
        };
        match opened.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(fwd),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(BenchError::Timeout(
                "the forwarder's ports did not open".into(),
            )),
        }
    }
}

fn open(a: &str, b: &str) -> Result<XdpBackend, BenchError> {
    let err = |e: brink_dataplane::port::PortError| BenchError::Config(e.to_string());
    let mut xdp = XdpBackend::new().map_err(err)?;
    for (id, iface) in [a, b].into_iter().enumerate() {
        xdp.open(id as u16, xdp_spec(iface)).map_err(err)?;
    }
    Ok(xdp)
}

/// Moves frames both ways until `stop`, adding the time of every iteration that moved any to
/// `busy_ns`.
fn forward(mut xdp: XdpBackend, stop: &AtomicBool, busy_ns: &AtomicU64) {
    let mut batch = vec![Default::default(); BATCH];
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let mut moved = 0;
        for (from, to) in [(0, 1), (1, 0)] {
            let n = xdp.rx(from, &mut batch);
            let sent = xdp.tx(to, &batch[..n]);
            for &f in &batch[sent..n] {
                xdp.free(f);
            }
            moved += n;
        }
        xdp.service();
        if moved > 0 {
            let ns = start.elapsed().as_nanos() as u64;
            busy_ns.store(busy_ns.load(Ordering::Relaxed) + ns, Ordering::Relaxed);
        }
    }
    xdp.close(0);
    xdp.close(1);
}

impl Switch for Forwarder {
    fn clock(&self) -> Result<Option<SwitchClock>, BenchError> {
        Ok(Some(SwitchClock::busy_ns(
            self.busy_ns.load(Ordering::Relaxed),
        )))
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
