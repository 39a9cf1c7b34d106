//! brink's connection tracking: the connection table and per-protocol state machines.
//!
//! Sans-I/O: no clock, no threads, no sockets; time is an argument. The table is filled in by
//! the conntrack work; until then the dataplane forwards without tracking.
