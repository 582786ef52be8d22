//! Connections to the exporter through a forward proxy, handed to Pingora as an already
//! tunnelled TCP stream (`PeerOptions::custom_l4`): Pingora then does TLS, pooling and timeouts
//! on top as it does for a direct connection.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use pingora_core::connectors::L4Connect;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::protocols::l4::stream::Stream;
use pingora_error::{Error, ErrorType, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;
use tokio_socks::{IntoTargetAddr, TargetAddr};

use super::address::DialAddress;
use crate::config::forward_proxy::{ForwardProxy, ProxyProtocol};

/// The longest CONNECT answer header read from a proxy.
const MAX_CONNECT_RESPONSE: usize = 16 * 1024;

/// Reaches one exporter (`target_host:target_port`) through one forward proxy.
#[derive(Debug)]
pub struct ProxyConnector {
    proxy: ForwardProxy,
    /// The exporter's host as configured: a name is passed to the proxy unresolved (CONNECT,
    /// socks5h), so exporters whose names only the proxy's side can resolve are reachable.
    target_host: String,
    target_port: u16,
    /// The address a SOCKS5 proxy is sent (`socks5://`, or an exporter given by IP address);
    /// `None` sends the name as configured, for the proxy to resolve (`socks5h://`).
    socks_address: Option<DialAddress>,
    /// The longest a `socks5://` lookup of the exporter's name may take: `UPSTREAM_TIMEOUT`,
    /// the ceiling of every scrape's deadline (Pingora bounds the connection as a whole too).
    resolve_limit: Duration,
    /// The CONNECT request, built once.
    connect_request: Vec<u8>,
}

impl ProxyConnector {
    /// A connector to `target_host:target_port` through `proxy`, asking a SOCKS5 proxy for
    /// `socks_address` (resolved within `resolve_limit` when it is a name to resolve).
    pub fn new(
        proxy: ForwardProxy,
        target_host: String,
        target_port: u16,
        socks_address: Option<DialAddress>,
        resolve_limit: Duration,
    ) -> Self {
        let authority = if target_host.contains(':') {
            format!("[{target_host}]:{target_port}")
        } else {
            format!("{target_host}:{target_port}")
        };
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(c) = &proxy.credentials {
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", c.username, c.password));
            request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        request.push_str("\r\n");
        ProxyConnector {
            proxy,
            target_host,
            target_port,
            socks_address,
            resolve_limit,
            connect_request: request.into_bytes(),
        }
    }

    fn fail(&self, what: impl std::fmt::Display) -> Box<Error> {
        Error::explain(
            ErrorType::ConnectProxyFailure,
            format!(
                "proxy {} to exporter {}:{}: {what}",
                self.proxy, self.target_host, self.target_port
            ),
        )
        .into_up()
    }

    async fn http_connect(&self, mut tcp: TcpStream) -> Result<TcpStream> {
        tcp.write_all(&self.connect_request)
            .await
            .map_err(|e| self.fail(format_args!("sending CONNECT failed: {e}")))?;
        // Read the answer byte by byte up to its blank line, so not one byte of the exporter's
        // stream (a TLS server hello) is consumed here.
        let mut head = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_CONNECT_RESPONSE {
                return Err(self.fail("its CONNECT answer header is too long"));
            }
            match tcp.read(&mut byte).await {
                Ok(0) => {
                    return Err(self.fail(format_args!(
                        "it closed the connection after answering {:?}",
                        String::from_utf8_lossy(&head).trim()
                    )))
                }
                Ok(_) => head.push(byte[0]),
                Err(e) => {
                    return Err(self.fail(format_args!("reading its CONNECT answer failed: {e}")))
                }
            }
        }
        let status_line = head
            .split(|b| *b == b'\n')
            .next()
            .map(|l| String::from_utf8_lossy(l).trim().to_string())
            .unwrap_or_default();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok());
        match status {
            Some(code) if (200..300).contains(&code) => Ok(tcp),
            _ => Err(self.fail(format_args!("it answered {status_line:?} to CONNECT"))),
        }
    }

    async fn socks5(&self, tcp: TcpStream) -> Result<TcpStream> {
        let socks_failed = |e| self.fail(format_args!("SOCKS5 answered: {e}"));
        let target = match &self.socks_address {
            Some(address) => TargetAddr::Ip(address.get(|| self.resolve_limit).await?),
            None => (self.target_host.as_str(), self.target_port)
                .into_target_addr()
                .map_err(socks_failed)?,
        };
        let stream = match &self.proxy.credentials {
            None => Socks5Stream::connect_with_socket(tcp, target).await,
            Some(c) => {
                Socks5Stream::connect_with_password_and_socket(
                    tcp,
                    target,
                    &c.username,
                    &c.password,
                )
                .await
            }
        };
        stream.map(Socks5Stream::into_inner).map_err(socks_failed)
    }
}

#[async_trait]
impl L4Connect for ProxyConnector {
    /// `addr` is the proxy's address (the peer's, which Pingora also checks a pooled
    /// connection against before reusing it).
    async fn connect(&self, addr: &SocketAddr) -> Result<Stream> {
        let SocketAddr::Inet(proxy_addr) = addr else {
            return Err(self.fail("a proxy is reached over TCP only"));
        };
        let tcp = TcpStream::connect(*proxy_addr)
            .await
            .map_err(|e| self.fail(format_args!("cannot connect to the proxy: {e}")))?;
        // Scrapes are small request/response exchanges: do not wait to fill segments.
        let _ = tcp.set_nodelay(true);
        let tcp = match self.proxy.protocol {
            ProxyProtocol::HttpConnect => self.http_connect(tcp).await?,
            ProxyProtocol::Socks5 { .. } => self.socks5(tcp).await?,
        };
        Ok(Stream::from(tcp))
    }
}
