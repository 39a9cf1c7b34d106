//! `ct.*`: connection tracking over the API: filters from requests, connections and policies
//! into responses.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use brink_api::protocol::{code, RpcError};
use brink_api::types::{
    CtEntry, CtEvent, CtEvents, CtEventsRead, CtFilter, CtFlushed, CtPolicy, CtPolicySet,
    CtPolicyShow, CtStats, CtTuple, CtZone,
};
use brink_conntrack::table::StateFilter;
use brink_conntrack::{
    Addr, ConnInfo, Filter, InvalidReason, TcpState, Timeouts, Tuple, ZonePolicy,
};
use brink_dataplane::snapshot::NetworkId;

use super::Service;
use crate::clock;
use crate::host::Host;
use crate::model::Model;
use crate::protocols::{self, proto_name};

impl<H: Host> Service<H> {
    pub(super) fn ct_show(&self, p: &CtFilter) -> Result<Vec<CtEntry>, RpcError> {
        let (filter, limit) = filter(&self.model, p)?;
        let now = self.switch.now_ns();
        let conns = self.switch.conntrack().dump(&filter, limit);
        Ok(conns.iter().map(|c| entry(&self.model, c, now)).collect())
    }

    pub(super) fn ct_flush(&self, p: &CtFilter) -> Result<CtFlushed, RpcError> {
        if p.limit.is_some() {
            return Err(bad("ct.flush takes no limit".into()));
        }
        let (filter, _) = filter(&self.model, p)?;
        let flushed = self.switch.conntrack().flush(&filter) as u64;
        Ok(CtFlushed { flushed })
    }

    pub(super) fn ct_stats(&self) -> CtStats {
        let ct = self.switch.conntrack();
        let s = ct.stats();
        CtStats {
            entries: s.entries,
            max: self.ct_max,
            inserts: s.inserts,
            refused: s.refused,
            early_drops: s.early_drops,
            expired: s.expired,
            flushed: s.flushed,
            denied: s.denied,
            recheck_kept: s.recheck_kept,
            recheck_cut: s.recheck_cut,
            invalid: InvalidReason::ALL
                .iter()
                .map(|&r| (r.name().to_string(), s.invalid[r as usize]))
                .filter(|&(_, n)| n > 0)
                .collect(),
            zones: ct
                .zone_counts()
                .into_iter()
                .map(|(zone, n)| CtZone {
                    network: network_name(&self.model, zone),
                    connections: u64::from(n),
                })
                .collect(),
        }
    }

    /// The connection events since the last read; the first read subscribes.
    pub(super) fn ct_events(&mut self, p: &CtEventsRead) -> CtEvents {
        let queue = self.switch.ct_events();
        if self.events_read.is_none() {
            queue.set(true);
            tracing::info!("connection events subscribed");
        }
        self.events_read = Some(Instant::now());
        let unix_at_zero = clock::unix_at_zero(self.switch.now_ns());
        let max = p.max.unwrap_or(MAX_EVENTS).min(MAX_EVENTS);
        let events = queue
            .take(max)
            .iter()
            .map(|e| CtEvent {
                event: e.kind.name().into(),
                unix_ns: unix_at_zero + e.at,
                tuple: tuple(&self.model, &e.original),
                tcp_state: e.tcp_state.map(|s| s.name().to_string()),
            })
            .collect();
        CtEvents {
            events,
            lost: queue.lost(),
        }
    }

    /// Ends the event subscription if nobody read it for [`EVENTS_IDLE`], so that a reader
    /// that went away leaves the workers building no events.
    pub fn end_idle_subscriptions(&mut self, now: Instant) {
        if self
            .events_read
            .is_some_and(|t| now.saturating_duration_since(t) > EVENTS_IDLE)
        {
            self.events_read = None;
            self.switch.ct_events().set(false);
            tracing::info!("connection events unsubscribed: no reader");
        }
    }

    pub(super) fn ct_policy_set(&mut self, p: &CtPolicySet) -> Result<CtPolicy, RpcError> {
        let zone = self.model.network_id(&p.network)?.0;
        let was = self.switch.conntrack().policy(zone);
        let policy = self.ct_policy_apply(p)?;
        // The table holds the policy that is saved: a failed save puts the old one back.
        if let Err(e) = self.save() {
            self.switch.conntrack().set_policy(zone, Some(was));
            return Err(e);
        }
        Ok(view(&p.network, &policy))
    }

