//! The control socket under abuse, served in-process on in-memory ports with short limits:
//! floods of connections, half-written requests, clients that never read, request bursts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};

use brink_api::call::Call;
use brink_api::client::Client;
use brink_control::host::Memory;
use brink_control::server::{Access, Limits, Server};
use brink_control::service::Service;

/// A server on its own thread; stopped and joined on drop.
struct Served {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Served {
    fn new(tag: &str, limits: Limits) -> Self {
        Served::with_access(tag, limits, Access::owner_only())
    }

    fn with_access(tag: &str, limits: Limits, access: Access) -> Self {
        let dir = std::env::temp_dir().join(format!("brk-srv-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let socket = dir.join("brink.sock");
        let mut server = Server::bind(&socket, access, limits).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let ct_max = common::CT_MAX as u64;
            let mut service = Service::new(common::switch(), Memory::default(), ct_max, None);
            server.run(&mut service, &flag, |_| {});
        });
        Served {
            socket,
            stop,
            thread: Some(thread),
        }
    }

    /// A fresh client's `port.list` answers.
    fn answers(&self) -> bool {
        Client::connect(&self.socket)
            .and_then(|mut c| c.call(&Call::PortList(Default::default())))
            .is_ok()
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        if let Some(dir) = self.socket.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Whether the server closes `s` within `limit` (reading and discarding what it sends).
fn closed_within(s: &mut UnixStream, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

const REQUEST: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"port.list\"}\n";

#[test]
fn a_flood_of_connections_never_locks_out_a_fresh_client() {
    let served = Served::new(
        "flood",
        Limits {
            max_connections: 8,
            ..Limits::default()
        },
    );
    let mut flood = Vec::new();
    for round in 0..5 {
        for _ in 0..40 {
            let mut s = served.connect();
            s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":").unwrap();
            flood.push(s);
        }
        assert!(
            served.answers(),
            "round {round}: a fresh client was locked out"
        );
    }
    assert!(
        closed_within(&mut flood[0], Duration::from_secs(2)),
        "the least recently served connection is evicted"
    );
}

#[test]
fn a_flood_from_another_user_evicts_its_own_connections_never_roots() {
    let served = Served::with_access(
        "root",
        Limits {
            max_connections: 8,
            ..Limits::default()
        },
        Access::with_group("nogroup").unwrap(),
    );
    // Root's connection, served once and then the least recently served of all.
    let mut root = Client::connect(&served.socket).unwrap();
    root.call(&Call::PortList(Default::default())).unwrap();
    // 40 half-written requests from nobody (in the socket's group), then how many of them
    // the server closed.
    let flood = format!(
        "import socket, time\n\
         held = []\n\
         for i in range(40):\n\
         \x20   s = socket.socket(socket.AF_UNIX); s.connect({:?}); s.send(b'{{\"jsonrpc\":')\n\
         \x20   s.settimeout(0.05); held.append(s); time.sleep(0.01)\n\
         def closed(s):\n\
         \x20   try:\n\
         \x20       return s.recv(1) == b''\n\
         \x20   except socket.timeout:\n\
         \x20       return False\n\
         \x20   except OSError:\n\
         \x20       return True\n\
         print(sum(closed(s) for s in held))\n",
        served.socket.display().to_string()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &flood])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evicted: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        evicted >= 30,
        "only {evicted} of nobody's 40 connections were evicted"
    );
    assert!(
        root.call(&Call::PortList(Default::default())).is_ok(),
        "root's connection was evicted"
    );
}

#[test]
fn half_written_requests_and_unread_answers_are_closed() {
    let served = Served::new(
        "stall",
        Limits {
            stall_timeout: Duration::from_millis(300),
            max_output: 4096,
            // No rate limit: the unread answers fill the socket and the output bound fast.
            rate: 1e9,
            burst: 1e9,
            ..Limits::default()
        },
    );
    let mut half = served.connect();
    half.write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"port.li")
        .unwrap();
    // A client that sends requests and never reads: the server stops reading it once its
    // answers fill the output bound, so the client's writes block (here: time out).
    let mut unread = served.connect();
    unread
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let many = REQUEST.repeat(1000);
    let mut sent = 0usize;
    while unread.write_all(&many).is_ok() {
        sent += 1;
        assert!(sent < 1000, "the server read everything it was sent");
    }
    assert!(served.answers(), "others are served meanwhile");
    // Without reading: reading would be progress. What the server queued before it closed the
    // connection is then read, and the end of the stream follows.
    sleep(Duration::from_secs(1));
    assert!(closed_within(&mut half, Duration::from_millis(500)));
    assert!(closed_within(&mut unread, Duration::from_millis(500)));
    assert!(served.answers());
}

#[test]
fn idle_connections_are_closed() {
    let served = Served::new(
        "idle",
        Limits {
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
    );
    let mut idle = served.connect();
    idle.write_all(REQUEST).unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(3)));
}

#[test]
fn a_burst_of_requests_is_slowed_to_the_rate_and_every_one_answered() {
    let served = Served::new(
        "rate",
        Limits {
            rate: 20.0,
            burst: 5.0,
            ..Limits::default()
        },
    );
    let mut s = served.connect();
    let burst: Vec<u8> = (1..=30)
        .flat_map(|id| {
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"port.list\"}}\n").into_bytes()
        })
        .collect();
    s.write_all(&burst).unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        if let Ok(n) = s.read(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    let early = got.lines().count();
    assert!(
        (5..30).contains(&early),
        "{early} answers in the first 300 ms"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.lines().count() < 30 && Instant::now() < deadline {
        if let Ok(n) = s.read(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    let ids: Vec<u64> = got
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, (1..=30).collect::<Vec<_>>(), "all answered, in order");
}
