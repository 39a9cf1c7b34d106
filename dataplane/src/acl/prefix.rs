//! IP prefixes on conntrack's 16-byte addresses (IPv4 as IPv4-mapped IPv6).

use std::fmt;
use std::net::IpAddr;

use brink_conntrack::Addr;

/// An address and a prefix length, host bits cleared. IPv4 prefixes are stored IPv4-mapped, so
/// `10.0.0.0/8` has length 104 here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: u128,
    len: u8,
}

/// Why a prefix could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad prefix length {len} for {ip}: at most {max}")]
pub struct PrefixLenError {
    /// The address.
    pub ip: IpAddr,
    /// The length asked for.
    pub len: u8,
    /// The largest length allowed.
    pub max: u8,
}

fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l => u128::MAX << (128 - u32::from(l.min(128))),
    }
}

impl Prefix {
    /// Every address.
    pub const ANY: Prefix = Prefix { addr: 0, len: 0 };

    /// `ip/len` with host bits cleared (as `ip route` does).
    pub fn new(ip: IpAddr, len: u8) -> Result<Prefix, PrefixLenError> {
        let (max, offset) = match ip {
            IpAddr::V4(_) => (32, 96),
            IpAddr::V6(_) => (128, 0),
        };
        if len > max {
            return Err(PrefixLenError { ip, len, max });
        }
        Ok(Prefix::raw(Addr::from(ip), len + offset))
    }

    /// The host prefix of `addr` (/32 or /128).
    pub fn host(addr: Addr) -> Prefix {
        Prefix::raw(addr, 128)
    }

    /// `addr/len` on the 16-byte form.
    pub fn raw(addr: Addr, len: u8) -> Prefix {
        let len = len.min(128);
        Prefix {
            addr: u128::from_be_bytes(addr.0) & mask(len),
            len,
        }
    }

    /// Prefix length on the 16-byte form.
    pub fn raw_len(self) -> u8 {
        self.len
    }

    /// The network address as a number.
    pub fn bits(self) -> u128 {
        self.addr
    }

    /// The last address inside, as a number.
    pub fn last(self) -> u128 {
        self.addr | !mask(self.len)
    }

    /// Whether `addr` is inside.
    #[inline]
    pub fn contains(self, addr: Addr) -> bool {
        u128::from_be_bytes(addr.0) & mask(self.len) == self.addr
    }

    /// `addr` with the host bits of a `len`-bit prefix cleared, as a number.
    #[inline]
    pub fn masked(addr: Addr, len: u8) -> u128 {
        u128::from_be_bytes(addr.0) & mask(len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = Addr(self.addr.to_be_bytes());
        if a.is_v4() && self.len >= 96 {
            write!(f, "{}/{}", a.ip(), self.len - 96)
        } else {
            write!(f, "{}/{}", a.ip(), self.len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6_prefixes_contain_what_they_should() {
        let p = Prefix::new("10.1.2.3".parse().unwrap(), 16).unwrap();
        assert_eq!(p.to_string(), "10.1.0.0/16");
        assert!(p.contains(Addr::v4([10, 1, 200, 1])));
        assert!(!p.contains(Addr::v4([10, 2, 0, 1])));
        let any4 = Prefix::new("0.0.0.0".parse().unwrap(), 0).unwrap();
        assert!(any4.contains(Addr::v4([1, 2, 3, 4])));
        assert!(!any4.contains(Addr::from("fd00::1".parse::<IpAddr>().unwrap())));
        let p6 = Prefix::new("fd00:1::5".parse().unwrap(), 64).unwrap();
        assert_eq!(p6.to_string(), "fd00:1::/64");
        assert!(p6.contains(Addr::from("fd00:1::99".parse::<IpAddr>().unwrap())));
        assert!(Prefix::ANY.contains(Addr::v4([1, 1, 1, 1])));
        assert!(Prefix::new("10.0.0.1".parse().unwrap(), 33).is_err());
        assert!(Prefix::new("::1".parse().unwrap(), 129).is_err());
    }
}
