//! Kernel network interfaces: existence checks and tap devices brink creates.
//!
//! Taps are made with iproute2 (`ip tuntap`), persistent and owned by no process, so a VM
//! (QEMU) can open them and brinkd can restart without tearing its VMs' links down.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Why an interface operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IfaceError {
    /// Not a usable interface name.
    #[error("bad interface name {0:?}: use 1-15 characters, no '/', ':' or white space")]
    BadName(String),
    /// The interface does not exist.
    #[error("interface {0:?} does not exist")]
    Missing(String),
    /// The interface exists but should not (a tap to create).
    #[error("interface {0:?} already exists; a tap port creates its own device")]
    Exists(String),
    /// The host cannot make this kind of port.
    #[error("{0}")]
    Unsupported(String),
    /// A vhost-user port's socket could not be opened.
    #[error("{0}")]
    Vhost(String),
    /// `ip` failed.
    #[error("{command} failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
    },
}

/// Checks an interface name the way the kernel does.
pub fn check_name(name: &str) -> Result<(), IfaceError> {
    let ok = (1..16).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if ok {
        Ok(())
    } else {
        Err(IfaceError::BadName(name.into()))
    }
}

/// True if interface `name` exists.
pub fn exists(name: &str) -> bool {
    check_name(name).is_ok() && Path::new("/sys/class/net").join(name).exists()
}

/// Fails unless interface `name` exists.
pub fn require(name: &str) -> Result<(), IfaceError> {
    check_name(name)?;
    if exists(name) {
        Ok(())
    } else {
        Err(IfaceError::Missing(name.into()))
    }
}

/// Creates a persistent tap device `name` and sets it up.
pub fn create_tap(name: &str) -> Result<(), IfaceError> {
    check_name(name)?;
    if exists(name) {
        return Err(IfaceError::Exists(name.into()));
    }
    ip(&["tuntap", "add", "dev", name, "mode", "tap"])?;
    if let Err(e) = ip(&["link", "set", "dev", name, "up"]) {
        let _ = delete(name);
        return Err(e);
    }
    Ok(())
}

/// Sets the MTU of interface `name` (unless it has it already).
pub fn set_mtu(name: &str, mtu: u16) -> Result<(), IfaceError> {
    check_name(name)?;
    if self::mtu(name) == Some(mtu) {
        return Ok(());
    }
    ip(&["link", "set", "dev", name, "mtu", &mtu.to_string()])
}

/// Deletes interface `name`.
pub fn delete(name: &str) -> Result<(), IfaceError> {
    check_name(name)?;
    ip(&["link", "del", "dev", name])
}

/// The MTU of interface `name`, if it exists.
pub fn mtu(name: &str) -> Option<u16> {
    check_name(name).ok()?;
    let path = Path::new("/sys/class/net").join(name).join("mtu");
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Runs iproute2's `ip`.
pub(crate) fn ip(args: &[&str]) -> Result<(), IfaceError> {
    run("ip", args, None).map(drop)
}

/// Runs `program` with `args` (and `input` on its stdin); returns its stdout, or what it printed
/// on stderr as the error.
pub(crate) fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, IfaceError> {
    let command = format!("{program} {}", args.join(" "));
    let failed = |e: std::io::Error| IfaceError::Command {
        command: command.clone(),
        output: e.to_string(),
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(failed)?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(failed)?;
    }
    let out = child.wait_with_output().map_err(failed)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(IfaceError::Command {
            command,
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_kernel_rules() {
        for bad in ["", ".", "..", "a/b", "a b", "a:b", "sixteen-chars-xx"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_name("lo").unwrap();
        assert!(exists("lo"));
        assert_eq!(
            require("brk-no-such-if"),
            Err(IfaceError::Missing("brk-no-such-if".into()))
        );
    }
}
