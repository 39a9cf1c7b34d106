//! TCP connection tracking: the state machine and per-direction sequence/window tracking.
//!
//! The transition table and the window checks follow the algorithm by Guido van Rooij that Linux
//! nf_conntrack (and Open vSwitch, by way of pf) use: a segment is valid only if its sequence
//! range lies within what the receiver could have advertised and its ACK acknowledges only data
//! that was sent. States, packet classes and checks are named as in that algorithm.

use serde::{Deserialize, Serialize};

use crate::state::{Dir, InvalidReason};

/// TCP header flags.
pub mod flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}
use flags::*;

/// What conntrack needs from one TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpSegment {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// Advertised window, unscaled as on the wire.
    pub window: u16,
    /// Header flags.
    pub flags: u8,
    /// Payload bytes.
    pub payload_len: u32,
    /// The window scale option, if the segment carries one.
    pub wscale: Option<u8>,
}

/// Connection states.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TcpState {
    /// SYN seen from the opener.
    SynSent = 1,
    /// SYN-ACK seen from the responder.
    SynRecv,
    /// Handshake completed.
    Established,
    /// FIN seen.
    FinWait,
    /// The other end acknowledged the first FIN; its own FIN is still to come.
    CloseWait,
    /// Last FIN seen, waiting for its ACK.
    LastAck,
    /// Both FINs acknowledged.
    TimeWait,
    /// Reset.
    Close,
    /// Simultaneous open: SYN seen from both ends.
    SynSent2,
}

impl TcpState {
    /// Every state, in order.
    pub const ALL: [TcpState; 9] = [
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// The name users know from `conntrack -L`.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }
}

/// Result of a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    To(TcpState),
    /// Not valid in this state.
    Iv,
    /// Passed without changing state (e.g. a retransmitted SYN-ACK).
    Ig,
}

/// Packet classes, the table's second index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Syn = 0,
    SynAck,
    Fin,
    Ack,
    Rst,
    None,
}

fn class(f: u8) -> Class {
    if f & RST != 0 {
        Class::Rst
    } else if f & SYN != 0 {
        if f & ACK != 0 {
            Class::SynAck
        } else {
            Class::Syn
        }
    } else if f & FIN != 0 {
        Class::Fin
    } else if f & ACK != 0 {
        Class::Ack
    } else {
        Class::None
    }
}

/// The transition table: `TABLE[dir][class][state]`, states in the order
/// (none, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE,
/// SYN_SENT2). "None" is the state before any packet; it is only used by [`TcpConn::new`].
const TABLE: [[[Next; 10]; 6]; 2] = {
    use Next::{Ig as IG, Iv as IV};
    use TcpState::*;
    const SS: Next = Next::To(SynSent);
    const SR: Next = Next::To(SynRecv);
    const ES: Next = Next::To(Established);
    const FW: Next = Next::To(FinWait);
    const CW: Next = Next::To(CloseWait);
    const LA: Next = Next::To(LastAck);
    const TW: Next = Next::To(TimeWait);
    const CL: Next = Next::To(Close);
    const S2: Next = Next::To(SynSent2);
    [
        // Original direction.
        [
            /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
            /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
            /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
            /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
            /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
            /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
        ],
        // Reply direction.
        [
            /* syn    */ [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
            /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
            /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
            /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
            /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
            /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
        ],
    ]
};

/// True for flag combinations real stacks send (ECE, CWR and PSH aside).
fn valid_flags(f: u8) -> bool {
    matches!(
        f & !(ECE | CWR | PSH),
        SYN | 0x22 /* SYN|URG */ | 0x12 /* SYN|ACK */ | RST | 0x14 /* RST|ACK */
            | 0x11 /* FIN|ACK */ | 0x31 /* FIN|ACK|URG */ | ACK | 0x30 /* ACK|URG */
    )
}

fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// ACKs may trail the receiver's data by at least this much (Linux's MAXACKWINCONST).
const MAX_ACK_WINDOW: u32 = 66_000;
/// Largest window scale RFC 7323 allows.
const MAX_WSCALE: u8 = 14;

/// What one end has sent, as seen by conntrack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Window {
    /// Highest sequence number sent, plus one.
    end: u32,
    /// Highest sequence number the other end's window allows this end to send.
    maxend: u32,
    /// Largest window this end advertised (scaled).
    maxwin: u32,
    /// Window scale this end uses.
    scale: u8,
    /// This end sent the window scale option.
    wscale_seen: bool,
    /// Checks are skipped for this end (connection picked up mid-stream).
    liberal: bool,
}

