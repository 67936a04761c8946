//! IP networks (CIDR) for `denied_networks`.

use std::net::IpAddr;

/// An address block such as `169.254.0.0/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    base: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// Parse `ADDR/PREFIX` (a bare address means a single host).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let base: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an IP network like 10.0.0.0/8"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: prefix length must be 0..={max}"))?,
        };
        Ok(Self { base, prefix })
    }

    /// Whether `addr` is inside this block (IPv4-mapped IPv6 addresses are
    /// compared as IPv4, so `::ffff:169.254.169.254` cannot slip past).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match (self.base, addr) {
            (IpAddr::V4(b), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(b) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(b), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(b) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_respects_prefix_and_mapped_addresses() {
        let n = IpNetwork::parse("169.254.0.0/16").unwrap();
        assert!(n.contains("169.254.169.254".parse().unwrap()));
        assert!(n.contains("::ffff:169.254.1.1".parse().unwrap()));
        assert!(!n.contains("169.255.0.1".parse().unwrap()));
        assert!(IpNetwork::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpNetwork::parse("10.0.0.0/33").is_err());
        assert!(IpNetwork::parse("fd00:ec2::254/128")
            .unwrap()
            .contains("fd00:ec2::254".parse().unwrap()));
    }
}
