//! Who may use the gallery server, checked once for every request by [`check`], and what every
//! response carries, added by [`harden`].
//!
//! - The `Host` must be a loopback name or address, one the user allowed ([`Access::allowed_hosts`]),
//!   or (on a non-loopback bind) an IP address: a page served from another name that was made to
//!   resolve to this machine (DNS rebinding) is refused.
//! - A state-changing request (any method but `GET`, `HEAD`, `OPTIONS`) must not come from
//!   another origin (`Origin`, `Sec-Fetch-Site`) and must not use a content type a cross-site form
//!   can send without a CORS preflight (`text/plain`, `application/x-www-form-urlencoded`,
//!   `multipart/form-data`).
//! - With an [`AccessToken`], every request but the page and its static files must present it:
//!   `Authorization: Bearer TOKEN`, or the cookie set by opening `/?token=TOKEN`. It is compared in
//!   constant time (BLAKE3 digests, whose equality is constant-time).
//! - Request heads are bounded (URI length, header count and bytes) below hyper's own limits, so
//!   these errors get JSON bodies too.
//! - [`harden`] adds `X-Frame-Options`, `Content-Security-Policy: frame-ancestors 'none'`,
//!   `X-Content-Type-Options: nosniff` and friends to every response, and gives every error
//!   response without one a JSON body `{"error": "..."}` (axum's 405, for one).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::server::ApiError;

/// Longest accepted request target (path and query), in bytes (414 beyond).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most request headers (431 beyond).
pub const MAX_HEADERS: usize = 64;
/// Most bytes of request headers, names and values together (431 beyond).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The cookie that carries the access token for the browser page.
pub const TOKEN_COOKIE: &str = "gallery_token";

/// Who may use the server.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// When set, required on every request but the page and its static files.
    pub token: Option<AccessToken>,
    /// Host names accepted besides `localhost` and loopback addresses (e.g. `gallery.lan`, or
    /// the name a reverse proxy forwards), without port; compared case-insensitively.
    pub allowed_hosts: Vec<String>,
}

/// A secret that grants access; only its BLAKE3 digest is kept.
#[derive(Clone)]
pub struct AccessToken {
    digest: blake3::Hash,
}

/// A token that cannot be used (it must fit in a cookie and a URL unescaped, and be long enough
/// not to be guessed).
#[derive(Debug, thiserror::Error)]
#[error(
    "the access token must be 16 to 256 characters from A-Z, a-z, 0-9, '-', '_', '.' and '~' \
     (got {0} characters)"
)]
pub struct BadToken(pub usize);

impl AccessToken {
    /// A token from a user-chosen secret.
    pub fn new(secret: &str) -> Result<Self, BadToken> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.~".contains(c);
        let n = secret.chars().count();
        if !(16..=256).contains(&n) || !secret.chars().all(ok_char) {
            return Err(BadToken(n));
        }
        Ok(Self {
            digest: blake3::hash(secret.as_bytes()),
        })
    }

    /// A fresh random token (192 bits from the operating system) and its text, to show the user.
    pub fn generate() -> std::io::Result<(Self, String)> {
        let mut raw = [0u8; 24];
        getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
        let text: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let token = Self::new(&text).map_err(std::io::Error::other)?;
        Ok((token, text))
    }

    /// Whether `given` is the secret, in time independent of where they differ.
    pub fn matches(&self, given: &str) -> bool {
        // `blake3::Hash`'s equality is constant-time, and hashing hides the length.
        blake3::hash(given.as_bytes()) == self.digest
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<secret>)")
    }
}

/// The access rules for one listening address.
#[derive(Debug)]
pub struct Guard {
    token: Option<AccessToken>,
    hosts: Vec<String>,
    bind: Option<IpAddr>,
}

impl Guard {
    /// The rules of `access` for a server listening on `bind` (`None`: loopback).
    pub fn new(access: &Access, bind: Option<SocketAddr>) -> Self {
        Self {
            token: access.token.clone(),
            hosts: access
                .allowed_hosts
                .iter()
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            bind: bind.map(|a| a.ip()),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let name = name.trim_end_matches('.');
        if name == "localhost" || self.hosts.iter().any(|h| h == name) {
            return true;
        }
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<IpAddr>() {
            // An address typed by the user cannot be a rebinding name; a non-loopback bind
            // accepts the addresses it listens on (all of them for 0.0.0.0 / ::).
            Ok(ip) => {
                ip.is_loopback()
                    || self
                        .bind
                        .is_some_and(|b| !b.is_loopback() && (b.is_unspecified() || b == ip))
            }
            Err(_) => false,
        }
    }
}

/// The host part of a `Host` value (`name:port`, `[v6]:port`).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

/// Paths served without the token: the page and its static files (no library data).
fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with("/static/")
}

