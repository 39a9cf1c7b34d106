//! How long an idle connection lives, per protocol and TCP state, and per-zone policies.

use crate::tcp::TcpState;

/// Idle timeouts in seconds. Defaults follow Linux nf_conntrack, except TCP ESTABLISHED, where
/// brink takes Open vSwitch's 24 hours over Linux's 5 days: a VM that vanishes without closing
/// its connections should not pin table entries for most of a week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP SYN_SENT and SYN_SENT2.
    pub tcp_syn_sent: u32,
    /// TCP SYN_RECV.
    pub tcp_syn_recv: u32,
    /// TCP ESTABLISHED.
    pub tcp_established: u32,
    /// TCP FIN_WAIT.
    pub tcp_fin_wait: u32,
    /// TCP CLOSE_WAIT.
    pub tcp_close_wait: u32,
    /// TCP LAST_ACK.
    pub tcp_last_ack: u32,
    /// TCP TIME_WAIT.
    pub tcp_time_wait: u32,
    /// TCP CLOSE (after a reset).
    pub tcp_close: u32,
    /// UDP before a reply.
    pub udp_unreplied: u32,
    /// UDP once replied.
    pub udp_replied: u32,
    /// ICMP and ICMPv6 echo.
    pub icmp: u32,
    /// Other protocols before a reply.
    pub other_unreplied: u32,
    /// Other protocols once replied.
    pub other_replied: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 24 * 3600,
            tcp_fin_wait: 120,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            udp_unreplied: 30,
            udp_replied: 120,
            icmp: 30,
            other_unreplied: 600,
            other_replied: 600,
        }
    }
}

impl Timeouts {
    /// Every timeout's name, as used by [`Timeouts::set`].
    pub const NAMES: [&'static str; 13] = [
        "tcp_syn_sent",
        "tcp_syn_recv",
        "tcp_established",
        "tcp_fin_wait",
        "tcp_close_wait",
        "tcp_last_ack",
        "tcp_time_wait",
        "tcp_close",
        "udp_unreplied",
        "udp_replied",
        "icmp",
        "other_unreplied",
        "other_replied",
    ];

    fn slot(&mut self, name: &str) -> Option<&mut u32> {
        Some(match name {
            "tcp_syn_sent" => &mut self.tcp_syn_sent,
            "tcp_syn_recv" => &mut self.tcp_syn_recv,
            "tcp_established" => &mut self.tcp_established,
            "tcp_fin_wait" => &mut self.tcp_fin_wait,
            "tcp_close_wait" => &mut self.tcp_close_wait,
            "tcp_last_ack" => &mut self.tcp_last_ack,
            "tcp_time_wait" => &mut self.tcp_time_wait,
            "tcp_close" => &mut self.tcp_close,
            "udp_unreplied" => &mut self.udp_unreplied,
            "udp_replied" => &mut self.udp_replied,
            "icmp" => &mut self.icmp,
            "other_unreplied" => &mut self.other_unreplied,
            "other_replied" => &mut self.other_replied,
            _ => return None,
        })
    }

    /// Sets the timeout called `name` (one of [`Timeouts::NAMES`]); false if there is none.
    pub fn set(&mut self, name: &str, secs: u32) -> bool {
        self.slot(name).map(|s| *s = secs).is_some()
    }

    /// Every `(name, seconds)`.
    pub fn entries(&self) -> Vec<(&'static str, u32)> {
        let mut copy = *self;
        Self::NAMES
            .iter()
            .map(|&n| (n, copy.slot(n).map_or(0, |s| *s)))
            .collect()
    }

    /// The timeout of a TCP connection in `state`.
    pub fn tcp(&self, state: TcpState) -> u32 {
        match state {
            TcpState::SynSent | TcpState::SynSent2 => self.tcp_syn_sent,
            TcpState::SynRecv => self.tcp_syn_recv,
            TcpState::Established => self.tcp_established,
            TcpState::FinWait => self.tcp_fin_wait,
            TcpState::CloseWait => self.tcp_close_wait,
            TcpState::LastAck => self.tcp_last_ack,
            TcpState::TimeWait => self.tcp_time_wait,
            TcpState::Close => self.tcp_close,
        }
    }
}

/// What a zone may differ in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZonePolicy {
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// Most connections the zone may hold (`None`: only the table's limit).
    pub limit: Option<u32>,
    /// Take an ACK of an unknown TCP connection as established (mid-stream pickup).
    pub tcp_pickup: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_settable() {
        let mut t = Timeouts::default();
        for (i, name) in Timeouts::NAMES.iter().enumerate() {
            assert!(t.set(name, 1000 + i as u32), "{name}");
        }
        assert!(!t.set("tcp_nope", 1));
        let e = t.entries();
        assert_eq!(e.len(), Timeouts::NAMES.len());
        assert!(e
            .iter()
            .enumerate()
            .all(|(i, &(_, v))| v == 1000 + i as u32));
        assert_eq!(t.tcp(TcpState::TimeWait), t.tcp_time_wait);
    }
}