/// Why [`TcpConn::update`] did not take a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpVerdict {
    /// Valid; the connection is now in this state.
    Valid(TcpState),
    /// Passed without a state change (a retransmission the table ignores).
    Ignored,
    /// A SYN for a closed or TIME_WAIT connection: start a new connection from this packet.
    Reopen,
    /// Invalid; the connection is unchanged.
    Invalid(InvalidReason),
}

/// A [`Window`] in 13 bytes, as stored in the table (a million of them must fit in memory).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct PackedWindow {
    end: u32,
    maxend: u32,
    maxwin: u32,
    /// Bits 0-3: scale; bit 4: window scale option seen; bit 5: liberal.
    bits: u8,
}

impl From<Window> for PackedWindow {
    fn from(w: Window) -> Self {
        PackedWindow {
            end: w.end,
            maxend: w.maxend,
            maxwin: w.maxwin,
            bits: (w.scale & 0x0f) | u8::from(w.wscale_seen) << 4 | u8::from(w.liberal) << 5,
        }
    }
}

impl From<PackedWindow> for Window {
    fn from(p: PackedWindow) -> Self {
        Window {
            end: p.end,
            maxend: p.maxend,
            maxwin: p.maxwin,
            scale: p.bits & 0x0f,
            wscale_seen: p.bits & 0x10 != 0,
            liberal: p.bits & 0x20 != 0,
        }
    }
}

/// The TCP part of a connection entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpConn {
    state: TcpState,
    /// Per direction, indexed by [`Dir`].
    win: [PackedWindow; 2],
}

const _: () = assert!(std::mem::size_of::<Option<TcpConn>>() == 27);

impl TcpConn {
    /// A connection opened by `seg` (the original direction), or why `seg` cannot open one.
    /// With `pickup`, an ACK of an unknown connection is taken as established mid-stream. Its
    /// window checks stay relaxed for good: the window scale agreed in the handshake that was
    /// missed is unknown, so the windows on the wire cannot be judged (Linux does the same).
    pub fn new(seg: &TcpSegment, pickup: bool) -> Result<TcpConn, InvalidReason> {
        if !valid_flags(seg.flags) {
            return Err(InvalidReason::TcpFlags);
        }
        let end = seg_end(seg);
        let window = u32::from(seg.window);
        match class(seg.flags) {
            Class::Syn => {
                let orig = Window {
                    end,
                    maxend: end,
                    maxwin: window.max(1),
                    scale: seg.wscale.map_or(0, |s| s.min(MAX_WSCALE)),
                    wscale_seen: seg.wscale.is_some(),
                    liberal: false,
                };
                Ok(TcpConn {
                    state: TcpState::SynSent,
                    win: [orig.into(), Window::default().into()],
                })
            }
            Class::Ack if pickup => {
                let orig = Window {
                    end,
                    maxend: end.wrapping_add(window.max(1)),
                    maxwin: window.max(1),
                    liberal: true,
                    ..Window::default()
                };
                let reply = Window {
                    liberal: true,
                    ..Window::default()
                };
                Ok(TcpConn {
                    state: TcpState::Established,
                    win: [orig.into(), reply.into()],
                })
            }
            _ => Err(InvalidReason::TcpNoConnection),
        }
    }

    /// The current state.
    pub fn state(&self) -> TcpState {
        self.state
    }

