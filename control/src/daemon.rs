//! `brinkd` wiring: arguments, logging, signals, the switch, the service and the server.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use brink_dataplane::fdb;
use brink_dataplane::port::afxdp::{self, XdpBackend};
use brink_dataplane::switch::{Switch, SwitchConfig};
use brink_dataplane::worker::WorkerConfig;
use clap::Parser;

use crate::connections;
use crate::host::Kernel;
use crate::server::{Access, Limits, Server};
use crate::service::{self, Service};
use crate::store::Store;
use crate::systemd::Notifier;

/// brink's daemon: a userspace integration bridge on AF_XDP.
#[derive(Debug, Parser)]
#[command(name = "brinkd", version, about)]
pub struct Args {
    /// Control socket path.
    #[arg(long, default_value = brink_api::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Let this group's members use the control socket too (mode 0660 instead of 0600).
    #[arg(long)]
    pub socket_group: Option<String>,
    /// Where the configuration is saved and restored from.
    #[arg(long, default_value = "/var/lib/brink")]
    pub state_dir: PathBuf,
    /// Cores to run one worker each on, e.g. "1", "0,1" or "0-3" (default: the last core; at
    /// most 16).
    #[arg(long)]
    pub cores: Option<String>,
    /// Sleep when idle instead of busy polling (saves the core, adds up to 200 us latency).
    #[arg(long)]
    pub idle_sleep: bool,
    /// Seconds after which an unrefreshed learned MAC is forgotten.
    #[arg(long, default_value_t = fdb::DEFAULT_AGING.as_secs())]
    pub fdb_aging: u64,
    /// Learned MACs each worker holds at most.
    #[arg(long, default_value_t = fdb::DEFAULT_CAPACITY)]
    pub fdb_size: usize,
    /// Most tracked connections (memory for them is reserved at start: about 160 bytes each).
    #[arg(long, default_value_t = 1_000_000)]
    pub ct_max: usize,
    /// Serve Prometheus metrics over HTTP on this address, e.g. 127.0.0.1:9464 (off by default).
    #[arg(long)]
    pub metrics_listen: Option<String>,
}

/// Parses a core list like "1", "0,2" or "0-3".
pub fn parse_cores(list: &str, available: usize) -> anyhow::Result<Vec<usize>> {
    let mut cores = Vec::new();
    for part in list.split(',').map(str::trim) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>(), b.trim().parse::<usize>()),
            None => (part.parse(), part.parse()),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else {
            bail!("bad core list {list:?}: expected numbers like 1, 0,2 or 0-3");
        };
        if lo > hi {
            bail!("bad core range {part:?}: start after end");
        }
        for c in lo..=hi {
            if c >= available {
                bail!(
                    "core {c} does not exist: this machine has cores 0-{}",
                    available - 1
                );
            }
            if !cores.contains(&c) {
                cores.push(c);
            }
        }
    }
    Ok(cores)
}

/// Runs the daemon until SIGINT or SIGTERM, then saves the connection table for the next start.
/// SIGHUP is logged and ignored: nothing is re-read.
pub fn run(args: Args) -> anyhow::Result<()> {
    // A subscriber installed by an embedding program wins; ours is only the default. Logs go to
    // stderr, coloured only when it is a terminal (not a file or journald).
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("cannot install signal handler")?;
    }
    let hangup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hangup))
        .context("cannot install signal handler")?;
    let available = std::thread::available_parallelism().map_or(1, usize::from);
    let cores = match &args.cores {
        Some(list) => parse_cores(list, available)?,
        None => vec![available - 1],
    };
    if args.fdb_size == 0 {
        bail!("--fdb-size must be at least 1");
    }
    if !(1..=100_000_000).contains(&args.ct_max) {
        bail!("--ct-max must be 1 to 100000000");
    }
    let access = match &args.socket_group {
        Some(group) => {
            Access::with_group(group).with_context(|| format!("bad --socket-group {group:?}"))?
        }
        None => Access::owner_only(),
    };
    let store = Store::open(&args.state_dir)?;
    let state = store.load()?;
    let config = SwitchConfig {
        cores: cores.iter().map(|&c| Some(c)).collect(),
        worker: WorkerConfig {
            idle_sleep: args.idle_sleep,
            fdb_capacity: args.fdb_size,
            fdb_aging: Duration::from_secs(args.fdb_aging),
        },
        conntrack: brink_conntrack::Config {
            max_connections: args.ct_max,
            ..brink_conntrack::Config::default()
        },
    };
    // Bind first, so a second daemon fails before touching any interface.
    let mut server = Server::bind(&args.socket, access, Limits::default())
        .with_context(|| format!("cannot listen on {}", args.socket.display()))?;
    afxdp::silence_library_logs();
    let switch = Switch::start(config, XdpBackend::new).context("cannot start workers")?;
    tracing::info!(?cores, idle_sleep = args.idle_sleep, socket = %args.socket.display(), "brinkd started");
    let state_file = store.path().display().to_string();
    let mut service = Service::new(switch, Kernel, args.ct_max as u64, Some(store));
    service
        .restore(state)
        .with_context(|| format!("{state_file}: refusing to start"))?;
    let saved_connections = args.state_dir.join(connections::FILE);
    let started = Instant::now();
    match service.load_connections(&saved_connections) {
        Ok(Some(c)) => tracing::info!(
            imported = c.imported,
            gone = c.gone,
            expired = c.expired,
            refused = c.refused,
            ms = started.elapsed().as_millis() as u64,
            "connections carried over from the last run"
        ),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "saved connections not restored (the file is kept as .bad)")
        }
    }
    let mut systemd = Notifier::from_env();
    if let Some(addr) = &args.metrics_listen {
        crate::metrics::serve(addr, args.socket.clone())?;
    }
    systemd.ready(&service.summary());
    let mut next_retry = Instant::now();
    server.run(&mut service, &stop, |service| {
        let now = Instant::now();
        systemd.tick(now, || service.worker_polls());
        if hangup.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: brinkd has no configuration file to re-read; ignored");
        }
        if now >= next_retry {
            next_retry = now + service::RETRY_INTERVAL;
            service.retry_down_ports();
            service.end_idle_subscriptions(now);
        }
    });
    systemd.stopping();
    tracing::info!("shutting down");
    let started = Instant::now();
    match service.stop_and_save_connections(&saved_connections) {
        Ok(n) => tracing::info!(
            connections = n,
            ms = started.elapsed().as_millis() as u64,
            path = %saved_connections.display(),
            "connection table saved"
        ),
        Err(e) => {
            tracing::error!(error = %e, "connection table not saved: a restart cuts the connections")
        }
    }
    drop(server);
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_lists() {
        assert_eq!(parse_cores("1", 2).unwrap(), [1]);
        assert_eq!(parse_cores("0-1", 2).unwrap(), [0, 1]);
        assert_eq!(parse_cores("1,0,1", 2).unwrap(), [1, 0]);
        for bad in ["2", "x", "1-0", "", "0-"] {
            assert!(parse_cores(bad, 2).is_err(), "{bad:?}");
        }
    }
}
