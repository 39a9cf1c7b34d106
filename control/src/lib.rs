//! brink's control plane: the configuration model, its validation and persistence, the control
//! API server and the daemon's wiring.
//!
//! It runs on one thread, apart from the workers: it never touches a packet. Every change is
//! validated against the [`model`], applied to the dataplane (ports opened or closed on their
//! worker), published as a new immutable snapshot, and saved by the [`store`].
//!
//! The [`service::Service`] serves typed calls ([`brink_api::call::Call`]), one handler module per
//! noun, over ports on a [`host::Host`]: the kernel's interfaces in `brinkd`, in-memory links in
//! tests. The [`server::Server`] keeps hostile clients from hurting the others.
//!
//! Thread-safety: [`service::Service`] and [`server::Server`] are used by the control thread
//! only; the dataplane's `Switch` is its only link to the workers. [`host::Memory`] clones share
//! their interfaces behind a mutex, so a test thread can plug one in while the service runs.

pub mod capture;
pub mod clock;
pub mod connections;
pub mod daemon;
pub mod host;
pub mod iface;
pub mod metrics;
pub mod model;
pub mod name;
pub mod overlay;
pub mod packet_spec;
pub mod protocols;
pub mod server;
pub mod service;
pub mod sg;
pub mod store;
pub mod systemd;
pub mod vxlan;
