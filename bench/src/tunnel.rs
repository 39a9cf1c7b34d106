//! The tunnel benchmark: 64-byte UDP from a VM on one host to a VM on another through VXLAN,
//! next to the same traffic switched on one host, and TCP through the tunnel. Hosts are
//! namespaces on a wire ([`crate::hosts`]); every switch and all kernel work runs on the switch
//! core, the generator on the other.

use std::time::Duration;

use crate::compare::brink::worker_busy_ns;
use crate::daemon::Daemon;
use crate::hosts::Hosts;
use crate::scenario::{generate, variant, RunResult, ScenarioConfig, Variant};
use crate::topo::Vm;
use crate::traffic::{iperf3, rx_packets};
use crate::BenchError;

/// The VMs of the benchmark: on brink host 0, `a` and `a2`; on brink host 1, `b`; on Linux
/// hosts 2 and 3 (VXLAN device and bridge), `c` and `d`; on Open vSwitch hosts 4 and 5
/// (userspace datapath), `e` and `f`.
struct Rig {
    hosts: Hosts,
    a: Vm,
    a2: Vm,
    b: Vm,
    c: Vm,
    d: Vm,
    e: Vm,
    f: Vm,
}

fn rig(cfg: &ScenarioConfig) -> Result<Rig, BenchError> {
    let mut hosts = Hosts::new("btu")?;
    let core = cfg.switch_core.to_string();
    for h in 0..2 {
        // Both brinkds share the switch core; idle polls sleep so the idle one yields it.
        hosts.add_brink_host(h, &["--cores", &core, "--idle-sleep"])?;
        let add = ["network", "add", "blue", "--vxlan", "1001", "--mtu"];
        hosts
            .daemon(h)?
            .ctl_ok(&[&add[..], &[hosts.inner_mtu()]].concat())?;
    }
    for h in 2..4 {
        hosts.add_linux_host(h, 1001)?;
    }
    for h in 4..6 {
        hosts.add_ovs_host(h, Some(cfg.switch_core))?;
    }
    let a = hosts.add_brink_vm(0, 1, "10.88.0.1", "blue")?;
    let a2 = hosts.add_brink_vm(0, 2, "10.88.0.2", "blue")?;
    let b = hosts.add_brink_vm(1, 3, "10.88.0.3", "blue")?;
    let c = hosts.add_linux_vm(2, 4, "10.88.0.4")?;
    let d = hosts.add_linux_vm(3, 5, "10.88.0.5")?;
    let e = hosts.add_ovs_vm(4, 6, "10.88.0.6")?;
    let f = hosts.add_ovs_vm(5, 7, "10.88.0.7")?;
    hosts.brink_remote(0, "blue", 1, &b)?;
    hosts.brink_remote(0, "blue", 2, &c)?;
    hosts.brink_remote(0, "blue", 4, &e)?;
    hosts.brink_remote(1, "blue", 0, &a)?;
    hosts.linux_remote(2, 0, &a)?;
    hosts.linux_remote(2, 3, &d)?;
    hosts.linux_remote(3, 2, &c)?;
    // As Neutron's OVS agent sets it up: a VXLAN port per remote host.
    for (h, to) in [(4, 0), (4, 5), (5, 4)] {
        hosts.ovs_remote(h, to, 1001)?;
    }
    Ok(Rig {
        hosts,
        a,
        a2,
        b,
        c,
        d,
        e,
        f,
    })
}

/// Runs `cfg.runs` one-way runs from `from` to `to`, with `daemons` the brinkds on the path.
fn runs(
    cfg: &ScenarioConfig,
    from: &Vm,
    to: &Vm,
    daemons: &[&Daemon],
) -> Result<Vec<RunResult>, BenchError> {
    let busy = || -> Result<u64, BenchError> { daemons.iter().map(|d| worker_busy_ns(d)).sum() };
    // ARP, the first flood and learning settle first.
    let _ = from.exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", &to.ip]);
    let mut out = Vec::new();
    for _ in 0..cfg.runs {
        let (rx0, busy0) = (rx_packets(Some(&to.netns), "eth0")?, busy()?);
        let (sent, seconds) = generate(cfg, from, to)?;
        std::thread::sleep(Duration::from_millis(100));
        let (rx1, busy1) = (rx_packets(Some(&to.netns), "eth0")?, busy()?);
        out.push(RunResult::new(sent, rx1 - rx0, seconds, busy1 - busy0));
    }
    Ok(out)
}

/// One-way UDP on one brink host, between two brink hosts, from brink to Linux, between two
/// Linux hosts, from brink to Open vSwitch and between two Open vSwitch hosts; then TCP
/// (iperf3) through the brink-to-brink tunnel: (variants, bit/s, retransmits).
pub fn udp_tunnel(cfg: &ScenarioConfig) -> Result<(Vec<Variant>, f64, f64), BenchError> {
    let r = rig(cfg)?;
    let (d0, d1) = (r.hosts.daemon(0)?, r.hosts.daemon(1)?);
    let variants = vec![
        variant("one brink host (no tunnel)", runs(cfg, &r.a, &r.a2, &[d0])?),
        variant("brink -> VXLAN -> brink", runs(cfg, &r.a, &r.b, &[d0, d1])?),
        variant(
            "brink -> VXLAN -> Linux bridge",
            runs(cfg, &r.a, &r.c, &[d0])?,
        ),
        variant(
            "Linux bridge -> VXLAN -> Linux bridge",
            runs(cfg, &r.c, &r.d, &[])?,
        ),
        variant(
            "brink -> VXLAN -> Open vSwitch (userspace)",
            runs(cfg, &r.a, &r.e, &[d0])?,
        ),
        variant(
            "Open vSwitch -> VXLAN -> Open vSwitch (userspace)",
            runs(cfg, &r.e, &r.f, &[])?,
        ),
    ];
    let (bps, retransmits) = iperf3(cfg.generator_core, &r.a, &r.b, cfg.seconds)?;
    Ok((variants, bps, retransmits))
}
