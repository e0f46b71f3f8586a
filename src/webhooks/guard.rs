//! The SSRF guard: a webhook URL must be http(s), and unless `WEBHOOK_ALLOW_PRIVATE=true`
//! its host may resolve only to public addresses. It is checked when an endpoint is
//! saved and again by the HTTP client's resolver at every connection, so a name that
//! later resolves to an internal address (DNS rebinding) is still refused.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};

/// How long resolving a host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest URL accepted.
pub const MAX_URL: usize = 2048;

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("must be an absolute http or https URL of at most 2048 characters")]
    Malformed,
    #[error("{0} resolves to a loopback, private or link-local address")]
    Private(String),
    #[error("{0} does not resolve to any address")]
    Unresolved(String),
}

/// Whether `ip` is somewhere a webhook must not reach: loopback, private, link-local,
/// shared (CGNAT), unspecified, broadcast, multicast or documentation ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || a >= 240
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // unique local fc00::/7, link-local fe80::/10, site-local fec0::/10
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        // documentation 2001:db8::/32, and the NAT64 prefix that can reach private v4
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b)
}

/// Parses a webhook URL: absolute, http or https, with a host.
pub fn parse(raw: &str) -> Result<Url, Refused> {
    if raw.len() > MAX_URL {
        return Err(Refused::Malformed);
    }
    let url = Url::parse(raw).map_err(|_| Refused::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(Refused::Malformed);
    }
    Ok(url)
}

/// Resolves the URL's host and checks every address it gets.
pub async fn check(url: &Url, allow_private: bool) -> Result<(), Refused> {
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = resolve(&host, port).await?;
    if !allow_private && addrs.iter().any(|a| is_internal(a.ip())) {
        return Err(Refused::Private(host));
    }
    Ok(())
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
    // An IP literal (IPv6 in brackets) needs no lookup.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let looked_up = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare, port)))
        .await
        .ok()
        .and_then(Result::ok)
        .map(Iterator::collect::<Vec<_>>)
        .unwrap_or_default();
    if looked_up.is_empty() {
        return Err(Refused::Unresolved(host.to_owned()));
    }
    Ok(looked_up)
}

/// The HTTP client's resolver: the system's, minus internal addresses (unless allowed).
#[derive(Clone, Copy, Debug)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve(&host, 0).await?;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allow_private || !is_internal(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(Refused::Private(host).into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip} is internal");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn only_http_and_https_urls_parse() {
        assert!(parse("https://hooks.example.com/shop").is_ok());
        assert!(parse("http://203.0.113.9:8080/x").is_ok());
        for bad in [
            "ftp://example.com",
            "file:///etc/passwd",
            "example.com",
            "http://",
            "",
        ] {
            assert_eq!(parse(bad), Err(Refused::Malformed), "{bad}");
        }
        assert_eq!(
            parse(&format!("https://a.example/{}", "x".repeat(2048))),
            Err(Refused::Malformed)
        );
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allowed() {
        let url = parse("http://127.0.0.1:9/hook").unwrap();
        assert_eq!(
            check(&url, false).await,
            Err(Refused::Private("127.0.0.1".into()))
        );
        assert_eq!(check(&url, true).await, Ok(()));
        let v6 = parse("http://[::1]:9/hook").unwrap();
        assert!(matches!(check(&v6, false).await, Err(Refused::Private(_))));
        let name = parse("http://localhost:9/hook").unwrap();
        assert!(matches!(
            check(&name, false).await,
            Err(Refused::Private(_))
        ));
    }
}
