//! `capture.*`: packet capture of one port, read in chunks.

use brink_api::protocol::RpcError;
use brink_api::types::{CaptureChunk, CaptureRead, CaptureStart};

use super::Service;
use crate::capture;
use crate::host::Host;

impl<H: Host> Service<H> {
    pub(super) fn capture_start(&self, p: &CaptureStart) -> Result<(), RpcError> {
        let id = self.model.port(&p.port)?.id;
        self.switch.capture().start(id, p.drops);
        tracing::info!(port = %p.port, drops = p.drops, "capture started");
        Ok(())
    }

    pub(super) fn capture_read(&self, p: &CaptureRead) -> CaptureChunk {
        capture::read(self.switch.capture(), p.max, self.switch.now_ns())
    }

    pub(super) fn capture_stop(&self) {
        self.switch.capture().stop();
        tracing::info!("capture stopped");
    }
}
