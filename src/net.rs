//! IP networks (`10.0.0.0/8`, `2001:db8::/32`, one address), parsed once
//! and then matched against source addresses: the SIP allow-list
//! (`sip.allow`) and the `source` of recording rules.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network: an address and how many leading bits of it must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    /// 0..=32 for IPv4, 0..=128 for IPv6.
    bits: u8,
}

/// Why a text is not an IP network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP or CIDR")]
pub struct CidrError(pub String);

impl Cidr {
    /// Reads `addr` or `addr/bits`. The address may have white space
    /// around it. A prefix length that is not a number counts as the full
    /// length (the address alone), and one that is too long is cut to the
    /// full length, as rules and `sip.allow` have always read them.
    pub fn parse(text: &str) -> Result<Cidr, CidrError> {
        let (net, bits) = match text.split_once('/') {
            Some((n, b)) => (n, b.parse::<u32>().ok()),
            None => (text, None),
        };
        let net: IpAddr = net
            .trim()
            .parse()
            .map_err(|_| CidrError(text.to_string()))?;
        let full = Self::full_length(net);
        let bits = bits.unwrap_or(full).min(full);
        Ok(Cidr {
            net,
            bits: u8::try_from(bits).unwrap_or(u8::MAX),
        })
    }

    /// [`Cidr::parse`] as a config entry (`sip.allow`) is read: the
    /// address must stand alone, without white space around it.
    pub fn parse_entry(text: &str) -> Result<Cidr, CidrError> {
        let addr = text.split('/').next().unwrap_or(text);
        if addr.trim() != addr {
            return Err(CidrError(text.to_string()));
        }
        Cidr::parse(text)
    }

    /// The networks of a list such as `sip.allow`. `Config::validate`
    /// refuses an entry that is not an IP or CIDR (every entry it accepts
    /// parses here); one that gets here anyway (an unchecked config) is
    /// left out, with a warning.
    pub fn parse_list(entries: &[String]) -> Vec<Cidr> {
        entries
            .iter()
            .filter_map(|e| match Cidr::parse(e) {
                Ok(net) => Some(net),
                Err(error) => {
                    tracing::warn!(%error, "ignored");
                    None
                }
            })
            .collect()
    }

    fn full_length(ip: IpAddr) -> u32 {
        match ip {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    /// Whether `ip` is in this network (never across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = u32::from(self.bits);
        match (ip, self.net) {
            (IpAddr::V4(a), IpAddr::V4(n)) => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(a) & mask == u32::from(n) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(n)) => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(a) & mask == u128::from(n) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_addresses_and_families() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(!net.contains(ip("11.1.2.3")));
        assert!(
            !net.contains(ip("::ffff:10.1.2.3")),
            "never across families"
        );
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        let one = Cidr::parse(" 192.0.2.7 ").unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        for all in ["0.0.0.0/0", "::/0"] {
            let all = Cidr::parse(all).unwrap();
            assert!(all.contains(ip("203.0.113.9")) != all.contains(ip("2001:db8::9")));
        }
        assert_eq!(one.to_string(), "192.0.2.7/32");
    }

    #[test]
    fn odd_prefix_lengths_read_as_before() {
        // Not a number: the address alone. Too long: cut to the full length.
        let bad = Cidr::parse("10.0.0.0/abc").unwrap();
        assert!(bad.contains(ip("10.0.0.0")) && !bad.contains(ip("10.0.0.1")));
        assert_eq!(
            Cidr::parse("10.0.0.0/40").unwrap().to_string(),
            "10.0.0.0/32"
        );
        assert_eq!(
            Cidr::parse("2001:db8::/200").unwrap().to_string(),
            "2001:db8::/128"
        );
    }

    #[test]
    fn not_an_address_is_an_error() {
        for text in ["garbage", "", "/8", "10.0.0/8", "10.0.0.0.0"] {
            let err = Cidr::parse(text).unwrap_err();
            assert_eq!(err.to_string(), format!("{text:?} is not an IP or CIDR"));
        }
        assert!("10.0.0.0/8".parse::<Cidr>().is_ok());
    }

    /// The config refuses `sip.allow` entries at load; whatever it accepts
    /// must reach the SIP core intact.
    #[test]
    fn every_allow_entry_the_config_accepts_is_kept() {
        let entries = [
            "10.0.0.0/8",
            "192.0.2.7",
            "2001:db8::/32",
            "::1",
            "10.0.0.0/abc",
            "10.0.0.0/40",
            " 10.0.0.1",
            "10.0.0/8",
            "garbage",
            "",
        ];
        let mut accepted = Vec::new();
        for entry in entries {
            let mut config = crate::config::Config::default();
            config.sip.allow = vec![entry.to_string()];
            if config.validate().is_ok() {
                accepted.push(entry.to_string());
            }
        }
        assert_eq!(accepted.len(), 6, "{accepted:?}");
        assert_eq!(Cidr::parse_list(&accepted).len(), accepted.len());
    }
}
