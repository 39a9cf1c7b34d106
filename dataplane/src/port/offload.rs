//! What a frame carries beside its bytes from a port with checksum offload: how its transport
//! checksum stands.
//!
//! A vhost-user guest with `VIRTIO_NET_F_CSUM` leaves its TCP and UDP checksums partial
//! (`NEEDS_CSUM`) and says where they lie. brink trusts that as Linux trusts `CHECKSUM_PARTIAL`:
//! it neither completes nor verifies the checksum on the way in. The frame carries it partial
//! to a guest that takes it so (`GUEST_CSUM`); egress completes it once, in software, for any
//! other destination.

use crate::wire::checksum::Partial;

/// How a frame's transport checksum stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Checksum {
    /// As on the wire: parse verifies it (and completes a partial one it finds by the sum).
    #[default]
    AsIs,
    /// Left partial by the sender, to be completed before the frame reaches a port that needs
    /// it complete.
    Partial(Partial),
    /// brink completed it: correct.
    Valid,
}

impl Checksum {
    /// The partial checksum, if it is one.
    #[inline]
    pub fn partial(self) -> Option<Partial> {
        match self {
            Checksum::Partial(p) => Some(p),
            _ => None,
        }
    }
}
