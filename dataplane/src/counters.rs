//! Named counters, written by exactly one worker and summed by the control thread.
//!
//! Every counter is an `AtomicU64` updated with a relaxed load and store (no read-modify-write
//! bus lock): only the owning worker writes it, readers may see a value one batch old.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a frame was dropped. Indexes the drop counter arrays, so no drop goes uncounted.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt = 0,
    /// Source MAC is multicast, broadcast or all-zero: no station may send from it.
    BadSourceMac,
    /// The destination is the port the frame came in on.
    Hairpin,
    /// A flood found no other port in the network.
    NoOtherPort,
    /// The destination port was removed while the frame was in flight.
    PortGone,
    /// The destination port's transmit ring was full.
    TxRingFull,
    /// A vhost-user guest had posted no receive buffer for the frame.
    GuestNoBuffer,
    /// The queue to the worker that owns the destination port was full.
    CrossQueueFull,
    /// No free frame buffer to copy a flooded or cross-worker frame into.
    NoFreeFrame,
    /// Larger than a frame buffer.
    TooBig,
    /// Larger than the network's MTU, and not a TCP frame brink can segment (a segmentation
    /// offload superframe).
    MtuExceeded,
    /// An IP or transport header cut short or inconsistent.
    MalformedIp,
    /// A wrong IPv4 header, TCP, UDP, ICMP or ICMPv6 checksum (a partial, offloaded TCP or UDP
    /// checksum is not wrong).
    BadChecksum,
    /// A vhost-user guest said it left a checksum partial (`NEEDS_CSUM`) elsewhere than in the
    /// checksum field of the TCP or UDP header parse found.
    BadOffload,
    /// Conntrack found the packet invalid for any connection (reason in `ct stats`).
    CtInvalid,
    /// Port security: sent from a MAC that is not the port's or an allowed pair's.
    SpoofedMac,
    /// Port security: sent from an IP address the port may not use with that MAC.
    SpoofedIp,
    /// Port security: an ARP packet whose sender is not the port's.
    SpoofedArp,
    /// Port security: an IPv6 neighbour advertisement for an address that is not the port's.
    SpoofedNd,
    /// Port security: a DHCP or DHCPv6 server reply from a VM.
    DhcpServer,
    /// Port security: an IPv6 router advertisement from a VM.
    RouterAdvert,
    /// Port security: an EtherType other than IPv4, IPv6 and ARP that is not permitted.
    EthertypeDenied,
    /// No security-group rule of the sending port allows the packet out.
    EgressDenied,
    /// No security-group rule of the receiving port allows the packet in.
    IngressDenied,
    /// The connection was admitted by a rule that is gone, and no current rule allows it.
    RuleRevoked,
    /// Received on a VLAN trunk with a tag no network on it has, or untagged.
    UnknownVlan,
    /// No room in the frame buffer for a VLAN tag.
    NoTagRoom,
}

impl DropReason {
    /// Every reason, in counter-index order.
    pub const ALL: [DropReason; 27] = [
        DropReason::Runt,
        DropReason::BadSourceMac,
        DropReason::Hairpin,
        DropReason::NoOtherPort,
        DropReason::PortGone,
        DropReason::TxRingFull,
        DropReason::GuestNoBuffer,
        DropReason::CrossQueueFull,
        DropReason::NoFreeFrame,
        DropReason::TooBig,
        DropReason::MtuExceeded,
        DropReason::MalformedIp,
        DropReason::BadChecksum,
        DropReason::BadOffload,
        DropReason::CtInvalid,
        DropReason::SpoofedMac,
        DropReason::SpoofedIp,
        DropReason::SpoofedArp,
        DropReason::SpoofedNd,
        DropReason::DhcpServer,
        DropReason::RouterAdvert,
        DropReason::EthertypeDenied,
        DropReason::EgressDenied,
        DropReason::IngressDenied,
        DropReason::RuleRevoked,
        DropReason::UnknownVlan,
        DropReason::NoTagRoom,
    ];
    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// The name used in stats output.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::BadSourceMac => "bad_source_mac",
            DropReason::Hairpin => "hairpin",
            DropReason::NoOtherPort => "no_other_port",
            DropReason::PortGone => "port_gone",
            DropReason::TxRingFull => "tx_ring_full",
            DropReason::GuestNoBuffer => "guest_no_buffer",
            DropReason::CrossQueueFull => "cross_queue_full",
            DropReason::NoFreeFrame => "no_free_frame",
            DropReason::TooBig => "too_big",
            DropReason::MtuExceeded => "mtu_exceeded",
            DropReason::MalformedIp => "malformed_ip",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::BadOffload => "bad_offload",
            DropReason::CtInvalid => "ct_invalid",
            DropReason::SpoofedMac => "spoofed_mac",
            DropReason::SpoofedIp => "spoofed_ip",
            DropReason::SpoofedArp => "spoofed_arp",
            DropReason::SpoofedNd => "spoofed_nd",
            DropReason::DhcpServer => "dhcp_server",
            DropReason::RouterAdvert => "router_advert",
            DropReason::EthertypeDenied => "ethertype_denied",
            DropReason::EgressDenied => "egress_denied",
            DropReason::IngressDenied => "ingress_denied",
            DropReason::RuleRevoked => "rule_revoked",
            DropReason::UnknownVlan => "unknown_vlan",
            DropReason::NoTagRoom => "no_tag_room",
        }
    }
}

