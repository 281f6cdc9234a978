//! A session's egress proxy: accepts on the listening socket the tree's namespace made
//! (`kernel::namespaces::net`), decides every destination, connects upstream from the
//! supervisor's namespace and relays. One listener serves both HTTP (absolute-form
//! requests and `CONNECT`, parsed by hyper) and SOCKS5 (its first byte is 5, which no HTTP
//! request starts with).
//!
//! Every connection, allowed or not, is one audit line ([`super::ConnectionRecord`]);
//! refused host:ports are kept for the session's result.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use policy::Decision;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::{ConnectionRecord, Egress, address};
use crate::audit::AuditLog;

/// Each direction's relay buffer for tunnels: tokio's default (8 KiB) halves a bulk
/// download's throughput on loopback (`bench/network-proxy/run`).
pub(crate) const RELAY_BUFFER: usize = 256 * 1024;

/// How long an upstream connect may take before the tree gets a refusal.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How many of the tree's connections one session's proxy serves at once (tunnels and
/// forwarded requests included until their relay ends). Each holds a descriptor of the
/// supervisor, and an upstream one when connected: without a bound, a tree opening
/// thousands of idle connections exhausts the descriptors of the supervisor, which an MCP
/// server shares with every other session (tests/attack_egress.rs). Beyond it a new
/// connection is closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 512;

/// How long a new connection may take to say what it wants (its first byte, its request
/// head, its SOCKS5 handshake): an idle connection does not hold a slot for ever.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// One slot of [`MAX_CONNECTIONS`], held by a connection and by every relay it starts.
pub(crate) type Slot = Arc<tokio::sync::OwnedSemaphorePermit>;

/// What one session's proxy shares between its connections.
pub(crate) struct ProxyContext {
    pub(crate) session: u64,
    pub(crate) egress: Arc<Egress>,
    pub(crate) audit: Option<Arc<AuditLog>>,
    /// `host:port` refused so far, in order, once each.
    pub(crate) blocked: Mutex<Vec<String>>,
    /// Who answers `prompt` host rules, and the session's clock (paused while asking).
    pub(crate) shared: Arc<crate::gate::Shared>,
    /// `host:port`s a person allowed for the rest of the session.
    pub(crate) approved: Mutex<std::collections::HashSet<(String, u16)>>,
    /// Relays that outlive their HTTP exchange (tunnels, upstream connections): aborted
    /// with the proxy, so none outlives its session.
    pub(crate) relays: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl std::fmt::Debug for ProxyContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyContext")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

/// A running proxy; dropping it stops it and every connection it relays.
#[derive(Debug)]
pub struct SessionProxy {
    task: tokio::task::JoinHandle<()>,
    context: Arc<ProxyContext>,
}

impl SessionProxy {
    /// Serves `listener` (the tree's loopback socket) on the current runtime.
    pub(crate) fn start(
        listener: std::net::TcpListener,
        context: Arc<ProxyContext>,
    ) -> io::Result<SessionProxy> {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let serving = context.clone();
        let task = tokio::spawn(serve(listener, serving));
        Ok(SessionProxy { task, context })
    }