/// Whether `method` can change the library (the API's only such route is a POST).
fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware: the access rules of the module docs, in order: request size, host, origin and
/// content type of state-changing requests, token.
pub async fn check(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    match admit(&g, &req) {
        Ok(Some(resp)) => resp,
        Ok(None) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn admit(g: &Guard, req: &Request) -> Result<Option<Response>, ApiError> {
    let h = req.headers();
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        ));
    }
    let header_bytes: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if h.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "request headers too large (at most {MAX_HEADERS} headers, {MAX_HEADER_BYTES} bytes)"
            ),
        ));
    }
    // Browsers always send Host; a request without one does not come from a web page.
    if let Some(host) = h.get(header::HOST) {
        let ok = host.to_str().is_ok_and(|s| g.host_allowed(s));
        if !ok {
            return Err(ApiError::forbidden(
                "this host name is not allowed (start the server with --allow-host NAME to allow it)",
            ));
        }
    }
    if is_state_changing(req.method()) {
        check_origin(h)?;
        check_content_type(h)?;
    }
    if let Some(token) = &g.token {
        let path = req.uri().path();
        if path == "/"
            && let Some(given) = query_token(req.uri().query())
        {
            return if token.matches(given) {
                Ok(Some(token_redirect(given, req.uri().query())))
            } else {
                Err(unauthorized())
            };
        }
        if !is_public(path) && !presented(h).is_some_and(|t| token.matches(t)) {
            return Err(unauthorized());
        }
    }
    Ok(None)
}

/// Refuses a request sent by a page of another origin.
fn check_origin(h: &HeaderMap) -> Result<(), ApiError> {
    let cross = || ApiError::forbidden("cross-origin requests may not change the library");
    if h.get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return Err(cross());
    }
    let Some(origin) = h.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().map_err(|_| cross())?;
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(cross)?;
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(cross)?;
    if !authority.eq_ignore_ascii_case(host) {
        return Err(cross());
    }
    Ok(())
}

/// Refuses the content types a cross-site form or `fetch` may send without a CORS preflight: the
/// API takes raw file bytes (`application/octet-stream` or `image/*`).
fn check_content_type(h: &HeaderMap) -> Result<(), ApiError> {
    for v in h.get_all(header::CONTENT_TYPE) {
        let essence = v
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if matches!(
            essence.as_str(),
            "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
        ) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the file's bytes as the body with Content-Type: application/octet-stream \
                 (or image/*)",
            ));
        }
    }
    Ok(())
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "an access token is needed: open the link the server printed at start (/?token=...), or \
         send Authorization: Bearer TOKEN",
    )
    .with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"gallery\""),
    )
}

/// The token presented by `Authorization: Bearer` or the cookie.
fn presented(h: &HeaderMap) -> Option<&str> {
    if let Some(bearer) = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim());
    }
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == TOKEN_COOKIE)
        .map(|(_, v)| v.trim())
}

fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v)
}

/// `/?token=T` with the right token: the cookie is set and the browser sent back to the page
/// without the token in its address bar or history.
fn token_redirect(token: &str, query: Option<&str>) -> Response {
    let rest: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.starts_with("token="))
        .collect();
    let location = if rest.is_empty() {
        "/".to_owned()
    } else {
        format!("/?{}", rest.join("&"))
    };
    let cookie = format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let h = resp.headers_mut();
    // Both values are checked: the token is URL-safe (AccessToken::new), the rest of the query
    // came in a valid URI.
    if let (Ok(loc), Ok(c)) = (
        HeaderValue::from_str(&location),
        HeaderValue::from_str(&cookie),
    ) {
        h.insert(header::LOCATION, loc);
        h.insert(header::SET_COOKIE, c);
    }
    resp
}

/// Middleware: hardening headers on every response, and a JSON body on every error response
/// that lacks one (the router's 405, for one).
pub async fn harden(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let resp = if (resp.status().is_client_error() || resp.status().is_server_error())
        && !is_json(resp.headers())
    {
        jsonify(resp)
    } else {
        resp
    };
    let mut resp = resp;
    let h = resp.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// The same response with `{"error": reason}` as its body (headers such as `Allow` kept).
fn jsonify(resp: Response) -> Response {
    let (mut parts, _) = resp.into_parts();
    let reason = parts
        .status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    let body = serde_json::json!({ "error": reason }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("example.org"), "example.org");
        let loopback = Guard::new(
            &Access {
                token: None,
                allowed_hosts: vec!["Gallery.LAN".into()],
            },
            None,
        );
        for ok in [
            "localhost",
            "LOCALHOST:1",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:80",
            "gallery.lan",
            "gallery.lan.:8080",
        ] {
            assert!(loopback.host_allowed(ok), "{ok}");
        }
        for bad in [
            "attacker.example",
            "localhost.attacker.example",
            "192.168.1.5:8080",
            "[::2]",
            "",
        ] {
            assert!(!loopback.host_allowed(bad), "{bad}");
        }
        let any = Guard::new(&Access::default(), Some("0.0.0.0:80".parse().unwrap()));
        assert!(any.host_allowed("192.168.1.5:8080") && !any.host_allowed("rebind.example"));
        let one = Guard::new(&Access::default(), Some("10.0.0.2:80".parse().unwrap()));
        assert!(one.host_allowed("10.0.0.2") && !one.host_allowed("10.0.0.3"));
    }

    #[test]
    fn tokens() {
        assert!(AccessToken::new("short").is_err());
        assert!(AccessToken::new("with space in the secret").is_err());
        assert!(AccessToken::new("a;cookie=injection-attempt").is_err());
        let t = AccessToken::new("0123456789abcdef").unwrap();
        assert!(t.matches("0123456789abcdef") && !t.matches("0123456789abcdeF"));
        assert!(!format!("{t:?}").contains("0123"));
        let (g, text) = AccessToken::generate().unwrap();
        assert_eq!(text.len(), 48);
        assert!(g.matches(&text));
        assert_ne!(AccessToken::generate().unwrap().1, text);
    }
}