/// One single-writer counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// Adds `n` with an atomic add, for a counter several workers write (a port's, once per
    /// batch or per dropped frame).
    #[inline]
    pub fn add_shared(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Most workers a switch runs: per-worker counter arrays ([`RuleHits`]) have this many slots.
pub const MAX_WORKERS: usize = 16;

/// One worker's counter, alone in its cache line.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Line(Counter);

/// Hits of one security-group rule: one single-writer counter per worker, each in its own cache
/// line (so workers never write a line another one writes), summed on read. 1 KiB per rule.
#[derive(Debug, Default)]
pub struct RuleHits([Line; MAX_WORKERS]);

impl RuleHits {
    /// Counts `n` hits by `worker` (below [`MAX_WORKERS`]). Only that worker may call this.
    #[inline]
    pub fn add(&self, worker: usize, n: u64) {
        if let Some(line) = self.0.get(worker) {
            line.0.add(n);
        }
    }

    /// Hits summed over the workers.
    pub fn get(&self) -> u64 {
        self.0.iter().map(|l| l.0.get()).sum()
    }
}

/// Drop counters indexed by [`DropReason`].
#[derive(Debug, Default)]
pub struct DropCounters([Counter; DropReason::COUNT]);

impl DropCounters {
    /// Counts `n` drops for `reason`.
    #[inline]
    pub fn add(&self, reason: DropReason, n: u64) {
        self.0[reason as usize].add(n);
    }

    /// Counts `n` drops for `reason` with an atomic add (see [`Counter::add_shared`]).
    #[inline]
    pub fn add_shared(&self, reason: DropReason, n: u64) {
        self.0[reason as usize].add_shared(n);
    }

    /// The count for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize].get()
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().map(Counter::get).sum()
    }
}

/// Counters of one port, written by every worker that polls one of its queues (usually one),
/// with atomic adds: once per batch for frames and bytes, once per dropped frame.
///
/// Drops are charged to the port the frame arrived on, except transmit-side drops
/// (`tx_ring_full`, `port_gone`), which are charged to the worker. A frame too large for its
/// network's MTU is also counted on the port it was for, in `tx_drops`.
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct PortCounters {
    /// Frames received.
    pub rx_packets: Counter,
    /// Bytes received.
    pub rx_bytes: Counter,
    /// Frames transmitted.
    pub tx_packets: Counter,
    /// Bytes transmitted.
    pub tx_bytes: Counter,
    /// Frames that arrived here and were dropped, by reason.
    pub drops: DropCounters,
    /// Frames for this port that were dropped before it could send them (`mtu_exceeded`), each
    /// also counted in `drops` of the port it came from.
    pub tx_drops: DropCounters,
}

/// Counters of one worker thread.
#[repr(align(64))]
#[derive(Debug, Default)]
pub struct WorkerCounters {
    /// Non-empty batches run through the pipeline.
    pub batches: Counter,
    /// Poll loop iterations that moved at least one frame.
    pub busy_polls: Counter,
    /// Poll loop iterations that found nothing to do.
    pub idle_polls: Counter,
    /// Nanoseconds spent in busy iterations.
    pub busy_ns: Counter,
    /// Nanoseconds spent in idle iterations (sleep included).
    pub idle_ns: Counter,
    /// Frames sent to another worker over a cross-worker queue.
    pub cross_tx: Counter,
    /// Frames received from another worker over a cross-worker queue.
    pub cross_rx: Counter,
    /// Segments cut from TCP superframes larger than their network's MTU.
    pub segmented: Counter,
    /// Checksums a sender left partial that were completed in software, for destinations that
    /// need them complete.
    pub checksums_completed: Counter,
    /// ARP requests and neighbour solicitations the neighbour responder answered.
    pub neighbour_answers: Counter,
    /// MAC addresses learned (new entries and moves).
    pub fdb_learned: Counter,
    /// Learning skipped because the FDB was full.
    pub fdb_full: Counter,
    /// Learned entries removed by aging.
    pub fdb_aged: Counter,
    /// Frames dropped by this worker on the transmit side, by reason.
    pub drops: DropCounters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_index_their_own_slot() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{} is out of order", r.name());
        }
        let d = DropCounters::default();
        d.add(DropReason::TooBig, 3);
        d.add(DropReason::Runt, 1);
        assert_eq!(d.get(DropReason::TooBig), 3);
        assert_eq!(d.total(), 4);
    }

    #[test]
    fn rule_hits_are_summed_over_workers() {
        let h = RuleHits::default();
        h.add(0, 2);
        h.add(MAX_WORKERS - 1, 3);
        h.add(1, 1);
        assert_eq!(h.get(), 6);
        assert_eq!(std::mem::size_of::<RuleHits>(), 64 * MAX_WORKERS);
    }
}