    /// Applies `p` to its network's zone and returns the policy now in force.
    pub(super) fn ct_policy_apply(&self, p: &CtPolicySet) -> Result<ZonePolicy, RpcError> {
        let zone = self.model.network_id(&p.network)?.0;
        let ct = self.switch.conntrack();
        let policy = apply(ct.policy(zone), p)?;
        ct.set_policy(zone, Some(policy));
        tracing::info!(network = %p.network, ?policy, "conntrack policy set");
        Ok(policy)
    }

    pub(super) fn ct_policy_show(&self, p: &CtPolicyShow) -> Result<CtPolicy, RpcError> {
        let zone = self.model.network_id(&p.network)?.0;
        Ok(view(&p.network, &self.switch.conntrack().policy(zone)))
    }
}

/// The name of the network of conntrack zone `zone`, or `zone N` if it has none any more.
fn network_name(model: &Model, zone: u16) -> String {
    model
        .network_name(NetworkId(zone))
        .map_or_else(|| format!("zone {zone}"), str::to_string)
}

/// Most events one `ct.events` returns.
const MAX_EVENTS: usize = 1000;
/// How long a subscription to events lasts without a read.
pub const EVENTS_IDLE: Duration = Duration::from_secs(5);

/// Connections `ct.show` returns unless asked for another limit.
const DEFAULT_SHOW_LIMIT: usize = 1000;
/// Longest timeout accepted: 30 days.
const MAX_TIMEOUT: u32 = 30 * 24 * 3600;

fn bad(msg: String) -> RpcError {
    RpcError::new(code::INVALID_PARAMS, msg)
}

/// A protocol name or number.
fn parse_proto(s: &str) -> Result<u8, RpcError> {
    protocols::number(s).ok_or_else(|| {
        bad(format!(
            "bad protocol {s:?}: use a name ({}) or 0-255",
            protocols::names()
        ))
    })
}

fn parse_state(s: &str) -> Result<StateFilter, RpcError> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "new" => return Ok(StateFilter::New),
        "established" => return Ok(StateFilter::Established),
        _ => {}
    }
    let tcp = lower.strip_prefix("tcp_").unwrap_or(&lower);
    TcpState::ALL
        .iter()
        .find(|t| t.name().eq_ignore_ascii_case(tcp))
        .map(|&t| StateFilter::Tcp(t))
        .ok_or_else(|| {
            let names: Vec<String> = TcpState::ALL.iter().map(|t| t.name().to_lowercase()).collect();
            bad(format!(
                "bad state {s:?}: use new, established, or a TCP state ({}; tcp_established for TCP's own)",
                names.join(", ")
            ))
        })
}

