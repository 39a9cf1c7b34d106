//! The one security group every system with a firewall enforces, and its three renderings:
//! OpenStack's JSON for brink, iptables chains for the hybrid path, OpenFlow rules for Open
//! vSwitch.
//!
//! Egress allows everything; ingress allows ICMP, TCP 5201 (iperf3), UDP 9 and UDP
//! 10000-10015 (the ports brink-pktgen sends to), after `filler` TCP rules from remote /32s
//! that no test packet matches, so rule scale shows what a longer rule list costs.

use serde_json::{json, Value};

/// One ingress rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// "icmp", "tcp" or "udp".
    pub protocol: &'static str,
    /// First and last destination port (TCP, UDP).
    pub ports: Option<(u16, u16)>,
    /// Remote IPv4 /32, or any.
    pub remote: Option<[u8; 4]>,
}

/// The rules that let the scenarios' traffic in.
pub const ALLOW: [Rule; 4] = [
    Rule {
        protocol: "icmp",
        ports: None,
        remote: None,
    },
    Rule {
        protocol: "tcp",
        ports: Some((5201, 5201)),
        remote: None,
    },
    Rule {
        protocol: "udp",
        ports: Some((9, 9)),
        remote: None,
    },
    Rule {
        protocol: "udp",
        ports: Some((10_000, 10_015)),
        remote: None,
    },
];

/// The ingress rules of a port with `total` rules (at least the [`ALLOW`] rules): filler rules
/// first, then the allowing ones.
pub fn ingress(total: usize) -> Vec<Rule> {
    let filler = total.saturating_sub(ALLOW.len());
    (0..filler)
        .map(|k| Rule {
            protocol: "tcp",
            ports: Some(((20_000 + k % 40_000) as u16, (20_000 + k % 40_000) as u16)),
            remote: Some([172, 16, (k / 256) as u8, (k % 256) as u8]),
        })
        .chain(ALLOW)
        .collect()
}

/// The group as `openstack security group show -f json` prints it (what `brinkctl sg import`
/// reads).
pub fn openstack_json(name: &str, rules: &[Rule]) -> Value {
    let mut list = vec![json!({"direction": "egress", "ethertype": "IPv4", "protocol": null})];
    list.extend(rules.iter().map(|r| {
        json!({
            "direction": "ingress",
            "ethertype": "IPv4",
            "protocol": r.protocol,
            "port_range_min": r.ports.map(|p| p.0),
            "port_range_max": r.ports.map(|p| p.1),
            "remote_ip_prefix": r.remote.map(|a| format!("{}/32", dotted(a))),
        })
    }));
    json!({"name": name, "stateful": true, "rules": list})
}

fn dotted(a: [u8; 4]) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}

/// One port of the hybrid path, as Neutron's iptables driver names and guards it.
#[derive(Debug, Clone)]
pub struct IptablesPort {
    /// The VM's tap (here: the host end of its veth pair), what physdev matches.
    pub tap: String,
    /// The qbr end of its veth pair to the integration bridge.
    pub qvb: String,
    /// Short id used in chain names.
    pub id: String,
    /// The VM's MAC.
    pub mac: String,
    /// The VM's address.
    pub ip: String,
    /// Conntrack zone (Neutron's per-network zone).
    pub zone: u16,
}

