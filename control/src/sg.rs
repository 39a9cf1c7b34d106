//! Security groups: the model (groups and their rules, validated like Neutron does) and the
//! compiler that turns a port's groups into the dataplane's [`PortFilter`](brink_dataplane::acl::PortFilter).
//!
//! Pure data apart from the hit counters, which the dataplane increments: nothing here touches
//! the kernel.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use brink_api::types::{
    Ethertype, ExternalIds, RuleDirection, RuleSpec, SgInfo, SgRecord, SgRuleInfo,
};
use brink_conntrack::key::proto;
use brink_dataplane::acl::{Prefix, Rule, RuleSet};
use brink_dataplane::counters::RuleHits;
use serde_json::Value;

use crate::name::{self, BadExternalIds, BadName};
use crate::protocols;

/// Why a security-group change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SgError {
    /// A bad group name.
    #[error(transparent)]
    BadName(#[from] BadName),
    /// Bad external ids.
    #[error(transparent)]
    BadExternalIds(#[from] BadExternalIds),
    /// A member that is not an address or CIDR.
    #[error("bad member {0:?}: expected an IP address or CIDR like 10.0.0.5 or fd00::/64")]
    BadMember(String),
    /// The name is taken.
    #[error("security group {0:?} already exists")]
    Exists(String),
    /// No such group.
    #[error("no security group named {0:?}")]
    NoGroup(String),
    /// Ports still use the group.
    #[error("security group {name:?} is used by ports: {ports}")]
    InUse {
        /// Group.
        name: String,
        /// Its ports, comma-separated.
        ports: String,
    },
    /// Another group's rule names the group as its remote group.
    #[error("security group {name:?} is the remote group of rule {rule} in group {by:?}")]
    Referenced {
        /// Group.
        name: String,
        /// The referring group.
        by: String,
        /// The referring rule.
        rule: u32,
    },
    /// Unknown protocol.
    #[error("bad protocol {0:?}: use a name ({names}), a number 0-255, or any", names = protocols::names())]
    BadProtocol(String),
    /// A port range on a protocol without ports.
    #[error("a port range needs protocol tcp, udp, sctp, udplite or dccp (or icmp/icmpv6 for type and code)")]
    PortsNeedProtocol,
    /// Port range reversed or zero.
    #[error("bad port range {min}-{max}: ports are 1-65535, lowest first")]
    BadPortRange {
        /// Lowest.
        min: u16,
        /// Highest.
        max: u16,
    },
    /// Only the top of a range.
    #[error("port_max without port_min")]
    MaxWithoutMin,
    /// An ICMP code without a type.
    #[error("an ICMP code needs an ICMP type")]
    IcmpCodeWithoutType,
    /// ICMP type or code above 255.
    #[error("bad ICMP {what} {value}: 0-255")]
    IcmpValue {
        /// "type" or "code".
        what: &'static str,
        /// The value.
        value: u16,
    },
    /// ICMPv6 in an IPv4 rule (or ICMP numbers of the wrong family).
    #[error("protocol {0} does not go with ethertype {1}")]
    Family(String, &'static str),
    /// Not a CIDR.
    #[error("bad remote IP prefix {0:?}: expected a CIDR like 10.0.0.0/24 or fd00::/64")]
    BadRemoteIp(String),
    /// Prefix of the other IP version.
    #[error("remote IP prefix {0} is not {1}")]
    RemoteFamily(String, &'static str),
    /// Both remote kinds.
    #[error("give remote_ip or remote_group, not both")]
    RemoteBoth,
    /// The same rule exists.
    #[error("rule duplicates rule {id} of security group {group:?}")]
    Duplicate {
        /// Group.
        group: String,
        /// The existing rule.
        id: u32,
    },
    /// No such rule.
    #[error("security group {group:?} has no rule {id}")]
    NoRule {
        /// Group.
        group: String,
        /// Rule id.
        id: u32,
    },
    /// A port's groups mix stateful and stateless.
    #[error("a port's groups must be all stateful or all stateless: {0}")]
    MixedStateful(String),
    /// Unusable import JSON.
    #[error("import: {0}")]
    Import(String),
    /// Port security without a MAC to check against.
    #[error("port security is on, so the port needs its VM's MAC (--mac), or --port-security off")]
    NeedsMac,
    /// Groups or address pairs on a port without port security.
    #[error(
        "port security is off: a port without it takes no security groups or allowed address pairs"
    )]
    SecurityOff,
    /// A malformed allowed address pair.
    #[error("bad allowed address pair {0:?}: use IP[/LEN][,MAC]")]
    BadPair(String),
    /// Not an EtherType.
    #[error("bad EtherType {0:#06x}: EtherTypes start at 0x0600")]
    BadEthertype(u16),
}

/// Where a rule's remote end may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// Anywhere.
    Any,
    /// Inside this prefix.
    Prefix(Prefix),
    /// At an address of a port of this group.
    Group(String),
}

