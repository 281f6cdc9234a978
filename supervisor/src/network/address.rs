//! Which destination addresses the proxy refuses whatever the names say: anything that is
//! not a globally routed unicast address (loopback, private, shared/CGNAT, link-local and
//! with it the cloud metadata services at 169.254.169.254 and fd00:ec2::254, unique-local,
//! multicast, unspecified, broadcast, documentation), unless a rule allows that address
//! by its literal. The proxy connects to the very address it checked, so a name that
//! resolves differently a moment later (DNS rebinding) changes nothing.
//!
//! A public address can still be the supervisor's own host (a server with a routable
//! address on its interface): connecting to it reaches the host's services as loopback
//! does, so [`this_host`] refuses the addresses of the supervisor's network namespace too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// Why `addr` is refused, or `None` for a public address.
pub fn non_public(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public_v4(v4);
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first & 0xfe00 == 0xfc00 {
                Some("unique-local (private, or a metadata service)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.segments()[..6] == [0, 0, 0, 0, 0, 0] {
                // IPv4-compatible (deprecated): whatever it embeds, not a public v6 host.
                Some("IPv4-compatible")
            } else if first == 0x2001 && v6.segments()[1] == 0x0db8 {
                Some("documentation")
            } else if v6.segments()[..2] == [0x64, 0xff9b] {
                // NAT64: judge the embedded IPv4 address.
                let s = v6.segments();
                let embedded = Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    (s[6] & 0xff) as u8,
                    (s[7] >> 8) as u8,
                    (s[7] & 0xff) as u8,
                );
                non_public_v4(embedded)
            } else {
                None
            }
        }
    }
}

fn non_public_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = v4.octets();
    if v4.is_loopback() {
        Some("loopback")
    } else if v4.is_private() {
        Some("private")
    } else if v4.is_link_local() {
        Some("link-local (cloud metadata lives here)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared address space (CGNAT, some metadata services)")
    } else if a == 0 {
        Some("unspecified (this network)")
    } else if v4.is_broadcast() || a >= 240 {
        Some("reserved or broadcast")
    } else if v4.is_multicast() {
        Some("multicast")
    } else if v4.is_documentation() || (a == 198 && (b & 0xfe) == 18) {
        Some("documentation or benchmarking")
    } else if a == 192 && b == 0 && c == 0 {
        Some("IETF protocol assignments")
    } else {
        None
    }
}

/// Why `addr` is an address of this host (of the supervisor's network namespace), or
/// `None`. Asked of the routing table: a UDP socket "connected" to `addr` (nothing is
/// sent) gets the source address the kernel would use, which for a local destination is
/// that destination itself. When the question cannot be asked, the answer is a refusal.
pub fn this_host(addr: IpAddr) -> Option<String> {
    let addr = addr.to_canonical();
    let unspecified = match addr {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let source = UdpSocket::bind(SocketAddr::new(unspecified, 0))
        .and_then(|socket| {
            // Any port but 0 (which a connect refuses); the route does not depend on it.
            socket.connect(SocketAddr::new(addr, 9))?;
            socket.local_addr()
        })
        .map(|local| local.ip().to_canonical());
    match source {
        Ok(source) if source == addr => {
            Some("host's own (on an interface of the supervisor's host)".to_owned())
        }
        Ok(_) => None,
        // No route: the connect would fail as well.
        Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) => None,
        Err(e) => Some(format!("possibly host's own (cannot tell: {e})")),
    }
}

/// An address given as a literal by the tree (`CONNECT 10.0.0.1:443`, a SOCKS5 address).
pub fn literal(host: &str) -> Option<IpAddr> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    // Only the canonical forms: `0x7f.1` and the like are names to the proxy, and no rule
    // names them.
    host.parse::<IpAddr>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_refused() {
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "::127.0.0.1",
        ] {
            assert!(
                non_public(bad.parse().unwrap()).is_some(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn this_hosts_own_addresses_are_recognised() {
        for own in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(this_host(own.parse().unwrap()).is_some(), "{own}");
        }
        // A documentation address is no address of any host (here: no route, or another
        // source address).
        assert_eq!(this_host("198.51.100.7".parse().unwrap()), None);
    }

    #[test]
    fn public_addresses_pass() {
        for good in [
            "93.184.216.34",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(non_public(good.parse().unwrap()), None, "{good}");
        }
    }
}
