//! The control socket: newline-delimited JSON-RPC 2.0 over a Unix stream socket, served with
//! mio on the control thread. Requests are answered in order, one response line per request
//! (none for notifications, which carry no `id`).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use brink_api::protocol::{code, Request, Response, RpcError, MAX_LINE};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};
use serde_json::Value;

use crate::service::Service;

const LISTENER: Token = Token(0);
/// How often the loop checks for a stop signal.
const TICK: Duration = Duration::from_millis(100);
/// Connections served at once; more are refused.
const MAX_CONNECTIONS: usize = 64;

struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    closing: bool,
}

/// The listening socket and its connections.
pub struct Server {
    poll: Poll,
    listener: UnixListener,
    path: PathBuf,
    conns: HashMap<Token, Conn>,
    next_token: usize,
}

impl Server {
    /// Binds `path` (mode 0600), refusing if another daemon is listening there.
    pub fn bind(path: &Path) -> io::Result<Self> {
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
        let mut listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener,
            path: path.to_path_buf(),
            conns: HashMap::new(),
            next_token: 1,
        })
    }

    /// Serves requests until `stop` is set.
    pub fn run(&mut self, service: &mut Service, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(64);
        while !stop.load(Ordering::Relaxed) {
            match self.poll.poll(&mut events, Some(TICK)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept()?,
                    token => self.serve(token, service),
                }
            }
        }
        Ok(())
    }

    fn accept(&mut self) -> io::Result<()> {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            if self.conns.len() >= MAX_CONNECTIONS {
                tracing::warn!("too many control connections; refusing one");
                continue;
            }
            let token = Token(self.next_token);
            self.next_token += 1;
            self.poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)?;
            self.conns.insert(
                token,
                Conn {
                    stream,
                    inbuf: Vec::new(),
                    outbuf: Vec::new(),
                    closing: false,
                },
            );
        }
    }

    fn serve(&mut self, token: Token, service: &mut Service) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let open = read_into(conn) && {
            answer_lines(conn, service);
            write_out(conn)
        };
        let done = !open || (conn.closing && conn.outbuf.is_empty());
        if done {
            if let Some(mut conn) = self.conns.remove(&token) {
                let _ = self.poll.registry().deregister(&mut conn.stream);
            }
            return;
        }
        let interest = if conn.outbuf.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        let _ = self
            .poll
            .registry()
            .reregister(&mut conn.stream, token, interest);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads what is available; false when the peer closed or failed.
fn read_into(conn: &mut Conn) -> bool {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => {
                conn.closing = true;
                return true;
            }
            Ok(n) => {
                conn.inbuf.extend_from_slice(&buf[..n]);
                // Stop at an over-long line: `answer_lines` refuses it before reading more.
                if conn.inbuf.len() > MAX_LINE && !conn.inbuf.contains(&b'\n') {
                    return true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// Answers every complete line; an over-long line is answered with an error and marks the
/// connection for closing.
fn answer_lines(conn: &mut Conn, service: &mut Service) {
    while let Some(end) = conn.inbuf.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = conn.inbuf.drain(..=end).collect();
        if let Some(resp) = answer(&line[..end], service) {
            if let Ok(mut bytes) = serde_json::to_vec(&resp) {
                bytes.push(b'\n');
                conn.outbuf.extend_from_slice(&bytes);
            }
        }
    }
    if conn.inbuf.len() > MAX_LINE {
        let resp = Response::new(
            Value::Null,
            Err(RpcError::new(
                code::INVALID_REQUEST,
                format!("request longer than {MAX_LINE} bytes"),
            )),
        );
        if let Ok(mut bytes) = serde_json::to_vec(&resp) {
            bytes.push(b'\n');
            conn.outbuf.extend_from_slice(&bytes);
        }
        conn.inbuf.clear();
        conn.closing = true;
    }
}

/// Writes what the socket takes; false on failure.
fn write_out(conn: &mut Conn) -> bool {
    while !conn.outbuf.is_empty() {
        match conn.stream.write(&conn.outbuf) {
            Ok(0) => return false,
            Ok(n) => {
                conn.outbuf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}

/// The response to one request line, or `None` for a notification.
pub fn answer(line: &[u8], service: &mut Service) -> Option<Response> {
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Some(Response::new(
                Value::Null,
                Err(RpcError::new(code::PARSE_ERROR, format!("not JSON: {e}"))),
            ))
        }
    };
    let is_notification = value.as_object().is_some_and(|o| !o.contains_key("id"));
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    let outcome = match serde_json::from_value::<Request>(value) {
        Ok(req) if req.jsonrpc == "2.0" => service.handle(&req.method, req.params),
        Ok(_) => Err(RpcError::new(
            code::INVALID_REQUEST,
            "jsonrpc must be \"2.0\"",
        )),
        Err(e) => Err(RpcError::new(
            code::INVALID_REQUEST,
            format!("not a JSON-RPC request: {e}"),
        )),
    };
    (!is_notification).then(|| Response::new(id, outcome))
}
