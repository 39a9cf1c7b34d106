//! The whole service on in-memory ports: calls in, frames through the real workers, state on
//! disk, and ports whose interface is missing at restart kept down until it appears.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use brink_api::call::Call;
use brink_api::protocol::{code, RpcError};
use brink_api::types::{ExternalIds, NetworkAdd, NetworkInfo, PortAdd, PortFilter, PortInfo};
use brink_control::host::Memory;
use brink_control::service::Service;
use brink_control::store::Store;
use brink_dataplane::port::memory::MemLink;
use serde_json::{json, Value};

fn service(host: &Memory, state_dir: Option<&PathBuf>) -> Service<Memory> {
    let store = state_dir.map(|d| Store::open(d).unwrap());
    Service::new(common::switch(), host.clone(), common::CT_MAX as u64, store)
}

fn port(name: &str, iface: &str, mac: &str) -> PortAdd {
    PortAdd {
        mac: Some(mac.into()),
        conntrack: false,
        port_security: false,
        ..PortAdd::new(name, iface, "blue")
    }
}

const MAC1: &str = "02:00:00:00:00:01";
const MAC2: &str = "02:00:00:00:00:02";

/// An Ethernet frame from MAC1 to MAC2 (a local experimental EtherType) carrying `tag`.
fn frame(tag: u8) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x88, 0xb5];
    f.extend_from_slice(&[tag; 50]);
    f
}

/// Sends a frame in on `from` and waits up to a second for it on `to`.
fn delivered(from: &MemLink, to: &MemLink, tag: u8) -> bool {
    from.send(frame(tag)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if let Some(f) = to.recv() {
            return f == frame(tag);
        }
        sleep(Duration::from_millis(2));
    }
    false
}

fn ports(s: &mut Service<Memory>) -> Vec<PortInfo> {
    ports_with(s, ExternalIds::new())
}

/// The ports that carry all of `external_ids`.
fn ports_with(s: &mut Service<Memory>, external_ids: ExternalIds) -> Vec<PortInfo> {
    let list = s.handle(Call::PortList(PortFilter { external_ids }));
    serde_json::from_value(list.unwrap()).unwrap()
}

fn blue(s: &mut Service<Memory>) {
    let add = Call::NetworkAdd(NetworkAdd {
        external_ids: Default::default(),
        name: "blue".into(),
        mtu: None,
        segment: None,
        arp_responder: false,
    });
    assert_eq!(s.handle(add).unwrap(), Value::Null);
}

#[test]
fn calls_configure_ports_that_forward_frames() {
    let host = Memory::default();
    let (l1, l2) = (host.plug("mem1"), host.plug("mem2"));
    let mut s = service(&host, None);
    blue(&mut s);
    s.handle(Call::PortAdd(port("vm1", "mem1", MAC1))).unwrap();
    s.handle(Call::PortAdd(port("vm2", "mem2", MAC2))).unwrap();
    let missing = s.handle(Call::PortAdd(port("vm3", "mem3", "02:00:00:00:00:03")));
    assert_eq!(
        missing.unwrap_err().code,
        code::NOT_FOUND,
        "no such interface"
    );
    assert!(delivered(&l1, &l2, 1), "vm1 -> vm2");
    let list = ports(&mut s);
    assert_eq!(list.len(), 2);
    assert!(list
        .iter()
        .all(|p| p.mode == "memory" && p.reason.is_none()));
    s.handle(Call::PortDel(brink_api::types::PortName {
        name: "vm2".into(),
    }))
    .unwrap();
    assert!(!delivered(&l1, &l2, 2), "a removed port gets nothing");
}

