//! The host tools the comparison needs, installed with apt when missing.

use std::process::Command;

/// (program, the Debian package that has it).
pub const NEEDED: [(&str, &str); 7] = [
    ("iperf3", "iperf3"),
    ("ethtool", "ethtool"),
    ("iptables-restore", "iptables"),
    ("conntrack", "conntrack"),
    ("ovs-vswitchd", "openvswitch-switch"),
    ("trafgen", "netsniff-ng"),
    ("ping", "iputils-ping"),
];

/// True if `program` is on the PATH.
pub fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs the packages of the [`NEEDED`] programs that are missing; returns what is still
/// missing afterwards, with apt's complaint.
pub fn ensure() -> Vec<String> {
    ensure_all(&NEEDED)
}

/// [`ensure`] for the programs of `needed` (names on the PATH, or absolute paths).
pub fn ensure_all(needed: &[(&str, &str)]) -> Vec<String> {
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(program, _)| !installed(program))
        .map(|&(_, package)| package)
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    // Where a package starts its own service (openvswitch-switch), that instance is left
    // alone: the harness runs OVS with a database and run directory of its own.
    let out = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output();
    let complaint = match out {
        Ok(o) if o.status.success() => String::new(),
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    needed
        .iter()
        .filter(|(program, _)| !installed(program))
        .map(|(program, package)| format!("{program} (package {package}): {complaint}"))
        .collect()
}
