//! `brink-pktgen`: a UDP traffic generator on an AF_XDP socket.
//!
//! It opens the same AF_XDP port the switch uses (`brink_dataplane::port::afxdp`) on one
//! interface, typically a VM's `eth0` inside its namespace, and transmits prebuilt UDP frames in
//! batches as fast as the ring takes them, bounded by a packet count and a duration.

use std::time::{Duration, Instant};

use brink_dataplane::port::afxdp::{XdpBackend, XdpSpec};
use brink_dataplane::port::{Backend, PortMode, PortSpec};
use serde::Serialize;

use crate::BenchError;

/// Frames queued per ring kick.
const BATCH: usize = 64;
/// Attempts to attach: the kernel may still hold the interface for a moment after a previous
/// socket on it closed (seen as EBUSY, rarely).
const ATTACH_TRIES: u32 = 5;

/// What to send.
#[derive(Debug, Clone)]
pub struct PktgenConfig {
    /// Interface to send on.
    pub iface: String,
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source IPv4 address.
    pub src_ip: [u8; 4],
    /// Destination IPv4 address.
    pub dst_ip: [u8; 4],
    /// Frame size in bytes, Ethernet header included (60-1514).
    pub size: usize,
    /// Distinct flows (source ports 10000.. ), sent in turn.
    pub flows: u16,
    /// Stop after this many frames.
    pub count: u64,
    /// Stop after this long.
    pub duration: Duration,
}

/// What was sent.
#[derive(Debug, Clone, Serialize)]
pub struct PktgenReport {
    /// Frames the ring took.
    pub sent: u64,
    /// Seconds spent sending.
    pub seconds: f64,
    /// Frames per second.
    pub pps: f64,
    /// How AF_XDP attached.
    pub mode: String,
}

/// UDP frames of `flows` flows, `size` bytes each.
pub fn frames(cfg: &PktgenConfig) -> Result<Vec<Vec<u8>>, BenchError> {
    let header = 14 + 20 + 8;
    if !(60..=1514).contains(&cfg.size) {
        return Err(BenchError::Config(format!(
            "frame size {} is not 60-1514",
            cfg.size
        )));
    }
    (0..cfg.flows.max(1))
        .map(|flow| {
            let b = etherparse::PacketBuilder::ethernet2(cfg.src_mac, cfg.dst_mac)
                .ipv4(cfg.src_ip, cfg.dst_ip, 64)
                .udp(10_000 + flow, 9);
            let mut f = Vec::with_capacity(cfg.size);
            b.write(&mut f, &vec![0u8; cfg.size - header])
                .map_err(|e| BenchError::Config(e.to_string()))?;
            Ok(f)
        })
        .collect()
}

/// Sends until `cfg.count` frames or `cfg.duration`, whichever comes first.
pub fn run(cfg: &PktgenConfig) -> Result<PktgenReport, BenchError> {
    let templates = frames(cfg)?;
    let attach = |e: brink_dataplane::port::PortError| BenchError::Config(e.to_string());
    let mut xdp = XdpBackend::new().map_err(attach)?;
    let spec = XdpSpec {
        mtu: brink_dataplane::snapshot::DEFAULT_MTU,
        iface: cfg.iface.clone(),
        queues: vec![0],
    };
    let mut tries = 1;
    let mode: PortMode = loop {
        match xdp.open(0, PortSpec::Xdp(spec.clone())) {
            Ok(mode) => break mode,
            Err(e) if tries < ATTACH_TRIES => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(attach(e)),
        }
    };
    let mut batch = Vec::with_capacity(BATCH);
    let (mut sent, mut next) = (0u64, 0usize);
    let start = Instant::now();
    while sent < cfg.count && start.elapsed() < cfg.duration {
        while batch.len() < BATCH {
            let Some(f) = xdp.alloc_copy(&templates[next]) else {
                break;
            };
            batch.push(f);
            next = (next + 1) % templates.len();
        }
        let want = batch.len().min((cfg.count - sent) as usize);
        let took = xdp.tx(0, &batch[..want]);
        sent += took as u64;
        batch.drain(..took);
        xdp.service();
    }
    for f in batch {
        xdp.free(f);
    }
    let seconds = start.elapsed().as_secs_f64();
    xdp.close(0);
    Ok(PktgenReport {
        sent,
        seconds,
        pps: sent as f64 / seconds.max(1e-9),
        mode: mode.to_string(),
    })
}