    /// The connection as the table stores it: its state's index in [`TcpState::ALL`], each
    /// direction's window flag bits, and the six window fields (end, maxend, maxwin of the
    /// original direction, then of the reply direction).
    #[inline]
    pub(crate) fn to_parts(self) -> ([u8; 3], [u32; 6]) {
        let [o, r] = self.win;
        (
            [self.state as u8 - 1, o.bits, r.bits],
            [o.end, o.maxend, o.maxwin, r.end, r.maxend, r.maxwin],
        )
    }

    /// The connection [`TcpConn::to_parts`] made `parts` of.
    #[inline]
    pub(crate) fn from_parts(bytes: [u8; 3], words: [u32; 6]) -> TcpConn {
        let [state, o_bits, r_bits] = bytes;
        let [o_end, o_maxend, o_maxwin, r_end, r_maxend, r_maxwin] = words;
        let window = |end, maxend, maxwin, bits| PackedWindow {
            end,
            maxend,
            maxwin,
            bits,
        };
        TcpConn {
            // Always a valid index, as `to_parts` wrote it; the modulo only keeps it in range.
            state: TcpState::ALL[usize::from(state) % TcpState::ALL.len()],
            win: [
                window(o_end, o_maxend, o_maxwin, o_bits),
                window(r_end, r_maxend, r_maxwin, r_bits),
            ],
        }
    }

    /// Applies a segment travelling in `dir`.
    pub fn update(&mut self, dir: Dir, seg: &TcpSegment) -> TcpVerdict {
        if !valid_flags(seg.flags) {
            return TcpVerdict::Invalid(InvalidReason::TcpFlags);
        }
        let old = self.state;
        let next = TABLE[dir as usize][class(seg.flags) as usize][old as usize];
        let new = match next {
            Next::Iv => return TcpVerdict::Invalid(InvalidReason::TcpState),
            Next::Ig => return TcpVerdict::Ignored,
            Next::To(s) => s,
        };
        // A SYN after the connection closed starts a new one (RFC 1122 TIME-WAIT reuse).
        if new == TcpState::SynSent && old >= TcpState::TimeWait {
            return TcpVerdict::Reopen;
        }
        if !self.in_window(dir, seg) {
            return TcpVerdict::Invalid(InvalidReason::TcpWindow);
        }
        self.state = new;
        TcpVerdict::Valid(new)
    }

