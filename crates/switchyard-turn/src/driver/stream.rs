//! TCP and TLS client connections: framing, replies, and the raw byte relay that follows an
//! RFC 6062 ConnectionBind.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

use super::{now, Shared};
use crate::core::{ClientAddr, ClientOutput, ConnectionId, Transport};
use crate::counters::Direction;
use crate::stun::StreamFramer;

/// Bytes queued toward one client before further messages are dropped.
const MAX_QUEUED: usize = 1 << 20;
/// Time a client has to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection without an allocation that sends nothing for this long is closed. Connections
/// with an allocation stay open, because the allocation's own lifetime bounds them.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Outgoing bytes of one stream connection. Any task may push whole messages; the
/// connection's writer task sends them in order.
#[derive(Default)]
pub(crate) struct StreamSink {
    queue: Mutex<SinkQueue>,
    notify: Notify,
}

#[derive(Default)]
struct SinkQueue {
    bytes: Vec<u8>,
    closed: bool,
}

impl StreamSink {
    /// Queues one whole message, or drops it when the queue is full.
    pub fn push(&self, data: &[u8]) {
        self.push_all(std::iter::once(data));
    }

    /// Queues whole messages under one lock and wakes the writer once. A message that does
    /// not fit the queue is dropped.
    pub fn push_all<'a>(&self, messages: impl Iterator<Item = &'a [u8]>) {
        let mut queued = false;
        {
            let mut queue = self
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for data in messages {
                if queue.closed || queue.bytes.len() + data.len() > MAX_QUEUED {
                    trace!(len = data.len(), "dropped message for a slow stream client");
                    continue;
                }
                queue.bytes.extend_from_slice(data);
                queued = true;
            }
        }
        if queued {
            self.notify.notify_one();
        }
    }

    fn close(&self) {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .closed = true;
        self.notify.notify_one();
    }

    /// Swaps the queued bytes into `batch`; returns false once closed and drained.
    async fn next_batch(&self, batch: &mut Vec<u8>) -> bool {
        loop {
            {
                let mut queue = self
                    .queue
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if !queue.bytes.is_empty() {
                    batch.clear();
                    std::mem::swap(&mut queue.bytes, batch);
                    return true;
                }
                if queue.closed {
                    return false;
                }
            }
            self.notify.notified().await;
        }
    }
}

/// Accepts TCP connections, or TLS connections when `tls` is set, until shutdown.
pub(crate) fn spawn_listener(
    shared: &Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
) {
    let shared = shared.clone();
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shared.shutdown.cancelled() => return,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%error, "failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            let connection = shared.clone();
            let tls = tls.clone();
            shared.tasks.spawn(async move {
                serve_connection(connection, stream, local, remote, tls).await;
            });
        }
    });
}

async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    local: SocketAddr,
    remote: SocketAddr,
    tls: Option<TlsAcceptor>,
) {
    let Some(acceptor) = tls else {
        let client = ClientAddr {
            transport: Transport::Tcp,
            local,
            remote,
        };
        serve_stream(shared, stream, client).await;
        return;
    };
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                debug!(client = %remote, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                debug!(client = %remote, "TLS handshake timed out");
                return;
            }
        },
        _ = shared.shutdown.cancelled() => return,
    };
    let client = ClientAddr {
        transport: Transport::Tls,
        local,
        remote,
    };
    serve_stream(shared, stream, client).await;
}

/// Reads framed messages from one connection and passes them to the core until the client
/// closes it, the framing breaks, or shutdown.
async fn serve_stream<S>(shared: Arc<Shared>, stream: S, client: ClientAddr)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let sink = Arc::new(StreamSink::default());
    shared.lock().register_stream(client, sink.clone());
    let writer_task = tokio::spawn(write_queued(writer, sink.clone(), shared.shutdown.clone()));

    let bound = read_frames(&shared, &mut reader, &sink, client).await;

    {
        let mut state = shared.lock();
        state.unregister_stream(&client);
        state.core.handle_client_closed(client);
        state.drain_commands(&shared);
    }
    sink.close();
    let Ok(writer) = writer_task.await else {
        return;
    };
    if let Some((connection, remaining)) = bound {
        let peer = shared.lock().take_peer_stream(connection);
        if let Some(peer) = peer {
            let client_stream = reader.unsplit(writer);
            relay_bytes(&shared, client_stream, peer, remaining, client.transport).await;
        }
        shared.lock().core.handle_connection_closed(connection);
    }
}

