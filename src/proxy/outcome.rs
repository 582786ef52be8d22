//! What a failed request ends as: the status the client is told and the kind of upstream failure
//! it is counted under. One table, so the answer, the log line and the metric always agree.

use pingora_error::{Error, ErrorSource, ErrorType};

use crate::agent::relay::FAILURES as AGENT_FAILURES;
use crate::metrics::UpstreamErrorKind;
use crate::reverse::scrape::FAILURES as REVERSE_FAILURES;
use crate::upstream::DNS_ERROR;

/// Status for a client that went away before its answer was sent (nginx's convention).
pub const CLIENT_CLOSED: u16 = 499;

/// The end of a request that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Status the client is (or would have been) answered with.
    pub status: u16,
    /// The upstream failure, when the exporter side is at fault.
    pub upstream: Option<UpstreamErrorKind>,
    /// The reason, when the error names one of its own (a scrape of a registered client).
    named: Option<&'static str>,
}

impl Failure {
    /// Classifies a Pingora error: timeouts toward the exporter are 504, every other exporter
    /// failure 502, a client that went away 499, a bad request 400, anything internal 500.
    pub fn of(e: &Error) -> Failure {
        use ErrorType::*;
        use UpstreamErrorKind as K;
        let etype = e.etype();
        if let HTTPStatus(code) = etype {
            return Failure {
                status: *code,
                upstream: None,
                named: None,
            };
        }
        if let Custom(name) = etype {
            if let Some((reason, status, kind)) = REVERSE_FAILURES
                .iter()
                .chain(AGENT_FAILURES.iter())
                .find(|(reason, ..)| reason == name)
            {
                return Failure {
                    status: *status,
                    upstream: Some(*kind),
                    named: Some(reason),
                };
            }
        }
        match e.esource() {
            ErrorSource::Upstream => {
                let (status, kind) = match etype {
                    ConnectTimedout | TLSHandshakeTimedout | ReadTimedout | WriteTimedout => {
                        (504, K::Timeout)
                    }
                    ConnectRefused | ConnectNoRoute => (502, K::Refused),
                    TLSHandshakeFailure | InvalidCert | HandshakeError | TLSWantX509Lookup => {
                        (502, K::Tls)
                    }
                    ConnectProxyFailure => (502, K::Proxy),
                    ConnectionClosed | ReadError | WriteError => (502, K::Reset),
                    InvalidHTTPHeader | H1Error | H2Error | InvalidH2 | H2Downgrade => {
                        (502, K::Protocol)
                    }
                    Custom(name) if *name == DNS_ERROR => (502, K::Dns),
                    _ => (502, K::Other),
                };
                Failure {
                    status,
                    upstream: Some(kind),
                    named: None,
                }
            }
            ErrorSource::Downstream => Failure {
                status: match etype {
                    ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout => {
                        CLIENT_CLOSED
                    }
                    _ => 400,
                },
                upstream: None,
                named: None,
            },
            ErrorSource::Internal | ErrorSource::Unset => Failure {
                status: 500,
                upstream: None,
                named: None,
            },
        }
    }

    /// The failure's code in a target's record of scrapes (`metrics::scrape_log`), which
    /// [`reason_of`] turns back into its reason: a number, so the scrape path stores it in one
    /// atomic word.
    pub fn code(&self) -> u16 {
        if let Some(named) = self.named {
            let in_table = |table: &[(&str, u16, UpstreamErrorKind)]| {
                table.iter().position(|(reason, ..)| *reason == named)
            };
            if let Some(i) = in_table(&REVERSE_FAILURES) {
                return REVERSE_CODES + i as u16;
            }
            if let Some(i) = in_table(&AGENT_FAILURES) {
                return AGENT_CODES + i as u16;
            }
        }
        match self.upstream {
            Some(kind) => UPSTREAM_CODES + kind as u16,
            None if self.status == CLIENT_CLOSED => CLIENT_CLOSED_CODE,
            None => UNANSWERED_CODE,
        }
    }

    /// A short, safe reason for the error response body.
    pub fn reason(&self) -> &'static str {
        if let Some(reason) = self.named {
            return reason;
        }
        match self.upstream {
            Some(UpstreamErrorKind::Timeout) => "the exporter did not answer before the deadline",
            Some(UpstreamErrorKind::Refused) => "the exporter refused the connection",
            Some(UpstreamErrorKind::Dns) => "the exporter's host name did not resolve",
            Some(UpstreamErrorKind::Tls) => "the TLS handshake with the exporter failed",
            Some(UpstreamErrorKind::Proxy) => "the forward proxy to the exporter failed",
            Some(UpstreamErrorKind::Reset) => "the exporter closed the connection",
            Some(UpstreamErrorKind::Protocol) => "the exporter's answer was not valid HTTP",
            Some(UpstreamErrorKind::Other) => "the exporter could not be reached",
            None => "the request could not be answered",
        }
    }
}

