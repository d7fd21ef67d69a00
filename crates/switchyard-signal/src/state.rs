//! Shared state of the WebSocket endpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use switchyard_sfu::SfuHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::SignalConfig;
use crate::participant::SessionHandle;
use crate::store::RoomStore;

/// Everything a session needs: settings, the room store, the SFU, the shutdown token, the
/// tracker of running connections and sessions, and the sessions by resume token. Cheap to
/// clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) config: Arc<SignalConfig>,
    pub(crate) store: Arc<dyn RoomStore>,
    pub(crate) sfu: SfuHandle,
    pub(crate) shutdown: CancellationToken,
    pub(crate) sessions: TaskTracker,
    /// Joined sessions by resume token. One lock for the whole map, held only to insert, remove
    /// or clone a handle.
    by_token: Arc<Mutex<HashMap<String, SessionHandle>>>,
    next_connection_id: Arc<AtomicU64>,
}

impl AppState {
    /// Creates the state. Cancelling `shutdown` ends every session with an `error`
    /// `server_shutdown` message and close code 1001, and makes new upgrade requests fail
    /// with 503.
    pub fn new(
        config: SignalConfig,
        store: Arc<dyn RoomStore>,
        sfu: SfuHandle,
        shutdown: CancellationToken,
    ) -> Self {
        AppState {
            config: Arc::new(config),
            store,
            sfu,
            shutdown,
            sessions: TaskTracker::new(),
            by_token: Arc::default(),
            next_connection_id: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Returns the settings.
    pub fn config(&self) -> &SignalConfig {
        &self.config
    }

    /// Returns the token that shuts the endpoint down when cancelled.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Returns the number of connections and sessions still running, including ones that are
    /// closing.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Waits until every session has ended. Call it after cancelling the shutdown token, so
    /// that the sessions start to close.
    pub async fn wait_for_sessions(&self) {
        self.sessions.close();
        self.sessions.wait().await;
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register_session(&self, token: &str, handle: SessionHandle) {
        self.tokens().insert(token.to_owned(), handle);
    }

    pub(crate) fn unregister_session(&self, token: &str) {
        self.tokens().remove(token);
    }

    /// Returns the session with this resume token, if it is still running.
    pub(crate) fn find_session(&self, token: &str) -> Option<SessionHandle> {
        self.tokens().get(token).cloned()
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionHandle>> {
        // Every update is a single insert or remove, so the map is consistent even if a panic
        // ever poisoned the lock.
        self.by_token.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("sessions", &self.sessions.len())
            .field("shutdown", &self.shutdown.is_cancelled())
            .finish_non_exhaustive()
    }
}
