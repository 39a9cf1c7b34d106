//! `brinkctl capture`: captures one port into a pcapng file that tcpdump and Wireshark read.
//!
//! It starts a capture in brinkd, reads what was captured every 100 ms until it has `--count`
//! frames or `--seconds` have passed, stops the capture, and writes the file. Each packet
//! carries its direction (pcapng `epb_flags`); with `--drops`, a comment gives the reason brink
//! dropped it.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use serde_json::json;

use crate::client::{Client, ClientError};
use crate::protocol::method;
use crate::types::{CaptureChunk, CaptureRead, CaptureStart, CapturedFrame};

/// How often the capture is read.
const READ_EVERY: Duration = Duration::from_millis(100);
/// The snap length brinkd keeps (its frame buffer).
const SNAPLEN: u32 = 1792;
/// `epb_flags` direction bits: inbound (from the VM) and outbound (to it).
const INBOUND: u32 = 1;
const OUTBOUND: u32 = 2;

/// `brinkctl capture` arguments.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// The port to capture.
    #[arg(long)]
    pub port: String,
    /// Stop after this many frames.
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Stop after this many seconds, however many frames were captured.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Only the port's frames that brink dropped; each packet's comment gives the reason.
    #[arg(long)]
    pub drops: bool,
    /// The pcapng file to write.
    #[arg(short = 'w', long = "write")]
    pub file: PathBuf,
}

/// Captures as `a` says and writes the file; returns what to print.
pub fn run(client: &mut Client, a: &CaptureArgs) -> Result<String, ClientError> {
    let start = CaptureStart {
        port: a.port.clone(),
        drops: a.drops,
    };
    client.call_value(method::CAPTURE_START, &start)?;
    let read = collect(client, a);
    let stopped = client.call_value(method::CAPTURE_STOP, &json!({}));
    let (frames, lost) = read?;
    stopped?;
    write(a, &frames)?;
    Ok(format!(
        "{} frames of port {} written to {} ({lost} lost)",
        frames.len(),
        a.port,
        a.file.display()
    ))
}

fn collect(client: &mut Client, a: &CaptureArgs) -> Result<(Vec<CapturedFrame>, u64), ClientError> {
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let mut frames = Vec::new();
    loop {
        let want = a.count.saturating_sub(frames.len());
        let chunk: CaptureChunk =
            client.call(method::CAPTURE_READ, &CaptureRead { max: Some(want) })?;
        frames.extend(chunk.frames);
        if frames.len() >= a.count || Instant::now() >= deadline {
            return Ok((frames, chunk.lost));
        }
        std::thread::sleep(READ_EVERY);
    }
}

fn write(a: &CaptureArgs, frames: &[CapturedFrame]) -> Result<(), ClientError> {
    let failed = |e: &dyn std::fmt::Display| {
        ClientError::Usage(format!("cannot write {}: {e}", a.file.display()))
    };
    let file = std::fs::File::create(&a.file).map_err(|e| failed(&e))?;
    let mut out = PcapNgWriter::new(file).map_err(|e| failed(&e))?;
    let interface = InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: SNAPLEN,
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Borrowed(&a.port)),
            // Timestamps in nanoseconds.
            InterfaceDescriptionOption::IfTsResol(9),
        ],
    };
    out.write_pcapng_block(interface).map_err(|e| failed(&e))?;
    for f in frames {
        let data = hex::decode(&f.data).map_err(|e| failed(&e))?;
        let mut options = vec![EnhancedPacketOption::Flags(if f.way == "out" {
            OUTBOUND
        } else {
            INBOUND
        })];
        if let Some(reason) = &f.reason {
            options.push(EnhancedPacketOption::Comment(Cow::Owned(format!(
                "dropped: {reason}"
            ))));
        }
        let packet = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(f.unix_ns),
            original_len: f.len,
            data: Cow::Owned(data),
            options,
        };
        out.write_pcapng_block(packet).map_err(|e| failed(&e))?;
    }
    Ok(())
}
