//! W3C trace context that clients send in a `traceparent` header, and the span of each
//! signaling request.
//!
//! A request span becomes a child of the client's span when the client sent a valid
//! `traceparent` (W3C Trace Context, <https://www.w3.org/TR/trace-context/#traceparent-header>)
//! on `POST /v1/send` or on the WebSocket upgrade, and the root of a new trace otherwise.
//! OpenTelemetry export is set up by the binary; without it the spans only carry log fields.

use axum::http::HeaderMap;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use switchyard_proto::ClientMessage;
use tracing::{info_span, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Name of the W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// A client's span, parsed from a `traceparent` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TraceParent {
    trace_id: u128,
    span_id: u64,
    sampled: bool,
}

impl TraceParent {
    /// Reads the `traceparent` header. A missing or invalid header gives `None`, and the
    /// request starts a new trace, as the W3C specification requires.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(TRACEPARENT)?.to_str().ok()?;
        Self::parse(value)
    }

    /// Parses `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`. Later versions may append
    /// fields after the flags, which are ignored; all-zero ids are invalid.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        let valid_lengths =
            version.len() == 2 && trace_id.len() == 32 && span_id.len() == 16 && flags.len() == 2;
        if !valid_lengths || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let is_lower_hex =
            |text: &str| text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ![version, trace_id, span_id, flags]
            .into_iter()
            .all(is_lower_hex)
        {
            return None;
        }
        let parent = TraceParent {
            trace_id: u128::from_str_radix(trace_id, 16).ok()?,
            span_id: u64::from_str_radix(span_id, 16).ok()?,
            sampled: u8::from_str_radix(flags, 16).ok()? & 1 == 1,
        };
        (parent.trace_id != 0 && parent.span_id != 0).then_some(parent)
    }

    fn context(self) -> Context {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let span = SpanContext::new(
            TraceId::from(self.trace_id),
            SpanId::from(self.span_id),
            flags,
            true,
            TraceState::default(),
        );
        Context::new().with_remote_span_context(span)
    }
}

/// Creates the span of one signaling request: a new root, or a child of the client's span.
/// `room` and `participant` are empty before the connection joined.
pub(crate) fn request_span(
    message: &ClientMessage,
    request_id: Option<&str>,
    room: &str,
    participant: &str,
    parent: Option<TraceParent>,
) -> Span {
    let message_type = crate::metrics::client_type(message);
    let span = info_span!(
        parent: None,
        "signaling_request",
        otel.name = %format_args!("signaling {message_type}"),
        message_type,
        request_id,
        room_id = room,
        participant_id = participant,
    );
    if let Some(parent) = parent {
        // Fails only when no OpenTelemetry layer is installed, and then there is nothing to
        // link.
        let _ = span.set_parent(parent.context());
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_traceparent_parses() {
        let parent =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(parent.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parent.span_id, 0x00f067aa0ba902b7);
        assert!(parent.sampled);
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for value in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(value), None, "{value:?}");
        }
    }

    #[test]
    fn later_version_may_append_fields() {
        let parent =
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more");
        assert!(parent.is_some_and(|parent| !parent.sampled));
    }
}