/// The table filter and show limit a request asks for.
fn filter(model: &Model, f: &CtFilter) -> Result<(Filter, usize), RpcError> {
    let zone = f
        .network
        .as_ref()
        .map(|n| model.network_id(n).map(|id| id.0))
        .transpose()?;
    let addr =
        f.ip.as_ref()
            .map(|s| {
                s.parse::<IpAddr>()
                    .map(Addr::from)
                    .map_err(|_| bad(format!("bad IP address {s:?}")))
            })
            .transpose()?;
    let filter = Filter {
        zone,
        addr,
        port: f.port,
        proto: f.proto.as_deref().map(parse_proto).transpose()?,
        state: f.state.as_deref().map(parse_state).transpose()?,
        mark: f.mark,
    };
    Ok((filter, f.limit.unwrap_or(DEFAULT_SHOW_LIMIT)))
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// The network and original direction `t` of a connection, by name.
fn tuple(model: &Model, t: &Tuple) -> CtTuple {
    CtTuple {
        network: network_name(model, t.zone),
        proto: proto_name(t.proto),
        src: t.src.ip().to_string(),
        sport: t.sport,
        dst: t.dst.ip().to_string(),
        dport: t.dport,
    }
}

/// A connection as `ct.show` reports it, at conntrack time `now`.
pub(super) fn entry(model: &Model, c: &ConnInfo, now: u64) -> CtEntry {
    CtEntry {
        tuple: tuple(model, &c.original),
        state: if c.seen_reply { "established" } else { "new" }.into(),
        tcp_state: c.tcp_state.map(|s| s.name().to_string()),
        assured: c.assured,
        packets_orig: c.packets[0],
        bytes_orig: c.bytes[0],
        packets_reply: c.packets[1],
        bytes_reply: c.bytes[1],
        age_secs: secs(now.saturating_sub(c.created)),
        expires_secs: secs(c.expires.saturating_sub(now)),
        mark: c.mark,
        rules: c.admission.rules,
        generation: c.admission.generation,
        ports: c
            .admission
            .ports
            .map(|id| model.port_by_id(id).map(|p| p.spec.name.clone())),
    }
}

/// `current` changed as `set` asks.
fn apply(current: ZonePolicy, set: &CtPolicySet) -> Result<ZonePolicy, RpcError> {
    let mut p = if set.reset {
        ZonePolicy::default()
    } else {
        current
    };
    for (name, &value) in &set.timeouts {
        if !(1..=MAX_TIMEOUT).contains(&value) {
            return Err(bad(format!(
                "timeout {name} = {value}: must be 1 to {MAX_TIMEOUT} seconds"
            )));
        }
        if !p.timeouts.set(name, value) {
            return Err(bad(format!(
                "unknown timeout {name:?}; timeouts are: {}",
                Timeouts::NAMES.join(", ")
            )));
        }
    }
    if let Some(limit) = set.limit {
        p.limit = (limit > 0).then_some(limit);
    }
    if let Some(pickup) = set.tcp_pickup {
        p.tcp_pickup = pickup;
    }
    Ok(p)
}

/// A policy as `ct.policy.show` reports it.
fn view(network: &str, p: &ZonePolicy) -> CtPolicy {
    CtPolicy {
        network: network.to_string(),
        timeouts: p
            .timeouts
            .entries()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        limit: p.limit,
        tcp_pickup: p.tcp_pickup,
    }
}

/// The full request that recreates policy `p` (for persistence).
pub(super) fn as_request(network: &str, p: &ZonePolicy) -> CtPolicySet {
    let timeouts: BTreeMap<String, u32> = p
        .timeouts
        .entries()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    CtPolicySet {
        network: network.to_string(),
        timeouts,
        limit: Some(p.limit.unwrap_or(0)),
        tcp_pickup: Some(p.tcp_pickup),
        reset: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_states_parse() {
        assert_eq!(parse_proto("TCP").unwrap(), 6);
        assert_eq!(parse_proto("47").unwrap(), 47);
        assert!(parse_proto("tcpx").is_err() && parse_proto("300").is_err());
        assert_eq!(proto_name(58), "icmpv6");
        assert_eq!(proto_name(47), "gre");
        assert_eq!(proto_name(200), "200");
        assert_eq!(parse_state("new").unwrap(), StateFilter::New);
        assert_eq!(
            parse_state("established").unwrap(),
            StateFilter::Established
        );
        assert_eq!(
            parse_state("TIME_WAIT").unwrap(),
            StateFilter::Tcp(TcpState::TimeWait)
        );
        assert_eq!(
            parse_state("tcp_established").unwrap(),
            StateFilter::Tcp(TcpState::Established)
        );
        assert!(parse_state("closing").is_err());
    }

    #[test]
    fn policies_apply_and_round_trip() {
        let mut set = CtPolicySet {
            network: "n".into(),
            limit: Some(10),
            tcp_pickup: Some(true),
            ..CtPolicySet::default()
        };
        set.timeouts.insert("tcp_time_wait".into(), 2);
        let p = apply(ZonePolicy::default(), &set).unwrap();
        assert_eq!(
            (p.timeouts.tcp_time_wait, p.limit, p.tcp_pickup),
            (2, Some(10), true)
        );
        assert_eq!(
            apply(ZonePolicy::default(), &as_request("n", &p)).unwrap(),
            p
        );
        set.timeouts.insert("tcp_nope".into(), 2);
        assert!(apply(p, &set)
            .unwrap_err()
            .message
            .contains("unknown timeout"));
        let mut zero = CtPolicySet::default();
        zero.timeouts.insert("icmp".into(), 0);
        assert!(apply(p, &zero).is_err());
        let unlimited = CtPolicySet {
            limit: Some(0),
            ..CtPolicySet::default()
        };
        assert_eq!(apply(p, &unlimited).unwrap().limit, None);
    }
}