/// `iptables-restore` input in the shape of Neutron's iptables firewall driver (hybrid plug):
/// physdev dispatch from FORWARD, per-port ingress (`i`), egress (`o`) and anti-spoofing (`s`)
/// chains with RELATED,ESTABLISHED first, DHCP rules, INVALID drop and a fallback drop, plus the
/// raw table's per-port conntrack zones.
pub fn iptables(ports: &[IptablesPort], rules: &[Rule]) -> String {
    let p = "neutron-openvswi";
    let mut filter = vec![
        "*filter".to_string(),
        format!(":{p}-FORWARD - [0:0]"),
        format!(":{p}-sg-chain - [0:0]"),
        format!(":{p}-sg-fallback - [0:0]"),
        format!("-A FORWARD -j {p}-FORWARD"),
        format!("-A {p}-sg-fallback -j DROP"),
    ];
    let mut raw = vec!["*raw".to_string(), format!(":{p}-PREROUTING - [0:0]")];
    raw.push(format!("-A PREROUTING -j {p}-PREROUTING"));
    for port in ports {
        let (i, o, s) = (
            format!("{p}-i{}", port.id),
            format!("{p}-o{}", port.id),
            format!("{p}-s{}", port.id),
        );
        let tap = &port.tap;
        filter.extend([
            format!(":{i} - [0:0]"),
            format!(":{o} - [0:0]"),
            format!(":{s} - [0:0]"),
        ]);
        for dir in ["out", "in"] {
            filter.push(format!(
                "-A {p}-FORWARD -m physdev --physdev-{dir} {tap} --physdev-is-bridged -j {p}-sg-chain"
            ));
        }
        filter.push(format!(
            "-A {p}-sg-chain -m physdev --physdev-out {tap} --physdev-is-bridged -j {i}"
        ));
        filter.push(format!(
            "-A {p}-sg-chain -m physdev --physdev-in {tap} --physdev-is-bridged -j {o}"
        ));
        filter.push(format!(
            "-A {i} -m state --state RELATED,ESTABLISHED -j RETURN"
        ));
        filter.push(format!(
            "-A {i} -d {}/32 -p udp -m udp --sport 67 --dport 68 -j RETURN",
            port.ip
        ));
        for r in rules {
            filter.push(format!("-A {i} {} -j RETURN", iptables_match(r)));
        }
        filter.push(format!("-A {i} -m state --state INVALID -j DROP"));
        filter.push(format!("-A {i} -j {p}-sg-fallback"));
        filter.push(format!(
            "-A {o} -s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 -j RETURN"
        ));
        filter.push(format!("-A {o} -j {s}"));
        filter.push(format!(
            "-A {o} -p udp -m udp --sport 68 --dport 67 -j RETURN"
        ));
        filter.push(format!(
            "-A {o} -p udp -m udp --sport 67 --dport 68 -j DROP"
        ));
        filter.push(format!(
            "-A {o} -m state --state RELATED,ESTABLISHED -j RETURN"
        ));
        filter.push(format!("-A {o} -j RETURN"));
        filter.push(format!("-A {o} -m state --state INVALID -j DROP"));
        filter.push(format!("-A {o} -j {p}-sg-fallback"));
        filter.push(format!(
            "-A {s} -s {}/32 -m mac --mac-source {} -j RETURN",
            port.ip, port.mac
        ));
        filter.push(format!("-A {s} -j DROP"));
        for dev in [tap, &port.qvb] {
            raw.push(format!(
                "-A {p}-PREROUTING -m physdev --physdev-in {dev} -j CT --zone {}",
                port.zone
            ));
        }
    }
    filter.push(format!("-A {p}-sg-chain -j ACCEPT"));
    filter.push("COMMIT".into());
    raw.push("COMMIT".into());
    raw.extend(filter);
    raw.join("\n") + "\n"
}

fn iptables_match(r: &Rule) -> String {
    let mut m = match r.remote {
        Some(a) => format!("-s {}/32 ", dotted(a)),
        None => String::new(),
    };
    m.push_str(&format!("-p {}", r.protocol));
    if let Some((lo, hi)) = r.ports {
        let range = if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}:{hi}")
        };
        m.push_str(&format!(" -m {0} --dport {range}", r.protocol));
    }
    m
}

/// One port of the Open vSwitch bridge.
#[derive(Debug, Clone)]
pub struct OvsPort {
    /// OpenFlow port number.
    pub ofport: u16,
    /// The VM's MAC.
    pub mac: String,
    /// The VM's address.
    pub ip: String,
}

