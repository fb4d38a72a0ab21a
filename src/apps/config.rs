//! Parsing and checking what the user typed (addresses, MACs, CIDRs), with
//! error messages that say what to type instead.

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::wire::{EthernetAddress, Ipv4Cidr};

/// A fixed locally administered unicast address ("tap" in ASCII).
pub const DEFAULT_MAC: &str = "02:74:61:70:00:02";

/// Parses `IP/LEN` as the stack's or the host's interface address: a host
/// address (not the subnet's network, broadcast, multicast, loopback or
/// 0.0.0.0) with a prefix of 1 to 30 (so the subnet has room for two hosts).
pub fn parse_cidr(s: &str) -> Result<Ipv4Cidr, String> {
    let Some((ip, len)) = s.split_once('/') else {
        return Err(format!("{s:?} is not a CIDR: write it like 10.0.0.2/24"));
    };
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IPv4 address: write it like 10.0.0.2/24"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| (1..=30).contains(l))
        .ok_or_else(|| format!("prefix length {len:?} must be a number from 1 to 30"))?;
    let cidr = Ipv4Cidr::new(ip, len);
    if ip == cidr.network().address() || Some(ip) == cidr.broadcast() {
        return Err(format!(
            "{s} is the network or broadcast address of its subnet: pick a host address"
        ));
    }
    if ip.is_multicast() || ip.is_unspecified() || ip.is_loopback() {
        return Err(format!("{s} cannot be a host address"));
    }
    Ok(cidr)
}

/// Parses `aa:bb:cc:dd:ee:ff` (six two-digit hex octets) as a unicast MAC.
pub fn parse_mac(s: &str) -> Result<EthernetAddress, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bytes: Vec<u8> = parts
        .iter()
        .filter_map(|p| {
            (p.len() == 2)
                .then(|| u8::from_str_radix(p, 16).ok())
                .flatten()
        })
        .collect();
    if parts.len() != 6 || bytes.len() != 6 {
        return Err(format!(
            "{s:?} is not a MAC address: write it like {DEFAULT_MAC}"
        ));
    }
    let mac = EthernetAddress::from_bytes(&bytes);
    if !mac.is_unicast() {
        return Err(format!(
            "{s} is a multicast/broadcast MAC: the first octet must be even (e.g. {DEFAULT_MAC})"
        ));
    }
    Ok(mac)
}

/// `IPV4:PORT`, checked before any TAP exists (a typo needs no root).
pub fn parse_target(s: &str) -> Result<SocketAddrV4, String> {
    let Some((ip, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "{s:?} is not IPV4:PORT: write it like 10.0.0.1:9000"
        ));
    };
    let ip: Ipv4Addr = ip.parse().map_err(|_| {
        format!("{ip:?} is not an IPv4 address (the stack has no DNS): write it like 10.0.0.1:9000")
    })?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("port {port:?} must be a number from 1 to 65535"))?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(format!("{ip} cannot be connected to: give a host address"));
    }
    Ok(SocketAddrV4::new(ip, port))
}

/// Parses a probability written as a fraction (`0.01`) or a percentage
/// (`1%`); it must lie in [0, 1].
pub fn parse_probability(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a probability: write 0.01 or 1%"))?;
    let p = if s.ends_with('%') { p / 100.0 } else { p };
    if !(0.0..=1.0).contains(&p) || p.is_nan() {
        return Err(format!("{s} is outside [0, 1]"));
    }
    Ok(p)
}

/// A count of at least 1 (connections), as `--max-connections 100`.
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// Checks that the stack and the kernel side can reach each other.
pub fn check_addresses(
    addr: Ipv4Cidr,
    host: Option<Ipv4Cidr>,
    gateway: Option<Ipv4Addr>,
) -> Result<(), String> {
    if let Some(gw) = gateway
        && !addr.contains_addr(&gw)
    {
        return Err(format!(
            "--gateway {gw} is not on the stack's subnet {}: the gateway must be on-link",
            addr.network()
        ));
    }
    let Some(host) = host else { return Ok(()) };
    if host.address() == addr.address() {
        return Err(format!(
            "--host-addr and --addr are both {}: give the kernel side a different address",
            addr.address()
        ));
    }
    if !addr.contains_addr(&host.address()) && gateway.is_none() {
        return Err(format!(
            "--host-addr {} is not on the stack's subnet {}: use an address in that subnet",
            host.address(),
            addr.network()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_with_hints() {
        assert_eq!(parse_cidr("10.0.0.2/24").unwrap().prefix_len(), 24);
        assert!(parse_cidr("10.0.0.2").unwrap_err().contains("10.0.0.2/24"));
        assert!(parse_cidr("10.0.0.0/24").unwrap_err().contains("network"));
        assert!(parse_cidr("10.0.0.2/33").is_err());
        assert!(parse_cidr("banana/8").is_err());
        assert!(parse_mac("02:00:00:00:00:01").is_ok());
        assert!(
            parse_mac("01:00:00:00:00:01")
                .unwrap_err()
                .contains("multicast")
        );
        assert!(parse_mac("02:00:00:00:00").is_err());
        assert!(parse_mac("02:00:00:00:00:zz").is_err());
        assert_eq!(parse_probability("5%").unwrap(), 0.05);
        assert_eq!(parse_target("10.0.0.1:9000").unwrap().port(), 9000);
        assert!(parse_target("10.0.0.1").unwrap_err().contains("IPV4:PORT"));
        assert!(
            parse_target("10.0.0.1:99999")
                .unwrap_err()
                .contains("65535")
        );
        assert!(parse_target("10.0.0.1:0").unwrap_err().contains("65535"));
        assert!(parse_target("example:80").unwrap_err().contains("DNS"));
        assert!(parse_probability("1.5").is_err());
        assert_eq!(parse_count("100"), Ok(100));
        assert!(parse_count("0").unwrap_err().contains("at least 1"));
        assert!(parse_count("-1").unwrap_err().contains("whole number"));
        let a = parse_cidr("10.0.0.2/24").unwrap();
        let h = parse_cidr("10.0.1.1/24").unwrap();
        assert!(check_addresses(a, Some(h), None).is_err());
        assert!(check_addresses(a, Some(a), None).is_err());
        assert!(check_addresses(a, Some(parse_cidr("10.0.0.1/24").unwrap()), None).is_ok());
    }
}
