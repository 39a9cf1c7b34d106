//! DPDK's testpmd as vhost-user "VMs": `net_virtio_user` devices that listen on a socket
//! (`server=1`) for a switch to connect to, forwarding in a mac loop (`--forward-mode=mac
//! --tx-first`): what port N receives leaves on port N+1 (port 0 itself when alone), after a
//! first burst of 32 frames on each. Used by the vhost-user tests and by `brink-bench vhost`.
//!
//! testpmd needs 2 MiB hugepages: [`Hugepages`] adds them to the system's pool on a private
//! hugetlbfs mount and gives both back on drop. `dpdk-dev` has `dpdk-testpmd`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{run, BenchError};

/// Memory testpmd takes from the hugepages, in MiB.
const TESTPMD_MIB: &str = "256";
/// testpmd's mbufs: enough for two rings of 1,024 and the bursts in flight.
const MBUFS: &str = "--total-num-mbufs=4096";
/// testpmd's default source address of the UDP frames it sends first (`--tx-first`).
pub const TESTPMD_IP: &str = "198.18.0.1";
/// testpmd's default destination address.
pub const TESTPMD_PEER_IP: &str = "198.18.0.2";
const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

fn nr_hugepages() -> Result<u64, BenchError> {
    let text = std::fs::read_to_string(NR_HUGEPAGES).map_err(|e| BenchError::Command {
        command: format!("read {NR_HUGEPAGES}"),
        output: e.to_string(),
    })?;
    text.trim()
        .parse()
        .map_err(|_| BenchError::Config(format!("{NR_HUGEPAGES}: {text:?}")))
}

/// 2 MiB hugepages added to the pool and a hugetlbfs mount for them; both undone on drop.
#[derive(Debug)]
pub struct Hugepages {
    /// The hugetlbfs mount.
    pub mount: PathBuf,
    pages: u64,
}

impl Hugepages {
    /// Mounts hugetlbfs at `mount` (created) and adds `pages` pages to the system's pool.
    pub fn reserve(mount: &Path, pages: u64) -> Result<Self, BenchError> {
        std::fs::create_dir_all(mount).map_err(|e| BenchError::Command {
            command: format!("mkdir {}", mount.display()),
            output: e.to_string(),
        })?;
        let at = mount.to_string_lossy();
        run(
            "mount",
            &["-t", "hugetlbfs", "-o", "pagesize=2M", "nodev", &at],
        )?;
        let guard = Hugepages {
            mount: mount.to_path_buf(),
            pages,
        };
        let want = nr_hugepages()? + pages;
        std::fs::write(NR_HUGEPAGES, want.to_string()).map_err(|e| BenchError::Command {
            command: format!("write {NR_HUGEPAGES}"),
            output: e.to_string(),
        })?;
        Ok(guard)
    }
}

impl Drop for Hugepages {
    fn drop(&mut self) {
        let _ = run("umount", &[&self.mount.to_string_lossy()]);
        let _ = std::fs::remove_dir(&self.mount);
        if let Ok(n) = nr_hugepages() {
            let _ = std::fs::write(NR_HUGEPAGES, n.saturating_sub(self.pages).to_string());
        }
    }
}

/// `dpdk-testpmd`, installed with apt (`dpdk-dev`) if missing.
pub fn binary() -> Result<&'static str, BenchError> {
    let found = || {
        Command::new("dpdk-testpmd")
            .arg("--version")
            .output()
            .is_ok()
    };
    if !found() {
        run(
            "apt-get",
            &["install", "-y", "--no-install-recommends", "dpdk-dev"],
        )?;
    }
    if found() {
        Ok("dpdk-testpmd")
    } else {
        Err(BenchError::Config(
            "dpdk-dev did not install dpdk-testpmd".into(),
        ))
    }
}

/// One testpmd device: it listens on `socket` and sends from `mac` to `peer`.
#[derive(Debug, Clone, Copy)]
pub struct Device<'a> {
    /// The vhost-user socket testpmd creates.
    pub socket: &'a Path,
    /// Its MAC.
    pub mac: &'a str,
    /// The MAC it sends to.
    pub peer: &'a str,
    /// Its queue pairs (`VIRTIO_NET_F_MQ` above one; testpmd forwards each receive queue to
    /// the transmit queue of the same number).
    pub queues: u16,
}

/// Two devices of `queues` queue pairs on `sockets` with `macs`, each sending to the other's
/// MAC.
pub fn pair<'a>(sockets: &'a [PathBuf; 2], macs: [&'a str; 2], queues: u16) -> [Device<'a>; 2] {
    [
        Device {
            socket: &sockets[0],
            mac: macs[0],
            peer: macs[1],
            queues,
        },
        Device {
            socket: &sockets[1],
            mac: macs[1],
            peer: macs[0],
            queues,
        },
    ]
}

/// One testpmd port's totals, and its receive rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// Frames received.
    pub rx: u64,
    /// Frames sent.
    pub tx: u64,
    /// Frames per second received in each stats period, in order.
    pub rx_pps: Vec<u64>,
}

/// A testpmd run, stopped (SIGINT, then it prints its totals) after its time.
#[derive(Debug)]
pub struct Run {
    child: Child,
    prefix: String,
}

