//! Security groups as the dataplane runs them: compiled per-port rule sets and port security.
//! A leaf: it knows nothing of snapshots or conntrack; [`crate::firewall`] applies it to them.
//!
//! The control plane compiles each port's groups into a [`PortFilter`] (one [`RuleSet`] per
//! direction and ethertype, plus its [`PortSecurity`]) and publishes it in the snapshot. Rules
//! only allow; a port with port security on drops what no rule allows. Stateful ports judge
//! only the first packet of a connection (replies and related traffic then pass on conntrack's
//! word); stateless ports judge every packet.

pub mod filter;
pub mod prefix;
pub mod ruleset;
pub mod security;

pub use filter::{Direction, PortFilter};
pub use prefix::Prefix;
pub use ruleset::{Rule, RuleSet};
pub use security::PortSecurity;