/// Returns the peer connection and the bytes already read past the ConnectionBind request when
/// the connection turns into an RFC 6062 data connection.
async fn read_frames<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    reader: &mut R,
    sink: &StreamSink,
    client: ClientAddr,
) -> Option<(ConnectionId, Vec<u8>)> {
    let mut framer = StreamFramer::default();
    let mut out = Vec::with_capacity(2048);
    loop {
        let read = tokio::select! {
            read = reader.read(framer.spare()) => read,
            () = tokio::time::sleep(IDLE_TIMEOUT) => {
                if shared.lock().core.has_allocation(&client) {
                    continue;
                }
                debug!(client = %client.remote, "closing idle connection without an allocation");
                return None;
            }
            _ = shared.shutdown.cancelled() => return None,
        };
        match read {
            Ok(0) => return None,
            Ok(n) => framer.filled(n),
            Err(error) => {
                debug!(client = %client.remote, %error, "connection read failed");
                return None;
            }
        }
        loop {
            let frame = match framer.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    debug!(client = %client.remote, %error, "closing connection with broken framing");
                    return None;
                }
            };
            let (output, relay_socket) = {
                let mut state = shared.lock();
                let output = state.core.handle_client(now(), client, frame, &mut out);
                let relay_socket = match &output {
                    ClientOutput::ToPeer { relay, .. } => state.relay_socket(*relay),
                    _ => None,
                };
                state.drain_commands(shared);
                (output, relay_socket)
            };
            match output {
                ClientOutput::Reply => sink.push(&out),
                ClientOutput::ToPeer { peer, payload, .. } => {
                    if let Some(socket) = relay_socket {
                        socket.send_to_waiting(&frame[payload], peer).await;
                    }
                }
                ClientOutput::ConnectionBound { connection } => {
                    sink.push(&out);
                    return Some((connection, framer.take_remaining().to_vec()));
                }
                ClientOutput::None => {}
            }
        }
    }
}

/// Writes queued messages until the sink is closed and drained, or until shutdown, so that a
/// client that stops reading cannot hold up shutdown.
async fn write_queued<W: AsyncWrite + Unpin>(
    mut writer: W,
    sink: Arc<StreamSink>,
    shutdown: CancellationToken,
) -> W {
    let mut batch = Vec::with_capacity(4096);
    let write_all = async {
        while sink.next_batch(&mut batch).await {
            if let Err(error) = writer.write_all(&batch).await {
                trace!(%error, "connection write failed");
                break;
            }
        }
        let _ = writer.flush().await;
    };
    tokio::select! {
        () = write_all => {}
        () = shutdown.cancelled() => {}
    }
    writer
}

/// Copies bytes both ways between a client data connection and a peer connection until
/// either side closes (<https://www.rfc-editor.org/rfc/rfc6062#section-5.5>).
async fn relay_bytes<S>(
    shared: &Arc<Shared>,
    client: S,
    peer: TcpStream,
    remaining: Vec<u8>,
    transport: Transport,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (client_read, mut client_write) = tokio::io::split(client);
    let (peer_read, mut peer_write) = peer.into_split();
    if !remaining.is_empty() {
        if peer_write.write_all(&remaining).await.is_err() {
            return;
        }
        shared
            .counters
            .add_relayed(Direction::ToPeer, transport, remaining.len());
    }
    let to_peer = copy_counted(
        shared,
        client_read,
        &mut peer_write,
        Direction::ToPeer,
        transport,
    );
    let to_client = copy_counted(
        shared,
        peer_read,
        &mut client_write,
        Direction::ToClient,
        transport,
    );
    tokio::select! {
        _ = to_peer => {}
        _ = to_client => {}
        _ = shared.shutdown.cancelled() => {}
    }
}

async fn copy_counted<R, W>(
    shared: &Arc<Shared>,
    mut reader: R,
    writer: &mut W,
    direction: Direction,
    transport: Transport,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if writer.write_all(&buf[..n]).await.is_err() {
            break;
        }
        shared.counters.add_relayed(direction, transport, n);
    }
    let _ = writer.shutdown().await;
}
