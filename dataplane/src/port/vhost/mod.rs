//! vhost-user ports: a VM's (or DPDK virtio-user's) virtio-net rings, shared with brink over a
//! Unix socket, with no kernel in the packet path.
//!
//! Each port ([`VhostPort`]) has one control thread that speaks the vhost-user protocol
//! ([`device`], through rust-vmm's `vhost` crate), connecting to the frontend's socket (client
//! mode, reconnecting by itself) or listening on its own (server mode). The port's queue pairs
//! are spread over the workers: each worker polls the rings of its share of them
//! ([`VhostQueues`], [`rings`]) inside the same backend as its AF_XDP ports, so frames move
//! between both kinds through the worker's one frame pool. The port lives as long as some
//! worker polls a share of it.

pub mod device;
pub mod guest;
pub mod rings;
pub mod vring;

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use vhost::vhost_user::{BackendReqHandler, Error as VuError, Listener};

use self::device::{Device, Link};
use self::rings::Rings;
use super::jumbo::Gso;
use super::PortError;
use crate::snapshot::{PortId, MAX_PORTS};

/// How long the control thread waits between attempts to connect or accept.
const RETRY: Duration = Duration::from_millis(100);

/// Who creates the socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VhostMode {
    /// The frontend (QEMU, testpmd) listens; brink connects, and reconnects when it goes away.
    #[default]
    Client,
    /// brink listens on the socket and accepts one frontend at a time.
    Server,
}

/// A vhost-user port.
#[derive(Debug, Clone)]
pub struct VhostSpec {
    /// The Unix socket.
    pub socket: PathBuf,
    /// Who creates it.
    pub mode: VhostMode,
    /// Queue pairs offered (1 to [`MAX_PAIRS`](device::MAX_PAIRS); more than one offers `VIRTIO_NET_F_MQ`).
    pub pairs: usize,
}

/// An open vhost-user port: its control thread, and the [`Link`] it shares with the workers
/// that poll the port's queue pairs.
#[derive(Debug)]
pub struct VhostPort {
    mode: VhostMode,
    link: Arc<Link>,
    /// A clone of the connected socket, to unblock the control thread when the port closes.
    conn: Arc<Mutex<Option<UnixStream>>>,
    thread: Option<JoinHandle<()>>,
}

impl VhostPort {
    /// Starts the port's control thread. In server mode the socket exists when this returns.
    pub fn open(spec: &VhostSpec) -> Result<Arc<Self>, PortError> {
        let listener = match spec.mode {
            VhostMode::Client => None,
            VhostMode::Server => {
                let l = Listener::new(&spec.socket, true).map_err(|e| attach(spec, &e))?;
                l.set_nonblocking(true).map_err(|e| attach(spec, &e))?;
                Some(l)
            }
        };
        let link = Arc::new(Link::default());
        let conn = Arc::new(Mutex::new(None));
        let thread = {
            let (link, conn, socket) = (Arc::clone(&link), Arc::clone(&conn), spec.socket.clone());
            let pairs = spec.pairs;
            std::thread::Builder::new()
                .name("brink-vhost".into())
                .spawn(move || serve(&socket, listener.as_ref(), &link, &conn, pairs))
                .map_err(|e| attach(spec, &e))?
        };
        Ok(Arc::new(VhostPort {
            mode: spec.mode,
            link,
            conn,
            thread: Some(thread),
        }))
    }

    /// Who creates the socket.
    pub fn mode(&self) -> VhostMode {
        self.mode
    }
}

/// What one worker opens of a vhost-user port: the queue pairs it polls.
#[derive(Debug, Clone)]
pub struct VhostShare {
    /// The port.
    pub port: Arc<VhostPort>,
    /// Its queue pairs this worker polls.
    pub pairs: Vec<usize>,
}

/// One worker's share of a vhost-user port: the rings of its queue pairs, and the port, which
/// closes when no worker holds a share any more.
#[derive(Debug)]
pub struct VhostQueues {
    /// Declared first, so dropped before the port.
    rings: Rings,
    _port: Arc<VhostPort>,
}

impl VhostQueues {
    /// The rings of `share`'s pairs.
    pub fn new(share: VhostShare) -> Self {
        VhostQueues {
            rings: Rings::new(Arc::clone(&share.port.link), &share.pairs),
            _port: share.port,
        }
    }

    /// The rings, for the worker.
    pub fn rings(&mut self) -> &mut Rings {
        &mut self.rings
    }

    /// The rings, to read.
    pub fn rings_ref(&self) -> &Rings {
        &self.rings
    }

