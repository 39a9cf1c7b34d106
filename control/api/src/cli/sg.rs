//! `brinkctl sg ...`: security groups and their rules.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{decode, external_id, list_text, pairs_text, recheck_text, table};
use crate::call::{Call, NoParams};
use crate::client::ClientError;
use crate::types::{
    Ethertype, RuleDirection, RuleSpec, SgAdd, SgImport, SgInfo, SgMemberSet, SgName, SgRuleAdd,
    SgRuleDel, SgRuleInfo,
};

/// `sg` subcommands.
#[derive(Debug, Subcommand)]
pub enum SgCmd {
    /// Create a security group (stateful unless `--stateless`).
    Add {
        /// Group name.
        name: String,
        /// Judge every packet and track nothing (Neutron `stateful=False`).
        #[arg(long)]
        stateless: bool,
        /// An orchestrator's label, KEY=VALUE (e.g. `neutron-id=<group id>`); repeat for
        /// several.
        #[arg(long = "external-id", value_parser = external_id)]
        external_ids: Vec<(String, String)>,
    },
    /// Delete a group no port uses.
    Del {
        /// Group name.
        name: String,
    },
    /// List groups.
    List,
    /// Show a group's rules with their hit counts.
    Show {
        /// Group name.
        name: String,
    },
    /// Add or remove rules.
    #[command(subcommand)]
    Rule(RuleCmd),
    /// Set the group's members on other hosts.
    #[command(subcommand)]
    Member(MemberCmd),
    /// Import groups from the JSON `openstack security group show -f json` prints (one group
    /// or a list).
    Import {
        /// The JSON file.
        file: PathBuf,
    },
}

/// `sg rule` subcommands.
#[derive(Debug, Subcommand)]
pub enum RuleCmd {
    /// Add a rule; prints its id.
    Add(RuleAddArgs),
    /// Remove a rule; connections only it allowed are cut.
    Del {
        /// Group name.
        group: String,
        /// Rule id.
        id: u32,
    },
}

/// `sg member` subcommands.
#[derive(Debug, Subcommand)]
pub enum MemberCmd {
    /// Replace the group's explicit members: the addresses, besides those of its local ports,
    /// that remote-group rules naming it match (Neutron's `security_group_member_updated`).
    /// None clears them; connections no rule allows any more are cut.
    Set {
        /// Group name.
        group: String,
        /// Member IP addresses or CIDRs.
        members: Vec<String>,
    },
}

/// Arguments of `sg rule add`.
#[derive(Debug, Args)]
pub struct RuleAddArgs {
    /// Group name.
    pub group: String,
    /// ingress (into the VM) or egress (out of it).
    #[arg(long, value_parser = ["ingress", "egress"])]
    pub direction: String,
    /// IPv4 or IPv6.
    #[arg(long, default_value = "IPv4", value_parser = ["IPv4", "IPv6"])]
    pub ethertype: String,
    /// Protocol name (tcp, udp, icmp, icmpv6, sctp, ...) or number; any if absent.
    #[arg(long)]
    pub protocol: Option<String>,
    /// One destination port.
    #[arg(long, conflicts_with_all = ["port_min", "port_max", "icmp_type", "icmp_code"])]
    pub port: Option<u16>,
    /// Lowest destination port.
    #[arg(long, requires = "port_max", conflicts_with_all = ["icmp_type", "icmp_code"])]
    pub port_min: Option<u16>,
    /// Highest destination port.
    #[arg(long, requires = "port_min")]
    pub port_max: Option<u16>,
    /// ICMP type.
    #[arg(long)]
    pub icmp_type: Option<u16>,
    /// ICMP code (needs `--icmp-type`).
    #[arg(long)]
    pub icmp_code: Option<u16>,
    /// Remote prefix (CIDR).
    #[arg(long, conflicts_with = "remote_group")]
    pub remote_ip: Option<String>,
    /// Remote group: the addresses of its ports.
    #[arg(long)]
    pub remote_group: Option<String>,
}

