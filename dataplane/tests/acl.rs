//! Security-group evaluation: the compiled rule set agrees with a linear scan, and port
//! security lets through exactly what Neutron's does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use brink_conntrack::Addr;
use brink_dataplane::acl::security::link_local;
use brink_dataplane::acl::{PortSecurity, Prefix, Rule, RuleSet};
use brink_dataplane::counters::DropReason;
use brink_dataplane::wire::arp::ArpSender;
use brink_dataplane::wire::ip::Flow;
use brink_dataplane::wire::{MacAddr, L3};
use proptest::prelude::*;

fn rule(id: u32, proto: Option<u8>, ports: (u16, u16), remotes: Vec<Prefix>) -> Rule {
    Rule {
        id,
        proto,
        ports,
        remotes,
        hits: Arc::default(),
    }
}

/// The first rule of `rules` matching, by a linear scan.
fn naive(rules: &[Rule], proto: u8, port: u16, remote: Addr) -> Option<u32> {
    rules
        .iter()
        .find(|r| r.matches(proto, port, remote))
        .map(|r| r.id)
}

/// Addresses 10.0.0.0/24 (small, so prefixes and packets collide often).
fn addr() -> impl Strategy<Value = Addr> {
    any::<u8>().prop_map(|b| Addr::v4([10, 0, 0, b]))
}

fn prefix() -> impl Strategy<Value = Prefix> {
    (addr(), prop_oneof![Just(0u8), 96u8..=128]).prop_map(|(a, len)| Prefix::raw(a, len))
}

/// Ports 0-40 and the full range, so ranges overlap, nest and touch.
fn ports() -> impl Strategy<Value = (u16, u16)> {
    prop_oneof![
        Just((0, u16::MAX)),
        (0u16..40).prop_map(|p| (p, p)),
        (0u16..40, 0u16..40).prop_map(|(a, b)| (a.min(b), a.max(b))),
        (30u16..40).prop_map(|p| (p, u16::MAX)),
    ]
}

fn rules() -> impl Strategy<Value = Vec<Rule>> {
    prop::collection::vec(
        (
            prop_oneof![Just(None), Just(Some(6u8)), Just(Some(17)), Just(Some(1))],
            ports(),
            prop::collection::vec(prefix(), 0..4),
        ),
        0..40,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (proto, ports, remotes))| rule(i as u32 + 1, proto, ports, remotes))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compiled_rules_agree_with_a_linear_scan(
        rules in rules(),
        packets in prop::collection::vec(
            (prop_oneof![Just(6u8), Just(17), Just(1), Just(47)], 0u16..45, addr()),
            1..20,
        ),
    ) {
        let set = RuleSet::compile(&rules);
        prop_assert_eq!(set.len(), rules.len());
        for (proto, port, remote) in packets {
            let compiled = set.lookup(proto, port, remote).map(|h| h.id);
            prop_assert_eq!(compiled, naive(&rules, proto, port, remote),
                "proto {} port {} remote {:?}", proto, port, remote.ip());
        }
    }
}

#[test]
fn an_empty_rule_set_denies_and_hits_are_counted_per_rule() {
    assert!(RuleSet::compile(&[])
        .lookup(6, 80, Addr::v4([1, 1, 1, 1]))
        .is_none());
    let web = rule(7, Some(6), (80, 80), vec![Prefix::ANY]);
    let hits = Arc::clone(&web.hits);
    let set = RuleSet::compile(&[web]);
    let hit = set.lookup(6, 80, Addr::v4([1, 1, 1, 1])).unwrap();
    assert_eq!(hit.id, 7);
    hit.count(0);
    hit.count(1);
    hit.count(1);
    assert_eq!(hits.get(), 3, "summed over the workers");
    assert!(set.lookup(17, 80, Addr::v4([1, 1, 1, 1])).is_none());
}

const VM_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const PAIR_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

fn vm() -> PortSecurity {
    PortSecurity::new(
        VM_MAC,
        &[
            Addr::v4([10, 0, 0, 1]),
            Addr::from("fd00::1".parse::<std::net::IpAddr>().unwrap()),
        ],
        &[
            (
                Prefix::new("192.168.5.0".parse().unwrap(), 24).unwrap(),
                None,
            ),
            (
                Prefix::new("10.0.0.100".parse().unwrap(), 32).unwrap(),
                Some(PAIR_MAC),
            ),
        ],
        &[0x88cc],
    )
}