/// Code 0: the exporter answered, with a status that is not a success.
pub const EXPORTER_STATUS_CODE: u16 = 0;
const UNANSWERED_CODE: u16 = 1;
const CLIENT_CLOSED_CODE: u16 = 2;
const UPSTREAM_CODES: u16 = 16;
const REVERSE_CODES: u16 = 32;
const AGENT_CODES: u16 = 48;

/// The reason of a failure by its [`Failure::code`], for the status page; `status` is what the
/// client was answered.
pub fn reason_of(code: u16, status: u16) -> std::borrow::Cow<'static, str> {
    let named = |table: &[(&'static str, u16, UpstreamErrorKind)], base: u16| {
        code.checked_sub(base)
            .and_then(|i| table.get(usize::from(i)))
            .map(|(reason, ..)| *reason)
    };
    let reason = match code {
        EXPORTER_STATUS_CODE => return format!("the exporter answered {status}").into(),
        CLIENT_CLOSED_CODE => Some("the client hung up before the answer was complete"),
        UNANSWERED_CODE => None,
        code if code >= AGENT_CODES => named(&AGENT_FAILURES, AGENT_CODES),
        code if code >= REVERSE_CODES => named(&REVERSE_FAILURES, REVERSE_CODES),
        code if code >= UPSTREAM_CODES => UpstreamErrorKind::ALL
            .get(usize::from(code - UPSTREAM_CODES))
            .map(|kind| {
                Failure {
                    status,
                    upstream: Some(*kind),
                    named: None,
                }
                .reason()
            }),
        _ => None,
    };
    match reason {
        Some(reason) => reason.into(),
        None if status == 400 => "the request was not a valid scrape".into(),
        None => format!("the tunnel answered {status}: the request could not be answered").into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(t: ErrorType) -> Failure {
        Failure::of(&Error::new_up(t))
    }

    #[test]
    fn statuses_and_kinds() {
        assert_eq!(up(ErrorType::ConnectRefused).status, 502);
        assert_eq!(
            up(ErrorType::ConnectRefused).upstream,
            Some(UpstreamErrorKind::Refused)
        );
        assert_eq!(up(ErrorType::ReadTimedout).status, 504);
        assert_eq!(
            up(ErrorType::ConnectTimedout).upstream,
            Some(UpstreamErrorKind::Timeout)
        );
        assert_eq!(
            up(ErrorType::InvalidCert).upstream,
            Some(UpstreamErrorKind::Tls)
        );
        assert_eq!(
            up(ErrorType::ConnectionClosed).upstream,
            Some(UpstreamErrorKind::Reset)
        );
        assert_eq!(
            up(ErrorType::Custom(DNS_ERROR)).upstream,
            Some(UpstreamErrorKind::Dns)
        );
        assert_eq!(
            Failure::of(&Error::new_down(ErrorType::WriteError)).status,
            CLIENT_CLOSED
        );
        assert_eq!(
            Failure::of(&Error::new_down(ErrorType::InvalidHTTPHeader)).status,
            400
        );
        assert_eq!(
            Failure::of(&Error::new_in(ErrorType::InternalError)).status,
            500
        );
        assert_eq!(
            Failure::of(&Error::new(ErrorType::HTTPStatus(405))).status,
            405
        );
        let no_poll = up(ErrorType::Custom(crate::reverse::scrape::NO_POLL));
        assert_eq!(no_poll.status, 504);
        assert_eq!(no_poll.upstream, Some(UpstreamErrorKind::Timeout));
        assert_eq!(no_poll.reason(), crate::reverse::scrape::NO_POLL);
    }

    #[test]
    fn every_reason_survives_its_code() {
        let failures = [
            up(ErrorType::ConnectRefused),
            up(ErrorType::ReadTimedout),
            up(ErrorType::InvalidCert),
            up(ErrorType::Custom(DNS_ERROR)),
            up(ErrorType::Custom(crate::reverse::scrape::NO_POLL)),
            up(ErrorType::Custom(crate::reverse::scrape::PUSH_CUT)),
            up(ErrorType::Custom(crate::agent::relay::AGENT_LOST)),
            up(ErrorType::Custom(crate::agent::relay::AGENT_TIMEOUT)),
        ];
        for failure in failures {
            assert_eq!(
                reason_of(failure.code(), failure.status),
                failure.reason(),
                "{failure:?}"
            );
        }
        let gone = Failure::of(&Error::new_down(ErrorType::WriteError));
        assert!(reason_of(gone.code(), gone.status).contains("hung up"));
        assert_eq!(reason_of(0, 404), "the exporter answered 404");
        let internal = Failure::of(&Error::new_in(ErrorType::InternalError));
        assert!(reason_of(internal.code(), 500).contains("500"));
    }
}
