//! What an agent may reach and how much: the owner's egress policy, plain data that can live on chain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// At most this many requests per sliding window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct RateCap {
    /// Requests (every HTTP exchange, redirect hops included) allowed per window.
    pub max_requests: u32,
    /// The window in milliseconds (sliding: the last `window_ms` before each request count).
    pub window_ms: u64,
}

/// A budget of egress units per fixed window.
///
/// Units are abstract "egress units" the owner prices: one exchange costs
/// `cost_per_request + cost_per_kib * (ceil(request_body / 1024) + ceil(response_body / 1024))`. With
/// `cost_per_request = 0, cost_per_kib = 1` the budget is a cap on KiB moved; with `cost_per_kib = 0` it is a
/// request count. The window starts at the first request and resets `window_ms` later.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct SpendCap {
    /// Units available per window.
    pub budget: u64,
    /// Window length in milliseconds.
    pub window_ms: u64,
    /// Units charged per exchange.
    pub cost_per_request: u64,
    /// Units charged per started KiB of request body and, separately, of response body.
    pub cost_per_kib: u64,
}

impl SpendCap {
    /// The cost of `bytes` of body: `cost_per_kib * ceil(bytes / 1024)`, saturating.
    pub fn bytes_cost(&self, bytes: u64) -> u64 {
        self.cost_per_kib.saturating_mul(bytes.div_ceil(1024))
    }
}

/// An agent's egress policy, set by its owner.
///
/// Private and loopback targets: an agent runs inside the worker's network, so by default it may not reach
/// loopback, private (RFC 1918, unique-local), link-local (cloud metadata), CGNAT, multicast or unspecified
/// addresses, whether written as an IP or resolved from an allowed name (the check runs in the client's resolver,
/// so DNS rebinding to a private address is refused too). Tests and local development set `allow_private`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct Policy {
    /// Hosts the agent may reach, case-insensitive, any port: exact names or IPs (`api.example.com`,
    /// `127.0.0.1`), `*.example.com` for any subdomain of `example.com` (not `example.com` itself), or `*` for
    /// every host (still subject to `allow_private`).
    pub allow_hosts: Vec<String>,
    /// Whether plain `http` is allowed (`https` always is).
    pub allow_http: bool,
    /// Whether loopback, private and link-local addresses may be reached (see the type docs).
    pub allow_private: bool,
    /// Largest request body in bytes.
    pub max_request_bytes: u64,
    /// Largest response body in bytes; a longer one is cut off while reading with `ResponseTooLarge`.
    pub max_response_bytes: u64,
    /// Deadline for one exchange (connect, send, read the whole response) in milliseconds.
    pub timeout_ms: u64,
    /// Redirects followed per fetch; each target is checked against this policy.
    pub max_redirects: u32,
    /// Request rate cap.
    pub rate: RateCap,
    /// Spending cap.
    pub spend: SpendCap,
}

impl Default for Policy {
    /// Nothing allowed (empty allow-list), https only, 64 KiB requests, 4 MiB responses, 10 s, 5 redirects,
    /// 60 requests a minute and 64 MiB of bodies an hour (1 unit per KiB, none per request).
    fn default() -> Self {
        Policy {
            allow_hosts: Vec::new(),
            allow_http: false,
            allow_private: false,
            max_request_bytes: 64 * 1024,
            max_response_bytes: 4 * 1024 * 1024,
            timeout_ms: 10_000,
            max_redirects: 5,
            rate: RateCap { max_requests: 60, window_ms: 60_000 },
            spend: SpendCap { budget: 64 * 1024, window_ms: 3_600_000, cost_per_request: 0, cost_per_kib: 1 },
        }
    }
}

