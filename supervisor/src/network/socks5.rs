//! SOCKS5 (RFC 1928) `CONNECT` without authentication, for `ALL_PROXY=socks5h://...`.
//! Written here rather than taken from a crate: the part needed is a two-message
//! handshake of fixed layout, and the decision and the upstream connect must be the
//! proxy's own ([`super::proxy::ProxyContext::open`]), which the SOCKS crates do not let a
//! caller plug in before they connect. `BIND` and `UDP ASSOCIATE` are refused.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::proxy::ProxyContext;

const VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const NO_ACCEPTABLE: u8 = 0xff;
const CMD_CONNECT: u8 = 1;
const REPLY_OK: u8 = 0;
const REPLY_NOT_ALLOWED: u8 = 2;
const REPLY_HOST_UNREACHABLE: u8 = 4;
const REPLY_COMMAND_UNSUPPORTED: u8 = 7;
const REPLY_ADDRESS_UNSUPPORTED: u8 = 8;

async fn reply(stream: &mut TcpStream, code: u8) -> std::io::Result<()> {
    // Bound address 0.0.0.0:0: the tree has no use for the supervisor's.
    stream
        .write_all(&[VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0])
        .await
}

/// Serves one SOCKS5 connection; the caller's slot (see [`super::proxy::MAX_CONNECTIONS`])
/// is held until it returns, relay included.
pub(crate) async fn serve(mut stream: TcpStream, context: Arc<ProxyContext>) {
    let _ = handshake(&mut stream, context).await;
}

async fn handshake(stream: &mut TcpStream, context: Arc<ProxyContext>) -> std::io::Result<()> {
    let started = Instant::now();
    // An idle client does not hold its slot for ever (the decision itself may wait on a
    // person: that part is not bounded here).
    let request = tokio::time::timeout(super::proxy::HANDSHAKE_TIMEOUT, request(stream))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let Some((host, port)) = request else {
        return Ok(());
    };
    let mut up = match context.open("socks5", &host, port).await {
        Ok(up) => up,
        Err(reason) => {
            let code = if reason.starts_with("connecting") || reason.starts_with("cannot resolve") {
                REPLY_HOST_UNREACHABLE
            } else {
                REPLY_NOT_ALLOWED
            };
            return reply(stream, code).await;
        }
    };
    reply(stream, REPLY_OK).await?;
    let counts = tokio::io::copy_bidirectional_with_sizes(
        stream,
        &mut up.stream,
        super::proxy::RELAY_BUFFER,
        super::proxy::RELAY_BUFFER,
    )
    .await
    .unwrap_or((0, 0));
    context.finished(
        "socks5", &host, port, up.address, &up.reason, counts, started,
    );
    Ok(())
}

/// The greeting and the request: the destination of a `CONNECT`, or `None` when the
/// client was answered with a refusal already.
async fn request(stream: &mut TcpStream) -> std::io::Result<Option<(String, u16)>> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await?;
    let mut methods = vec![0u8; usize::from(head[1])];
    stream.read_exact(&mut methods).await?;
    if !methods.contains(&NO_AUTH) {
        stream.write_all(&[VERSION, NO_ACCEPTABLE]).await?;
        return Ok(None);
    }
    stream.write_all(&[VERSION, NO_AUTH]).await?;

    let mut request = [0u8; 4];
    stream.read_exact(&mut request).await?;
    let [version, command, _, kind] = request;
    let host = match kind {
        1 => {
            let mut ip = [0u8; 4];
            stream.read_exact(&mut ip).await?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        3 => {
            let len = stream.read_u8().await?;
            let mut name = vec![0u8; usize::from(len)];
            stream.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
        4 => {
            let mut ip = [0u8; 16];
            stream.read_exact(&mut ip).await?;
            std::net::Ipv6Addr::from(ip).to_string()
        }
        _ => {
            reply(stream, REPLY_ADDRESS_UNSUPPORTED).await?;
            return Ok(None);
        }
    };
    let port = stream.read_u16().await?;
    if version != VERSION || command != CMD_CONNECT {
        reply(stream, REPLY_COMMAND_UNSUPPORTED).await?;
        return Ok(None);
    }
    Ok(Some((host, port)))
}
