//! HTTP/1.1 over plain TCP: validated, pre-serialized requests ([`prepare`]) and
//! keep-alive connections ([`execute`]), one per task, see [`super::h1`].

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, HOST};
use http::{HeaderMap, Method, Uri};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::h1::{Broken, H1Conn, Response};
use super::stats::ErrorClass;

/// A connection idle this long is checked for a close by the server before reuse.
const IDLE_CHECK: Duration = Duration::from_millis(20);

/// One kind of request as given by the user.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestSpec {
    pub method: String,
    /// An `http://host[:port]/path?query` URL.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Relative frequency (> 0) among the requests.
    pub weight: f64,
}

/// A server to connect to: `host:port` and, once resolved, its addresses.
#[derive(Debug, Clone)]
pub struct Target {
    pub authority: String,
    pub addrs: Vec<SocketAddr>,
}

/// A request ready to send on a connection to `targets[target]`.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The whole request as sent: request line, headers, body.
    pub wire: Bytes,
    /// HEAD: the response has no body whatever its headers say.
    pub head: bool,
    pub target: usize,
}

/// Serializes a request (origin-form target, as an HTTP/1.1 request line carries).
fn serialize(method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(64 + path.len() + body.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let needs_length =
        !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if needs_length && !headers.contains_key(CONTENT_LENGTH) {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// The validated requests: the distinct servers, the requests, and the cumulative weights
/// used to pick one at random.
#[derive(Debug, Clone)]
pub struct Plan {
    pub targets: Vec<Target>,
    pub requests: Vec<Prepared>,
    cumulative: Vec<f64>,
}

impl Plan {
    /// The request whose cumulative weight first exceeds `u * total` (`u` in `[0, 1)`).
    #[inline]
    pub fn pick(&self, u: f64) -> usize {
        if self.requests.len() == 1 {
            return 0;
        }
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = u * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.requests.len() - 1)
    }
}

/// Validates `specs` into a [`Plan`] (addresses are resolved by [`resolve`], when the run starts).
///
/// # Errors
/// A message naming the request (`requests[i]`), the field and the fix.
pub fn prepare(specs: &[RequestSpec]) -> Result<Plan, String> {
    if specs.is_empty() {
        return Err("requests must hold at least one (method, url, headers, body, weight)".into());
    }
    let mut targets: Vec<Target> = Vec::new();
    let mut requests = Vec::with_capacity(specs.len());
    let mut cumulative = Vec::with_capacity(specs.len());
    let mut sum = 0.0;
    for (i, spec) in specs.iter().enumerate() {
        let at = |what: &str| format!("requests[{i}]: {what}");
        if !(spec.weight.is_finite() && spec.weight > 0.0) {
            return Err(at(&format!(
                "weight must be a finite number > 0, got {}",
                spec.weight
            )));
        }
        let method = Method::from_bytes(spec.method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| at(&format!("method {:?} is not an HTTP method", spec.method)))?;
        let uri: Uri = spec.url.parse().map_err(|e| {
            at(&format!(
                "url {:?} is not a URL ({e}); write http://host:port/path",
                spec.url
            ))
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(at(&format!(
                    "url {:?}: only http:// URLs are supported, not {other}://",
                    spec.url
                )))
            }
            None => {
                return Err(at(&format!(
                    "url {:?} has no scheme; write http://host:port/path",
                    spec.url
                )))
            }
        }
        let authority = uri
            .authority()
            .ok_or_else(|| at(&format!("url {:?} has no host", spec.url)))?;
        if authority.as_str().contains('@') {
            return Err(at(&format!(
                "url {:?}: user:password@ is not supported; send an Authorization header",
                spec.url
            )));
        }
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(80);
        let connect_to = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let target = match targets.iter().position(|t| t.authority == connect_to) {
            Some(t) => t,
            None => {
                targets.push(Target {
                    authority: connect_to,
                    addrs: Vec::new(),
                });
                targets.len() - 1
            }
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| at(&format!("header name {name:?} is not a valid HTTP token")))?;
            let v = HeaderValue::from_str(value).map_err(|_| {
                at(&format!(
                    "header {name:?} value {value:?} holds characters HTTP does not allow"
                ))
            })?;
            headers.append(n, v);
        }
        if !headers.contains_key(HOST) {
            let v = HeaderValue::from_str(authority.as_str())
                .map_err(|_| at(&format!("url {:?}: host is not a valid header", spec.url)))?;
            headers.insert(HOST, v);
        }
        sum += spec.weight;
        cumulative.push(sum);
        let body = spec.body.as_deref().unwrap_or_default();
        requests.push(Prepared {
            wire: serialize(&method, path, &headers, body),
            head: method == Method::HEAD,
            target,
        });
    }
    Ok(Plan {
        targets,
        requests,
        cumulative,
    })
}

/// Resolves every target's addresses (blocking: system resolver); a name that does not
/// resolve keeps no address, so its requests fail as `connect` errors.
pub fn resolve(targets: &mut [Target]) {
    for t in targets {
        if let Ok(addrs) = t.authority.to_socket_addrs() {
            t.addrs = addrs.collect();
        }
    }
}

/// An open keep-alive connection.
pub struct Conn {
    h1: H1Conn,
    /// When the last response ended.
    idle_since: Instant,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A full response.
    Response { status: u16, bytes: u64 },
    /// No (full) response; `bytes` of body were read before the failure.
    Failed { class: ErrorClass, bytes: u64 },
}

async fn connect(target: &Target) -> Option<Conn> {
    if target.addrs.is_empty() {
        return None;
    }
    let stream = TcpStream::connect(&target.addrs[..]).await.ok()?;
    Some(Conn {
        h1: H1Conn::new(stream),
        idle_since: Instant::now(),
    })
}

/// Sends `req` on the connection in `slot` (opening one to `target` if there is none or
/// the last one was closed) and reads the whole response, within `timeout`.
pub async fn execute(
    slot: &mut Option<Conn>,
    target: &Target,
    req: &Prepared,
    timeout: Duration,
) -> Outcome {
    match tokio::time::timeout(timeout, send(slot, target, req)).await {
        Ok(outcome) => outcome,
        Err(_) => {
            // the connection is mid-exchange: it cannot carry another request
            *slot = None;
            Outcome::Failed {
                class: ErrorClass::Timeout,
                bytes: 0,
            }
        }
    }
}

async fn send(slot: &mut Option<Conn>, target: &Target, req: &Prepared) -> Outcome {
    if let Some(conn) = slot {
        // A server may close a keep-alive connection that sat idle; checking costs a
        // system call, so only connections idle long enough for that are checked.
        if conn.idle_since.elapsed() >= IDLE_CHECK && conn.h1.closed_by_peer() {
            *slot = None;
        }
    }
    if slot.is_none() {
        *slot = connect(target).await;
    }
    let Some(conn) = slot else {
        return Outcome::Failed {
            class: ErrorClass::Connect,
            bytes: 0,
        };
    };
    match conn.h1.exchange(&req.wire, req.head).await {
        Ok(Response {
            status,
            bytes,
            keep_alive,
        }) => {
            if keep_alive {
                conn.idle_since = Instant::now();
            } else {
                *slot = None;
            }
            Outcome::Response { status, bytes }
        }
        Err(Broken { bytes }) => {
            *slot = None;
            Outcome::Failed {
                class: ErrorClass::Read,
                bytes,
            }
        }
    }
}

/// SplitMix64: a small, fast, seedable generator for picking requests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for stream `stream` of seed `seed` (distinct streams are independent).
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(method: &str, url: &str, weight: f64) -> RequestSpec {
        RequestSpec {
            method: method.into(),
            url: url.into(),
            headers: vec![],
            body: None,
            weight,
        }
    }

    #[test]
    fn prepare_dedups_targets_and_uses_origin_form() {
        let plan = prepare(&[
            spec("get", "http://127.0.0.1:8080/a?x=1", 1.0),
            spec("POST", "http://127.0.0.1:8080", 3.0),
            spec("GET", "http://localhost/b", 1.0),
        ])
        .unwrap();
        assert_eq!(plan.targets.len(), 2);
        assert_eq!(plan.targets[0].authority, "127.0.0.1:8080");
        assert_eq!(plan.targets[1].authority, "localhost:80");
        assert_eq!(
            &plan.requests[0].wire[..],
            b"GET /a?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\r\n"
        );
        assert_eq!(
            &plan.requests[1].wire[..],
            b"POST / HTTP/1.1\r\nhost: 127.0.0.1:8080\r\ncontent-length: 0\r\n\r\n"
        );
        assert_eq!(plan.requests[2].target, 1);
    }

    #[test]
    fn prepare_rejects_bad_requests_naming_them() {
        let e = prepare(&[spec("GET", "https://x/", 1.0)]).unwrap_err();
        assert!(e.contains("requests[0]") && e.contains("http://"), "{e}");
        assert!(prepare(&[spec("GET", "/relative", 1.0)]).is_err());
        assert!(prepare(&[spec("GE T", "http://x/", 1.0)]).is_err());
        assert!(prepare(&[spec("GET", "http://x/", 0.0)]).is_err());
        assert!(prepare(&[]).is_err());
        let mut bad = spec("GET", "http://x/", 1.0);
        bad.headers = vec![("bad header".into(), "v".into())];
        assert!(prepare(&[bad]).unwrap_err().contains("header"));
    }

    #[test]
    fn pick_follows_weights() {
        let plan = prepare(&[
            spec("GET", "http://x/a", 1.0),
            spec("GET", "http://x/b", 3.0),
        ])
        .unwrap();
        let mut rng = Rng::new(7, 0);
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            counts[plan.pick(rng.next_f64())] += 1;
        }
        let share = f64::from(counts[1]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{counts:?}");
    }

    #[test]
    fn rng_is_seeded() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(1, 2);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(1, 2);
                move |_| r.next_u64()
            })
            .collect();
        let c = Rng::new(1, 3).next_u64();
        assert_eq!(a, b);
        assert_ne!(a[0], c);
    }
}
