//! Fails the build, naming the package to install, when something libxdp's build needs is
//! missing: `pkg-config` and the libelf, zlib and libpcap development files, clang and llc (for
//! the XDP program), m4 and a C compiler.

use std::process::{Command, ExitCode, Stdio};

/// Whether `cmd args` runs and succeeds.
fn succeeds(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() -> ExitCode {
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_PATH");
    let mut missing: Vec<(&str, &str)> = Vec::new();
    let tools = [
        ("pkg-config", "pkg-config"),
        ("cc", "build-essential"),
        ("make", "build-essential"),
        ("m4", "m4"),
        ("clang", "clang"),
        ("llc", "llvm"),
    ];
    for (tool, package) in tools {
        if !succeeds(tool, &["--version"]) {
            missing.push((tool, package));
        }
    }
    let libs = [
        ("libelf", "libelf-dev"),
        ("zlib", "zlib1g-dev"),
        ("libpcap", "libpcap-dev"),
    ];
    for (lib, package) in libs {
        if !succeeds("pkg-config", &["--exists", lib]) {
            missing.push((lib, package));
        }
    }
    if missing.is_empty() {
        return ExitCode::SUCCESS;
    }
    let mut packages: Vec<&str> = missing.iter().map(|&(_, p)| p).collect();
    packages.dedup();
    for (what, package) in &missing {
        eprintln!("brink needs {what} to build libxdp: install the Debian package {package}");
    }
    eprintln!(
        "run `./scripts/deps` (installs everything brink needs), or: apt-get install {}",
        packages.join(" ")
    );
    ExitCode::FAILURE
}
