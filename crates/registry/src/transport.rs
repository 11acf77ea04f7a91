//! Where to connect (scheme and host) and how to read a body with a cap.

use std::net::IpAddr;

use crate::RegistryError;

/// Whether `host` (optionally `host:port`, `[v6]:port`) is a loopback address or `localhost`.
pub(crate) fn is_loopback(host_port: &str) -> bool {
    let host = strip_port(host_port);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn strip_port(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host_port.rsplit_once(':') {
        // One colon: host:port. More: a bare IPv6 address.
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host_port,
    }
}

/// The API host for a registry as written in a normalised reference.
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// Whether plain HTTP is allowed to `host_port`.
pub(crate) fn http_allowed(host_port: &str, insecure: &[String]) -> bool {
    is_loopback(host_port)
        || insecure.iter().any(|i| {
            i.eq_ignore_ascii_case(host_port) || i.eq_ignore_ascii_case(strip_port(host_port))
        })
}

/// `scheme://host` for a registry.
pub(crate) fn base_url(registry: &str, insecure: &[String]) -> String {
    let host = api_host(registry);
    let scheme = if http_allowed(host, insecure) {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{host}")
}

/// Refuses an absolute URL (token realm, upload location) that would use plain HTTP to a
/// host that may not have it.
pub(crate) fn check_url(url: &url::Url, insecure: &[String]) -> Result<(), RegistryError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = host_port(url);
            if http_allowed(&host, insecure) {
                Ok(())
            } else {
                Err(RegistryError::Insecure {
                    target: url.to_string(),
                })
            }
        }
        other => Err(RegistryError::Insecure {
            target: format!("{url} (scheme {other})"),
        }),
    }
}

pub(crate) fn host_port(url: &url::Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// Reads a response body as a stream, failing as soon as more than `cap` bytes arrive.
/// `Content-Length` is used only to refuse early.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    cap: u64,
    registry: &str,
    what: &str,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        registry: registry.to_owned(),
        what: what.to_owned(),
        cap,
    };
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    loop {
        let chunk = resp
            .chunk()
            .await
            .map_err(|e| map_reqwest(e, registry, what, timeout))?;
        let Some(chunk) = chunk else { break };
        if (out.len() as u64).saturating_add(chunk.len() as u64) > cap {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Maps a transport error to ours, keeping timeouts apart.
pub(crate) fn map_reqwest(
    e: reqwest::Error,
    registry: &str,
    what: &str,
    timeout: std::time::Duration,
) -> RegistryError {
    if e.is_timeout() {
        RegistryError::Timeout {
            registry: registry.to_owned(),
            what: what.to_owned(),
            timeout,
        }
    } else {
        let mut why = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            why.push_str(": ");
            why.push_str(&s.to_string());
            src = s.source();
        }
        RegistryError::Connect {
            registry: registry.to_owned(),
            why,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_insecure_rules() {
        for h in [
            "127.0.0.1:5000",
            "127.8.9.1",
            "localhost:80",
            "LOCALHOST",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "10.0.0.1:5000",
            "example.org",
            "localhost.example.org",
            "[::2]:1",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
        let insecure = vec!["reg.lan:5000".to_owned(), "other.lan".to_owned()];
        assert!(http_allowed("reg.lan:5000", &insecure));
        assert!(!http_allowed("reg.lan:5001", &insecure));
        assert!(http_allowed("other.lan:443", &insecure));
        assert_eq!(base_url("docker.io", &[]), "https://registry-1.docker.io");
        assert_eq!(base_url("127.0.0.1:5000", &[]), "http://127.0.0.1:5000");
        assert_eq!(base_url("reg.lan:5000", &insecure), "http://reg.lan:5000");
        assert_eq!(base_url("ghcr.io", &insecure), "https://ghcr.io");
    }

    #[test]
    fn check_url_refuses_downgrades() {
        let ok = |s: &str| check_url(&url::Url::parse(s).unwrap(), &[]).is_ok();
        assert!(ok("https://auth.example/token"));
        assert!(ok("http://127.0.0.1:9/token"));
        assert!(ok("http://[::1]:9/token"));
        assert!(!ok("http://auth.example/token"));
        assert!(!ok("file:///etc/passwd"));
    }
}