/// The call an `sg` command makes.
pub fn call(cmd: &SgCmd) -> Result<Call, ClientError> {
    Ok(match cmd {
        SgCmd::Add {
            name,
            stateless,
            external_ids,
        } => Call::SgAdd(SgAdd {
            name: name.clone(),
            stateless: *stateless,
            external_ids: external_ids.iter().cloned().collect(),
        }),
        SgCmd::Member(MemberCmd::Set { group, members }) => Call::SgMemberSet(SgMemberSet {
            group: group.clone(),
            members: members.clone(),
        }),
        SgCmd::Del { name } => Call::SgDel(SgName { name: name.clone() }),
        SgCmd::List => Call::SgList(NoParams {}),
        SgCmd::Show { name } => Call::SgShow(SgName { name: name.clone() }),
        SgCmd::Rule(RuleCmd::Add(a)) => Call::SgRuleAdd(SgRuleAdd {
            group: a.group.clone(),
            rule: rule_spec(a),
        }),
        SgCmd::Rule(RuleCmd::Del { group, id }) => Call::SgRuleDel(SgRuleDel {
            group: group.clone(),
            id: *id,
        }),
        SgCmd::Import { file } => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| ClientError::Usage(format!("cannot read {}: {e}", file.display())))?;
            let groups: Value = serde_json::from_str(&text)
                .map_err(|e| ClientError::Usage(format!("{} is not JSON: {e}", file.display())))?;
            Call::SgImport(SgImport { groups })
        }
    })
}

fn rule_spec(a: &RuleAddArgs) -> RuleSpec {
    let (port_min, port_max) = match (a.port, a.icmp_type.is_some() || a.icmp_code.is_some()) {
        (Some(p), _) => (Some(p), Some(p)),
        (None, true) => (a.icmp_type, a.icmp_code),
        (None, false) => (a.port_min, a.port_max),
    };
    RuleSpec {
        direction: if a.direction == "ingress" {
            RuleDirection::Ingress
        } else {
            RuleDirection::Egress
        },
        ethertype: if a.ethertype == "IPv6" {
            Ethertype::IPv6
        } else {
            Ethertype::IPv4
        },
        protocol: a.protocol.clone(),
        port_min,
        port_max,
        remote_ip: a.remote_ip.clone(),
        remote_group: a.remote_group.clone(),
    }
}

/// One line per rule: what it matches, in `sg show` and after `sg rule add`.
fn rule_row(r: &SgRuleInfo) -> Vec<String> {
    let s = &r.rule;
    let ports = match (s.port_min, s.port_max) {
        (None, None) => "any".to_string(),
        (Some(lo), Some(hi)) if lo == hi => lo.to_string(),
        (Some(lo), Some(hi)) => format!("{lo}-{hi}"),
        (Some(lo), None) => format!("{lo}/any"),
        (None, Some(hi)) => format!("any/{hi}"),
    };
    let remote = match (&s.remote_ip, &s.remote_group) {
        (Some(ip), _) => ip.clone(),
        (None, Some(g)) => format!("group {g}"),
        (None, None) => "any".into(),
    };
    vec![
        r.id.to_string(),
        format!("{:?}", s.direction).to_lowercase(),
        format!("{:?}", s.ethertype),
        s.protocol.clone().unwrap_or_else(|| "any".into()),
        ports,
        remote,
        r.hits.to_string(),
    ]
}

/// Formats the result of an `sg` command for people.
pub fn render(cmd: &SgCmd, result: Value) -> Result<String, ClientError> {
    Ok(match cmd {
        SgCmd::Add { .. } => String::new(),
        SgCmd::Del { .. }
        | SgCmd::Rule(RuleCmd::Del { .. })
        | SgCmd::Member(MemberCmd::Set { .. }) => recheck_text(&decode(result)?),
        SgCmd::List => {
            let groups: Vec<SgInfo> = decode(result)?;
            table(
                &["GROUP", "STATEFUL", "RULES", "PORTS"],
                groups
                    .iter()
                    .map(|g| {
                        vec![
                            g.name.clone(),
                            g.stateful.to_string(),
                            g.rules.len().to_string(),
                            g.ports.join(","),
                        ]
                    })
                    .collect(),
            )
        }
        SgCmd::Show { .. } => {
            let g: SgInfo = decode(result)?;
            let state = if g.stateful { "stateful" } else { "stateless" };
            format!(
                "group {} ({state}), ports: {}, members: {}, external ids: {}\n{}",
                g.name,
                list_text(&g.ports),
                list_text(&g.members),
                pairs_text(&g.external_ids),
                table(
                    &[
                        "ID",
                        "DIRECTION",
                        "ETHERTYPE",
                        "PROTOCOL",
                        "PORTS",
                        "REMOTE",
                        "HITS"
                    ],
                    g.rules.iter().map(rule_row).collect(),
                )
            )
        }
        SgCmd::Rule(RuleCmd::Add(_)) => {
            let r: SgRuleInfo = decode(result)?;
            r.id.to_string()
        }
        SgCmd::Import { .. } => {
            let groups: Vec<SgInfo> = decode(result)?;
            groups
                .iter()
                .map(|g| format!("imported group {} ({} rules)", g.name, g.rules.len()))
                .collect::<Vec<_>>()
                .join("\n")
        }
    })
}