/// A rule, validated and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRule {
    /// Ingress (else egress).
    pub ingress: bool,
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// Protocol, `None` for any.
    pub proto: Option<u8>,
    /// Rule-port range: destination ports or ICMP `type << 8 | code`.
    pub ports: (u16, u16),
    /// Remote end.
    pub remote: Remote,
}

/// A rule in a group.
#[derive(Debug, Clone)]
pub struct RuleRecord {
    /// Id, unique across groups.
    pub id: u32,
    /// The rule, normalized.
    pub spec: RuleSpec,
    /// The rule, parsed.
    pub parsed: ParsedRule,
    /// Connections (packets if stateless) admitted.
    pub hits: Arc<RuleHits>,
}

/// A security group.
#[derive(Debug, Clone)]
pub struct Group {
    /// Stateful.
    pub stateful: bool,
    /// Rules, in the order they were added.
    pub rules: Vec<RuleRecord>,
    /// Explicit members (on other hosts), sorted: remote-group rules naming the group match
    /// them besides the addresses of its local ports.
    pub members: Vec<Prefix>,
    /// The orchestrator's labels.
    pub external_ids: ExternalIds,
}

/// Each group's member addresses, by group name.
pub type Members = BTreeMap<String, Vec<Prefix>>;

/// Every security group, by name.
#[derive(Debug, Clone, Default)]
pub struct SecurityGroups {
    groups: BTreeMap<String, Group>,
    next_id: u32,
}

fn family(v6: bool) -> &'static str {
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// Validates and normalizes `spec`; remote groups are checked by the caller.
pub fn parse_rule(spec: &RuleSpec) -> Result<(RuleSpec, ParsedRule), SgError> {
    let v6 = spec.ethertype == Ethertype::IPv6;
    let proto = match spec.protocol.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(p) if p.eq_ignore_ascii_case("any") => None,
        Some(p) => {
            let n = protocols::number(p).ok_or_else(|| SgError::BadProtocol(p.into()))?;
            // Neutron takes "icmp" in an IPv6 rule to mean ICMPv6.
            let n = if v6 && n == proto::ICMP {
                proto::ICMPV6
            } else {
                n
            };
            if !v6 && n == proto::ICMPV6 {
                return Err(SgError::Family(p.into(), family(v6)));
            }
            Some(n)
        }
    };
    let icmp = matches!(proto, Some(proto::ICMP | proto::ICMPV6));
    let ports = match (spec.port_min, spec.port_max) {
        (None, None) => (0, u16::MAX),
        _ if icmp => icmp_range(spec.port_min, spec.port_max)?,
        _ if !proto.is_some_and(protocols::has_ports) => return Err(SgError::PortsNeedProtocol),
        (None, Some(_)) => return Err(SgError::MaxWithoutMin),
        (Some(min), max) => {
            let max = max.unwrap_or(min);
            if min == 0 || min > max {
                return Err(SgError::BadPortRange { min, max });
            }
            (min, max)
        }
    };
    let (remote, remote_ip) = match (&spec.remote_ip, &spec.remote_group) {
        (Some(_), Some(_)) => return Err(SgError::RemoteBoth),
        (Some(ip), None) => {
            let prefix = parse_cidr(ip)?;
            let is_v6 = ip.contains(':');
            if is_v6 != v6 {
                return Err(SgError::RemoteFamily(ip.clone(), family(v6)));
            }
            let shown = prefix.to_string();
            let remote = if prefix.raw_len() == if v6 { 0 } else { 96 } {
                Remote::Any
            } else {
                Remote::Prefix(prefix)
            };
            (remote, Some(shown))
        }
        (None, Some(g)) => (Remote::Group(g.clone()), None),
        (None, None) => (Remote::Any, None),
    };
    let normalized = RuleSpec {
        protocol: proto.map(protocols::proto_name),
        port_min: spec.port_min,
        port_max: if icmp || spec.port_min.is_none() {
            spec.port_max
        } else {
            Some(ports.1)
        },
        remote_ip,
        ..spec.clone()
    };
    Ok((
        normalized,
        ParsedRule {
            ingress: spec.direction == RuleDirection::Ingress,
            v6,
            proto,
            ports,
            remote,
        },
    ))
}

