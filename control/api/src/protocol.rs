//! JSON-RPC 2.0 envelopes, error codes, and the decoder of request lines.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::call::Call;

/// Longest request line the server accepts, in bytes.
pub const MAX_LINE: usize = 1 << 20;

/// JSON-RPC and brink error codes.
pub mod code {
    /// The line is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON, but not a request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Params missing, of the wrong shape, or with a bad value.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The daemon failed unexpectedly.
    pub const INTERNAL: i64 = -32603;
    /// A named object does not exist.
    pub const NOT_FOUND: i64 = -32001;
    /// The name is taken.
    pub const ALREADY_EXISTS: i64 = -32002;
    /// The object is still used (a network with ports, an interface with a port).
    pub const IN_USE: i64 = -32003;
    /// The kernel or the dataplane refused (AF_XDP attach failed, no free port id, ...).
    pub const DATAPLANE: i64 = -32004;
    /// The change could not be saved to the state file, so it was not made.
    pub const NOT_SAVED: i64 = -32005;
}

/// A request as a client sends it: the envelope around a [`Call`].
#[derive(Debug, Clone, Serialize)]
pub struct Request<'a> {
    /// Always "2.0".
    pub jsonrpc: &'static str,
    /// Echoed in the response.
    pub id: u64,
    /// The method and its params.
    #[serde(flatten)]
    pub call: &'a Call,
}

/// A request line as the daemon reads it, before its call is decoded.
#[derive(Deserialize)]
struct Envelope {
    jsonrpc: String,
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    method: String,
    #[serde(default)]
    params: Value,
}

/// One request line, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The id to answer with; `None` for a notification, which gets no response.
    pub id: Option<Value>,
    /// The call, or why the line is not one.
    pub call: Result<Call, RpcError>,
}

/// Decodes one request line (without its newline). Never fails: a bad line becomes the error
/// its response carries.
pub fn decode_line(line: &[u8]) -> Incoming {
    match serde_json::from_slice::<Envelope>(line) {
        Ok(env) if env.jsonrpc != "2.0" => Incoming {
            id: env.id,
            call: Err(RpcError::new(
                code::INVALID_REQUEST,
                "jsonrpc must be \"2.0\"",
            )),
        },
        Ok(env) => Incoming {
            id: env.id,
            call: Call::decode(&env.method, env.params),
        },
        Err(e) => not_a_request(line, &e),
    }
}

/// The error for a line that is no request: not JSON at all, or JSON of the wrong shape (then
/// its `id`, if it is an object that has one, is echoed; an object without one gets no answer).
fn not_a_request(line: &[u8], e: &serde_json::Error) -> Incoming {
    match serde_json::from_slice::<Value>(line) {
        Err(e) => Incoming {
            id: Some(Value::Null),
            call: Err(RpcError::new(code::PARSE_ERROR, format!("not JSON: {e}"))),
        },
        Ok(value) => Incoming {
            id: match value.as_object() {
                Some(o) => o.get("id").cloned(),
                None => Some(Value::Null),
            },
            call: Err(RpcError::new(
                code::INVALID_REQUEST,
                format!("not a JSON-RPC request: {e}"),
            )),
        },
    }
}

/// An error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RpcError {
    /// One of [`code`].
    pub code: i64,
    /// What went wrong, for people.
    pub message: String,
}

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

/// A response: exactly one of `result` and `error` is present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Always "2.0".
    pub jsonrpc: String,
    /// The request's id (null if the request could not be read).
    pub id: Value,
    /// The result on success (`Some(Value::Null)` for a `null` result).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub result: Option<Value>,
    /// The error on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

/// Keeps a present `null` as `Some(Value::Null)`; serde's default makes it `None`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl Response {
    /// A response to request `id` with `outcome`.
    pub fn new(id: Value, outcome: Result<Value, RpcError>) -> Self {
        let (result, error) = match outcome {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        Response {
            jsonrpc: "2.0".into(),
            id,
            result,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_result_survives_a_round_trip() {
        let r = Response::new(Value::from(1), Ok(Value::Null));
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"jsonrpc":"2.0","id":1,"result":null}"#);
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), r);
        let e: Response = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"x"}}"#,
        )
        .unwrap();
        assert_eq!(e.result, None);
        assert_eq!(e.error.unwrap().code, code::METHOD_NOT_FOUND);
    }

    #[test]
    fn request_lines_decode_or_name_their_error() {
        let codes = |line: &str| {
            let got = decode_line(line.as_bytes());
            (got.id, got.call.map_err(|e| e.code))
        };
        assert_eq!(
            codes(r#"{"jsonrpc":"2.0","id":3,"method":"port.list"}"#),
            (
                Some(3.into()),
                Ok(Call::PortList(crate::types::PortFilter::default()))
            )
        );
        assert_eq!(
            codes("{not json"),
            (Some(Value::Null), Err(code::PARSE_ERROR))
        );
        assert_eq!(
            codes("[1,2]"),
            (Some(Value::Null), Err(code::INVALID_REQUEST))
        );
        assert_eq!(
            codes(r#"{"jsonrpc":"1.0","id":1,"method":"stats"}"#),
            (Some(1.into()), Err(code::INVALID_REQUEST))
        );
        assert_eq!(
            codes(r#"{"jsonrpc":"2.0","id":null,"method":"nope"}"#),
            (Some(Value::Null), Err(code::METHOD_NOT_FOUND))
        );
        assert_eq!(
            codes(r#"{"jsonrpc":"2.0","id":2,"method":"port.add","params":{"name":1}}"#),
            (Some(2.into()), Err(code::INVALID_PARAMS))
        );
        // No id: a notification, answered with nothing even when it is wrong.
        assert_eq!(codes(r#"{"jsonrpc":"2.0","method":7}"#).0, None);
        let call = Call::NetworkDel(crate::types::NetworkName { name: "b".into() });
        let line = serde_json::to_vec(&Request {
            jsonrpc: "2.0",
            id: 9,
            call: &call,
        })
        .unwrap();
        assert_eq!(decode_line(&line).call, Ok(call));
    }
}
