//! `brinkctl metrics`: every counter as Prometheus text.

use serde_json::Value;

use super::decode;
use crate::client::ClientError;

/// The exposition text, as `brinkd --metrics-listen` serves it.
pub fn render(result: Value) -> Result<String, ClientError> {
    Ok(decode::<String>(result)?.trim_end().to_string())
}