/// ICMP type and code (Neutron's port_range_min and port_range_max) as a rule-port range.
fn icmp_range(kind: Option<u16>, code: Option<u16>) -> Result<(u16, u16), SgError> {
    let check = |what, value: u16| {
        if value > 255 {
            Err(SgError::IcmpValue { what, value })
        } else {
            Ok(value)
        }
    };
    match (kind, code) {
        (None, Some(_)) => Err(SgError::IcmpCodeWithoutType),
        (Some(t), None) => {
            let t = check("type", t)?;
            Ok((t << 8, t << 8 | 0xff))
        }
        (Some(t), Some(c)) => {
            let (t, c) = (check("type", t)?, check("code", c)?);
            Ok((t << 8 | c, t << 8 | c))
        }
        (None, None) => Ok((0, u16::MAX)),
    }
}

/// A CIDR (or a bare address, as a host prefix), host bits cleared.
pub fn parse_cidr(s: &str) -> Result<Prefix, SgError> {
    let bad = || SgError::BadRemoteIp(s.into());
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, Some(len.parse::<u8>().map_err(|_| bad())?)),
        None => (s, None),
    };
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let len = len.unwrap_or(if ip.is_ipv4() { 32 } else { 128 });
    Prefix::new(ip, len).map_err(|_| bad())
}

impl SecurityGroups {
    /// Creates an empty group.
    pub fn add_group(
        &mut self,
        name: &str,
        stateful: bool,
        external_ids: &ExternalIds,
    ) -> Result<(), SgError> {
        name::check(name)?;
        name::check_external_ids(external_ids)?;
        if self.groups.contains_key(name) {
            return Err(SgError::Exists(name.into()));
        }
        self.groups.insert(
            name.into(),
            Group {
                stateful,
                rules: Vec::new(),
                members: Vec::new(),
                external_ids: external_ids.clone(),
            },
        );
        Ok(())
    }