    /// The `host:port`s refused so far.
    pub fn blocked(&self) -> Vec<String> {
        lock(&self.context.blocked).clone()
    }
}

impl Drop for SessionProxy {
    fn drop(&mut self) {
        self.task.abort();
        for relay in lock(&self.context.relays).drain(..) {
            relay.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn serve(listener: TcpListener, context: Arc<ProxyContext>) {
    // Aborting this task drops the set, which aborts every connection.
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut warned = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        if !warned {
                            tracing::warn!(
                                "egress proxy: the tree holds {MAX_CONNECTIONS} connections; \
                                 closing new ones until some end"
                            );
                            warned = true;
                        }
                        drop(stream);
                        continue;
                    };
                    tracing::debug!(%peer, "egress proxy: accepted");
                    let _ = stream.set_nodelay(true);
                    connections.spawn(one_connection(stream, context.clone(), Arc::new(slot)));
                }
                Err(err) => {
                    tracing::warn!("egress proxy: accept: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn one_connection(stream: TcpStream, context: Arc<ProxyContext>, slot: Slot) {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == 5 => super::socks5::serve(stream, context).await,
        Ok(Ok(1)) => serve_http(stream, context, slot).await,
        _ => {}
    }
}

/// A destination decided and connected, or why not.
pub(crate) struct Upstream {
    pub(crate) stream: TcpStream,
    pub(crate) address: SocketAddr,
    pub(crate) reason: String,
}

impl ProxyContext {
    /// Runs a relay that is stopped with the session's proxy at the latest.
    /// It holds the connection's `slot` until it ends.
    fn spawn_relay(
        &self,
        slot: Slot,
        relay: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let handle = tokio::spawn(async move {
            relay.await;
            drop(slot);
        })
        .abort_handle();
        let mut relays = lock(&self.relays);
        relays.retain(|r| !r.is_finished());
        relays.push(handle);
    }

    /// Decides `host:port` and connects to a checked address. `Err`: the reason, already
    /// audited and recorded as blocked.
    pub(crate) async fn open(
        &self,
        protocol: &'static str,
        host: &str,
        port: u16,
    ) -> Result<Upstream, String> {
        let started = Instant::now();
        // A SOCKS5 domain is any 255 bytes: one that is no host name is refused before it
        // is decided, and shown escaped (a newline or an escape in it would otherwise reach
        // the person's terminal as a forged log line).
        if !plausible_host(host) {
            let shown = host.escape_debug().to_string();
            let reason = format!("`{shown}` is not a host name or IP literal");
            self.refused(protocol, &shown, port, &reason, started);
            return Err(reason);
        }
        match self.decide_and_connect(host, port).await {
            Ok(up) => Ok(up),
            Err(reason) => {
                self.refused(protocol, host, port, &reason, started);
                Err(reason)
            }
        }
    }

    async fn decide_and_connect(&self, host: &str, port: u16) -> Result<Upstream, String> {
        let host = policy::network::normalize(host);
        let rules = &self.egress.policy;
        let reason = match rules.decide(&host, port) {
            None => {
                // An IPv6 literal in brackets, so the flag suggested parses.
                let shown = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                return Err(format!(
                    "no rule allows {shown}:{port} (ports default to 80 and 443; \
                     --allow-domain {shown}:{port} would)"
                ));
            }
            Some(rule) if rule.decision == Decision::Forbidden => {
                return Err(format!("{host}:{port} is forbidden by {}", rule.origin));
            }
            Some(rule) if rule.decision == Decision::Prompt => {
                let key = (host.clone(), port);
                if lock(&self.approved).contains(&key) {
                    format!("approved for the session (asked by {})", rule.origin)
                } else {
                    let why = match &rule.justification {
                        Some(j) => format!("{} ({j})", rule.origin),
                        None => rule.origin.clone(),
                    };
                    let paused = self.shared.stopwatch.pause();
                    let answer = self
                        .shared
                        .approver
                        .ask_host(crate::approval::HostRequest {
                            host: host.clone(),
                            port,
                            why,
                        })
                        .await;
                    drop(paused);
                    match answer {
                        crate::Approval::Allow => {
                            format!("approved once (asked by {})", rule.origin)
                        }
                        crate::Approval::AllowForSession => {
                            lock(&self.approved).insert(key);
                            format!("approved for the session (asked by {})", rule.origin)
                        }
                        crate::Approval::Deny { reason } => return Err(reason),
                    }
                }
            }
            Some(rule) => format!("allowed by {}", rule.origin),
        };
        let candidates: Vec<std::net::IpAddr> = if let Some(ip) = address::literal(&host) {
            vec![ip]
        } else if let Some(ips) = self.egress.resolve.get(&host) {
            ips.clone()
        } else {
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .map(|a| a.ip())
                .collect()
        };
        let mut refused = None;
        let mut last_err = None;
        for ip in candidates {
            if let Some(rule) = rules.forbids_address(ip, port) {
                refused.get_or_insert(format!(
                    "{host} resolves to {ip}, which is forbidden by {}",
                    rule.origin
                ));
                continue;
            }
            let why = address::non_public(ip)
                .map(str::to_owned)
                .or_else(|| address::this_host(ip));
            if let Some(why) = why
                && !rules.allows_address(ip, port)
            {
                refused.get_or_insert(format!(
                    "{host} resolves to {ip}, a {why} address, which only an allow rule naming \
                     that address opens (--allow-domain {}:{port})",
                    if ip.is_ipv6() {
                        format!("[{ip}]")
                    } else {
                        ip.to_string()
                    }
                ));
                continue;
            }
            let address = SocketAddr::new(ip, port);
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(Upstream {
                        stream,
                        address,
                        reason,
                    });
                }
                Ok(Err(e)) => last_err = Some(format!("connecting to {address}: {e}")),
                Err(_) => last_err = Some(format!("connecting to {address}: timed out")),
            }
        }
        Err(last_err
            .or(refused)
            .unwrap_or_else(|| format!("{host} has no address")))
    }

