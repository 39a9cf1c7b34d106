//! `trace`: one packet through the real pipeline against live state, with nothing changed
//! and nothing sent; each stage's decision in words.

use std::net::IpAddr;

use brink_api::protocol::{code, RpcError};
use brink_api::types::{TraceRequest, TraceResult, TraceStage};
use brink_conntrack::Peek;
use brink_dataplane::snapshot::{NetworkId, PortId};
use brink_dataplane::trace::{self, Outcome, Stage, Trace};
use brink_dataplane::wire::{MacAddr, L3};

use super::{ct, dataplane_error, Service};
use crate::host::Host;
use crate::model::Model;
use crate::packet_spec::{Macs, Spec};
use crate::protocols::proto_name;

impl<H: Host> Service<H> {
    pub(super) fn trace(&self, p: &TraceRequest) -> Result<TraceResult, RpcError> {
        let record = self.model.port(&p.port)?;
        if !self.running.contains_key(&p.port) {
            return Err(RpcError::new(
                code::INVALID_PARAMS,
                format!("port {:?} is down: nothing arrives on it to trace", p.port),
            ));
        }
        let bad = |e: String| RpcError::new(code::INVALID_PARAMS, e);
        let frame = match Spec::parse(&p.packet).map_err(|e| bad(e.to_string()))? {
            Spec::Frame(bytes) => bytes,
            Spec::Fields(fields) => {
                let macs = Macs {
                    src: record.mac,
                    dst: mac_of(&self.model, &record.spec.network, fields.dst),
                };
                fields.build(macs).map_err(|e| bad(e.to_string()))?
            }
        };
        let fdb = self.switch.fdb_rows().map_err(dataplane_error)?;
        let snap = self.switch.snapshot();
        let now = self.switch.now_ns();
        let lookup = |network: NetworkId, mac: MacAddr| {
            let row = fdb.iter().find(|r| r.network == network && r.mac == mac);
            row.map(|r| r.port)
        };
        let table = self.switch.conntrack();
        let t = trace::trace(&frame, record.id, &snap, table, now, lookup)
            .ok_or_else(|| bad(format!("a frame of {} bytes fits no buffer", frame.len())))?;
        let connection = t.conntrack.as_ref().and_then(|c| c.entry.as_ref());
        Ok(TraceResult {
            frame: hex::encode(&frame),
            stages: stages(&self.model, &t, snap.filter(record.id).is_some()),
            connection: connection.map(|c| ct::entry(&self.model, c, now)),
            out: match &t.outcome {
                Outcome::Out(ports) => ports.iter().map(|&p| port_name(&self.model, p)).collect(),
                Outcome::Dropped(..) => vec![],
            },
            drop: match t.outcome {
                Outcome::Dropped(stage, reason) => {
                    Some(format!("{}: {}", stage.name(), reason.name()))
                }
                Outcome::Out(_) => None,
            },
        })
    }
}

/// The MAC of the port of `network` that has address `ip`, if one has.
fn mac_of(model: &Model, network: &str, ip: IpAddr) -> Option<MacAddr> {
    model
        .ports()
        .find(|p| p.spec.network == network && p.ips.contains(&ip))
        .and_then(|p| p.mac)
}

fn port_name(model: &Model, id: PortId) -> String {
    model
        .port_by_id(id)
        .map_or_else(|| format!("port {id}"), |p| p.spec.name.clone())
}

/// Each stage's decision, up to the one that dropped the frame.
fn stages(model: &Model, t: &Trace, port_security: bool) -> Vec<TraceStage> {
    let dropped_at = match t.outcome {
        Outcome::Dropped(stage, reason) => Some((stage, reason.name())),
        Outcome::Out(_) => None,
    };
    let k = &t.key;
    let mut out = Vec::new();
    let mut say = |stage: Stage, detail: String| {
        let detail = match dropped_at {
            Some((at, reason)) if at == stage => format!("{detail}: dropped ({reason})"),
            _ => detail,
        };
        out.push(TraceStage {
            stage: stage.name().into(),
            detail,
        });
        dropped_at.is_some_and(|(at, _)| at == stage)
    };
    let l3 = match &t.l3 {
        L3::Ip(f) => format!(
            "{} {} {}:{} -> {}:{}",
            if f.v6 { "IPv6" } else { "IPv4" },
            proto_name(f.proto),
            f.src.ip(),
            f.sport,
            f.dst.ip(),
            f.dport
        ),
        L3::Arp(_) => "ARP".into(),
        L3::Other => format!("EtherType 0x{:04x}", k.ethertype),
    };
    if say(Stage::Parse, format!("{} -> {}, {l3}", k.src, k.dst)) {
        return out;
    }
    let security = if port_security { "checked" } else { "off" };
    if say(Stage::PortSecurity, security.into()) {
        return out;
    }
    let l2 = match t.fdb {
        Some(p) => format!("{} is on port {} (fdb)", k.dst, port_name(model, p)),
        None if k.dst.is_multicast() => format!("{} is a group address: flood", k.dst),
        None => format!("{} is not in the fdb: flood", k.dst),
    };
    if say(Stage::L2, l2) {
        return out;
    }
    let ct = match &t.conntrack {
        None => "not tracked".into(),
        Some(peek) => conntrack(peek),
    };
    if say(Stage::Conntrack, ct) {
        return out;
    }
    let rules = match t.stateless_rules {
        [0, 0] => "no stateless rule judged it".into(),
        [egress, ingress] => format!("stateless rules: egress {egress}, ingress {ingress}"),
    };
    if say(Stage::Rules, rules) {
        return out;
    }
    let tx = match &t.outcome {
        Outcome::Out(ports) => {
            let names: Vec<String> = ports.iter().map(|&p| port_name(model, p)).collect();
            format!("out on {}", names.join(", "))
        }
        Outcome::Dropped(..) => "no port takes it".into(),
    };
    say(Stage::Tx, tx);
    out
}

/// Conntrack's answer in words: the entry found, or the one that would be created.
fn conntrack(peek: &Peek) -> String {
    let state = if peek.state.0 == 0 {
        "refused by the security groups".to_string()
    } else {
        peek.state.to_string()
    };
    let invalid = peek
        .invalid
        .map_or_else(String::new, |r| format!(" ({})", r.name()));
    match (&peek.entry, &peek.creates) {
        (_, Some(a)) => format!(
            "{state}: would create a connection, admitted by rules egress {} and ingress {}",
            a.rules[0], a.rules[1]
        ),
        (Some(c), None) => format!(
            "{state}{invalid}: connection found ({}, {}), admitted by rules egress {} and ingress {}",
            c.tcp_state.map_or(if c.seen_reply { "established" } else { "new" }, |s| s.name()),
            if c.assured { "assured" } else { "not assured" },
            c.admission.rules[0],
            c.admission.rules[1]
        ),
        (None, None) => format!("{state}{invalid}: no connection"),
    }
}
