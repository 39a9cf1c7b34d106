//! The kernel side of VXLAN networks: one Linux `vxlan` device per network, which brink attaches
//! to as the network's uplink port, with its forwarding table programmed from l2population, as
//! Neutron's linuxbridge agent did; and an nftables table that counts tunnel traffic per remote
//! endpoint and drops (and counts) frames with a VNI no network has.
//!
//! Everything goes through iproute2 (`ip`, `bridge`) and `nft`, on the control thread.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use brink_dataplane::wire::MacAddr;
use serde_json::Value;

use crate::iface::{self, ip, run, IfaceError};
use crate::overlay::Tunnel;

/// VXLAN's IANA UDP port.
pub const VXLAN_PORT: u16 = 4789;

/// The nftables table brink owns.
const TABLE: &str = "brink_tunnel";

/// A change to the kernel's VXLAN state.
#[derive(Debug, Clone, Copy)]
pub enum VxlanOp<'a> {
    /// Make the device `dev` for `vni` on `tunnel` (replacing a leftover of that name), up.
    Create {
        /// Device name.
        dev: &'a str,
        /// The VNI.
        vni: u32,
        /// The local endpoint.
        tunnel: &'a Tunnel,
    },
    /// Delete device `dev`.
    Delete {
        /// Device name.
        dev: &'a str,
    },
    /// Turn learning from received frames on or off.
    Learning {
        /// Device name.
        dev: &'a str,
        /// Learn.
        on: bool,
    },
    /// Add or remove a flood-list entry: head-end replication to `ip`.
    Flood {
        /// Device name.
        dev: &'a str,
        /// The remote endpoint.
        ip: IpAddr,
        /// Add (true) or remove.
        add: bool,
    },
    /// Say that `mac` lives behind `endpoint` (`Some`), or forget it (`None`).
    Remote {
        /// Device name.
        dev: &'a str,
        /// The remote MAC.
        mac: MacAddr,
        /// Its endpoint.
        endpoint: Option<IpAddr>,
    },
    /// Count tunnel traffic of `endpoints` and drop VNIs other than `vnis`, for frames to and
    /// from `tunnel`'s address.
    Filter {
        /// The local endpoint.
        tunnel: &'a Tunnel,
        /// The VNIs networks have.
        vnis: &'a [u32],
        /// The remote endpoints to count.
        endpoints: &'a [IpAddr],
    },
    /// Remove the nftables table (of either family).
    Unfilter,
}

/// Applies `op` to the kernel.
pub fn apply(op: VxlanOp<'_>) -> Result<(), IfaceError> {
    match op {
        VxlanOp::Create { dev, vni, tunnel } => create(dev, vni, tunnel),
        VxlanOp::Delete { dev } => iface::delete(dev),
        VxlanOp::Learning { dev, on } => {
            let learning = if on { "learning" } else { "nolearning" };
            ip(&["link", "set", "dev", dev, "type", "vxlan", learning])
        }
        VxlanOp::Flood { dev, ip, add } => {
            let ip = ip.to_string();
            let zero = "00:00:00:00:00:00";
            if add {
                bridge(&[
                    "fdb",
                    "append",
                    zero,
                    "dev",
                    dev,
                    "dst",
                    &ip,
                    "self",
                    "permanent",
                ])
            } else {
                bridge(&["fdb", "del", zero, "dev", dev, "dst", &ip, "self"])
            }
        }
        VxlanOp::Remote { dev, mac, endpoint } => {
            let mac = mac.to_string();
            match endpoint {
                Some(ip) => {
                    let dst = ip.to_string();
                    let fdb = ["fdb", "replace", &mac, "dev", dev, "dst", &dst];
                    bridge(&[&fdb[..], &["self", "permanent"]].concat())
                }
                None => bridge(&["fdb", "del", &mac, "dev", dev, "self"]),
            }
        }
        VxlanOp::Filter {
            tunnel,
            vnis,
            endpoints,
        } => run(
            "nft",
            &["-f", "-"],
            Some(&filter_script(tunnel, vnis, endpoints)),
        )
        .map(drop),
        VxlanOp::Unfilter => {
            // The table is in the endpoint's family: the other family's deletion fails.
            let [v4, v6] = ["ip", "ip6"].map(|f| run("nft", &["delete", "table", f, TABLE], None));
            v4.or(v6).map(drop)
        }
    }
}

