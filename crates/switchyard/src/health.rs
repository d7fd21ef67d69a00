//! `GET /healthz` and `GET /readyz`, for load balancers and orchestrators.
//!
//! `/healthz` returns 200 while the process serves HTTP at all. `/readyz` returns 200 once
//! every listener is bound, and 503 from the moment the server starts draining, so a load
//! balancer stops sending new clients before the server goes away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

/// Readiness of one server. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Readiness {
    draining: Arc<AtomicBool>,
    shutdown: CancellationToken,
}

impl Readiness {
    pub(crate) fn new(shutdown: CancellationToken) -> Self {
        Readiness {
            draining: Arc::default(),
            shutdown,
        }
    }

    /// Makes `/readyz` return 503 from now on. The server keeps serving until its shutdown
    /// token is cancelled.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Tells whether the server accepts new clients: not draining and not shutting down.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && !self.shutdown.is_cancelled()
    }

    /// Returns the `GET /readyz` response.
    pub(crate) fn response(&self) -> Response {
        if self.is_ready() {
            (StatusCode::OK, "ready\n").into_response()
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
        }
    }
}

/// Returns the `GET /healthz` response.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_and_shutdown_are_not_ready() {
        let shutdown = CancellationToken::new();
        let readiness = Readiness::new(shutdown.clone());
        assert!(readiness.is_ready());
        assert_eq!(readiness.response().status(), StatusCode::OK);

        readiness.start_draining();
        assert!(!readiness.is_ready());
        assert_eq!(
            readiness.response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );

        let fresh = Readiness::new(shutdown.clone());
        shutdown.cancel();
        assert!(!fresh.is_ready());
    }
}
