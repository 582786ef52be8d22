//! The small plain-text answers the tunnel makes itself (401, 403, 404, 405, 431, 502, 504).

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::Method;
use pingora_error::Result;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

/// Writes a complete small plain-text response (header only for HEAD).
pub async fn respond(
    session: &mut Session,
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
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Answers `status` and closes the connection afterwards: the request was refused, its body
/// (if any) was never read, and the connection is not worth keeping.
pub async fn refuse(
    session: &mut Session,
    status: u16,
    body: &'static [u8],
    headers: &[(HeaderName, HeaderValue)],
) -> Result<()> {
    session.set_keepalive(None);
    respond(session, status, Bytes::from_static(body), headers).await
}