    /// The window checks; updates the tracked windows when the segment passes.
    fn in_window(&mut self, dir: Dir, seg: &TcpSegment) -> bool {
        let (s, r) = match dir {
            Dir::Original => (0, 1),
            Dir::Reply => (1, 0),
        };
        let (mut sender, mut receiver) = (Window::from(self.win[s]), Window::from(self.win[r]));
        let syn = seg.flags & SYN != 0;
        let has_ack = seg.flags & ACK != 0;
        let mut seq = seg.seq;
        let mut end = seg_end(seg);
        let mut win = u32::from(seg.window);

        if sender.maxwin == 0 {
            // First segment from this end.
            if syn {
                sender.end = end;
                sender.maxend = end;
                sender.maxwin = win.max(1);
                sender.scale = seg.wscale.map_or(0, |w| w.min(MAX_WSCALE));
                sender.wscale_seen = seg.wscale.is_some();
                // RFC 7323: scaling is on only if both ends sent the option.
                if !(sender.wscale_seen && receiver.wscale_seen) {
                    sender.scale = 0;
                    receiver.scale = 0;
                }
            } else {
                sender.end = end;
                sender.maxwin = (win << sender.scale).max(1);
                sender.maxend = end.wrapping_add(sender.maxwin);
                if receiver.maxwin == 0 {
                    receiver.end = seg.ack;
                    receiver.maxend = seg.ack;
                }
            }
        } else if ((self.state == TcpState::SynSent && dir == Dir::Original && syn && !has_ack)
            || (self.state == TcpState::SynRecv && dir == Dir::Reply && syn && has_ack))
            && after(end, sender.end)
        {
            // A SYN or SYN-ACK retransmitted with a new initial sequence number.
            sender.end = end;
            sender.maxend = end;
            sender.maxwin = win.max(1);
            sender.scale = seg.wscale.map_or(0, |w| w.min(MAX_WSCALE));
            sender.wscale_seen = seg.wscale.is_some();
        }

        let mut ack = seg.ack;
        if !has_ack || (seg.flags & RST != 0 && ack == 0) {
            // Nothing acknowledged (or a RST with a zero ACK): let the ACK checks pass.
            ack = receiver.end;
        }
        if seq == end && (seg.flags & RST == 0 || (seq == 0 && self.state == TcpState::SynSent)) {
            // No data: only the ACK is checked.
            seq = sender.end;
            end = sender.end;
        }

        let max_ack_window = sender.maxwin.max(MAX_ACK_WINDOW);
        let ok = before(seq, sender.maxend.wrapping_add(1))
            && after(
                end,
                sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1),
            )
            && before(ack, receiver.end.wrapping_add(1))
            && after(
                ack,
                receiver.end.wrapping_sub(max_ack_window).wrapping_sub(1),
            );
        if !(ok || sender.liberal) {
            return false;
        }
        if !syn {
            win <<= sender.scale;
        }
        sender.maxwin = sender.maxwin.max(win);
        if after(end, sender.end) {
            sender.end = end;
        }
        if receiver.maxwin != 0 && after(end, sender.maxend) {
            receiver.maxwin = receiver
                .maxwin
                .wrapping_add(end.wrapping_sub(sender.maxend));
        }
        if after(ack.wrapping_add(win), receiver.maxend.wrapping_sub(1)) {
            receiver.maxend = ack.wrapping_add(win);
            if win == 0 {
                receiver.maxend = receiver.maxend.wrapping_add(1);
            }
        }
        self.win[s] = sender.into();
        self.win[r] = receiver.into();
        true
    }
}

