//! `brink-bench compare` smoke: one short run of every scenario against brink and the Linux
//! bridge floor, checking that frames were generated, delivered and counted (never how fast).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use brink_bench::compare::scenario::{Metrics, Scenario, Settings};
use brink_bench::compare::{Rig, System};

fn quick() -> Settings {
    Settings {
        runs: 1,
        seconds: 1.0,
        switch_core: 1,
        generator_core: 0,
        new_connections: 5_000,
        pings: 10,
        latency_rate: 2_000.0,
    }
}

fn get(m: &Metrics, name: &str) -> f64 {
    m.iter()
        .find(|p| p.0 == name)
        .unwrap_or_else(|| panic!("no {name} in {m:?}"))
        .1
}

/// Runs every scenario once on `system` and checks what each counted.
fn smoke(system: System, tag: &str) {
    let s = quick();
    let rig = Rig::new(tag).unwrap();
    let sw = system.start(&rig, 10, s.switch_core).unwrap();
    brink_bench::traffic::ping(rig.sender(), rig.receiver(), 3).unwrap();
    for scenario in Scenario::ALL {
        let m = scenario
            .run_once(&s, &rig, sw.as_ref())
            .unwrap_or_else(|e| panic!("{system:?} {scenario:?}: {e}"));
        let positive = |name: &str| {
            let v = get(&m, name);
            assert!(v > 0.0, "{system:?} {scenario:?}: {name} = {v}");
        };
        match scenario {
            Scenario::Udp1Flow | Scenario::Udp1000Flows => {
                positive("sent Mpps");
                positive("delivered Mpps");
                if system == System::Brink {
                    positive("switch core ns/frame");
                }
            }
            Scenario::NewConnections => {
                positive("offered k/s");
                positive("delivered k/s");
                if system == System::Brink {
                    positive("tracked after");
                }
            }
            Scenario::TcpOffloads | Scenario::TcpChecksumOff => positive("Gbit/s"),
            Scenario::Latency => {
                positive("p50 us");
                assert!(get(&m, "loss %") < 100.0, "{m:?}");
            }
            Scenario::Ping => {
                positive("p50 us");
                assert_eq!(get(&m, "lost"), 0.0, "{m:?}");
            }
            Scenario::Ceiling => unreachable!("not in Scenario::ALL"),
        }
    }
}

#[test]
fn every_scenario_counts_through_brink() {
    smoke(System::Brink, "cqb");
}

#[test]
fn every_scenario_counts_through_the_floor() {
    smoke(System::Floor, "cqf");
}

#[test]
fn the_generator_ceiling_counts_frames_into_a_bare_veth() {
    let rig = Rig::new("cqc").unwrap();
    let m = Scenario::Ceiling
        .run_once(&quick(), &rig, &brink_bench::compare::floor::Nothing)
        .unwrap();
    assert!(get(&m, "Mpps") > 0.0, "{m:?}");
}
