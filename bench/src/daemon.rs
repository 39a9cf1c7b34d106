//! A `brinkd` process under test, and `brinkctl` pointed at it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use brink_api::client::Client;

use crate::topo::Vm;
use crate::{run, BenchError};

/// How long the daemon may take to start or stop.
const PATIENCE: Duration = Duration::from_secs(10);

/// Directory of the brink binaries: next to the running test or bench executable
/// (`target/<profile>/deps/..`), or `BRINK_BIN_DIR` if set.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BRINK_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A running `brinkd`, stopped with SIGTERM on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its stderr/stdout log.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `brinkd` with its socket and state in `dir` (created), plus `extra` arguments, and
    /// waits until it answers.
    pub fn start(dir: &Path, extra: &[&str]) -> Result<Self, BenchError> {
        Self::start_in(None, dir, extra)
    }

    /// [`Daemon::start`] inside network namespace `netns` if given: a "host" of a multi-host
    /// test, with its own interfaces (the socket and state stay on the shared filesystem). The
    /// shell in between execs brinkd, so the child's pid is brinkd's.
    pub fn start_in(netns: Option<&str>, dir: &Path, extra: &[&str]) -> Result<Self, BenchError> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::Command {
            command: format!("mkdir {}", dir.display()),
            output: e.to_string(),
        })?;
        let socket = dir.join("brink.sock");
        let log = dir.join("brinkd.log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| BenchError::Command {
                command: format!("open {}", log.display()),
                output: e.to_string(),
            })?;
        let err_file = log_file.try_clone().map_err(|e| BenchError::Command {
            command: "dup log".into(),
            output: e.to_string(),
        })?;
        let brinkd = bin_dir().join("brinkd");
        let mut command = match netns {
            // `ip netns exec` gives brinkd its own mount namespace with the namespace's /sys,
            // which hides bpffs: libxdp needs it mounted there.
            Some(ns) => {
                let mut c = Command::new("ip");
                let script = "mount -t bpf bpf /sys/fs/bpf; exec \"$0\" \"$@\"";
                c.args(["netns", "exec", ns, "sh", "-c", script])
                    .arg(&brinkd);
                c
            }
            None => Command::new(&brinkd),
        };
        let child = command
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .map_err(|e| BenchError::Command {
                command: brinkd.display().to_string(),
                output: e.to_string(),
            })?;
        let mut d = Daemon {
            child: Some(child),
            dir: dir.to_path_buf(),
            socket,
            log,
        };
        let deadline = Instant::now() + PATIENCE;
        while Client::connect(&d.socket).is_err() {
            if Instant::now() > deadline || !d.is_running() {
                return Err(BenchError::Timeout(format!(
                    "brinkd did not come up; log:\n{}",
                    d.log_text()
                )));
            }
            sleep(Duration::from_millis(50));
        }
        Ok(d)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `brinkctl` against this daemon; returns the output whatever the exit status.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let out = Command::new(bin_dir().join("brinkctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output();
        out.unwrap_or_else(|e| Output {
            status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
            stdout: vec![],
            stderr: e.to_string().into_bytes(),
        })
    }

    /// Adds port `name` for `vm` (its host interface and MAC) to `network`, with `extra`
    /// `port add` arguments.
    pub fn add_vm_port(
        &self,
        name: &str,
        vm: &Vm,
        network: &str,
        extra: &[&str],
    ) -> Result<String, BenchError> {
        let mut args = vec![
            "port",
            "add",
            name,
            "--iface",
            &vm.host_if,
            "--network",
            network,
            "--mac",
            &vm.mac,
        ];
        args.extend_from_slice(extra);
        self.ctl_ok(&args)
    }

    /// Runs `brinkctl` and fails unless it exits 0; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> Result<String, BenchError> {
        let out = self.ctl(args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(BenchError::Command {
                command: format!("brinkctl {}", args.join(" ")),
                output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns whether it exited with status 0.
    pub fn stop(&mut self) -> Result<bool, BenchError> {
        let Some(mut child) = self.child.take() else {
            return Ok(false);
        };
        run("kill", &["-TERM", &child.id().to_string()])?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(BenchError::Timeout("brinkd ignored SIGTERM".into()));
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// The directory holding its socket, state and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
