//! `brink-pktgen`: send UDP frames on an interface through AF_XDP; prints a JSON report.

use std::time::Duration;

use anyhow::Context;
use brink_bench::pktgen::{self, PktgenConfig};
use clap::Parser;

/// Send UDP frames on an interface (run it inside the VM's namespace with `ip netns exec`).
#[derive(Debug, Parser)]
#[command(name = "brink-pktgen", version, about)]
struct Args {
    /// Interface to send on.
    #[arg(long, default_value = "eth0")]
    iface: String,
    /// Destination MAC.
    #[arg(long)]
    dst_mac: String,
    /// Source MAC (default: the interface's own).
    #[arg(long)]
    src_mac: Option<String>,
    /// Source IPv4 address.
    #[arg(long)]
    src_ip: std::net::Ipv4Addr,
    /// Destination IPv4 address.
    #[arg(long)]
    dst_ip: std::net::Ipv4Addr,
    /// Frame size in bytes (60-1514).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Distinct flows (UDP source ports).
    #[arg(long, default_value_t = 1)]
    flows: u16,
    /// Stop after this many frames.
    #[arg(long, default_value_t = 10_000_000)]
    count: u64,
    /// Stop after this many seconds (at most 300).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

fn mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let mut m = [0u8; 6];
    let parts: Vec<&str> = s.trim().split(':').collect();
    anyhow::ensure!(parts.len() == 6, "bad MAC {s:?}");
    for (b, p) in m.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).with_context(|| format!("bad MAC {s:?}"))?;
    }
    Ok(m)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        a.seconds > 0.0 && a.seconds <= 300.0,
        "--seconds must be in (0, 300]"
    );
    let src_mac = match &a.src_mac {
        Some(m) => mac(m)?,
        None => mac(
            &std::fs::read_to_string(format!("/sys/class/net/{}/address", a.iface))
                .with_context(|| format!("no interface {}", a.iface))?,
        )?,
    };
    brink_dataplane::port::afxdp::silence_library_logs();
    let report = pktgen::run(&PktgenConfig {
        iface: a.iface,
        src_mac,
        dst_mac: mac(&a.dst_mac)?,
        src_ip: a.src_ip.octets(),
        dst_ip: a.dst_ip.octets(),
        size: a.size,
        flows: a.flows,
        count: a.count,
        duration: Duration::from_secs_f64(a.seconds),
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
