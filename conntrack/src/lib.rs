//! brink's connection tracking: a sharded connection table with TCP, UDP and ICMP state
//! tracking, timeouts, zones, limits, marks, firewall admission records (see [`gate`]) and
//! bounded expiry, and connection [`event`]s for those who ask.
//!
//! Sans-I/O: no clock, no threads, no sockets. Time is an argument (`now`, nanoseconds on any
//! monotonic clock the caller keeps), packets arrive already parsed as [`Packet`]s, and expiry
//! runs in bounded slices when the caller asks. Tests drive it with synthetic time.
//!
//! Thread-safety: a [`Table`] is `Sync` and is shared by every worker thread. It is split into
//! shards by key hash, each behind its own lock, and there is no global lock. A plain packet of
//! an established connection takes no lock at all: it claims its entry's versioned [`slot`]
//! (one compare-and-swap) and updates it there; any other packet locks exactly one shard, so no
//! lookup or insert waits on work in another shard. See [`table`] for the protocol.

pub mod event;
pub mod gate;
pub mod index;
pub mod key;
pub mod packet;
pub mod slot;
pub mod state;
pub mod table;
pub mod tcp;
pub mod timeout;

pub use event::{Event, EventKind};
pub use gate::{Admission, Connection, Gate, Open, Recheck};
pub use key::{Addr, ConnKey, Tuple};
pub use packet::{Packet, Run, L4};
pub use state::{CtState, Dir, InvalidReason};
pub use table::{
    Config, ConnInfo, Filter, NotImported, Peek, Prepared, Saved, StateFilter, Stats, Table,
};
pub use timeout::{Timeouts, ZonePolicy};

pub use tcp::{TcpSegment, TcpState};
