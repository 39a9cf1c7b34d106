//! The control socket: newline-delimited JSON-RPC 2.0 over a Unix stream socket, served with
//! mio on the control thread. Requests are answered in order, one response line per request
//! (none for notifications, which carry no `id`).
//!
//! No client can hurt the others or the switch: peers are checked by their credentials
//! ([`Access`]), every connection has bounded input and output and a request rate, stalled and
//! idle connections are closed, a full table evicts the least recently served connection
//! (others than root's first), and errors of accept or poll are logged and survived.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use brink_api::protocol::{code, decode_line, Incoming, Response, RpcError, MAX_LINE};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::{Gid, Group, Uid};
use serde_json::Value;

use crate::host::Host;
use crate::service::Service;

const LISTENER: Token = Token(0);
/// How often the loop checks timeouts, refills rate buckets and calls the tick.
const TICK: Duration = Duration::from_millis(100);
/// Refusals are logged as totals at most this often.
const LOG_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes read from a client at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Turns of reading, answering and writing one connection gets before the next is served.
const TURNS: usize = 16;
/// Requests of one connection answered before the next connection is served.
const ANSWERS_PER_PUMP: usize = 4;

/// Limits on each client of the control socket.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; one more evicts the least recently served.
    pub max_connections: usize,
    /// A connection with nothing pending and no request for this long is closed.
    pub idle_timeout: Duration,
    /// A connection whose half-written request or unread answers make no progress for this
    /// long is closed.
    pub stall_timeout: Duration,
    /// Answers queued for a client that does not read them; beyond this brinkd stops reading
    /// its requests until it reads.
    pub max_output: usize,
    /// Requests per second each connection may make, sustained.
    pub rate: f64,
    /// Requests a connection may make at once before the rate applies.
    pub burst: f64,
    /// Connections accepted per turn of the loop, so a flood cannot starve the others. Below
    /// `max_connections`, a new connection is always served once before it can be evicted.
    pub accept_burst: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 128,
            idle_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(10),
            max_output: 256 * 1024,
            rate: 500.0,
            burst: 100.0,
            accept_burst: 64,
        }
    }
}

/// Who may use the control socket: root, brinkd's own user, and (with a socket group) the
/// group's members.
#[derive(Debug, Clone)]
pub struct Access {
    own: Uid,
    group: Option<SocketGroup>,
}

#[derive(Debug, Clone)]
struct SocketGroup {
    name: String,
    gid: Gid,
}

impl Access {
    /// Root and brinkd's own user only: socket mode 0600.
    pub fn owner_only() -> Self {
        Access {
            own: Uid::effective(),
            group: None,
        }
    }

    /// Root, brinkd's user and the processes in group `name` (primary or supplementary):
    /// socket mode 0660, owned by the group.
    pub fn with_group(name: &str) -> io::Result<Self> {
        let group = Group::from_name(name)
            .map_err(io::Error::from)?
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no group named {name:?}"))
            })?;
        Ok(Access {
            own: Uid::effective(),
            group: Some(SocketGroup {
                name: name.to_string(),
                gid: group.gid,
            }),
        })
    }

    /// Whether a peer running as `uid` with primary group `gid` may use the socket;
    /// `groups` gives its supplementary groups, asked only if they decide.
    pub fn allows(&self, uid: Uid, gid: Gid, groups: impl FnOnce() -> Vec<Gid>) -> bool {
        uid.is_root()
            || uid == self.own
            || self
                .group
                .as_ref()
                .is_some_and(|g| g.gid == gid || groups().contains(&g.gid))
    }
}

/// The supplementary groups of process `pid`, from `/proc` (the peer credentials of a Unix
/// socket carry only the primary group); none if it is gone.
fn supplementary_groups(pid: i32) -> Vec<Gid> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|list| {
            list.split_whitespace()
                .filter_map(|g| g.parse().ok())
                .map(Gid::from_raw)
                .collect()
        })
        .unwrap_or_default()
}