impl Run {
    /// Starts testpmd for `seconds` on `devices`, with its forwarding core `core` and its main
    /// thread on `main_core`, files in `huge`.
    pub fn start(
        huge: &Hugepages,
        devices: &[Device<'_>],
        seconds: u32,
        (core, main_core): (usize, usize),
    ) -> Result<Run, BenchError> {
        let prefix = format!("brkVpmd{}", std::process::id());
        let mut cmd = Command::new("timeout");
        let cores = format!("{},{}", core.min(main_core), core.max(main_core));
        cmd.args(["-s", "INT", &seconds.to_string(), binary()?])
            .args(["-l", &cores, "--main-lcore", &main_core.to_string()])
            .args(["--no-pci", "--single-file-segments", "-m", TESTPMD_MIB])
            .args(["--file-prefix", &prefix, "--huge-dir"])
            .arg(&huge.mount);
        for (n, dev) in devices.iter().enumerate() {
            // Mergeable receive buffers on, as DPDK's virtio-user has them by default.
            let vdev = format!(
                "net_virtio_user{n},path={},server=1,queues={},mrg_rxbuf=1,mac={}",
                dev.socket.display(),
                dev.queues,
                dev.mac
            );
            cmd.args(["--vdev", &vdev]);
        }
        cmd.args([
            "--",
            "--nb-cores=1",
            "--forward-mode=mac",
            "--tx-first",
            "--stats-period=2",
            MBUFS,
        ]);
        // As many queues as the device with the most (testpmd sets the same on every port).
        let queues = devices.iter().map(|d| d.queues).max().unwrap_or(1);
        cmd.args([format!("--rxq={queues}"), format!("--txq={queues}")]);
        for (n, dev) in devices.iter().enumerate() {
            cmd.arg(format!("--eth-peer={n},{}", dev.peer));
        }
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BenchError::Command {
                command: "dpdk-testpmd".into(),
                output: e.to_string(),
            })?;
        Ok(Run { child, prefix })
    }

    /// Waits for the end; writes testpmd's output to `log` and returns each port's totals.
    pub fn finish(self, ports: usize, log: &Path) -> Result<Vec<Forwarded>, BenchError> {
        let out = self
            .child
            .wait_with_output()
            .map_err(|e| BenchError::Command {
                command: "dpdk-testpmd".into(),
                output: e.to_string(),
            })?;
        let _ = std::fs::remove_dir_all(Path::new("/var/run/dpdk").join(&self.prefix));
        let _ = std::fs::write(log, [out.stdout.as_slice(), &out.stderr].concat());
        let text = String::from_utf8_lossy(&out.stdout);
        (0..ports).map(|n| forwarded(&text, n)).collect()
    }
}

/// The first number after `label` in `text`.
fn number_after(text: &str, label: &str) -> Option<u64> {
    let at = text.find(label)? + label.len();
    text[at..].split_whitespace().next()?.parse().ok()
}

/// The totals testpmd printed for `port` when it stopped, and its receive rate in each stats
/// period.
fn forwarded(out: &str, port: usize) -> Result<Forwarded, BenchError> {
    let missing = || BenchError::Config(format!("no statistics for testpmd port {port}"));
    let totals = out
        .split(&format!("Forward statistics for port {port} "))
        .nth(1)
        .ok_or_else(missing)?;
    let period_label = format!("NIC statistics for port {port} ");
    Ok(Forwarded {
        rx: number_after(totals, "RX-packets:").ok_or_else(missing)?,
        tx: number_after(totals, "TX-packets:").ok_or_else(missing)?,
        rx_pps: out
            .split(&period_label)
            .skip(1)
            .map(|period| number_after(period, "Rx-pps:").unwrap_or(0))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// testpmd's output, cut down: two stats periods, then the totals.
    const OUTPUT: &str = "\
  ######################## NIC statistics for port 0  ########################
  RX-packets: 32         RX-missed: 0          RX-bytes:  2048
  Rx-pps:            0          Rx-bps:            0
  ######################## NIC statistics for port 1  ########################
  RX-packets: 0          RX-missed: 0          RX-bytes:  0
  Rx-pps:            0          Rx-bps:            0
  ######################## NIC statistics for port 0  ########################
  RX-packets: 4286272    RX-missed: 0          RX-bytes:  274321408
  Rx-pps:      1428554          Rx-bps:    731420088
  ######################## NIC statistics for port 1  ########################
  RX-packets: 4268272    RX-missed: 0          RX-bytes:  273169408
  Rx-pps:      1422565          Rx-bps:    728353704
  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 6976800        RX-dropped: 0             RX-total: 6976800
  TX-packets: 6919576        TX-dropped: 0             TX-total: 6919576
  ---------------------- Forward statistics for port 1  ----------------------
  RX-packets: 6919544        RX-dropped: 0             RX-total: 6919544
  TX-packets: 6976832        TX-dropped: 0             TX-total: 6976832
";

    #[test]
    fn each_port_has_its_totals_and_its_rate_in_every_period() {
        let port1 = forwarded(OUTPUT, 1).expect("port 1 has statistics");
        assert_eq!(
            port1,
            Forwarded {
                rx: 6_919_544,
                tx: 6_976_832,
                rx_pps: vec![0, 1_422_565],
            }
        );
        assert_eq!(
            forwarded(OUTPUT, 0).ok().map(|p| p.rx_pps),
            Some(vec![0, 1_428_554])
        );
        assert!(forwarded(OUTPUT, 2).is_err(), "no port 2");
    }
}
