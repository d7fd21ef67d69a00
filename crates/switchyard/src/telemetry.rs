//! Logging and tracing setup: human-readable or JSON log lines on standard error, and
//! optionally OpenTelemetry trace export over OTLP/HTTP.
//!
//! The OTLP exporter of `opentelemetry-otlp` 0.33 sends from the batch processor's own thread,
//! which has no tokio runtime. [`OtlpHttpClient`] therefore runs each request as a task on the
//! server's runtime and waits for it, so the exporter can use `hyper`, which the HTTP server
//! already builds, without a second HTTP stack.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::cli::{LogFormat, TelemetryArgs};
use crate::relay_log_limit::{self, RelayLogLimit};

/// Time allowed for one OTLP export request.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Flushes and stops trace export when dropped.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports the spans still buffered and stops the exporter.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(error) = provider.shutdown() {
                tracing::warn!(%error, "exporting the last trace spans failed");
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Log filter without `RUST_LOG`. webrtc-rs logs at `warn` what remote peers cause, such as
/// DTLS extensions it does not know in every Chromium handshake, so its crates log only errors.
const DEFAULT_LOG_FILTER: &str = "info,rtc=error,rtc_dtls=error,rtc_ice=error,rtc_sctp=error,\
                                  rtc_srtp=error,rtc_interceptor=error";

/// Installs the global log subscriber and, with an OTLP endpoint, the trace exporter. Call it
/// inside the tokio runtime, which carries the export requests.
pub fn init(args: &TelemetryArgs) -> anyhow::Result<TelemetryGuard> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match args.log_format.unwrap_or_default() {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .boxed(),
    };

    let provider = match &args.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(endpoint)?),
        None => None,
    };
    let otel = provider.as_ref().map(|provider| {
        let tracer = provider.tracer("switchyard");
        tracing_opentelemetry::layer().with_tracer(tracer)
    });
    let fmt = fmt.with_filter(RelayLogLimit::new(
        relay_log_limit::DEFAULT_LINES_PER_SECOND,
    ));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .context("could not install the log subscriber")?;
    Ok(TelemetryGuard { provider })
}

/// Builds a tracer provider that batches spans and posts them to `endpoint`/v1/traces.
fn tracer_provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let base = endpoint.trim_end_matches('/');
    if !base.starts_with("http://") {
        anyhow::bail!(
            "invalid --otlp-endpoint {endpoint:?}: expected a plain http:// URL such as \
             http://127.0.0.1:4318; for TLS, run a local OpenTelemetry Collector that forwards"
        );
    }
    let runtime = tokio::runtime::Handle::try_current()
        .context("trace export needs the tokio runtime to be running")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OtlpHttpClient { runtime })
        .with_endpoint(format!("{base}/v1/traces"))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .context("could not build the OTLP span exporter")?;
    let resource = Resource::builder()
        .with_service_name("switchyard")
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// An HTTP/1.1 client for OTLP export that opens one connection per request on the tokio
/// runtime it was given.
#[derive(Debug)]
struct OtlpHttpClient {
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        // The batch processor polls this future on its own thread, which has no runtime, so
        // the request and its timer run as a task on the server's runtime. A join handle can
        // be awaited from any thread.
        let task = self.runtime.spawn(async move {
            match tokio::time::timeout(EXPORT_TIMEOUT, post(request)).await {
                Ok(result) => result,
                Err(_) => Err(format!("OTLP export timed out after {EXPORT_TIMEOUT:?}").into()),
            }
        });
        task.await?
    }
}

/// Sends one request on a new connection and returns the whole response.
async fn post(request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let (mut parts, body) = request.into_parts();
    let host = parts
        .uri
        .host()
        .ok_or("OTLP endpoint has no host")?
        .to_owned();
    let port = parts.uri.port_u16().unwrap_or(80);
    let authority = parts
        .uri
        .authority()
        .map(|authority| authority.as_str().to_owned())
        .unwrap_or_else(|| host.clone());
    parts
        .headers
        .insert(hyper::header::HOST, authority.parse()?);
    // HTTP/1.1 requests name only the path; the host goes in the Host header.
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();
    parts.uri = path.parse()?;

    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = sender
        .send_request(Request::from_parts(parts, Full::new(body)))
        .await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}