impl Policy {
    /// Refuses malformed patterns and limits that would disable themselves.
    pub fn validate(&self) -> Result<(), String> {
        for p in &self.allow_hosts {
            if p == "*" {
                continue;
            }
            let name = p.strip_prefix("*.").unwrap_or(p);
            let ok = !name.is_empty()
                && !name.contains('*')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            if !ok {
                return Err(format!("allow_hosts entry {p:?}: a host name, an IP, `*.domain` or `*`"));
            }
        }
        if self.timeout_ms == 0 {
            return Err("timeout_ms must be positive".into());
        }
        if self.rate.window_ms == 0 || self.spend.window_ms == 0 {
            return Err("rate and spend windows must be positive".into());
        }
        Ok(())
    }

    /// Whether `host` (a name or IP as it appears in the URL, brackets removed) is on the allow-list.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow_hosts.iter().any(|p| {
            let p = p.trim_end_matches('.').to_ascii_lowercase();
            if p == "*" {
                return true;
            }
            match p.strip_prefix("*.") {
                Some(domain) => host.len() > domain.len() + 1 && host.ends_with(&format!(".{domain}")),
                None => host == p.trim_start_matches('[').trim_end_matches(']'),
            }
        })
    }
}

/// Whether `ip` is a public unicast address (the only kind reachable without `allow_private`).
pub fn is_public_ip(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(&v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: &Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

fn is_public_v6(ip: &Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x64 && ip.segments()[1] == 0xff9b)) // NAT64 can reach private IPv4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(hosts: &[&str]) -> Policy {
        Policy { allow_hosts: hosts.iter().map(|s| s.to_string()).collect(), ..Policy::default() }
    }

    #[test]
    fn wildcards_match_subdomains_but_not_the_apex_or_lookalikes() {
        let p = allow(&["*.example.com", "api.other.org"]);
        assert!(p.host_allowed("a.example.com"));
        assert!(p.host_allowed("A.B.Example.COM."));
        assert!(!p.host_allowed("example.com"));
        assert!(!p.host_allowed("badexample.com"));
        assert!(!p.host_allowed("example.com.evil.net"));
        assert!(p.host_allowed("api.other.org"));
        assert!(!p.host_allowed("x.api.other.org"));
        assert!(!allow(&[]).host_allowed("a.example.com"));
        assert!(allow(&["*"]).host_allowed("anything.test"));
    }

    proptest::proptest! {
        #[test]
        fn a_wildcard_matches_exactly_the_names_that_end_in_dot_domain(
            host in "[a-z0-9.-]{0,24}",
            domain in "[a-z0-9-]{1,8}\\.[a-z]{2,3}",
        ) {
            let p = allow(&[&format!("*.{domain}")]);
            let expected = host.len() > domain.len() + 1 && host.ends_with(&format!(".{domain}"));
            proptest::prop_assert_eq!(p.host_allowed(&host), expected);
            proptest::prop_assert!(!p.host_allowed(&domain));
            let sub = format!("x.{domain}");
            proptest::prop_assert!(p.host_allowed(&sub));
        }
    }

    #[test]
    fn malformed_patterns_and_zero_windows_are_refused() {
        assert!(allow(&["*.example.com", "127.0.0.1", "[::1]"]).validate().is_ok());
        assert!(allow(&["https://example.com"]).validate().is_err());
        assert!(allow(&["a.*.com"]).validate().is_err());
        assert!(allow(&["*."]).validate().is_err());
        let mut p = Policy::default();
        p.rate.window_ms = 0;
        assert!(p.validate().is_err());
    }

    #[test]
    fn private_loopback_and_metadata_addresses_are_not_public() {
        for ip in ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.4", "169.254.169.254", "100.64.0.1", "0.0.0.0"] {
            assert!(!is_public_ip(&ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"] {
            assert!(!is_public_ip(&ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(is_public_ip(&ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn a_policy_round_trips_through_borsh_and_json() {
        let p = allow(&["*.example.com"]);
        let b = borsh::to_vec(&p).expect("borsh");
        assert_eq!(borsh::from_slice::<Policy>(&b).expect("decode"), p);
        let j = serde_json::to_string(&p).expect("json");
        assert_eq!(serde_json::from_str::<Policy>(&j).expect("decode"), p);
    }
}
