//! Fuzzes the security-group rule compiler: the input, read as JSON, is a list of rule requests
//! for one group (and, as a whole, an `sg import` document). Whatever it holds, validation
//! refuses or accepts each rule without panicking, an import is taken whole or not at all, and
//! every rule the compiled sets match is one that was accepted.

#![no_main]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use brink_api::types::RuleSpec;
use brink_conntrack::Addr;
use brink_control::sg::{self, Members, SecurityGroups};
use brink_dataplane::acl::Prefix;
use serde_json::Value;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let mut groups = SecurityGroups::default();
    let Ok(()) = groups.add_group("g", true, &BTreeMap::new()) else {
        return;
    };
    for spec in doc.as_array().into_iter().flatten() {
        if let Ok(spec) = serde_json::from_value::<RuleSpec>(spec.clone()) {
            let _ = groups.add_rule("g", &spec, None);
        }
    }
    let accepted: Vec<u32> = groups
        .group("g")
        .map(|g| g.rules.iter().map(|r| r.id).collect())
        .unwrap_or_default();
    let members = Members::from([("g".to_string(), vec![Prefix::host(Addr::v4([10, 0, 7, 7]))])]);
    let names = ["g".to_string()];
    for (ingress, v6) in [(false, false), (true, false), (false, true), (true, true)] {
        let set = groups.compile(&names, ingress, v6, &members);
        for (i, &b) in data.iter().take(64).enumerate() {
            let remote = Addr::from(IpAddr::V4(Ipv4Addr::new(10, 0, b % 8, b)));
            let (proto, port) = (b, u16::from(b) << 8 | i as u16);
            if let Some(hit) = set.lookup(proto, port, remote) {
                assert!(
                    accepted.contains(&hit.id),
                    "rule {} was not accepted",
                    hit.id
                );
            }
        }
    }
    if let Ok(records) = sg::import(&doc) {
        let before = groups.records().len();
        let after = match groups.add_records(&records) {
            Ok(()) => before + records.len(),
            Err(_) => before,
        };
        assert_eq!(groups.records().len(), after, "an import is all or nothing");
    }
});
