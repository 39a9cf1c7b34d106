//! The API decoder's contract, shared by the fuzz target and the seed test: for any bytes it
//! returns (never panics), and a line it decodes into a call encodes back into a line that
//! decodes to the same call.

use brink_api::protocol::{decode_line, Request};

/// Checks the contract on one request line.
pub fn decoder_contract(line: &[u8]) {
    let incoming = decode_line(line);
    if let Ok(call) = incoming.call {
        let request = Request {
            jsonrpc: "2.0",
            id: 1,
            call: &call,
        };
        let again = serde_json::to_vec(&request).unwrap_or_default();
        assert_eq!(
            decode_line(&again).call,
            Ok(call),
            "{}",
            String::from_utf8_lossy(&again)
        );
    }
}
