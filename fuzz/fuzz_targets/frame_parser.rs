//! Fuzzes the frame parser with arbitrary frames: the Ethernet header, then the IP and transport
//! headers as the pipeline's parse stage reads them. For any bytes it returns without panicking,
//! and a packet it calls well formed is of the IP version its EtherType says.

#![no_main]

use brink_dataplane::wire::ip::{self, Flow, Out, Parsed};
use brink_dataplane::wire::{EtherType, EthernetFrame};

libfuzzer_sys::fuzz_target!(|frame: &[u8]| {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return;
    };
    let (mut flow, mut ct) = (Flow::default(), None);
    let out = Out {
        flow: &mut flow,
        ct: &mut ct,
    };
    if let Some(Parsed::Ip(_)) = ip::parse(eth.ethertype(), eth.payload(), 1, out) {
        assert_eq!(flow.v6, eth.ethertype() == EtherType::Ipv6, "{flow:?}");
    }
});
