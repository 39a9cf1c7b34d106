//! brink's test bench: network namespaces with veth "VMs", a `brinkd` process under test, the
//! `brink-pktgen` traffic generator, and the `brink-bench` harness that runs scenarios.
//!
//! Everything here drives real processes and kernel objects, so it needs root. Names start with
//! `brk` and carry the process id, every object is removed on drop (also when a test fails), and
//! every wait is bounded.
//!
//! Thread-safety: a [`topo::Topology`] or [`daemon::Daemon`] is owned by one test.

pub mod compare;
pub mod daemon;
pub mod guest;
pub mod hosts;
pub mod pktgen;
pub mod scenario;
pub mod testpmd;
pub mod topo;
pub mod traffic;
pub mod tunnel;

use std::process::{Command, Output};

/// Why a set-up step failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A command could not run or exited non-zero.
    #[error("`{command}` failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr, or the spawn error.
        output: String,
    },
    /// Something did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A setting or an attach that cannot work.
    #[error("{0}")]
    Config(String),
}

/// Runs a command and fails unless it exits 0.
pub fn run(program: &str, args: &[&str]) -> Result<Output, BenchError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| BenchError::Command {
            command: command.clone(),
            output: e.to_string(),
        })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(BenchError::Command {
            command,
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}