    /// Replaces the explicit members of `group` with `members` (addresses or CIDRs).
    pub fn set_members(&mut self, group: &str, members: &[String]) -> Result<(), SgError> {
        let mut parsed = members
            .iter()
            .map(|m| parse_cidr(m.trim()).map_err(|_| SgError::BadMember(m.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        parsed.sort_unstable();
        parsed.dedup();
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| SgError::NoGroup(group.into()))?;
        g.members = parsed;
        Ok(())
    }

    /// Every group's explicit members, by group name.
    pub fn explicit_members(&self) -> impl Iterator<Item = (&str, &[Prefix])> {
        self.groups
            .iter()
            .map(|(name, g)| (name.as_str(), g.members.as_slice()))
    }

    /// Deletes a group that `ports` (its users) is empty for and no other group refers to.
    pub fn del_group(&mut self, name: &str, ports: &[String]) -> Result<(), SgError> {
        self.group(name)?;
        if !ports.is_empty() {
            return Err(SgError::InUse {
                name: name.into(),
                ports: ports.join(","),
            });
        }
        for (by, g) in &self.groups {
            for r in &g.rules {
                if by != name && r.parsed.remote == Remote::Group(name.into()) {
                    return Err(SgError::Referenced {
                        name: name.into(),
                        by: by.clone(),
                        rule: r.id,
                    });
                }
            }
        }
        self.groups.remove(name);
        Ok(())
    }

    /// Group `name`.
    pub fn group(&self, name: &str) -> Result<&Group, SgError> {
        self.groups
            .get(name)
            .ok_or_else(|| SgError::NoGroup(name.into()))
    }

    /// Adds a rule to `group`, with id `id` if given (restoring) or a new one; returns it.
    pub fn add_rule(
        &mut self,
        group: &str,
        spec: &RuleSpec,
        id: Option<u32>,
    ) -> Result<RuleRecord, SgError> {
        let (spec, parsed) = parse_rule(spec)?;
        if let Remote::Group(g) = &parsed.remote {
            if g != group {
                self.group(g)?;
            }
        }
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| SgError::NoGroup(group.into()))?;
        if let Some(dup) = g.rules.iter().find(|r| r.parsed == parsed) {
            return Err(SgError::Duplicate {
                group: group.into(),
                id: dup.id,
            });
        }
        let id = id.unwrap_or(self.next_id.max(1));
        self.next_id = self.next_id.max(id.saturating_add(1));
        let record = RuleRecord {
            id,
            spec,
            parsed,
            hits: Arc::default(),
        };
        g.rules.push(record.clone());
        Ok(record)
    }

    /// Removes rule `id` from `group`.
    pub fn del_rule(&mut self, group: &str, id: u32) -> Result<(), SgError> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| SgError::NoGroup(group.into()))?;
        let before = g.rules.len();
        g.rules.retain(|r| r.id != id);
        if g.rules.len() == before {
            return Err(SgError::NoRule {
                group: group.into(),
                id,
            });
        }
        Ok(())
    }

    /// Checks that `names` exist and are all stateful or all stateless; returns whether they
    /// are stateful (true for none).
    pub fn check_port_groups(&self, names: &[String]) -> Result<bool, SgError> {
        let mut stateful = Vec::new();
        for n in names {
            stateful.push(self.group(n)?.stateful);
        }
        if stateful.windows(2).any(|w| w[0] != w[1]) {
            return Err(SgError::MixedStateful(names.join(",")));
        }
        Ok(stateful.first().copied().unwrap_or(true))
    }

    /// Every group for `sg.list`, with the ports using each (`users`).
    pub fn infos(&self, users: impl Fn(&str) -> Vec<String>) -> Vec<SgInfo> {
        self.groups
            .iter()
            .map(|(name, g)| info(name, g, users(name)))
            .collect()
    }

    /// What to save.
    pub fn records(&self) -> Vec<SgRecord> {
        self.groups
            .iter()
            .map(|(name, g)| SgRecord {
                name: name.clone(),
                stateful: g.stateful,
                rules: g.rules.iter().map(|r| (r.id, r.spec.clone())).collect(),
                members: g.members.iter().map(Prefix::to_string).collect(),
                external_ids: g.external_ids.clone(),
            })
            .collect()
    }

    /// Adds saved or imported groups, all or none: groups first, then rules, so rules may name
    /// any of the groups as remote group.
    pub fn add_records(&mut self, records: &[SgRecord]) -> Result<(), SgError> {
        let mut next = self.clone();
        for r in records {
            next.add_group(&r.name, r.stateful, &r.external_ids)?;
            next.set_members(&r.name, &r.members)?;
        }
        for r in records {
            for (id, spec) in &r.rules {
                next.add_rule(&r.name, spec, (*id != 0).then_some(*id))?;
            }
        }
        *self = next;
        Ok(())
    }

    /// Compiles the rules of `groups` for one port, direction (`ingress`) and IP version;
    /// `members` gives each group's member addresses for remote-group rules.
    pub fn compile(
        &self,
        groups: &[String],
        ingress: bool,
        v6: bool,
        members: &Members,
    ) -> RuleSet {
        let rules: Vec<Rule> = groups
            .iter()
            .filter_map(|n| self.groups.get(n))
            .flat_map(|g| &g.rules)
            .filter(|r| r.parsed.ingress == ingress && r.parsed.v6 == v6)
            .map(|r| Rule {
                id: r.id,
                proto: r.parsed.proto,
                ports: r.parsed.ports,
                remotes: match &r.parsed.remote {
                    Remote::Any => vec![Prefix::ANY],
                    Remote::Prefix(p) => vec![*p],
                    Remote::Group(g) => members.get(g).cloned().unwrap_or_default(),
                },
                hits: Arc::clone(&r.hits),
            })
            .collect();
        RuleSet::compile(&rules)
    }
}