/// What one connection is doing.
struct Conn {
    stream: UnixStream,
    uid: Uid,
    inbuf: Vec<u8>,
    /// How much of `inbuf` is known to hold no newline.
    scanned: usize,
    outbuf: Vec<u8>,
    /// The peer closed its side: answer what is complete, then close.
    eof: bool,
    /// Close once the output is written (an over-long request was refused).
    closing: bool,
    /// Requests it may make now (a token bucket).
    tokens: f64,
    /// When it last had a request answered (or connected).
    last_request: Instant,
    /// When it last took output, or when output began to wait.
    last_write: Instant,
}

/// Why connections were closed or refused, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Refusals {
    peers: u64,
    evicted: u64,
    idle: u64,
    stalled: u64,
    too_long: u64,
    errors: u64,
}

/// The listening socket and its connections.
pub struct Server {
    poll: Poll,
    listener: UnixListener,
    path: PathBuf,
    access: Access,
    limits: Limits,
    conns: HashMap<Token, Conn>,
    next_token: usize,
    /// Connections may wait in the backlog: accept again without waiting for an event.
    accept_pending: bool,
    /// Connections that used up their turn with work left: served again without an event.
    ready: Vec<Token>,
    refusals: Refusals,
    logged: Refusals,
    next_log: Instant,
}

