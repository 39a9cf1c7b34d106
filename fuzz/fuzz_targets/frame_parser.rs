//! Fuzzes the frame parser with arbitrary frames: the Ethernet header, then the IP and transport
//! headers as the pipeline's parse stage reads them. For any bytes it returns without panicking,
//! and a packet it calls well formed is of the IP version its EtherType says.

#![no_main]

use brink_dataplane::wire::ip::{self, Out, Parsed};
use brink_dataplane::wire::{EtherType, EthernetFrame, L3};

libfuzzer_sys::fuzz_target!(|frame: &[u8]| {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return;
    };
    let (mut l3, mut ct) = (L3::Other, None);
    let out = Out {
        l3: &mut l3,
        ct: &mut ct,
    };
    if let Some(Parsed::Ip(_)) = ip::parse(eth.ethertype(), eth.payload(), 1, out) {
        let L3::Ip(flow) = l3 else {
            panic!("a well-formed packet written as {l3:?}");
        };
        assert_eq!(flow.v6, eth.ethertype() == EtherType::Ipv6, "{flow:?}");
    }
});
