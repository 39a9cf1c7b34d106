//! How much CPU other work used during a run: the CPU time of every process that is neither
//! this harness nor one of its descendants nor a kernel thread, from `/proc`.
//!
//! Processes that exit during a run are seen through their parent's reaped-children time, so
//! the figure leans towards calling a run loaded, never towards calling it quiet.

use std::collections::HashMap;
use std::time::Instant;

/// Clock ticks per second of `/proc/<pid>/stat` (Linux's USER_HZ on every common platform).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time per foreign process at one moment.
#[derive(Debug, Clone)]
pub struct LoadSample {
    at: Instant,
    ticks: HashMap<u32, u64>,
}

/// A process's parent and its CPU ticks (own plus reaped children's).
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: fields start after the last ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split(' ').collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    // Fields 4 (ppid), 14-17 (utime, stime, cutime, cstime), counted from 1 with pid first.
    let ppid = num(1)? as u32;
    Some((ppid, num(11)? + num(12)? + num(13)? + num(14)?))
}

impl LoadSample {
    /// Reads every process's CPU time, leaving out this process's tree and kernel threads.
    pub fn take() -> LoadSample {
        let mut parents = HashMap::new();
        let mut all = HashMap::new();
        for pid in std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        {
            if let Some((ppid, ticks)) = stat(pid) {
                parents.insert(pid, ppid);
                all.insert(pid, ticks);
            }
        }
        let me = std::process::id();
        let ours_or_kernel = |mut pid: u32| {
            for _ in 0..64 {
                if pid == me || pid == 2 {
                    return true;
                }
                match parents.get(&pid) {
                    Some(&p) if p != 0 => pid = p,
                    _ => return false,
                }
            }
            false
        };
        all.retain(|&pid, _| !ours_or_kernel(pid));
        LoadSample {
            at: Instant::now(),
            ticks: all,
        }
    }

    /// The share of the machine's CPUs (0-1) that foreign processes used since `self`.
    pub fn foreign_share_until(&self, later: &LoadSample) -> f64 {
        let used: u64 = later
            .ticks
            .iter()
            .map(|(pid, &t)| t.saturating_sub(self.ticks.get(pid).copied().unwrap_or(0)))
            .sum();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let seconds = (later.at - self.at).as_secs_f64().max(1e-3);
        used as f64 / TICKS_PER_SECOND / (seconds * cpus)
    }
}