    /// Whether the guest takes a superframe cut as `gso` whole.
    pub fn takes_superframe(&self, gso: &Gso) -> bool {
        self.rings.takes_superframe(gso)
    }

    /// Whether the guest takes frames whose checksum is partial (`GUEST_CSUM`).
    pub fn takes_partial(&self) -> bool {
        self.rings.takes_partial()
    }
}

impl Drop for VhostPort {
    fn drop(&mut self) {
        self.link.stop.store(true, Ordering::Release);
        if let Ok(conn) = self.conn.lock() {
            if let Some(c) = conn.as_ref() {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn attach(spec: &VhostSpec, e: &dyn std::fmt::Display) -> PortError {
    PortError::Attach {
        iface: spec.socket.display().to_string(),
        reason: e.to_string(),
    }
}

/// The control thread: connects (or accepts), serves the frontend until it disconnects, forgets
/// the device, and starts over until the port closes.
fn serve(
    socket: &std::path::Path,
    listener: Option<&Listener>,
    link: &Arc<Link>,
    conn: &Mutex<Option<UnixStream>>,
    pairs: usize,
) {
    let device = Arc::new(Mutex::new(Device::new(Arc::clone(link), pairs)));
    while !link.stop.load(Ordering::Acquire) {
        let stream = match listener {
            None => UnixStream::connect(socket).ok(),
            Some(l) => l.accept().ok().flatten(),
        };
        let Some(stream) = stream else {
            std::thread::sleep(RETRY);
            continue;
        };
        // The accepted socket may inherit non-blocking mode; the protocol is served blocking.
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        if let (Ok(mut c), Ok(clone)) = (conn.lock(), stream.try_clone()) {
            *c = Some(clone);
        }
        tracing::info!(socket = %socket.display(), "vhost-user frontend connected");
        let mut handler = BackendReqHandler::from_stream(stream, Arc::clone(&device));
        while !link.stop.load(Ordering::Acquire) {
            match handler.handle_request() {
                Ok(()) => {}
                Err(e) if refused_request(&e) => {
                    tracing::info!(socket = %socket.display(), error = %e, "vhost-user request refused");
                }
                Err(e) => {
                    tracing::info!(socket = %socket.display(), error = %e, "vhost-user frontend gone");
                    break;
                }
            }
        }
        if let Ok(mut c) = conn.lock() {
            *c = None;
        }
        match device.lock() {
            Ok(mut d) => d.reset(),
            Err(poisoned) => poisoned.into_inner().reset(),
        }
    }
}

/// Whether `e` refused one request and left the connection usable (the message was read whole).
/// QEMU, for one, disables rings (`SET_VRING_ENABLE`) before it has set the features that make
/// the request valid; the crate refuses it, and the session goes on.
fn refused_request(e: &VuError) -> bool {
    matches!(
        e,
        VuError::InvalidParam
            | VuError::InvalidOperation(_)
            | VuError::InactiveFeature(_)
            | VuError::InactiveOperation(_)
            | VuError::ReqHandlerError(_)
    )
}

/// A worker's shares of vhost-user ports, by port id.
#[derive(Debug)]
pub struct VhostPorts {
    ports: Vec<Option<VhostQueues>>,
    open: Vec<PortId>,
}

impl Default for VhostPorts {
    fn default() -> Self {
        VhostPorts {
            ports: (0..MAX_PORTS).map(|_| None).collect(),
            open: Vec::new(),
        }
    }
}

impl VhostPorts {
    /// Port `id`, if this worker polls a share of that vhost-user port.
    #[inline]
    pub fn get_mut(&mut self, id: PortId) -> Option<&mut VhostQueues> {
        self.ports.get_mut(usize::from(id))?.as_mut()
    }

    /// Port `id`, to read.
    pub fn get(&self, id: PortId) -> Option<&VhostQueues> {
        self.ports.get(usize::from(id))?.as_ref()
    }

    /// Adds port `id` (a free id: the caller checked).
    pub fn insert(&mut self, id: PortId, port: VhostQueues) {
        if let Some(slot) = self.ports.get_mut(usize::from(id)) {
            *slot = Some(port);
            self.open.push(id);
        }
    }

    /// Closes port `id`; returns whether it was one.
    pub fn remove(&mut self, id: PortId) -> bool {
        self.open.retain(|&p| p != id);
        self.ports
            .get_mut(usize::from(id))
            .and_then(Option::take)
            .is_some()
    }

    /// Takes what the protocol threads published, for every port.
    pub fn sync(&mut self) {
        for &id in &self.open {
            if let Some(Some(p)) = self.ports.get_mut(usize::from(id)) {
                p.rings.sync();
            }
        }
    }
}
