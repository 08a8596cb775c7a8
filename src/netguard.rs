//! The SSRF guard of every request to a URL a user gave (webhook deliveries, input
//! images): every address the URL's host resolves to is checked before anything
//! connects, the connection is pinned to the checked addresses (the HTTP client's only
//! resolver is [`GuardedResolver`], and proxies are off, so there is no second lookup to
//! rebind), literal-IP URLs are checked by [`NetPolicy::check_url`] since no resolver
//! sees them, and redirects are either refused or re-checked hop by hop
//! ([`guarded_client`]).
//!
//! Refused unless allowed: loopback, RFC 1918 private, link-local (cloud metadata at
//! 169.254.169.254), CGNAT 100.64/10, 0/8, 192.0.0/24, documentation, benchmarking
//! 198.18/15, multicast, reserved 240/4 and broadcast; IPv6 unspecified, loopback,
//! link-local fe80::/10, site-local fec0::/10, ULA fc00::/7, multicast, documentation;
//! IPv4-mapped, NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses are judged by the
//! IPv4 address they carry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::ConfigError;

/// Which destinations requests may reach.
#[derive(Debug, Clone)]
pub struct NetPolicy {
    /// Everything goes (tests, private deployments).
    pub allow_private_networks: bool,
    /// Ranges allowed even though they are private.
    pub allow_cidrs: Vec<IpNet>,
    /// The config section the policy comes from (`webhooks`, `inputs`), named in
    /// refusals so a user knows which key opens the range.
    pub section: &'static str,
}

impl NetPolicy {
    /// The policy of `[webhooks]`.
    pub fn for_webhooks(c: &crate::config::WebhooksConfig) -> Result<Self, ConfigError> {
        Ok(NetPolicy {
            allow_private_networks: c.allow_private_networks,
            allow_cidrs: c.cidrs()?,
            section: "webhooks",
        })
    }

    /// The policy of `[inputs]`.
    pub fn for_inputs(c: &crate::config::InputsConfig) -> Result<Self, ConfigError> {
        Ok(NetPolicy {
            allow_private_networks: c.allow_private_networks,
            allow_cidrs: c.cidrs()?,
            section: "inputs",
        })
    }
}

impl Default for NetPolicy {
    fn default() -> Self {
        NetPolicy {
            allow_private_networks: false,
            allow_cidrs: Vec::new(),
            section: "webhooks",
        }
    }
}

/// A destination the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host} resolves to {ip}, {class}: refused ({section}.allow_private_networks is off; allow it, or list the range in {section}.allow_cidrs)"
)]
pub struct Refused {
    /// Host as written in the URL.
    pub host: String,
    /// The refused address (IPv4-mapped addresses shown as IPv4).
    pub ip: IpAddr,
    /// What kind of address it is.
    pub class: &'static str,
    /// The config section whose keys would allow it.
    pub section: &'static str,
}

/// Why a webhook URL is not usable at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL.
    #[error("`{0}` is not a URL")]
    Parse(String),
    /// Not http(s), or no host.
    #[error("`{0}` must be an http:// or https:// URL with a host")]
    Scheme(String),
    /// A refused destination.
    #[error(transparent)]
    Refused(#[from] Refused),
}

/// The class of an address that is not publicly routable; `None` for a public one.
pub fn special_class(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [0, ..] => "a \"this network\" address (0.0.0.0/8)",
        [10, ..] => "a private address (10.0.0.0/8)",
        [100, b, ..] if (64..128).contains(&b) => "a carrier-grade NAT address (100.64.0.0/10)",
        [127, ..] => "a loopback address",
        [169, 254, ..] => "a link-local address (169.254.0.0/16, cloud metadata)",
        [172, b, ..] if (16..32).contains(&b) => "a private address (172.16.0.0/12)",
        [192, 0, 0, _] => "an IETF protocol address (192.0.0.0/24)",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "a documentation address",
        [192, 168, ..] => "a private address (192.168.0.0/16)",
        [198, b, ..] if b == 18 || b == 19 => "a benchmarking address (198.18.0.0/15)",
        [a, ..] if (224..240).contains(&a) => "a multicast address",
        [a, ..] if a >= 240 => "a reserved address (240.0.0.0/4)",
        _ => return None,
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("the unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    // Addresses that carry an IPv4 address are judged by it.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_class(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return v4_class(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    Some(match s[0] {
        0 => "a reserved address (::/8, IPv4-compatible)",
        x if x & 0xffc0 == 0xfe80 => "a link-local address (fe80::/10)",
        x if x & 0xffc0 == 0xfec0 => "a site-local address (fec0::/10)",
        x if x & 0xfe00 == 0xfc00 => "a unique local address (fc00::/7)",
        x if x & 0xff00 == 0xff00 => "a multicast address",
        0x2001 if s[1] == 0x0db8 => "a documentation address (2001:db8::/32)",
        _ => return None,
    })
}