impl Server {
    /// Binds `path`, refusing if another daemon is listening there. The socket is mode 0600,
    /// or 0660 and owned by the socket group if `access` has one: it is made under a staging
    /// name and renamed to `path` only then, so no client ever reaches it, nor sees it, with
    /// another owner or mode.
    pub fn bind(path: &Path, access: Access, limits: Limits) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another daemon is listening on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let staging = staging_path(path);
        let _ = std::fs::remove_file(&staging);
        let mut listener = UnixListener::bind(&staging)?;
        if let Err(e) = settle(&staging, &access, path) {
            let _ = std::fs::remove_file(&staging);
            return Err(e);
        }
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener,
            path: path.to_path_buf(),
            access,
            limits,
            conns: HashMap::new(),
            next_token: 1,
            accept_pending: true,
            ready: Vec::new(),
            refusals: Refusals::default(),
            logged: Refusals::default(),
            next_log: Instant::now(),
        })
    }

    /// Serves requests until `stop` is set, calling `tick` with the service about every
    /// 100 ms. Errors are logged; none ends the loop.
    pub fn run<H: Host>(
        &mut self,
        service: &mut Service<H>,
        stop: &AtomicBool,
        mut tick: impl FnMut(&mut Service<H>),
    ) {
        let mut events = Events::with_capacity(256);
        let mut next_tick = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let wait = if self.accept_pending || !self.ready.is_empty() {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "control socket poll failed; retrying");
                    std::thread::sleep(TICK);
                }
                continue;
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept_pending = true,
                    token => self.pump(token, service),
                }
            }
            for token in std::mem::take(&mut self.ready) {
                self.pump(token, service);
            }
            if self.accept_pending {
                self.accept();
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + TICK;
                // Edge-triggered events can be missed after a failed accept: look anyway.
                self.accept_pending = true;
                self.housekeeping(service, now);
                tick(service);
            }
        }
    }

    /// Accepts up to `accept_burst` waiting connections.
    fn accept(&mut self) {
        for _ in 0..self.limits.accept_burst {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_pending = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors, for example: the connection stays in the
                    // backlog, one is freed, and accepting is tried again at the next tick.
                    tracing::warn!(error = %e, "cannot accept a control connection");
                    self.refusals.errors += 1;
                    self.evict();
                    self.accept_pending = false;
                    return;
                }
            };
            let Some(uid) = self.check_peer(&stream) else {
                continue;
            };
            if self.conns.len() >= self.limits.max_connections {
                self.evict();
            }
            let token = Token(self.next_token);
            self.next_token += 1;
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
                tracing::warn!(error = %e, "cannot register a control connection");
                self.refusals.errors += 1;
                continue;
            }
            let now = Instant::now();
            self.conns.insert(
                token,
                Conn {
                    stream,
                    uid,
                    inbuf: Vec::new(),
                    scanned: 0,
                    outbuf: Vec::new(),
                    eof: false,
                    closing: false,
                    tokens: self.limits.burst,
                    last_request: now,
                    last_write: now,
                },
            );
        }
    }

    /// The peer's user id if [`Access`] allows it; a refused peer is logged.
    fn check_peer(&mut self, stream: &UnixStream) -> Option<Uid> {
        match getsockopt(stream, PeerCredentials) {
            Ok(cred) => {
                let (uid, gid) = (Uid::from_raw(cred.uid()), Gid::from_raw(cred.gid()));
                if self
                    .access
                    .allows(uid, gid, || supplementary_groups(cred.pid()))
                {
                    return Some(uid);
                }
                tracing::warn!(
                    pid = cred.pid(),
                    uid = cred.uid(),
                    gid = cred.gid(),
                    "control connection refused: user not allowed"
                );
            }
            Err(e) => tracing::warn!(error = %e, "control connection refused: no credentials"),
        }
        self.refusals.peers += 1;
        None
    }

    /// Closes the connection served least recently, others than root's first.
    fn evict(&mut self) {
        let victim = self
            .conns
            .iter()
            .min_by_key(|(_, c)| (c.uid.is_root(), c.last_request))
            .map(|(&t, _)| t);
        if let Some(token) = victim {
            self.refusals.evicted += 1;
            self.close(token);
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(mut conn) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
    }

    /// Reads, answers and writes for one connection as far as its limits let it, then
    /// closes it if it is done or failed.
    fn pump<H: Host>(&mut self, token: Token, service: &mut Service<H>) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let mut open = true;
        let mut budget = ANSWERS_PER_PUMP;
        for _ in 0..TURNS {
            let wrote = match write_out(conn) {
                Ok(n) => n > 0,
                Err(()) => {
                    open = false;
                    break;
                }
            };
            let answered = answer_lines(conn, service, &self.limits, &mut budget);
            let mut read = false;
            if conn.may_read(&self.limits) {
                match read_in(conn) {
                    Ok(n) => read = n > 0,
                    Err(()) => {
                        open = false;
                        break;
                    }
                }
            }
            if !(wrote || answered || read) {
                break;
            }
        }
        if conn.inbuf.len() > MAX_LINE && !conn.has_line() {
            refuse_long_line(conn);
            self.refusals.too_long += 1;
        }
        let finished = conn.outbuf.is_empty() && (conn.closing || (conn.eof && !conn.has_line()));
        if !open || finished {
            self.close(token);
        } else if budget == 0 && !self.ready.contains(&token) {
            self.ready.push(token);
        }
    }

    /// Serves connections that wait on a rate bucket or a timer, and closes idle and stalled
    /// ones.
    fn housekeeping<H: Host>(&mut self, service: &mut Service<H>, now: Instant) {
        let refill = self.limits.rate * TICK.as_secs_f64();
        let tokens: Vec<Token> = self.conns.keys().copied().collect();
        for token in tokens {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            conn.tokens = (conn.tokens + refill).min(self.limits.burst);
            let waiting = !conn.outbuf.is_empty() || !conn.inbuf.is_empty();
            let idle = !waiting && now - conn.last_request > self.limits.idle_timeout;
            let half_written = !conn.inbuf.is_empty()
                && !conn.has_line()
                && now - conn.last_request > self.limits.stall_timeout;
            let unread =
                !conn.outbuf.is_empty() && now - conn.last_write > self.limits.stall_timeout;
            if idle {
                self.refusals.idle += 1;
                self.close(token);
            } else if half_written || unread {
                self.refusals.stalled += 1;
                self.close(token);
            } else {
                self.pump(token, service);
            }
        }
        if self.refusals != self.logged && now >= self.next_log {
            self.next_log = now + LOG_INTERVAL;
            let r = self.refusals;
            tracing::warn!(
                refused_peers = r.peers,
                evicted = r.evicted,
                idle_closed = r.idle,
                stalled_closed = r.stalled,
                too_long = r.too_long,
                errors = r.errors,
                "control socket: clients refused or closed (totals)"
            );
            self.logged = r;
        }
    }
}

/// Where [`Server::bind`] makes the socket before it is ready: `path` with `.new` appended.
fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".new");
    PathBuf::from(name)
}

