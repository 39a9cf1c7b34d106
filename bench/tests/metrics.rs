//! Metrics as an operator scrapes them: `brinkctl metrics` and `brinkd --metrics-listen` give
//! the same Prometheus text, which parses, follows Prometheus naming and carries the traffic of
//! real pings. Needs root.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use common::*;
use prometheus_parse::{Scrape, Value};

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no {name} {labels:?}"));
    match s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        _ => panic!("{name} is not a number"),
    }
}

/// GET `path` from `addr`; returns the status line and the body.
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[test]
fn metrics_parse_carry_real_traffic_and_are_served_over_http() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let (_topo, d, vms) = rig(
        "met",
        &[(1, "10.0.66.1", "blue"), (2, "10.0.66.2", "blue")],
        &["--metrics-listen", &addr],
    );
    assert!(ping(&vms[0], &vms[1], 3));
    let text = d.ctl_ok(&["metrics"]).unwrap();
    let scrape = parse(&text);
    let vm1 = [("port", "vm1"), ("network", "blue")];
    assert!(
        value(&scrape, "brink_port_receive_packets_total", &vm1) >= 3.0,
        "{text}"
    );
    assert!(value(&scrape, "brink_port_transmit_packets_total", &vm1) >= 3.0);
    assert!(
        value(
            &scrape,
            "brink_worker_busy_seconds_total",
            &[("worker", "0")]
        ) > 0.0
    );
    assert!(value(&scrape, "brink_conntrack_inserts_total", &[]) >= 1.0);
    for s in &scrape.samples {
        assert!(s.metric.starts_with("brink_"), "{}", s.metric);
        for key in ["src", "dst", "sport", "dport"] {
            assert!(
                s.labels.get(key).is_none(),
                "per-connection label on {}",
                s.metric
            );
        }
    }

    let (status, body) = http_get(&addr, "/metrics");
    assert!(status.contains("200"), "{status}");
    let served = parse(&body);
    assert!(value(&served, "brink_port_receive_packets_total", &vm1) >= 3.0);
    let (status, _) = http_get(&addr, "/other");
    assert!(status.contains("404"), "{status}");
    drop(d);
}
