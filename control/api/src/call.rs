//! The API as one typed enum: every method with its params, decoded once by serde.
//!
//! [`Call`] is what a client sends and what the daemon serves; the table below is the only
//! place a method name is written, so the enum, [`Call::METHODS`], decoding and encoding cannot
//! disagree.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::protocol::{code, RpcError};
use crate::types::{
    CaptureRead, CaptureStart, CtEventsRead, CtFilter, CtPolicySet, CtPolicyShow, FdbAdd, FdbDel,
    NetworkAdd, NetworkFilter, NetworkName, NetworkPeer, PortAdd, PortFilter, PortName, PortSet,
    SgAdd, SgImport, SgMemberSet, SgName, SgRuleAdd, SgRuleDel, StatsFilter, TraceRequest,
    TunnelSet,
};

/// Params of methods that take none: absent, `null` or `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

macro_rules! calls {
    ($( $(#[$doc:meta])* $variant:ident($params:ty) = $name:literal, )*) => {
        /// One request to brinkd: a method and its params. Serialized as JSON-RPC's `method`
        /// and `params` members.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "method", content = "params")]
        pub enum Call {
            $( $(#[$doc])* #[serde(rename = $name)] $variant($params), )*
        }

        impl Call {
            /// Every method name, for "method not found" errors and the docs.
            pub const METHODS: &[&str] = &[$($name),*];

            /// Decodes the params of `method`. Absent or `null` params are an empty object.
            pub fn decode(method: &str, params: Value) -> Result<Call, RpcError> {
                let params = if params.is_null() {
                    Value::Object(serde_json::Map::new())
                } else {
                    params
                };
                match method {
                    $( $name => from_params(params).map(Call::$variant), )*
                    other => Err(RpcError::new(
                        code::METHOD_NOT_FOUND,
                        format!(
                            "no method {other:?}; methods are: {}",
                            Call::METHODS.join(", ")
                        ),
                    )),
                }
            }
        }
    };
}

calls! {
    /// Create a network.
    NetworkAdd(NetworkAdd) = "network.add",
    /// Delete a network that has no ports.
    NetworkDel(NetworkName) = "network.del",
    /// List networks.
    NetworkList(NoParams) = "network.list",
    /// Add a tunnel endpoint to a network's flood list.
    NetworkPeerAdd(NetworkPeer) = "network.peer.add",
    /// Remove a tunnel endpoint from a network's flood list.
    NetworkPeerDel(NetworkPeer) = "network.peer.del",
    /// Set this host's tunnel endpoint.
    TunnelSet(TunnelSet) = "tunnel.set",
    /// The tunnel endpoint, its remote endpoints and their counters.
    TunnelShow(NoParams) = "tunnel.show",
    /// Add a port.
    PortAdd(PortAdd) = "port.add",
    /// Remove a port.
    PortDel(PortName) = "port.del",
    /// List ports (those with given external ids, if any).
    PortList(PortFilter) = "port.list",
    /// Change a port's security.
    PortSet(PortSet) = "port.set",
    /// Show FDB entries.
    FdbShow(NetworkFilter) = "fdb.show",
    /// Forget learned FDB entries.
    FdbFlush(NetworkFilter) = "fdb.flush",
    /// Say where a remote MAC lives (l2population).
    FdbAdd(FdbAdd) = "fdb.add",
    /// Forget a remote MAC.
    FdbDel(FdbDel) = "fdb.del",
    /// Port and worker counters.
    Stats(StatsFilter) = "stats",
    /// Every counter as Prometheus text exposition (a string).
    Metrics(NoParams) = "metrics",
    /// Start capturing a port.
    CaptureStart(CaptureStart) = "capture.start",
    /// Take what was captured.
    CaptureRead(CaptureRead) = "capture.read",
    /// Stop capturing.
    CaptureStop(NoParams) = "capture.stop",
    /// Tracked connections.
    CtShow(CtFilter) = "ct.show",
    /// Remove tracked connections.
    CtFlush(CtFilter) = "ct.flush",
    /// Conntrack counters.
    CtStats(NoParams) = "ct.stats",
    /// Change a network's conntrack policy.
    CtPolicySet(CtPolicySet) = "ct.policy.set",
    /// A network's conntrack policy.
    CtPolicyShow(CtPolicyShow) = "ct.policy.show",
    /// Connection events since the last read; the first read subscribes, and the
    /// subscription ends when reads stop.
    CtEvents(CtEventsRead) = "ct.events",
    /// Create a security group.
    SgAdd(SgAdd) = "sg.add",
    /// Delete an unused security group.
    SgDel(SgName) = "sg.del",
    /// List security groups.
    SgList(NoParams) = "sg.list",
    /// One security group with its rules and hit counts.
    SgShow(SgName) = "sg.show",
    /// Add a rule.
    SgRuleAdd(SgRuleAdd) = "sg.rule.add",
    /// Remove a rule.
    SgRuleDel(SgRuleDel) = "sg.rule.del",
    /// Replace a group's explicit members (members on other hosts).
    SgMemberSet(SgMemberSet) = "sg.member.set",
    /// Import groups as `openstack security group show -f json` prints them.
    SgImport(SgImport) = "sg.import",
    /// One packet through the pipeline against live state, changing nothing.
    Trace(TraceRequest) = "trace",
}

fn from_params<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params)
        .map_err(|e| RpcError::new(code::INVALID_PARAMS, format!("invalid params: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn calls_encode_as_method_and_params_and_decode_back() {
        let call = Call::NetworkAdd(NetworkAdd {
            name: "blue".into(),
            mtu: None,
            segment: None,
            arp_responder: false,
            external_ids: Default::default(),
        });
        let v = serde_json::to_value(&call).unwrap();
        assert_eq!(
            v,
            json!({"method": "network.add", "params": {"name": "blue"}})
        );
        assert_eq!(
            Call::decode("network.add", v["params"].clone()).unwrap(),
            call
        );
        let list = serde_json::to_value(Call::PortList(PortFilter::default())).unwrap();
        assert_eq!(list, json!({"method": "port.list", "params": {}}));
    }

    #[test]
    fn a_port_request_with_only_its_names_is_port_add_new() {
        let params = json!({"name": "vm1", "iface": "veth1", "network": "blue"});
        assert_eq!(
            Call::decode("port.add", params).unwrap(),
            Call::PortAdd(PortAdd::new("vm1", "veth1", "blue"))
        );
    }

    #[test]
    fn absent_params_are_empty_and_bad_ones_are_named() {
        assert_eq!(
            Call::decode("stats", Value::Null).unwrap(),
            Call::Stats(StatsFilter::default())
        );
        assert_eq!(
            Call::decode("port.list", Value::Null).unwrap(),
            Call::PortList(PortFilter::default())
        );
        let e = Call::decode("port.list", json!({"x": 1})).unwrap_err();
        assert_eq!(e.code, code::INVALID_PARAMS);
        assert!(e.message.contains("unknown field"), "{e}");
        let e = Call::decode("nope", Value::Null).unwrap_err();
        assert_eq!(e.code, code::METHOD_NOT_FOUND);
        assert!(e.message.contains("sg.rule.add"), "{e}");
        assert_eq!(Call::METHODS.len(), 35);
    }
}