fn create(dev: &str, vni: u32, tunnel: &Tunnel) -> Result<(), IfaceError> {
    iface::check_name(dev)?;
    if iface::exists(dev) {
        iface::delete(dev)?;
    }
    let (vni, local, port) = (
        vni.to_string(),
        tunnel.local_ip.to_string(),
        VXLAN_PORT.to_string(),
    );
    let mut args = vec![
        "link", "add", dev, "type", "vxlan", "id", &vni, "local", &local,
    ];
    args.extend(["dev", &tunnel.dev, "dstport", &port, "learning"]);
    // No outer UDP checksum on IPv4 (allowed by RFC 7348, and Linux's default): the inner frame
    // carries its own. IPv6 requires it (RFC 6935 allows zero only where both ends agree), and
    // Linux computes it by default.
    if tunnel.local_ip.is_ipv4() {
        args.push("noudpcsum");
    }
    ip(&args)?;
    // No IPv6 link-local address: the device itself sends nothing into the network.
    let up = ip(&["link", "set", "dev", dev, "addrgenmode", "none"])
        .and_then(|()| ip(&["link", "set", "dev", dev, "up"]));
    if let Err(e) = up {
        let _ = iface::delete(dev);
        return Err(e);
    }
    Ok(())
}

fn bridge(args: &[&str]) -> Result<(), IfaceError> {
    run("bridge", args, None).map(drop)
}

/// Counter names: `rx_192_0_2_2`, `rx_2001_db8__2`.
fn counter(direction: &str, ip: IpAddr) -> String {
    format!("{direction}_{}", ip.to_string().replace(['.', ':'], "_"))
}

/// The nftables family (and address keyword) of `tunnel`'s table: `ip` or `ip6`.
fn family(tunnel: &Tunnel) -> &'static str {
    if tunnel.local_ip.is_ipv4() {
        "ip"
    } else {
        "ip6"
    }
}

const UNKNOWN_VNI: &str = "unknown_vni";

/// The nftables script that makes the table's counters (kept if they exist) and replaces its
/// rules in one transaction. The VNI is the 24 bits at byte 12 of the transport header (UDP 8,
/// VXLAN flags and reserved 4).
fn filter_script(tunnel: &Tunnel, vnis: &[u32], endpoints: &[IpAddr]) -> String {
    let (local, f) = (tunnel.local_ip, family(tunnel));
    let mut s = format!("add table {f} {TABLE}\nadd counter {f} {TABLE} {UNKNOWN_VNI}\n");
    for &ep in endpoints {
        for dir in ["rx", "tx"] {
            let _ = writeln!(s, "add counter {f} {TABLE} {}", counter(dir, ep));
        }
    }
    for (chain, hook) in [("input", "input"), ("output", "output")] {
        let _ = writeln!(
            s,
            "add chain {f} {TABLE} {chain} {{ type filter hook {hook} priority -10; policy accept; }}\n\
             flush chain {f} {TABLE} {chain}"
        );
    }
    let rx = format!("add rule {f} {TABLE} input {f} daddr {local} udp dport {VXLAN_PORT}");
    let known: Vec<String> = vnis.iter().map(u32::to_string).collect();
    let unknown = if known.is_empty() {
        String::new()
    } else {
        format!("@th,96,24 != {{ {} }} ", known.join(", "))
    };
    let _ = writeln!(s, "{rx} {unknown}counter name {UNKNOWN_VNI} drop");
    for &ep in endpoints {
        let _ = writeln!(s, "{rx} {f} saddr {ep} counter name {}", counter("rx", ep));
        let _ = writeln!(
            s,
            "add rule {f} {TABLE} output {f} saddr {local} {f} daddr {ep} udp dport {VXLAN_PORT} \
             counter name {}",
            counter("tx", ep)
        );
    }
    s
}

/// Packets and bytes one nftables counter saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// What the tunnel's nftables counters say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TunnelCounters {
    /// Frames with an unknown VNI, dropped.
    pub unknown_vni: u64,
    /// Per remote endpoint: received, sent.
    pub endpoints: BTreeMap<IpAddr, (Count, Count)>,
}

/// Reads the counters of `tunnel`'s filter (all zero if its table does not exist).
pub fn counters(tunnel: &Tunnel, endpoints: &[IpAddr]) -> TunnelCounters {
    let list = ["-j", "list", "counters", "table", family(tunnel), TABLE];
    let listing = run("nft", &list, None);
    parse_counters(&listing.unwrap_or_default(), endpoints)
}

