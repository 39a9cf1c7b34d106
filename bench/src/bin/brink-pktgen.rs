//! `brink-pktgen`: send frames on an interface through AF_XDP, or receive and measure them;
//! prints a JSON report.

use std::time::Duration;

use anyhow::Context;
use brink_bench::pktgen::frame::{FrameSpec, Mode};
use brink_bench::pktgen::receive::{self, ReceiveConfig};
use brink_bench::pktgen::{self, SendConfig};
use clap::Parser;

/// Traffic generator and receiver (run it inside a VM's namespace with `ip netns exec`).
/// Without a subcommand it sends, taking `send`'s options.
#[derive(Debug, Parser)]
#[command(
    name = "brink-pktgen",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    send: Option<Send>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Send frames.
    Send(Send),
    /// Receive frames: counts, loss, reordering and one-way latency of stamped UDP frames.
    Receive(Receive),
}

#[derive(Debug, clap::Args)]
struct Send {
    /// Interface to send on.
    #[arg(long, default_value = "eth0")]
    iface: String,
    /// What to send.
    #[arg(long, value_enum, default_value_t = Mode::Udp)]
    mode: Mode,
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
    /// Frame size in bytes without FCS (60-1514; `imix` ignores it).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Flows of the `udp`, `tcp` and `imix` modes.
    #[arg(long, default_value_t = 1)]
    flows: u32,
    /// Frames per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many frames.
    #[arg(long, default_value_t = 10_000_000)]
    count: u64,
    /// Stop after this many seconds (at most 300).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

#[derive(Debug, clap::Args)]
struct Receive {
    /// Interface to receive on.
    #[arg(long, default_value = "eth0")]
    iface: String,
    /// Stop after this many stamped frames.
    #[arg(long, default_value_t = u64::MAX)]
    count: u64,
    /// Stop after this many seconds (at most 300).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Stop when nothing arrived for this many seconds after the first frame.
    #[arg(long, default_value_t = 1.0)]
    idle: f64,
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

fn seconds(s: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(s > 0.0 && s <= 300.0, "seconds must be in (0, 300]");
    Ok(Duration::from_secs_f64(s))
}

fn main() -> anyhow::Result<()> {
    brink_dataplane::port::afxdp::silence_library_logs();
    let args = Args::parse();
    let command = match (args.command, args.send) {
        (Some(c), _) => c,
        (None, Some(send)) => Command::Send(send),
        (None, None) => anyhow::bail!("say what to send (--help)"),
    };
    let report = match command {
        Command::Send(a) => {
            let src_mac = match &a.src_mac {
                Some(m) => mac(m)?,
                None => mac(&std::fs::read_to_string(format!(
                    "/sys/class/net/{}/address",
                    a.iface
                ))
                .with_context(|| format!("no interface {}", a.iface))?)?,
            };
            let cfg = SendConfig {
                frames: FrameSpec {
                    mode: a.mode,
                    src_mac,
                    dst_mac: mac(&a.dst_mac)?,
                    src_ip: a.src_ip.octets(),
                    dst_ip: a.dst_ip.octets(),
                    size: a.size,
                    flows: a.flows,
                },
                iface: a.iface,
                rate: a.rate,
                count: a.count,
                duration: seconds(a.seconds)?,
                progress: true,
            };
            serde_json::to_string(&pktgen::send(&cfg)?)?
        }
        Command::Receive(a) => {
            let cfg = ReceiveConfig {
                iface: a.iface,
                count: a.count,
                duration: seconds(a.seconds)?,
                idle: seconds(a.idle)?,
                progress: true,
            };
            serde_json::to_string(&receive::receive(&cfg)?)?
        }
    };
    println!("{report}");
    Ok(())
}