    fn refused(&self, protocol: &'static str, host: &str, port: u16, reason: &str, t: Instant) {
        tracing::warn!(host, port, protocol, "egress refused: {reason}");
        {
            let mut blocked = lock(&self.blocked);
            let key = format!("{}:{port}", policy::network::normalize(host));
            if !blocked.contains(&key) {
                blocked.push(key);
            }
        }
        self.write(ConnectionRecord {
            kind: "network",
            session: self.session,
            protocol,
            host: host.to_owned(),
            port,
            decision: "deny",
            reason: reason.to_owned(),
            address: None,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: duration_ms(t),
        });
    }

    /// The audit line of an allowed connection, once it is over.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finished(
        &self,
        protocol: &'static str,
        host: &str,
        port: u16,
        address: SocketAddr,
        reason: &str,
        (bytes_up, bytes_down): (u64, u64),
        started: Instant,
    ) {
        self.write(ConnectionRecord {
            kind: "network",
            session: self.session,
            protocol,
            host: host.to_owned(),
            port,
            decision: "allow",
            reason: reason.to_owned(),
            address: Some(address.to_string()),
            bytes_up,
            bytes_down,
            duration_ms: duration_ms(started),
        });
    }

    fn write(&self, record: ConnectionRecord) {
        tracing::debug!(?record, "egress");
        if let Some(audit) = &self.audit {
            audit.write_event(&record);
        }
    }
}

/// Letters, digits, `.-_`, and what IPv6 literals add (`:[]%`): every name DNS or a rule
/// can hold. Anything else (whitespace, control characters, non-ASCII) is no destination.
fn plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]%".contains(&b))
}