fn parse_counters(json: &str, endpoints: &[IpAddr]) -> TunnelCounters {
    let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    let mut by_name = BTreeMap::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let c = &item["counter"];
        if let Some(name) = c["name"].as_str() {
            let count = Count {
                packets: c["packets"].as_u64().unwrap_or(0),
                bytes: c["bytes"].as_u64().unwrap_or(0),
            };
            by_name.insert(name.to_string(), count);
        }
    }
    let get = |name: &str| by_name.get(name).copied().unwrap_or_default();
    TunnelCounters {
        unknown_vni: get(UNKNOWN_VNI).packets,
        endpoints: endpoints
            .iter()
            .map(|&ep| (ep, (get(&counter("rx", ep)), get(&counter("tx", ep)))))
            .collect(),
    }
}

/// What a VXLAN device counted: frames in and out, and drops by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// Frames decapsulated.
    pub rx_packets: u64,
    /// Frames encapsulated.
    pub tx_packets: u64,
    /// Drops by reason.
    pub drops: BTreeMap<String, u64>,
}

/// Reads device `dev`'s counters from sysfs (zero where absent).
pub fn device_counters(dev: &str) -> DeviceCounters {
    let read = |name: &str| {
        let path = format!("/sys/class/net/{dev}/statistics/{name}");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.trim().parse::<u64>().unwrap_or(0)
    };
    // vxlan_xmit counts a frame with no FDB entry and no flood list in tx_dropped, one whose
    // endpoint has no route in tx_carrier_errors.
    let drops = [
        ("no_endpoint", "tx_dropped"),
        ("no_route", "tx_carrier_errors"),
        ("tx_errors", "tx_errors"),
        ("rx_errors", "rx_errors"),
        ("rx_dropped", "rx_dropped"),
    ]
    .into_iter()
    .map(|(reason, file)| (reason.to_string(), read(file)))
    .filter(|&(_, n)| n > 0)
    .collect();
    DeviceCounters {
        rx_packets: read("rx_packets"),
        tx_packets: read("tx_packets"),
        drops,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_drops_unknown_vnis_and_counts_each_endpoint() {
        let tunnel = Tunnel {
            local_ip: "192.0.2.1".parse().unwrap(),
            dev: "eth1".into(),
        };
        let peer = "192.0.2.2".parse().unwrap();
        let s = filter_script(&tunnel, &[1001, 1002], &[peer]);
        assert!(s.contains(
            "input ip daddr 192.0.2.1 udp dport 4789 @th,96,24 != { 1001, 1002 } counter name \
             unknown_vni drop"
        ));
        assert!(s.contains("ip saddr 192.0.2.2 counter name rx_192_0_2_2"));
        assert!(s.contains("ip daddr 192.0.2.2 udp dport 4789 counter name tx_192_0_2_2"));
        assert!(s.contains("add counter ip brink_tunnel tx_192_0_2_2"));
        let none = filter_script(&tunnel, &[], &[]);
        assert!(
            none.contains("udp dport 4789 counter name unknown_vni drop"),
            "{none}"
        );
        // An IPv6 underlay: the same rules in an ip6 table.
        let tunnel = Tunnel {
            local_ip: "2001:db8::1".parse().unwrap(),
            dev: "eth1".into(),
        };
        let s = filter_script(&tunnel, &[1001], &["2001:db8::2".parse().unwrap()]);
        assert!(s.contains(
            "add rule ip6 brink_tunnel input ip6 daddr 2001:db8::1 udp dport 4789 @th,96,24 != \
             { 1001 } counter name unknown_vni drop"
        ));
        assert!(
            s.contains("ip6 saddr 2001:db8::2 counter name rx_2001_db8__2"),
            "{s}"
        );
        assert!(!s.contains(" ip "), "{s}");
    }

    #[test]
    fn counters_are_read_from_nft_json() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"counter": {"family": "ip", "name": "unknown_vni", "table": "brink_tunnel", "packets": 3, "bytes": 300}},
            {"counter": {"family": "ip", "name": "rx_192_0_2_2", "table": "brink_tunnel", "packets": 5, "bytes": 500}}]}"#;
        let peer = "192.0.2.2".parse().unwrap();
        let c = parse_counters(json, &[peer]);
        assert_eq!(c.unknown_vni, 3);
        let (rx, tx) = c.endpoints[&peer];
        assert_eq!((rx.packets, rx.bytes, tx.packets), (5, 500, 0));
        assert_eq!(parse_counters("", &[]), TunnelCounters::default());
    }
}
