//! A port's compiled security: its rule sets per direction and ethertype and its port security.

use super::ruleset::{Hit, RuleSet};
use super::security::{base_allowed, PortSecurity};
use crate::counters::DropReason;
use crate::wire::ip::Flow;

/// Which way a packet crosses a port, seen from the VM behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Into the VM.
    Ingress,
    /// Out of the VM.
    Egress,
}

impl Direction {
    /// The drop reason when no rule allows a packet this way.
    pub fn denied(self) -> DropReason {
        match self {
            Direction::Ingress => DropReason::IngressDenied,
            Direction::Egress => DropReason::EgressDenied,
        }
    }
}

/// Why a packet is allowed.
#[derive(Debug, Clone, Copy)]
pub enum Allow<'a> {
    /// A base allowance (neighbour discovery, DHCP): no rule needed.
    Base,
    /// This rule.
    Rule(&'a Hit),
}

impl Allow<'_> {
    /// The admitting rule's id, 0 for a base allowance.
    pub fn id(self) -> u32 {
        match self {
            Allow::Base => 0,
            Allow::Rule(h) => h.id,
        }
    }

    /// Counts a hit by `worker` on the admitting rule.
    pub fn count(self, worker: usize) {
        if let Allow::Rule(h) = self {
            h.count(worker);
        }
    }
}

/// Everything a worker needs to filter one port with port security on.
#[derive(Debug, Default)]
pub struct PortFilter {
    /// Judge connections once (true), or every packet (false: Neutron `stateful=False`).
    pub stateful: bool,
    /// Rules into the VM: IPv4, IPv6.
    pub ingress: [RuleSet; 2],
    /// Rules out of the VM: IPv4, IPv6.
    pub egress: [RuleSet; 2],
    /// What the VM may send from.
    pub security: PortSecurity,
}

impl PortFilter {
    /// Whether `flow`, crossing the port in direction `dir`, is allowed, and why.
    #[inline]
    pub fn allows(&self, dir: Direction, flow: &Flow) -> Option<Allow<'_>> {
        let ingress = dir == Direction::Ingress;
        if base_allowed(flow, ingress) {
            return Some(Allow::Base);
        }
        let (sets, remote) = if ingress {
            (&self.ingress, flow.src)
        } else {
            (&self.egress, flow.dst)
        };
        sets[usize::from(flow.v6)]
            .lookup(flow.proto, flow.rule_port(), remote)
            .map(Allow::Rule)
    }
}