fn duration_ms(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

type Body = BoxBody<Bytes, hyper::Error>;

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(format!("execgate: {message}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn serve_http(stream: TcpStream, context: Arc<ProxyContext>, slot: Slot) {
    let service = hyper::service::service_fn(move |req| {
        let context = context.clone();
        let slot = slot.clone();
        async move { Ok::<_, Infallible>(route(req, context, slot).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .preserve_header_case(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

async fn route(req: Request<Incoming>, context: Arc<ProxyContext>, slot: Slot) -> Response<Body> {
    tracing::debug!(method = %req.method(), uri = %req.uri(), "egress proxy: request");
    if req.method() == Method::CONNECT {
        tunnel(req, context, slot).await
    } else {
        forward(req, context, slot).await
    }
}

/// `CONNECT host:port`: decided, connected, answered 200, then relayed byte for byte.
async fn tunnel(req: Request<Incoming>, context: Arc<ProxyContext>, slot: Slot) -> Response<Body> {
    let started = Instant::now();
    let Some((host, port)) = req
        .uri()
        .authority()
        .and_then(|a| Some((a.host().to_owned(), a.port_u16()?)))
    else {
        return text(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let upstream = match context.open("connect", &host, port).await {
        Ok(up) => up,
        Err(reason) => return text(StatusCode::FORBIDDEN, &reason),
    };
    let relay = context.clone();
    relay.spawn_relay(slot, async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let mut client = TokioIo::new(upgraded);
        let mut up = upstream;
        let counts = tokio::io::copy_bidirectional_with_sizes(
            &mut client,
            &mut up.stream,
            RELAY_BUFFER,
            RELAY_BUFFER,
        )
        .await
        .unwrap_or((0, 0));
        context.finished(
            "connect", &host, port, up.address, &up.reason, counts, started,
        );
    });
    Response::new(
        Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed(),
    )
}

/// Hop-by-hop and proxy headers, never passed on.
const HOP_BY_HOP: [&str; 7] = [
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
];

/// An absolute-form `GET http://host/path`: decided, sent upstream in origin form.
async fn forward(
    mut req: Request<Incoming>,
    context: Arc<ProxyContext>,
    slot: Slot,
) -> Response<Body> {
    let started = Instant::now();
    let uri = req.uri().clone();
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                "only http:// requests are forwarded; https goes through CONNECT",
            );
        }
        None => {
            return text(
                StatusCode::BAD_REQUEST,
                "this is the sandbox's egress proxy: send absolute-form requests \
                 (http_proxy) or CONNECT",
            );
        }
    }
    let Some(authority) = uri.authority().cloned() else {
        return text(StatusCode::BAD_REQUEST, "no host in the request");
    };
    let host = authority.host().to_owned();
    let port = authority.port_u16().unwrap_or(80);
    // Userinfo (`http://other.test:80@allowed.test/`) would reach the upstream in the Host
    // filled in from it, where a naive server takes what precedes the `:` for the host;
    // clients send credentials in a header instead.
    if authority.as_str().contains('@') {
        let reason = "userinfo in the request target".to_owned();
        context.refused("http", &host, port, &reason, started);
        return text(StatusCode::BAD_REQUEST, &reason);
    }
    // A Host header naming another host than the one decided would reach a virtual host
    // nobody allowed. Several Host headers: the upstream may route by any of them, and
    // only the first would be checked (tests/attack_egress.rs).
    if req.headers().get_all(HOST).iter().count() > 1 {
        let reason = format!("more than one Host header for {authority}");
        context.refused("http", &host, port, &reason, started);
        return text(StatusCode::BAD_REQUEST, &reason);
    }
    if let Some(value) = req.headers().get(HOST) {
        let named = value.to_str().ok().and_then(|v| {
            // `Host` is host[:port], never userinfo (which would name another host).
            if v.contains('@') {
                return None;
            }
            let a: hyper::http::uri::Authority = v.parse().ok()?;
            Some((
                policy::network::normalize(a.host()),
                a.port_u16().unwrap_or(80),
            ))
        });
        if named != Some((policy::network::normalize(&host), port)) {
            let reason =
                format!("the Host header ({value:?}) differs from the request's {authority}");
            context.refused("http", &host, port, &reason, started);
            return text(StatusCode::BAD_REQUEST, &reason);
        }
    }
    let upstream = match context.open("http", &host, port).await {
        Ok(up) => up,
        Err(reason) => return text(StatusCode::FORBIDDEN, &reason),
    };
    let counters = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let io = Counted {
        inner: upstream.stream,
        counters: counters.clone(),
    };
    let (mut sender, connection) = match hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .handshake(TokioIo::new(io))
        .await
    {
        Ok(pair) => pair,
        Err(err) => return text(StatusCode::BAD_GATEWAY, &format!("upstream: {err}")),
    };
    let (address, reason) = (upstream.address, upstream.reason);
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), ToString::to_string);
    *req.uri_mut() = match path.parse() {
        Ok(p) => p,
        Err(_) => return text(StatusCode::BAD_REQUEST, "bad request path"),
    };
    for name in HOP_BY_HOP {
        req.headers_mut().remove(name);
    }
    if !req.headers().contains_key(HOST)
        && let Ok(value) = HeaderValue::from_str(authority.as_str())
    {
        req.headers_mut().insert(HOST, value);
    }
    // The connection is driven by its own task (send_request waits on it), which also
    // writes the line once the response has been relayed and the connection closed.
    let relay = context.clone();
    relay.spawn_relay(slot, async move {
        let _ = connection.await;
        let counts = (
            counters.0.load(Ordering::Relaxed),
            counters.1.load(Ordering::Relaxed),
        );
        context.finished("http", &host, port, address, &reason, counts, started);
    });
    let response = sender.send_request(req).await;
    drop(sender);
    match response {
        Ok(response) => response.map(BodyExt::boxed),
        Err(err) => text(StatusCode::BAD_GATEWAY, &format!("upstream: {err}")),
    }
}

/// A stream that counts the bytes through it (up: written, down: read).
struct Counted {
    inner: TcpStream,
    counters: Arc<(AtomicU64, AtomicU64)>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let got = buf.filled().len() - before;
        self.counters.1.fetch_add(got as u64, Ordering::Relaxed);
        result
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &result {
            self.counters.0.fetch_add(*n as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