/// Gives the socket at `staging` its group and mode from `access`, then moves it to `path`.
fn settle(staging: &Path, access: &Access, path: &Path) -> io::Result<()> {
    let mode = match &access.group {
        Some(g) => {
            nix::unistd::chown(staging, None, Some(g.gid)).map_err(io::Error::from)?;
            tracing::info!(
                group = %g.name,
                gid = g.gid.as_raw(),
                "control socket open to its group (mode 0660)"
            );
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(staging, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(staging, path)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Conn {
    /// Whether `inbuf` holds a complete request line.
    fn has_line(&mut self) -> bool {
        match self.inbuf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(_) => true,
            None => {
                self.scanned = self.inbuf.len();
                false
            }
        }
    }

    /// Whether to read more: only when what is buffered cannot be answered yet, the client
    /// reads its answers, and its rate allows another request.
    fn may_read(&mut self, limits: &Limits) -> bool {
        !self.eof
            && !self.closing
            && self.outbuf.len() < limits.max_output
            && self.tokens >= 1.0
            && self.inbuf.len() <= MAX_LINE
            && !self.has_line()
    }
}

/// Reads one chunk; the number of bytes, 0 if none was waiting; `Err` if the socket failed.
fn read_in(conn: &mut Conn) -> Result<usize, ()> {
    let mut buf = [0u8; READ_CHUNK];
    loop {
        return match conn.stream.read(&mut buf) {
            Ok(0) => {
                conn.eof = true;
                Ok(0)
            }
            Ok(n) => {
                conn.inbuf.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => Err(()),
        };
    }
}

/// Answers complete lines while the client's rate and output and the `budget` allow; true if
/// any was.
fn answer_lines<H: Host>(
    conn: &mut Conn,
    service: &mut Service<H>,
    limits: &Limits,
    budget: &mut usize,
) -> bool {
    let mut answered = false;
    while *budget > 0
        && !conn.closing
        && conn.tokens >= 1.0
        && conn.outbuf.len() < limits.max_output
    {
        let Some(end) = conn.inbuf.iter().position(|&b| b == b'\n') else {
            break;
        };
        if end > MAX_LINE {
            refuse_long_line(conn);
            return true;
        }
        conn.tokens -= 1.0;
        *budget -= 1;
        if let Some(resp) = answer(&conn.inbuf[..end], service) {
            queue(conn, &resp);
        }
        conn.inbuf.drain(..=end);
        conn.scanned = 0;
        conn.last_request = Instant::now();
        answered = true;
    }
    answered
}

/// Refuses a request line longer than [`MAX_LINE`] and marks the connection for closing.
fn refuse_long_line(conn: &mut Conn) {
    let resp = Response::new(
        Value::Null,
        Err(RpcError::new(
            code::INVALID_REQUEST,
            format!("request longer than {MAX_LINE} bytes"),
        )),
    );
    queue(conn, &resp);
    conn.inbuf = Vec::new();
    conn.scanned = 0;
    conn.closing = true;
}

fn queue(conn: &mut Conn, resp: &Response) {
    if conn.outbuf.is_empty() {
        conn.last_write = Instant::now();
    }
    if serde_json::to_writer(&mut conn.outbuf, resp).is_ok() {
        conn.outbuf.push(b'\n');
    }
}

/// Writes what the socket takes; the number of bytes, or `Err` if the socket failed.
fn write_out(conn: &mut Conn) -> Result<usize, ()> {
    let mut total = 0;
    while !conn.outbuf.is_empty() {
        match conn.stream.write(&conn.outbuf) {
            Ok(0) => return Err(()),
            Ok(n) => {
                conn.outbuf.drain(..n);
                conn.last_write = Instant::now();
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(()),
        }
    }
    Ok(total)
}

/// The response to one request line, or `None` for a notification.
pub fn answer<H: Host>(line: &[u8], service: &mut Service<H>) -> Option<Response> {
    let Incoming { id, call } = decode_line(line);
    let outcome = call.and_then(|c| service.handle(c));
    id.map(|id| Response::new(id, outcome))
}
