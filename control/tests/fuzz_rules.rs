//! The rule compiler fuzzed on every test run: random rule requests (valid and not: protocols,
//! port ranges, ICMP types, prefixes, remote groups) and random `sg import` documents go through
//! validation into compiled rule sets. Nothing may panic; a compiled set only ever answers with
//! a rule validation accepted, and an import is taken whole or not at all. (That compiled sets
//! agree with a linear scan is `dataplane/tests/acl.rs`'s property.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use brink_api::types::RuleSpec;
use brink_conntrack::Addr;
use brink_control::sg::{self, Members, SecurityGroups};
use brink_dataplane::acl::Prefix;
use proptest::prelude::*;
use serde_json::{json, Value};

fn text() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("tcp".to_string())),
        Just(Some("udp".to_string())),
        Just(Some("icmp".to_string())),
        Just(Some("6".to_string())),
        Just(Some("300".to_string())),
        "[a-z0-9./:-]{0,12}".prop_map(Some),
    ]
}

fn prefix() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        (0u8..=255, 0u8..=40).prop_map(|(b, len)| Some(format!("10.0.{b}.0/{len}"))),
        (0u8..=255, 0u8..=130).prop_map(|(b, len)| Some(format!("fd00::{b:x}/{len}"))),
        "[0-9a-f.:/]{0,20}".prop_map(Some),
    ]
}

fn spec() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("ingress"), Just("egress"), Just("sideways")],
        prop_oneof![Just("IPv4"), Just("IPv6"), Just("IPv5")],
        text(),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u16>()),
        prefix(),
        prop_oneof![Just(None), Just(Some("g")), Just(Some("nope"))],
    )
        .prop_map(
            |(direction, ethertype, protocol, lo, hi, remote_ip, remote_group)| {
                json!({
                    "direction": direction, "ethertype": ethertype, "protocol": protocol,
                    "port_min": lo, "port_max": hi, "remote_ip": remote_ip,
                    "remote_group": remote_group,
                })
            },
        )
}

/// What a group's member port addresses might be.
fn members() -> Members {
    let mut m = BTreeMap::new();
    m.insert("g".to_string(), vec![Prefix::host(Addr::v4([10, 0, 7, 7]))]);
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn random_rules_validate_and_compile(
        specs in proptest::collection::vec(spec(), 1..12),
        probes in proptest::collection::vec((any::<u8>(), any::<u16>(), any::<u8>()), 32),
    ) {
        let mut groups = SecurityGroups::default();
        groups.add_group("g", true, &BTreeMap::new()).unwrap();
        for s in &specs {
            if let Ok(spec) = serde_json::from_value::<RuleSpec>(s.clone()) {
                // Refused or accepted, never a panic.
                let _ = groups.add_rule("g", &spec, None);
            }
        }
        let accepted: Vec<u32> = groups.group("g").unwrap().rules.iter().map(|r| r.id).collect();
        let names = ["g".to_string()];
        for (ingress, v6) in [(false, false), (true, false), (false, true), (true, true)] {
            let set = groups.compile(&names, ingress, v6, &members());
            for &(proto, port, b) in &probes {
                let remote = Addr::from(IpAddr::V4(Ipv4Addr::new(10, 0, b % 8, b)));
                if let Some(hit) = set.lookup(proto, port, remote) {
                    prop_assert!(accepted.contains(&hit.id), "{} not accepted", hit.id);
                }
            }
        }
    }

    #[test]
    fn random_import_documents_are_refused_or_taken_whole(
        names in proptest::collection::vec("[a-z]{0,3}", 0..4),
        rules in proptest::collection::vec(spec(), 0..6),
        shape in 0u8..3,
    ) {
        let group = |name: &String| json!({"name": name, "id": name, "stateful": true,
            "rules": rules.iter().map(|r| {
                let mut r = r.clone();
                r["remote_ip_prefix"] = r["remote_ip"].clone();
                r
            }).collect::<Vec<_>>()});
        let doc = match shape {
            0 => Value::Array(names.iter().map(group).collect()),
            1 => names.first().map_or(json!({}), group),
            _ => json!(names),
        };
        let mut groups = SecurityGroups::default();
        if let Ok(records) = sg::import(&doc) {
            let before = groups.records().len();
            match groups.add_records(&records) {
                Ok(()) => prop_assert_eq!(groups.records().len(), before + records.len()),
                Err(_) => prop_assert_eq!(groups.records().len(), before, "all or nothing"),
            }
        }
    }
}
