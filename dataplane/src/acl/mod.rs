//! Security groups as the dataplane runs them: compiled per-port rule sets, port security, and
//! the judge that conntrack consults before it creates or keeps a connection.
//!
//! The control plane compiles each port's groups into a [`PortFilter`] (one [`RuleSet`] per
//! direction and ethertype, plus its [`PortSecurity`]) and publishes it in the snapshot. Rules
//! only allow; a port with port security on drops what no rule allows. Stateful ports judge
//! only the first packet of a connection (replies and related traffic then pass on conntrack's
//! word); stateless ports judge every packet.

pub mod filter;
pub mod judge;
pub mod prefix;
pub mod ruleset;
pub mod security;

pub use filter::{Direction, PortFilter};
pub use judge::{FrameGate, SnapshotGate};
pub use prefix::Prefix;
pub use ruleset::{Rule, RuleSet};
pub use security::PortSecurity;
