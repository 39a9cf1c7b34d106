//! brink's control plane: the configuration model, its validation and persistence, the control
//! API server and the daemon's wiring.
//!
//! It runs on one thread, apart from the workers: it never touches a packet. Every change is
//! validated against the [`model`], applied to the dataplane (ports opened or closed on their
//! worker), published as a new immutable snapshot, and saved by the [`store`].
//!
//! Thread-safety: [`service::Service`] and [`server::Server`] are used by the control thread
//! only; the dataplane's `Switch` is its only link to the workers.

pub mod capture;
pub mod ct;
pub mod daemon;
pub mod iface;
pub mod metrics;
pub mod model;
pub mod protocols;
pub mod server;
pub mod service;
pub mod sg;
pub mod store;
