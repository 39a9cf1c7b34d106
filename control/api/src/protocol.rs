//! JSON-RPC 2.0 envelopes, error codes and method names.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest request line the server accepts, in bytes.
pub const MAX_LINE: usize = 1 << 20;

/// Method names.
pub mod method {
    /// Create a network. Params: [`NetworkName`](crate::types::NetworkName).
    pub const NETWORK_ADD: &str = "network.add";
    /// Delete an empty network. Params: [`NetworkName`](crate::types::NetworkName).
    pub const NETWORK_DEL: &str = "network.del";
    /// List networks. No params.
    pub const NETWORK_LIST: &str = "network.list";
    /// Add a port. Params: [`PortAdd`](crate::types::PortAdd).
    pub const PORT_ADD: &str = "port.add";
    /// Remove a port. Params: [`PortName`](crate::types::PortName).
    pub const PORT_DEL: &str = "port.del";
    /// List ports. No params.
    pub const PORT_LIST: &str = "port.list";
    /// Show FDB entries. Params: [`NetworkFilter`](crate::types::NetworkFilter).
    pub const FDB_SHOW: &str = "fdb.show";
    /// Forget learned FDB entries. Params: [`NetworkFilter`](crate::types::NetworkFilter).
    pub const FDB_FLUSH: &str = "fdb.flush";
    /// Counters. Params: [`StatsFilter`](crate::types::StatsFilter).
    pub const STATS: &str = "stats";
    /// Every counter as Prometheus text exposition (a string). No params.
    pub const METRICS: &str = "metrics";
    /// Start capturing a port. Params: [`CaptureStart`](crate::types::CaptureStart).
    pub const CAPTURE_START: &str = "capture.start";
    /// Take what was captured. Params: [`CaptureRead`](crate::types::CaptureRead).
    pub const CAPTURE_READ: &str = "capture.read";
    /// Stop capturing. No params.
    pub const CAPTURE_STOP: &str = "capture.stop";
    /// Tracked connections. Params: [`CtFilter`](crate::types::CtFilter).
    pub const CT_SHOW: &str = "ct.show";
    /// Remove tracked connections. Params: [`CtFilter`](crate::types::CtFilter).
    pub const CT_FLUSH: &str = "ct.flush";
    /// Conntrack counters. No params.
    pub const CT_STATS: &str = "ct.stats";
    /// Change a network's conntrack policy. Params: [`CtPolicySet`](crate::types::CtPolicySet).
    pub const CT_POLICY_SET: &str = "ct.policy.set";
    /// A network's conntrack policy. Params: [`CtPolicyShow`](crate::types::CtPolicyShow).
    pub const CT_POLICY_SHOW: &str = "ct.policy.show";

    /// Change a port's security. Params: [`PortSet`](crate::types::PortSet).
    pub const PORT_SET: &str = "port.set";
    /// Create a security group. Params: [`SgAdd`](crate::types::SgAdd).
    pub const SG_ADD: &str = "sg.add";
    /// Delete an unused security group. Params: [`SgName`](crate::types::SgName).
    pub const SG_DEL: &str = "sg.del";
    /// List security groups. No params.
    pub const SG_LIST: &str = "sg.list";
    /// One security group with its rules and hit counts. Params: [`SgName`](crate::types::SgName).
    pub const SG_SHOW: &str = "sg.show";
    /// Add a rule. Params: [`SgRuleAdd`](crate::types::SgRuleAdd).
    pub const SG_RULE_ADD: &str = "sg.rule.add";
    /// Remove a rule. Params: [`SgRuleDel`](crate::types::SgRuleDel).
    pub const SG_RULE_DEL: &str = "sg.rule.del";
    /// Import groups as `openstack security group show -f json` prints them.
    /// Params: [`SgImport`](crate::types::SgImport).
    pub const SG_IMPORT: &str = "sg.import";

    /// Every method, for "method not found" errors.
    pub const ALL: [&str; 26] = [
        NETWORK_ADD,
        NETWORK_DEL,
        NETWORK_LIST,
        PORT_ADD,
        PORT_DEL,
        PORT_LIST,
        FDB_SHOW,
        FDB_FLUSH,
        STATS,
        METRICS,
        CAPTURE_START,
        CAPTURE_READ,
        CAPTURE_STOP,
        CT_SHOW,
        CT_FLUSH,
        CT_STATS,
        CT_POLICY_SET,
        CT_POLICY_SHOW,
        PORT_SET,
        SG_ADD,
        SG_DEL,
        SG_LIST,
        SG_SHOW,
        SG_RULE_ADD,
        SG_RULE_DEL,
        SG_IMPORT,
    ];
}

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
}

/// A request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Always "2.0".
    pub jsonrpc: String,
    /// Echoed in the response.
    #[serde(default)]
    pub id: Value,
    /// Method name.
    pub method: String,
    /// Method parameters (an object), absent for none.
    #[serde(default)]
    pub params: Value,
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
}