/// A rule for `sg.show` and `sg.rule.add`, with its hit count.
pub fn rule_info(r: &RuleRecord) -> SgRuleInfo {
    SgRuleInfo {
        id: r.id,
        rule: r.spec.clone(),
        hits: r.hits.get(),
    }
}

/// A group for `sg.show`.
pub fn info(name: &str, g: &Group, ports: Vec<String>) -> SgInfo {
    SgInfo {
        name: name.into(),
        stateful: g.stateful,
        rules: g.rules.iter().map(rule_info).collect(),
        ports,
        members: g.members.iter().map(Prefix::to_string).collect(),
        external_ids: g.external_ids.clone(),
    }
}

/// Reads what `openstack security group show -f json` prints (one group, or a list of them)
/// into records with fresh ids. Remote groups are given by id there; they must be among the
/// imported groups.
pub fn import(json: &Value) -> Result<Vec<SgRecord>, SgError> {
    let items: Vec<&Value> = match json {
        Value::Array(a) => a.iter().collect(),
        v @ Value::Object(_) => vec![v],
        _ => {
            return Err(SgError::Import(
                "expected a group object or a list of them".into(),
            ))
        }
    };
    let str_field = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let mut names_by_id = BTreeMap::new();
    for item in &items {
        let name = str_field(item, "name")
            .ok_or_else(|| SgError::Import("a group has no \"name\"".into()))?;
        if let Some(id) = str_field(item, "id") {
            names_by_id.insert(id, name);
        }
    }
    let mut out = Vec::new();
    for item in items {
        let name = str_field(item, "name").unwrap_or_default();
        let rules = match item.get("rules") {
            Some(Value::Array(r)) => r.as_slice(),
            None | Some(Value::Null) => &[],
            Some(_) => {
                return Err(SgError::Import(format!(
                    "group {name:?}: \"rules\" is not a list (use a recent openstack client with -f json)"
                )))
            }
        };
        let mut specs = Vec::new();
        for r in rules {
            specs.push((0, import_rule(&name, r, &names_by_id)?));
        }
        // The Neutron id stays findable on the group, as OVSDB rows carry it.
        let external_ids = str_field(item, "id")
            .map(|id| ExternalIds::from([("neutron-id".to_string(), id)]))
            .unwrap_or_default();
        out.push(SgRecord {
            stateful: item
                .get("stateful")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            name,
            rules: specs,
            members: Vec::new(),
            external_ids,
        });
    }
    Ok(out)
}

