//! What an adapter with its own connection may reach: the hosts and ports
//! of the target it serves, and nothing else. Both ways out of a component
//! are checked: `wasi:sockets` (each address a socket binds or connects
//! to) and `wasi:http` (each request's authority). A refused attempt is
//! remembered, so the error the user reads says what was tried.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi_http::{WasiBody, WasiHttpHooks};

/// The hosts and ports one target grants its adapter.
#[derive(Debug, Default)]
pub struct Grants {
    /// The target, for messages.
    target: String,
    /// `(host, port)`: a port of `None` grants every port of the host.
    allowed: Vec<(String, Option<u16>)>,
    /// The addresses the granted hosts resolved to, for sockets.
    addresses: Vec<(IpAddr, Option<u16>)>,
    /// What was tried and refused, in order.
    refused: Mutex<Vec<String>>,
}

impl Grants {
    /// Nothing granted: a pure adapter, or an instance that only renders SQL.
    pub fn none() -> Arc<Self> {
        Arc::default()
    }

    /// The host and port of `url` (`scheme://[user[:password]@]host[:port]/...`),
    /// for target `target`: a URL without a port grants every port of its
    /// host. The host's addresses are looked up now, for socket checks.
    pub async fn for_target(target: &str, url: &str) -> Result<Arc<Self>, String> {
        let (host, port) = host_and_port(url)?;
        let lookup = format!("{host}:{}", port.unwrap_or(0));
        let addresses = tokio::net::lookup_host(lookup)
            .await
            .map_err(|e| format!("cannot resolve the target's host `{host}`: {e}"))?
            .map(|address| (address.ip(), port))
            .collect();
        Ok(Arc::new(Self {
            target: target.to_string(),
            allowed: vec![(host.to_lowercase(), port)],
            addresses,
            refused: Mutex::default(),
        }))
    }

    /// What this grant allows, e.g. `127.0.0.1:8123`.
    pub fn describe(&self) -> String {
        match self.allowed.as_slice() {
            [] => "nothing".into(),
            allowed => allowed
                .iter()
                .map(|(host, port)| match port {
                    Some(port) => format!("{host}:{port}"),
                    None => format!("{host} (any port)"),
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The same grants with nothing refused yet: one per session, so what
    /// one session tried is reported with its own error only.
    pub(crate) fn for_session(&self) -> Arc<Self> {
        Arc::new(Self {
            target: self.target.clone(),
            allowed: self.allowed.clone(),
            addresses: self.addresses.clone(),
            refused: Mutex::default(),
        })
    }

    /// The refused attempts since the last call, as one sentence, or `None`.
    pub fn refusals(&self) -> Option<String> {
        let refused = std::mem::take(&mut *self.refused.lock().unwrap_or_else(|e| e.into_inner()));
        (!refused.is_empty()).then(|| {
            format!(
                "it tried to reach {}, which target `{}` does not grant (granted: {})",
                refused.join(", "),
                self.target,
                self.describe()
            )
        })
    }

    fn refuse(&self, what: String) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        if !refused.contains(&what) {
            refused.push(what);
        }
    }

    fn allows_authority(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allowed
            .iter()
            .any(|(h, p)| h.eq_ignore_ascii_case(host) && p.is_none_or(|p| p == port))
            || host
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.allows_address(SocketAddr::new(ip, port)))
    }

    fn allows_address(&self, address: SocketAddr) -> bool {
        self.addresses
            .iter()
            .any(|(ip, port)| *ip == address.ip() && port.is_none_or(|p| p == address.port()))
    }

    /// The `wasi:sockets` check: connections only to the granted
    /// addresses; binds only the implicit ones a connection makes.
    pub(crate) fn check_socket(&self, address: SocketAddr, use_: SocketAddrUse) -> bool {
        let allowed = match use_ {
            SocketAddrUse::TcpConnect => self.allows_address(address),
            SocketAddrUse::TcpBind => address.ip().is_unspecified() && address.port() == 0,
            _ => false,
        };
        if !allowed {
            self.refuse(format!("{address} ({use_:?})"));
        }
        allowed
    }
}

/// `(host, port)` of a URL's authority.
fn host_and_port(url: &str) -> Result<(String, Option<u16>), String> {
    let rest = url
        .split_once("://")
        .map(|(_, rest)| rest)
        .ok_or_else(|| "the target URL has no `scheme://`".to_string())?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            if host.contains(':') && !host.starts_with('[') {
                // A bare IPv6 address without brackets has no port.
                (host_port, None)
            } else {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("the target URL's port `{port}` is not a number"))?;
                (host, Some(port))
            }
        }
        _ => (host_port, None),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("the target URL names no host".into());
    }
    Ok((host.to_string(), port))
}

/// The `wasi:http` check: a request goes out only to a granted authority.
pub(crate) struct GrantedHttp(pub(crate) Arc<Grants>);

impl WasiHttpHooks for GrantedHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        _ = fut;
        let uri = request.uri();
        let host = uri.host().unwrap_or("").to_string();
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        if !self.0.allows_authority(&host, port) {
            self.0.refuse(format!("http://{host}:{port}"));
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_its_host_and_port() {
        let cases = [
            (
                "clickhouse://u:p@127.0.0.1:8123/db",
                ("127.0.0.1", Some(8123)),
            ),
            ("clickhouse://localhost/db", ("localhost", None)),
            ("x://[::1]:9000", ("::1", Some(9000))),
            ("x://user@db.example:1", ("db.example", Some(1))),
        ];
        for (url, (host, port)) in cases {
            assert_eq!(
                host_and_port(url).unwrap(),
                (host.to_string(), port),
                "{url}"
            );
        }
        assert!(host_and_port("x://h:port").is_err());
        assert!(host_and_port("x:///db").is_err());
        assert!(host_and_port("no-scheme").is_err());
    }

    #[tokio::test]
    async fn only_the_targets_host_and_port_are_granted() {
        let grants = Grants::for_target("dev", "ch://u:p@127.0.0.1:8123/db")
            .await
            .unwrap();
        assert!(grants.allows_authority("127.0.0.1", 8123));
        assert!(!grants.allows_authority("127.0.0.1", 8124));
        assert!(!grants.allows_authority("10.0.0.1", 8123));
        let granted: SocketAddr = "127.0.0.1:8123".parse().unwrap();
        assert!(grants.check_socket(granted, SocketAddrUse::TcpConnect));
        assert!(grants.check_socket("0.0.0.0:0".parse().unwrap(), SocketAddrUse::TcpBind));
        assert!(!grants.check_socket("127.0.0.1:22".parse().unwrap(), SocketAddrUse::TcpConnect));
        assert!(!grants.check_socket(granted, SocketAddrUse::UdpSend));
        let refusals = grants.refusals().unwrap();
        assert!(
            refusals.contains("127.0.0.1:22") && refusals.contains("target `dev`"),
            "{refusals}"
        );
        assert_eq!(grants.refusals(), None, "each refusal is reported once");
        assert!(
            !grants
                .for_session()
                .check_socket(granted, SocketAddrUse::TcpBind)
        );
        assert_eq!(grants.refusals(), None, "a session's refusals are its own");
        assert_eq!(Grants::none().refusals(), None);
    }
}