/// OpenFlow rules in the shape of Neutron's openvswitch firewall driver: port and zone into
/// registers (table 0), anti-spoofing (71), egress conntrack and rules (72), the L2 lookup of
/// the destination (73), ingress conntrack (81) and rules (82), with established traffic
/// accepted, invalid dropped, and new connections committed. ARP goes to the normal pipeline.
pub fn openflow(ports: &[OvsPort], rules: &[Rule], zone: u16) -> String {
    let ct = |next: u8| format!("ct(table={next},zone=NXM_NX_REG6[0..15])");
    let commit = "ct(commit,zone=NXM_NX_REG6[0..15])";
    let mut f = vec![
        "table=0,priority=110,arp,actions=NORMAL".to_string(),
        "table=0,priority=0,actions=drop".to_string(),
        "table=71,priority=0,actions=drop".to_string(),
        "table=72,priority=90,ct_state=+inv+trk,actions=drop".to_string(),
        "table=72,priority=0,actions=drop".to_string(),
        "table=73,priority=0,actions=drop".to_string(),
        "table=82,priority=90,ct_state=+inv+trk,actions=drop".to_string(),
        "table=82,priority=0,actions=drop".to_string(),
    ];
    for p in ports {
        let n = p.ofport;
        f.push(format!(
            "table=0,priority=100,in_port={n},actions=load:{n}->NXM_NX_REG5[],load:{zone}->NXM_NX_REG6[],resubmit(,71)"
        ));
        f.push(format!(
            "table=71,priority=65,ip,reg5={n},dl_src={},nw_src={},actions={}",
            p.mac,
            p.ip,
            ct(72)
        ));
        f.push(format!(
            "table=72,priority=77,ct_state=+est-rel-rpl,ip,reg5={n},actions=resubmit(,73)"
        ));
        f.push(format!(
            "table=72,priority=77,ct_state=+est-rel+rpl,ip,reg5={n},actions=resubmit(,73)"
        ));
        f.push(format!(
            "table=72,priority=70,ct_state=+new-est,ip,reg5={n},actions={commit},resubmit(,73)"
        ));
        f.push(format!(
            "table=73,priority=100,dl_dst={},actions=load:{n}->NXM_NX_REG7[],resubmit(,81)",
            p.mac
        ));
        f.push(format!(
            "table=81,priority=90,ip,reg7={n},actions={}",
            ct(82)
        ));
        f.push(format!(
            "table=82,priority=77,ct_state=+est-rel-rpl,ip,reg7={n},actions=output:{n}"
        ));
        f.push(format!(
            "table=82,priority=77,ct_state=+est-rel+rpl,ip,reg7={n},actions=output:{n}"
        ));
        for r in rules {
            for m in openflow_matches(r) {
                f.push(format!(
                    "table=82,priority=70,ct_state=+new-est,{m},reg7={n},actions={commit},output:{n}"
                ));
            }
        }
    }
    f.join("\n") + "\n"
}

/// The matches of one rule: a port range becomes prefix-aligned port/mask pairs, as Neutron
/// does.
fn openflow_matches(r: &Rule) -> Vec<String> {
    let remote = r
        .remote
        .map_or(String::new(), |a| format!(",nw_src={}", dotted(a)));
    let Some((lo, hi)) = r.ports else {
        return vec![format!("{}{remote}", r.protocol)];
    };
    let mut out = Vec::new();
    let (mut at, hi) = (u32::from(lo), u32::from(hi));
    while at <= hi {
        let mut size = 1u32;
        while at % (size * 2) == 0 && at + size * 2 - 1 <= hi {
            size *= 2;
        }
        let mask = 0xffff & !(size - 1);
        out.push(format!("{},tp_dst={at}/{mask:#06x}{remote}", r.protocol));
        at += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_range_becomes_aligned_masks() {
        let r = Rule {
            protocol: "udp",
            ports: Some((10_000, 10_015)),
            remote: None,
        };
        assert_eq!(openflow_matches(&r), vec!["udp,tp_dst=10000/0xfff0"]);
        let r = Rule {
            ports: Some((9, 12)),
            ..r
        };
        assert_eq!(
            openflow_matches(&r),
            vec![
                "udp,tp_dst=9/0xffff",
                "udp,tp_dst=10/0xfffe",
                "udp,tp_dst=12/0xffff"
            ]
        );
    }

    #[test]
    fn rule_counts_include_the_allowing_rules() {
        assert_eq!(ingress(0).len(), ALLOW.len());
        assert_eq!(ingress(10_000).len(), 10_000);
        assert_eq!(ingress(10_000).last(), ALLOW.last());
    }
}