#[test]
fn an_agent_finds_its_port_by_external_id_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("brk-svc-ids-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let host = Memory::default();
    host.plug("mem1");
    host.plug("mem2");
    let uuid = "5b9cfd3c-0a1e-4f4b-9d6e-1c2f3a4b5c6d";
    let id = |k: &str, v: &str| ExternalIds::from([(k.to_string(), v.to_string())]);
    {
        let mut s = service(&host, Some(&dir));
        blue(&mut s);
        let mut vm1 = port(uuid, "mem1", MAC1);
        vm1.external_ids = id("iface-id", uuid);
        s.handle(Call::PortAdd(vm1)).unwrap();
        let mut vm2 = port("vm2", "mem2", MAC2);
        vm2.external_ids = id("iface-id", "other");
        s.handle(Call::PortAdd(vm2)).unwrap();
        let net = |name: &str, external_ids| {
            Call::NetworkAdd(NetworkAdd {
                external_ids,
                name: name.into(),
                mtu: None,
                segment: None,
                arp_responder: false,
            })
        };
        s.handle(net(uuid, id("neutron-id", uuid))).unwrap();
        let e = s.handle(net("bad", id("", "x"))).unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAMS, "{e:?}");
        let mut bad = port("vm3", "mem3", "02:00:00:00:00:03");
        bad.external_ids = id("k", "line\nbreak");
        let e = s.handle(Call::PortAdd(bad)).unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAMS, "{e:?}");
    }
    let mut s = service(&host, Some(&dir));
    s.restore(Store::open(&dir).unwrap().load().unwrap())
        .unwrap();
    let found = ports_with(&mut s, id("iface-id", uuid));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].name, uuid, "a UUID is a name");
    assert_eq!(found[0].external_ids, id("iface-id", uuid));
    assert!(ports_with(&mut s, id("iface-id", "none")).is_empty());
    assert_eq!(ports(&mut s).len(), 2);
    let nets: Vec<NetworkInfo> =
        serde_json::from_value(s.handle(Call::NetworkList(Default::default())).unwrap()).unwrap();
    let names: Vec<&str> = nets.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, [uuid, "blue"], "the refused network was not made");
    assert_eq!(nets[0].external_ids, id("neutron-id", uuid));
    assert!(nets[1].external_ids.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_port_whose_interface_is_missing_at_restart_is_kept_down_and_comes_back() {
    let dir = std::env::temp_dir().join(format!("brk-svc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let host = Memory::default();
    let l1 = host.plug("mem1");
    {
        host.plug("mem2");
        let mut s = service(&host, Some(&dir));
        blue(&mut s);
        s.handle(Call::PortAdd(port("vm1", "mem1", MAC1))).unwrap();
        s.handle(Call::PortAdd(port("vm2", "mem2", MAC2))).unwrap();
    }
    let saved = std::fs::read_to_string(dir.join("state.json")).unwrap();
    // Restart on a host where vm2's interface has not appeared yet.
    host.unplug("mem2");
    let mut s = service(&host, Some(&dir));
    s.restore(Store::open(&dir).unwrap().load().unwrap())
        .unwrap();
    let list = ports(&mut s);
    let vm2 = list.iter().find(|p| p.name == "vm2").unwrap();
    assert_eq!(vm2.mode, "down");
    assert!(
        vm2.reason.as_deref().unwrap().contains("does not exist"),
        "{vm2:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("state.json")).unwrap(),
        saved,
        "the state file still has the port"
    );
    assert_eq!(s.retry_down_ports(), 0, "still missing");
    let l2 = host.plug("mem2");
    assert_eq!(s.retry_down_ports(), 1);
    assert!(ports(&mut s)
        .iter()
        .all(|p| p.mode == "memory" && p.reason.is_none()));
    assert!(delivered(&l1, &l2, 3), "the port forwards once it is up");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Serves `method` with `params` (JSON).
fn call(s: &mut Service<Memory>, method: &str, params: Value) -> Result<Value, RpcError> {
    s.handle(Call::decode(method, params).unwrap())
}

#[test]
fn a_change_that_cannot_be_saved_fails_and_is_undone() {
    let dir = std::env::temp_dir().join(format!("brk-svs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let host = Memory::default();
    let (l1, l2) = (host.plug("mem1"), host.plug("mem2"));
    let mut s = service(&host, Some(&dir));
    blue(&mut s);
    s.handle(Call::PortAdd(port("vm1", "mem1", MAC1))).unwrap();
    call(&mut s, "sg.add", json!({"name": "web"})).unwrap();
    call(&mut s, "network.add", json!({"name": "green"})).unwrap();
    let shown = |s: &mut Service<Memory>| -> [Value; 4] {
        [
            call(s, "network.list", Value::Null).unwrap(),
            call(s, "port.list", Value::Null).unwrap(),
            call(s, "sg.show", json!({"name": "web"})).unwrap(),
            call(s, "ct.policy.show", json!({"network": "blue"})).unwrap(),
        ]
    };
    let before = shown(&mut s);

    // The state directory becomes unwritable: a file now stands where it was.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"").unwrap();
    let changes = [
        ("network.add", json!({"name": "red"})),
        ("network.del", json!({"name": "green"})),
        (
            "port.add",
            serde_json::to_value(port("vm2", "mem2", MAC2)).unwrap(),
        ),
        ("port.del", json!({"name": "vm1"})),
        (
            "port.set",
            json!({"name": "vm1", "port_security": true, "security_groups": ["web"]}),
        ),
        ("sg.add", json!({"name": "db"})),
        ("sg.del", json!({"name": "web"})),
        (
            "sg.rule.add",
            json!({"group": "web", "rule": {"direction": "ingress"}}),
        ),
        ("ct.policy.set", json!({"network": "blue", "limit": 10})),
    ];
    for (method, params) in changes {
        let err = call(&mut s, method, params).unwrap_err();
        assert_eq!(err.code, code::NOT_SAVED, "{method}: {err:?}");
        assert!(err.message.contains("state.json"), "{method}: {err:?}");
        assert_eq!(shown(&mut s), before, "{method} changed something");
    }
    assert!(!delivered(&l2, &l1, 1), "the unsaved vm2 was opened");

    // Writable again: the same changes go through (vm2's interface was let go).
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    s.handle(Call::PortAdd(port("vm2", "mem2", MAC2))).unwrap();
    assert!(delivered(&l1, &l2, 3), "vm1 still forwards, to the new vm2");
    call(&mut s, "network.add", json!({"name": "red"})).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn remote_macs_are_static_entries_on_the_uplink_that_learning_never_moves_and_are_saved() {
    let dir = std::env::temp_dir().join(format!("brk-svt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let host = Memory::default();
    host.plug("ul0");
    let (l1, vx) = (host.plug("mem1"), host.plug("brvx1001"));
    let call = |s: &mut Service<Memory>, method: &str, params: Value| {
        s.handle(Call::decode(method, params).unwrap())
    };
    {
        let mut s = service(&host, Some(&dir));
        let tunnel = serde_json::json!({"local_ip": "192.0.2.1", "dev": "ul0"});
        call(&mut s, "tunnel.set", tunnel).unwrap();
        let blue = serde_json::json!({"name": "blue", "segment": {"type": "vxlan", "vni": 1001}});
        call(&mut s, "network.add", blue).unwrap();
        s.handle(Call::PortAdd(port("vm1", "mem1", MAC1))).unwrap();
        let peer = serde_json::json!({"network": "blue", "ip": "192.0.2.2"});
        call(&mut s, "network.peer.add", peer).unwrap();
        let remote = serde_json::json!({"network": "blue", "mac": MAC2, "remote": "192.0.2.2"});
        call(&mut s, "fdb.add", remote).unwrap();
        let own = serde_json::json!({"network": "blue", "mac": MAC1, "remote": "192.0.2.2"});
        let err = call(&mut s, "fdb.add", own).unwrap_err();
        assert_eq!(err.code, code::IN_USE, "a local port's MAC: {err:?}");
        let uplink = serde_json::json!({"name": "blue.uplink"});
        assert_eq!(
            call(&mut s, "port.del", uplink).unwrap_err().code,
            code::IN_USE
        );

        assert!(
            delivered(&l1, &vx, 1),
            "vm1 -> the remote MAC, through the uplink"
        );
        // vm1 (no port security) sends from the remote MAC: learning does not move it.
        let mut spoofed = frame(2);
        spoofed[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        spoofed[0..6].copy_from_slice(&[0xff; 6]);
        l1.send(spoofed).unwrap();
        sleep(Duration::from_millis(50));
        while vx.recv().is_some() {}
        assert!(delivered(&l1, &vx, 3), "still through the uplink");
    }
    // Saved with the rest: a restarted service has the tunnel, flood list and remote entry.
    let mut s = service(&host, Some(&dir));
    s.restore(Store::open(&dir).unwrap().load().unwrap())
        .unwrap();
    let fdb = call(&mut s, "fdb.show", Value::Null).unwrap();
    let remote = fdb
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mac"] == MAC2)
        .cloned()
        .unwrap();
    assert_eq!(remote["port"], "blue.uplink");
    assert_eq!(remote["remote"], "192.0.2.2");
    assert!(remote["age_secs"].is_null(), "static: {remote}");
    let nets = call(&mut s, "network.list", Value::Null).unwrap();
    assert_eq!(nets[0]["peers"], serde_json::json!(["192.0.2.2"]));
    assert_eq!(nets[0]["segment"]["vni"], 1001);
    assert!(delivered(&l1, &vx, 4), "after the restart");
    let del = serde_json::json!({"network": "blue", "mac": MAC2});
    call(&mut s, "fdb.del", del.clone()).unwrap();
    assert_eq!(
        call(&mut s, "fdb.del", del).unwrap_err().code,
        code::NOT_FOUND
    );
    // The network goes with its uplink.
    s.handle(Call::PortDel(brink_api::types::PortName {
        name: "vm1".into(),
    }))
    .unwrap();
    call(&mut s, "network.del", serde_json::json!({"name": "blue"})).unwrap();
    assert!(ports(&mut s).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
