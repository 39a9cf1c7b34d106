//! brink's dataplane: the per-packet path of the switch.
//!
//! Frames arrive on [`port`]s (AF_XDP sockets, or in-memory ports for tests), are grouped in
//! [`batch`]es and pass the [`pipeline`] stages (parse, port security, L2 forwarding with the
//! [`fdb`], conntrack with the security-group rules of [`acl`] applied by the [`firewall`],
//! transmit through [`egress`]) inside a poll-mode [`worker`] thread. The control plane drives it through [`switch::Switch`]:
//! it publishes immutable [`snapshot`]s of ports and networks and sends commands to workers.
//!
//! Deliberately absent: JSON, files, sockets other than AF_XDP, and any knowledge of names.
//! Ports and networks are small integer ids here; the control plane owns the names.
//!
//! Threads: each [`worker::Worker`] and its [`port::Backend`] live on one thread and are never
//! shared. Workers share only the [`snapshot::SnapshotCell`] (read-only), their command channels,
//! the [`cross`] queues and their single-writer [`counters`].

pub mod acl;
pub mod batch;
pub mod capture;
pub mod counters;
pub mod cross;
pub mod ct_events;
pub mod egress;
pub mod fdb;
pub mod firewall;
pub mod pipeline;
pub mod port;
pub mod snapshot;
pub mod switch;
pub mod trace;
pub mod wire;
pub mod worker;
