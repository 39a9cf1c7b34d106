//! Wall-clock time for what the API reports: conntrack and capture times count from the
//! switch's start, people and files want Unix time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, now.
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The Unix time, in nanoseconds, of the moment the switch's clock (now at `now_ns`) read 0.
pub fn unix_at_zero(now_ns: u64) -> u64 {
    unix_ns().saturating_sub(now_ns)
}
