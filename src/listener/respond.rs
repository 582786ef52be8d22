//! The small plain-text answers the tunnel makes itself on its ports: refusals (400, 401, 403,
//! 404, 405, 408, 409, 413, 431) and failures (502, 503, 504).

use crate::listener::ClientExchange;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::Method;
use pingora_core::protocols::Stream;
use pingora_error::{ErrorType, OrErr, Result};
use pingora_http::ResponseHeader;
use tokio::io::AsyncWriteExt;

/// Writes a complete small plain-text response to the request `session` read (header only
/// for HEAD).
pub async fn respond(
    session: &mut ClientExchange,
    status: u16,
    body: Bytes,
    headers: &[(HeaderName, HeaderValue)],
) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(3 + headers.len()))?;
    resp.insert_header(CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(CONTENT_LENGTH, body.len())?;
    for (name, value) in headers {
        resp.insert_header(name.clone(), value.clone())?;
    }
    let head_only = session.req_header().method == Method::HEAD;
    session.write_response_header(Box::new(resp)).await?;
    if !head_only {
        session.write_body(&body).await?;
    }
    session.finish_body().await?;
    Ok(())
}

/// Answers `status` and closes the connection afterwards: the request was refused, its body
/// (if any) was never read, and the connection is not worth keeping.
pub async fn refuse(
    session: &mut ClientExchange,
    status: u16,
    body: &'static [u8],
    headers: &[(HeaderName, HeaderValue)],
) -> Result<()> {
    session.close_after_answer();
    respond(session, status, Bytes::from_static(body), headers).await
}

/// Answers a request that could not be read, straight on the connection, which then closes:
/// there is no parsed request to answer through a session.
pub async fn refuse_unread(
    client: &mut Stream,
    status: u16,
    reason: &str,
    body: &str,
) -> Result<()> {
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client
        .write_all(answer.as_bytes())
        .await
        .or_err(ErrorType::WriteError, "answering an unreadable request")?;
    client
        .flush()
        .await
        .or_err(ErrorType::WriteError, "answering an unreadable request")
}
