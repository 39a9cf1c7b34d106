//! A blocking client: one connection, one request at a time.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::call::Call;
use crate::protocol::{Request, Response, RpcError};

/// How long a call waits for the daemon.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not reach the daemon.
    #[error("cannot connect to {path}: {source} (is brinkd running?)")]
    Connect {
        /// Socket path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection failed mid-call.
    #[error("connection to brinkd failed: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon answered something that is not a valid response.
    #[error("bad response from brinkd: {0}")]
    Protocol(String),
    /// The daemon refused the request.
    #[error("{0}")]
    Rpc(RpcError),
    /// The command line asked for something malformed that clap could not catch.
    #[error("{0}")]
    Usage(String),
}

/// A connection to `brinkd`.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Client {
    /// Connects to the daemon's socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        Ok(Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            next_id: 1,
        })
    }

    /// Makes `call` and decodes its result as `R`.
    pub fn call_as<R: DeserializeOwned>(&mut self, call: &Call) -> Result<R, ClientError> {
        let value = self.call(call)?;
        serde_json::from_value(value).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Makes `call` and returns its raw JSON result.
    pub fn call(&mut self, call: &Call) -> Result<Value, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = Request {
            jsonrpc: "2.0",
            id,
            call,
        };
        let mut line =
            serde_json::to_vec(&request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        let mut answer = String::new();
        if self.reader.read_line(&mut answer)? == 0 {
            return Err(ClientError::Protocol("connection closed".into()));
        }
        let response: Response =
            serde_json::from_str(&answer).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if response.id != id {
            return Err(ClientError::Protocol(format!(
                "response id {} for request {id}",
                response.id
            )));
        }
        match (response.result, response.error) {
            (_, Some(e)) => Err(ClientError::Rpc(e)),
            (Some(v), None) => Ok(v),
            (None, None) => Err(ClientError::Protocol("neither result nor error".into())),
        }
    }
}
