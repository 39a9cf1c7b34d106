//! `brinkctl trace`: one packet through the pipeline against live state, changing nothing.

use clap::Args;
use serde_json::Value;

use super::decode;
use crate::call::Call;
use crate::client::ClientError;
use crate::types::{TraceRequest, TraceResult};

/// `trace` arguments.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The port the packet arrives on.
    #[arg(long)]
    pub port: String,
    /// The packet: e.g. `tcp,src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=80,flags=S` (keys:
    /// src dst sport dport flags seq ack win len id type smac dmac; protocols tcp udp icmp
    /// icmpv6), or an Ethernet frame in hex.
    #[arg(long)]
    pub packet: String,
}

/// The call `trace` makes.
pub fn call(a: &TraceArgs) -> Call {
    Call::Trace(TraceRequest {
        port: a.port.clone(),
        packet: a.packet.clone(),
    })
}

/// Each stage on a line, then the connection found and where the packet goes.
pub fn render(result: Value) -> Result<String, ClientError> {
    let t: TraceResult = decode(result)?;
    let mut lines: Vec<String> = t
        .stages
        .iter()
        .map(|s| format!("{:<14} {}", s.stage, s.detail))
        .collect();
    if let Some(c) = &t.connection {
        lines.push(format!(
            "connection     {} {}:{} -> {}:{} {} {}, age {:.0}s, expires in {:.0}s, packets {}/{}",
            c.tuple.proto,
            c.tuple.src,
            c.tuple.sport,
            c.tuple.dst,
            c.tuple.dport,
            c.state,
            c.tcp_state.as_deref().unwrap_or(""),
            c.age_secs,
            c.expires_secs,
            c.packets_orig,
            c.packets_reply
        ));
    }
    lines.push(match &t.drop {
        Some(why) => format!("verdict        drop ({why})"),
        None => format!("verdict        out on {}", t.out.join(", ")),
    });
    Ok(lines.join("\n"))
}