fn ip4(src: [u8; 4], proto: u8, sport: u16, dport: u16) -> L3 {
    L3::Ip(Flow {
        v6: false,
        proto,
        src: Addr::v4(src),
        dst: Addr::v4([10, 0, 0, 2]),
        sport,
        dport,
        icmp: None,
        nd_target: None,
    })
}

fn icmp6(src: Addr, kind: u8, target: Option<Addr>) -> L3 {
    L3::Ip(Flow {
        v6: true,
        proto: 58,
        src,
        dst: Addr([0xff; 16]),
        sport: 0,
        dport: 0,
        icmp: Some((kind, 0)),
        nd_target: target,
    })
}

#[test]
fn port_security_checks_source_mac_and_ip_with_allowed_pairs() {
    let sec = vm();
    let check = |mac, l3: L3| sec.check(mac, 0x0800, &l3);
    assert_eq!(check(VM_MAC, ip4([10, 0, 0, 1], 6, 1, 80)), Ok(()));
    assert_eq!(check(VM_MAC, ip4([192, 168, 5, 77], 6, 1, 80)), Ok(()));
    assert_eq!(
        check(VM_MAC, ip4([10, 0, 0, 9], 6, 1, 80)),
        Err(DropReason::SpoofedIp)
    );
    // The pair's address only with the pair's MAC.
    assert_eq!(check(PAIR_MAC, ip4([10, 0, 0, 100], 6, 1, 80)), Ok(()));
    assert_eq!(
        check(VM_MAC, ip4([10, 0, 0, 100], 6, 1, 80)),
        Err(DropReason::SpoofedIp)
    );
    assert_eq!(
        check(MacAddr([2, 0, 0, 0, 0, 9]), ip4([10, 0, 0, 1], 6, 1, 80)),
        Err(DropReason::SpoofedMac)
    );
}

#[test]
fn port_security_allows_dhcp_clients_and_drops_servers_and_router_adverts() {
    let sec = vm();
    assert_eq!(sec.check(VM_MAC, 0x0800, &ip4([0; 4], 17, 68, 67)), Ok(()));
    assert_eq!(
        sec.check(VM_MAC, 0x0800, &ip4([0; 4], 17, 5000, 67)),
        Err(DropReason::SpoofedIp),
        "only DHCP may come from 0.0.0.0"
    );
    assert_eq!(
        sec.check(VM_MAC, 0x0800, &ip4([10, 0, 0, 1], 17, 67, 68)),
        Err(DropReason::DhcpServer)
    );
    let ll = link_local(VM_MAC);
    assert_eq!(
        sec.check(VM_MAC, 0x86dd, &icmp6(ll, 134, None)),
        Err(DropReason::RouterAdvert)
    );
    assert_eq!(sec.check(VM_MAC, 0x86dd, &icmp6(ll, 135, None)), Ok(()));
    assert_eq!(
        sec.check(VM_MAC, 0x86dd, &icmp6(Addr([0; 16]), 135, None)),
        Ok(()),
        "DAD"
    );
}

#[test]
fn port_security_checks_arp_senders_nd_targets_and_ethertypes() {
    let sec = vm();
    let arp = |mac, ip| L3::Arp(ArpSender { mac, ip });
    assert_eq!(
        sec.check(VM_MAC, 0x0806, &arp(VM_MAC, [10, 0, 0, 1])),
        Ok(())
    );
    assert_eq!(
        sec.check(VM_MAC, 0x0806, &arp(VM_MAC, [0; 4])),
        Ok(()),
        "ARP probe"
    );
    assert_eq!(
        sec.check(VM_MAC, 0x0806, &arp(VM_MAC, [10, 0, 0, 2])),
        Err(DropReason::SpoofedArp)
    );
    assert_eq!(
        sec.check(VM_MAC, 0x0806, &arp(PAIR_MAC, [10, 0, 0, 1])),
        Err(DropReason::SpoofedArp)
    );
    let mine: Addr = Addr::from("fd00::1".parse::<std::net::IpAddr>().unwrap());
    let other: Addr = Addr::from("fd00::2".parse::<std::net::IpAddr>().unwrap());
    let ll = link_local(VM_MAC);
    assert_eq!(
        sec.check(VM_MAC, 0x86dd, &icmp6(ll, 136, Some(mine))),
        Ok(())
    );
    assert_eq!(
        sec.check(VM_MAC, 0x86dd, &icmp6(ll, 136, Some(other))),
        Err(DropReason::SpoofedNd)
    );
    assert_eq!(sec.check(VM_MAC, 0x88cc, &L3::Other), Ok(()));
    assert_eq!(
        sec.check(VM_MAC, 0x8100, &L3::Other),
        Err(DropReason::EthertypeDenied)
    );
}
