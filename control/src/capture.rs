//! `capture.*` methods: what the dataplane's packet capture queued, as the API returns it.

use brink_api::types::{CaptureChunk, CapturedFrame};
use brink_dataplane::capture::{Capture, Way};

use crate::clock;

/// Most frames one `capture.read` returns.
pub const MAX_READ: usize = 1000;

/// Takes up to `max` (at most [`MAX_READ`]) captured frames. `now_ns` is the switch's clock
/// now, so that capture times can be given as wall-clock times.
pub fn read(capture: &Capture, max: Option<usize>, now_ns: u64) -> CaptureChunk {
    let unix_at_zero = clock::unix_at_zero(now_ns);
    let frames = capture
        .take(max.unwrap_or(MAX_READ).min(MAX_READ))
        .into_iter()
        .map(|c| {
            let (way, reason) = match c.way {
                Way::In => ("in", None),
                Way::Out => ("out", None),
                Way::Dropped(r) => ("dropped", Some(r.name().to_string())),
            };
            CapturedFrame {
                unix_ns: unix_at_zero + c.at_ns,
                way: way.into(),
                reason,
                len: c.len,
                data: hex::encode(c.bytes()),
            }
        })
        .collect();
    CaptureChunk {
        frames,
        lost: capture.lost(),
    }
}