impl NetPolicy {
    /// Refuses `ip` unless it is public, allowed by a CIDR, or private networks are on.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Refused> {
        if self.allow_private_networks {
            return Ok(());
        }
        let ip = ip.to_canonical();
        let Some(class) = special_class(ip) else {
            return Ok(());
        };
        if self.allow_cidrs.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        Err(Refused {
            host: host.to_string(),
            ip,
            class,
            section: self.section,
        })
    }

    /// Checks a URL's form, and its address when the host is a literal IP. Hostnames
    /// are checked when they resolve ([`GuardedResolver`], [`NetPolicy::check_resolved`]).
    pub fn check_url(&self, raw: &str) -> Result<url::Url, UrlError> {
        let url = url::Url::parse(raw).map_err(|_| UrlError::Parse(raw.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(UrlError::Scheme(raw.to_string()));
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(&ip.to_string(), IpAddr::V4(ip))?,
            Some(url::Host::Ipv6(ip)) => self.check(&format!("[{ip}]"), IpAddr::V6(ip))?,
            _ => {}
        }
        Ok(url)
    }

    /// Checks a URL and, for a hostname, every address it resolves to now (a producer's
    /// early check: the delivery checks again when it connects). A name that does not
    /// resolve here passes: the delivering worker may see other DNS.
    pub async fn check_resolved(&self, raw: &str) -> Result<url::Url, UrlError> {
        let url = self.check_url(raw)?;
        if let Some(url::Host::Domain(host)) = url.host()
            && let Ok(addrs) = tokio::net::lookup_host((host, 0)).await
        {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if let Some(first) = addrs.first()
                && addrs.iter().all(|a| self.check(host, a.ip()).is_err())
            {
                return Err(self.check(host, first.ip()).unwrap_err().into());
            }
        }
        Ok(url)
    }
}

/// The webhook client's resolver: resolves, drops refused addresses, and fails with
/// [`Refused`] when none is left. What it returns is what the client dials.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    /// The policy.
    pub policy: Arc<NetPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let ok: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| match policy.check(&host, a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refused.get_or_insert(e);
                        false
                    }
                })
                .collect();
            if ok.is_empty() {
                return Err(match refused {
                    Some(e) => Box::new(e) as Box<dyn std::error::Error + Send + Sync>,
                    None => format!("{host} resolves to no address").into(),
                });
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An HTTP client for user-given URLs: its only resolver is [`GuardedResolver`], no
/// proxy (it would resolve again), the `timeout`, and redirects either refused
/// (`max_redirects == 0`: a 3xx is the answer) or followed at most `max_redirects`
/// times, each hop's URL checked again (a literal address here, a name by the resolver
/// when it connects).
pub fn guarded_client(
    policy: Arc<NetPolicy>,
    timeout: Duration,
    max_redirects: usize,
    user_agent: &str,
) -> reqwest::Client {
    let redirect = if max_redirects == 0 {
        reqwest::redirect::Policy::none()
    } else {
        let hops = policy.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                let msg = format!("more than {max_redirects} redirects");
                return attempt.error(msg);
            }
            match hops.check_url(attempt.url().as_str()) {
                Ok(_) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        })
    };
    reqwest::Client::builder()
        .redirect(redirect)
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .dns_resolver(GuardedResolver { policy })
        .user_agent(user_agent)
        .build()
        .expect("a guarded HTTP client")
}

/// The policy refusal somewhere in an error's chain (a resolver or redirect refusal
/// reaches the caller wrapped in reqwest's errors).
pub fn refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r);
        }
        if let Some(UrlError::Refused(r)) = err.downcast_ref::<UrlError>() {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// An error and its sources in one line, each text once (reqwest's errors repeat
/// their cause in their own text).
pub fn describe_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> Option<&'static str> {
        match NetPolicy::default().check_url(url) {
            Err(UrlError::Refused(r)) => Some(r.class),
            Ok(_) => None,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn refuses_private_literals() {
        for url in [
            "http://127.0.0.1:8080/h",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:127.0.0.1]:9/",
            "http://[::1]/",
            "http://100.64.1.1/",
            "http://240.0.0.1/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://0.0.0.0/",
            "http://2130706433/",
            "http://[64:ff9b::a00:1]/",
            "http://172.20.0.1/",
            "http://192.168.1.1/",
        ] {
            assert!(refused(url).is_some(), "{url} was allowed");
        }
        for url in [
            "https://hooks.example.com/x",
            "http://8.8.8.8/",
            "http://[2606:4700::1111]/",
        ] {
            assert_eq!(refused(url), None, "{url}");
        }
        let e = NetPolicy::default()
            .check_url("http://[::ffff:127.0.0.1]:9/")
            .unwrap_err();
        assert!(
            e.to_string().contains("127.0.0.1, a loopback address"),
            "{e}"
        );
    }

    #[test]
    fn allow_lists() {
        let p = NetPolicy {
            allow_cidrs: vec!["10.1.0.0/16".parse().unwrap()],
            ..NetPolicy::default()
        };
        assert!(p.check("h", "10.1.2.3".parse().unwrap()).is_ok());
        assert!(p.check("h", "::ffff:10.1.2.3".parse().unwrap()).is_ok());
        assert!(p.check("h", "10.2.0.1".parse().unwrap()).is_err());
        let open = NetPolicy {
            allow_private_networks: true,
            ..NetPolicy::default()
        };
        assert!(open.check("h", "127.0.0.1".parse().unwrap()).is_ok());
    }

    #[test]
    fn refuses_other_schemes() {
        for url in ["ftp://x.example/", "file:///etc/passwd", "nope"] {
            assert!(NetPolicy::default().check_url(url).is_err(), "{url}");
        }
    }
}