/// Sequence number after the segment: SYN and FIN count as one byte each.
fn seg_end(seg: &TcpSegment) -> u32 {
    seg.seq
        .wrapping_add(seg.payload_len)
        .wrapping_add(u32::from(seg.flags & SYN != 0))
        .wrapping_add(u32::from(seg.flags & FIN != 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Dir::{Original as O, Reply as R};

    fn seg(flags: u8, seq: u32, ack: u32, len: u32) -> TcpSegment {
        TcpSegment {
            seq,
            ack,
            window: 64_240,
            flags,
            payload_len: len,
            wscale: None,
        }
    }

    /// Client ISN 1000, server ISN 5000, handshake done.
    fn established() -> TcpConn {
        let mut c = TcpConn::new(&seg(SYN, 1000, 0, 0), false).unwrap();
        assert_eq!(
            c.update(R, &seg(SYN | ACK, 5000, 1001, 0)),
            TcpVerdict::Valid(TcpState::SynRecv)
        );
        assert_eq!(
            c.update(O, &seg(ACK, 1001, 5001, 0)),
            TcpVerdict::Valid(TcpState::Established)
        );
        c
    }

    #[test]
    fn handshake_data_and_orderly_close() {
        let mut c = established();
        assert_eq!(
            c.update(O, &seg(ACK | PSH, 1001, 5001, 100)),
            TcpVerdict::Valid(TcpState::Established)
        );
        assert_eq!(
            c.update(R, &seg(ACK, 5001, 1101, 0)),
            TcpVerdict::Valid(TcpState::Established)
        );
        assert_eq!(
            c.update(O, &seg(FIN | ACK, 1101, 5001, 0)),
            TcpVerdict::Valid(TcpState::FinWait)
        );
        assert_eq!(
            c.update(R, &seg(ACK, 5001, 1102, 0)),
            TcpVerdict::Valid(TcpState::CloseWait)
        );
        assert_eq!(
            c.update(R, &seg(FIN | ACK, 5001, 1102, 0)),
            TcpVerdict::Valid(TcpState::LastAck)
        );
        assert_eq!(
            c.update(O, &seg(ACK, 1102, 5002, 0)),
            TcpVerdict::Valid(TcpState::TimeWait)
        );
    }

    #[test]
    fn retransmitted_syn_stays_syn_sent() {
        let mut c = TcpConn::new(&seg(SYN, 1000, 0, 0), false).unwrap();
        assert_eq!(
            c.update(O, &seg(SYN, 1000, 0, 0)),
            TcpVerdict::Valid(TcpState::SynSent)
        );
        assert_eq!(c.state(), TcpState::SynSent);
    }

    #[test]
    fn bad_flag_combinations_are_invalid() {
        for f in [SYN | FIN, 0, FIN, SYN | RST, FIN | RST | ACK, URG, PSH] {
            assert_eq!(
                TcpConn::new(&seg(f, 1, 0, 0), true),
                Err(InvalidReason::TcpFlags),
                "{f:#x}"
            );
            assert_eq!(
                established().update(O, &seg(f, 1001, 5001, 0)),
                TcpVerdict::Invalid(InvalidReason::TcpFlags),
                "{f:#x}"
            );
        }
        // PSH, ECE and CWR ride along with valid combinations.
        assert!(valid_flags(ACK | PSH | ECE | CWR) && valid_flags(FIN | ACK | PSH));
    }

    #[test]
    fn no_pickup_without_syn_unless_enabled() {
        assert_eq!(
            TcpConn::new(&seg(ACK, 1, 1, 10), false),
            Err(InvalidReason::TcpNoConnection)
        );
        let mut c = TcpConn::new(&seg(ACK, 1_000_000, 7, 10), true).unwrap();
        assert_eq!(c.state(), TcpState::Established);
        assert_eq!(
            c.update(R, &seg(ACK, 7, 1_000_010, 0)),
            TcpVerdict::Valid(TcpState::Established)
        );
    }

    #[test]
    fn a_picked_up_connection_tolerates_scaled_windows() {
        // Mid-stream: both ends use window scale 7 agreed in a handshake conntrack never saw, so
        // a window of 500 on the wire means 64,000 bytes, and 10 segments may be in flight.
        let small_win = |s: TcpSegment| TcpSegment { window: 500, ..s };
        let mut c = TcpConn::new(&small_win(seg(ACK, 1_000_000, 7, 1400)), true).unwrap();
        let mut client_seq = 1_001_400;
        for _ in 0..5 {
            for _ in 0..10 {
                let data = small_win(seg(ACK, client_seq, 7, 1400));
                assert_eq!(c.update(O, &data), TcpVerdict::Valid(TcpState::Established));
                client_seq += 1400;
            }
            let ack = small_win(seg(ACK, 7, client_seq, 0));
            assert_eq!(c.update(R, &ack), TcpVerdict::Valid(TcpState::Established));
        }
    }

    #[test]
    fn synack_from_the_opener_is_invalid() {
        let mut c = TcpConn::new(&seg(SYN, 1000, 0, 0), false).unwrap();
        assert_eq!(
            c.update(O, &seg(SYN | ACK, 1000, 1, 0)),
            TcpVerdict::Invalid(InvalidReason::TcpState)
        );
    }

    #[test]
    fn synack_acking_the_wrong_sequence_is_invalid() {
        let mut c = TcpConn::new(&seg(SYN, 1000, 0, 0), false).unwrap();
        assert_eq!(
            c.update(R, &seg(SYN | ACK, 5000, 999_999, 0)),
            TcpVerdict::Invalid(InvalidReason::TcpWindow)
        );
        assert_eq!(
            c.state(),
            TcpState::SynSent,
            "an invalid segment changes nothing"
        );
    }

    #[test]
    fn out_of_window_data_is_invalid() {
        let mut c = established();
        // Far beyond what the server's 64 KiB window allows.
        let far = seg(ACK, 1001 + 10_000_000, 5001, 100);
        assert_eq!(
            c.update(O, &far),
            TcpVerdict::Invalid(InvalidReason::TcpWindow)
        );
        // Long before anything still in flight.
        let old = seg(ACK, 1001u32.wrapping_sub(1_000_000), 5001, 100);
        assert_eq!(
            c.update(O, &old),
            TcpVerdict::Invalid(InvalidReason::TcpWindow)
        );
        // An ACK for data the server never sent.
        assert_eq!(
            c.update(O, &seg(ACK, 1001, 5001 + 100_000, 0)),
            TcpVerdict::Invalid(InvalidReason::TcpWindow)
        );
        // In-window data still passes.
        assert_eq!(
            c.update(O, &seg(ACK, 1001, 5001, 1000)),
            TcpVerdict::Valid(TcpState::Established)
        );
    }

    #[test]
    fn rst_only_in_window() {
        let mut c = established();
        let blind = seg(RST, 1001 + 50_000_000, 0, 0);
        assert_eq!(
            c.update(R, &blind),
            TcpVerdict::Invalid(InvalidReason::TcpWindow)
        );
        assert_eq!(c.state(), TcpState::Established);
        assert_eq!(
            c.update(R, &seg(RST, 5001, 0, 0)),
            TcpVerdict::Valid(TcpState::Close)
        );
    }

    #[test]
    fn rst_answering_a_syn_closes() {
        let mut c = TcpConn::new(&seg(SYN, 1000, 0, 0), false).unwrap();
        assert_eq!(
            c.update(R, &seg(RST | ACK, 0, 1001, 0)),
            TcpVerdict::Valid(TcpState::Close)
        );
    }

    #[test]
    fn syn_reopens_time_wait_and_closed() {
        let mut c = established();
        c.update(O, &seg(FIN | ACK, 1001, 5001, 0));
        c.update(R, &seg(FIN | ACK, 5001, 1002, 0));
        assert_eq!(
            c.update(O, &seg(ACK, 1002, 5002, 0)),
            TcpVerdict::Valid(TcpState::TimeWait)
        );
        assert_eq!(c.update(O, &seg(SYN, 90_000, 0, 0)), TcpVerdict::Reopen);
        let mut c = established();
        c.update(O, &seg(RST, 1001, 0, 0));
        assert_eq!(c.state(), TcpState::Close);
        assert_eq!(c.update(O, &seg(SYN, 90_000, 0, 0)), TcpVerdict::Reopen);
    }

    #[test]
    fn retransmitted_synack_is_ignored() {
        let mut c = established();
        assert_eq!(
            c.update(R, &seg(SYN | ACK, 5000, 1001, 0)),
            TcpVerdict::Ignored
        );
        assert_eq!(c.state(), TcpState::Established);
    }

    #[test]
    fn window_scaling_is_honoured_only_when_both_ends_offer_it() {
        // The client advertises window 4000; with scale 7 that is 512,000 bytes, so the server
        // may send 200 KB ahead. Without scaling (only one end offered it) it may send 4000.
        let server_jumps_ahead = |client_ws: Option<u8>, server_ws: Option<u8>| {
            let mut syn = seg(SYN, 1000, 0, 0);
            syn.wscale = client_ws;
            let mut c = TcpConn::new(&syn, false).unwrap();
            let mut synack = seg(SYN | ACK, 5000, 1001, 0);
            synack.wscale = server_ws;
            assert!(matches!(c.update(R, &synack), TcpVerdict::Valid(_)));
            let mut ack = seg(ACK, 1001, 5001, 0);
            ack.window = 4000;
            assert!(matches!(c.update(O, &ack), TcpVerdict::Valid(_)));
            c.update(R, &seg(ACK, 5001 + 200_000, 1001, 1400))
        };
        assert!(matches!(
            server_jumps_ahead(Some(7), Some(7)),
            TcpVerdict::Valid(_)
        ));
        let invalid = TcpVerdict::Invalid(InvalidReason::TcpWindow);
        assert_eq!(server_jumps_ahead(Some(7), None), invalid);
        assert_eq!(server_jumps_ahead(None, Some(7)), invalid);
    }
}