fn import_rule(
    group: &str,
    r: &Value,
    names_by_id: &BTreeMap<String, String>,
) -> Result<RuleSpec, SgError> {
    let err = |what: String| SgError::Import(format!("group {group:?}: {what}"));
    let text = |key: &str| r.get(key).and_then(Value::as_str).map(str::to_string);
    let port = |key: &str| -> Result<Option<u16>, SgError> {
        match r.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| err(format!("bad {key} {v}"))),
        }
    };
    let direction = match text("direction").as_deref() {
        Some("ingress") => RuleDirection::Ingress,
        Some("egress") => RuleDirection::Egress,
        other => return Err(err(format!("bad direction {other:?}"))),
    };
    let ethertype = match text("ethertype").as_deref() {
        Some("IPv4") | None => Ethertype::IPv4,
        Some("IPv6") => Ethertype::IPv6,
        Some(other) => return Err(err(format!("bad ethertype {other:?}"))),
    };
    if r.get("remote_address_group_id")
        .is_some_and(|v| !v.is_null())
    {
        return Err(err("remote address groups are not supported".into()));
    }
    let remote_group = match text("remote_group_id") {
        None => None,
        Some(id) => Some(names_by_id.get(&id).cloned().ok_or_else(|| {
            err(format!(
                "remote group {id} is not among the imported groups"
            ))
        })?),
    };
    let protocol = match r.get("protocol") {
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => text("protocol"),
    };
    Ok(RuleSpec {
        direction,
        ethertype,
        protocol,
        port_min: port("port_range_min")?,
        port_max: port("port_range_max")?,
        remote_ip: text("remote_ip_prefix"),
        remote_group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(direction: RuleDirection) -> RuleSpec {
        RuleSpec {
            direction,
            ethertype: Ethertype::IPv4,
            protocol: None,
            port_min: None,
            port_max: None,
            remote_ip: None,
            remote_group: None,
        }
    }

    fn tcp(port: u16) -> RuleSpec {
        RuleSpec {
            protocol: Some("TCP".into()),
            port_min: Some(port),
            ..spec(RuleDirection::Ingress)
        }
    }

    #[test]
    fn rules_are_validated_like_neutron() {
        let cases: Vec<(RuleSpec, &str)> = vec![
            (
                RuleSpec {
                    port_min: Some(80),
                    ..spec(RuleDirection::Ingress)
                },
                "needs protocol",
            ),
            (
                RuleSpec {
                    port_max: Some(10),
                    ..tcp(20)
                },
                "bad port range 20-10",
            ),
            (tcp(0), "bad port range"),
            (
                RuleSpec {
                    protocol: Some("icmp".into()),
                    port_max: Some(0),
                    ..spec(RuleDirection::Ingress)
                },
                "ICMP code needs an ICMP type",
            ),
            (
                RuleSpec {
                    protocol: Some("icmp".into()),
                    port_min: Some(300),
                    ..spec(RuleDirection::Ingress)
                },
                "bad ICMP type 300",
            ),
            (
                RuleSpec {
                    protocol: Some("bogus".into()),
                    ..spec(RuleDirection::Ingress)
                },
                "bad protocol",
            ),
            (
                RuleSpec {
                    remote_ip: Some("10.0.0.0/33".into()),
                    ..spec(RuleDirection::Ingress)
                },
                "bad remote IP prefix",
            ),
            (
                RuleSpec {
                    remote_ip: Some("fd00::/64".into()),
                    ..spec(RuleDirection::Ingress)
                },
                "is not IPv4",
            ),
            (
                RuleSpec {
                    remote_ip: Some("10.0.0.0/8".into()),
                    remote_group: Some("x".into()),
                    ..spec(RuleDirection::Ingress)
                },
                "not both",
            ),
            (
                RuleSpec {
                    protocol: Some("icmpv6".into()),
                    ..spec(RuleDirection::Ingress)
                },
                "does not go with ethertype IPv4",
            ),
        ];
        for (s, want) in cases {
            let err = parse_rule(&s).unwrap_err().to_string();
            assert!(err.contains(want), "{s:?}: {err}");
        }
    }

    #[test]
    fn rules_are_normalized_and_duplicates_rejected() {
        let mut sgs = SecurityGroups::default();
        sgs.add_group("web", true, &ExternalIds::new()).unwrap();
        let r = sgs.add_rule("web", &tcp(80), None).unwrap();
        assert_eq!(r.spec.protocol.as_deref(), Some("tcp"));
        assert_eq!((r.spec.port_min, r.spec.port_max), (Some(80), Some(80)));
        assert_eq!(r.parsed.ports, (80, 80));
        let same = RuleSpec {
            protocol: Some("6".into()),
            port_max: Some(80),
            ..tcp(80)
        };
        assert_eq!(
            sgs.add_rule("web", &same, None).unwrap_err(),
            SgError::Duplicate {
                group: "web".into(),
                id: r.id
            }
        );
        let host = RuleSpec {
            remote_ip: Some("10.1.2.3/16".into()),
            ..tcp(443)
        };
        let r2 = sgs.add_rule("web", &host, None).unwrap();
        assert_eq!(r2.spec.remote_ip.as_deref(), Some("10.1.0.0/16"));
        assert!(r2.id > r.id);
        let icmp6 = RuleSpec {
            ethertype: Ethertype::IPv6,
            protocol: Some("icmp".into()),
            port_min: Some(128),
            ..spec(RuleDirection::Ingress)
        };
        let r3 = sgs.add_rule("web", &icmp6, None).unwrap();
        assert_eq!(r3.parsed.proto, Some(58));
        assert_eq!(r3.parsed.ports, (128 << 8, 128 << 8 | 255));
        assert!(matches!(
            sgs.add_rule("nope", &tcp(1), None),
            Err(SgError::NoGroup(_))
        ));
        let remote = RuleSpec {
            remote_group: Some("db".into()),
            ..tcp(5432)
        };
        assert_eq!(
            sgs.add_rule("web", &remote, None).unwrap_err(),
            SgError::NoGroup("db".into())
        );
        sgs.del_rule("web", r.id).unwrap();
        assert!(sgs.del_rule("web", r.id).is_err());
    }

    #[test]
    fn groups_in_use_or_referenced_are_not_deleted() {
        let mut sgs = SecurityGroups::default();
        sgs.add_group("a", true, &ExternalIds::new()).unwrap();
        sgs.add_group("b", true, &ExternalIds::new()).unwrap();
        sgs.add_group("c", false, &ExternalIds::new()).unwrap();
        let from_a = RuleSpec {
            remote_group: Some("a".into()),
            ..spec(RuleDirection::Ingress)
        };
        sgs.add_rule("b", &from_a, None).unwrap();
        assert!(matches!(
            sgs.del_group("a", &[]),
            Err(SgError::Referenced { .. })
        ));
        assert!(matches!(
            sgs.del_group("b", &["p1".into()]),
            Err(SgError::InUse { .. })
        ));
        assert!(matches!(
            sgs.check_port_groups(&["a".into(), "c".into()]),
            Err(SgError::MixedStateful(_))
        ));
        assert_eq!(sgs.check_port_groups(&["c".into()]), Ok(false));
        sgs.del_group("b", &[]).unwrap();
        sgs.del_group("a", &[]).unwrap();
    }

    #[test]
    fn openstack_json_imports_with_remote_groups_by_id() {
        let json: Value = serde_json::from_str(
            r#"[{"id": "g1", "name": "default", "stateful": true, "rules": [
                 {"direction": "egress", "ethertype": "IPv4", "protocol": null,
                  "port_range_min": null, "port_range_max": null,
                  "remote_ip_prefix": null, "remote_group_id": null, "id": "r1"},
                 {"direction": "ingress", "ethertype": "IPv6", "protocol": null,
                  "remote_group_id": "g1", "remote_ip_prefix": null, "id": "r2"}]},
                {"id": "g2", "name": "web", "rules": [
                 {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                  "port_range_min": 80, "port_range_max": 80,
                  "remote_ip_prefix": "0.0.0.0/0", "remote_group_id": null}]}]"#,
        )
        .unwrap();
        let records = import(&json).unwrap();
        let mut sgs = SecurityGroups::default();
        sgs.add_records(&records).unwrap();
        assert_eq!(sgs.group("default").unwrap().rules.len(), 2);
        let web = &sgs.group("web").unwrap().rules[0];
        assert_eq!(web.parsed.remote, Remote::Any);
        assert_eq!(web.parsed.ports, (80, 80));
        // Importing again changes nothing: the names exist.
        assert!(matches!(sgs.add_records(&records), Err(SgError::Exists(_))));
        assert_eq!(sgs.records().len(), 2);
        let bad: Value = serde_json::from_str(
            r#"{"name": "x", "rules": [{"direction": "ingress", "remote_group_id": "zz"}]}"#,
        )
        .unwrap();
        assert!(import(&bad).unwrap_err().to_string().contains("zz"));
    }
}
