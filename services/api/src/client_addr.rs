//! The client's address, for the sign-in throttle: the socket's peer, or behind a trusted reverse
//! proxy (`trust_forwarded_for`) the address the proxy appended to `X-Forwarded-For`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::ApiState;
use crate::error::ApiError;

/// The address a request came from. Without a socket (the router called in process) it is the
/// unspecified address, shared by every such request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<ApiState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        let forwarded = state.platform.config().trust_forwarded_for.then(|| forwarded_for(parts)).flatten();
        Ok(ClientAddr(forwarded.or(peer).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}

/// The last address of the last `X-Forwarded-For` header: the one the nearest proxy appended
/// (those before it are whatever the client sent).
fn forwarded_for(parts: &Parts) -> Option<IpAddr> {
    let header = parts.headers.get_all("x-forwarded-for").iter().next_back()?.to_str().ok()?;
    header.rsplit(',').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[&str]) -> Parts {
        let mut req = axum::http::Request::builder();
        for h in headers {
            req = req.header("x-forwarded-for", *h);
        }
        req.body(()).expect("request").into_parts().0
    }

    #[test]
    fn the_address_the_proxy_appended_counts() {
        assert_eq!(forwarded_for(&parts(&["6.6.6.6, 10.1.2.3"])), Some("10.1.2.3".parse().expect("ip")));
        assert_eq!(forwarded_for(&parts(&["6.6.6.6", "2001:db8::1"])), Some("2001:db8::1".parse().expect("ip")));
        assert_eq!(forwarded_for(&parts(&["not an address"])), None);
        assert_eq!(forwarded_for(&parts(&[])), None);
    }
}
