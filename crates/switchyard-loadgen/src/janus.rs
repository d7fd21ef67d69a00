//! Janus adapter: the same participants against the VideoRoom plugin of Janus 1.x, through its
//! WebSocket API (subprotocol `janus-protocol`).
//!
//! Each participant has its own Janus session. A publisher attaches a handle, joins the room as
//! `publisher` and sends its offer with `publish`. A subscriber attaches one handle, joins as
//! `subscriber` with every feed it wants as a stream (Janus 1.x multistream, so one peer
//! connection carries all of them like Switchyard's subscriber connection), answers Janus's offer
//! and sends `start`. Janus puts its own candidates into its SDP, and the client trickles its
//! candidates with `trickle`. Sessions never time out: the bench script sets `session_timeout`
//! to 0.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use crate::peer::{self, SendCounters, VideoProfile};
use crate::stats::Recorder;

const VIDEOROOM: &str = "janus.plugin.videoroom";

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// One Janus session on its own WebSocket, with one plugin handle.
struct Session {
    outgoing: mpsc::UnboundedSender<Value>,
    pending: Pending,
    session_id: u64,
    handle_id: u64,
    next_transaction: u64,
    tasks: Vec<JoinHandle<()>>,
    timeout: Duration,
}

impl Session {
    /// Opens the WebSocket at `url`, creates a session and attaches a VideoRoom handle.
    async fn open(url: &str, timeout: Duration) -> anyhow::Result<Session> {
        let mut request = url
            .into_client_request()
            .with_context(|| format!("invalid Janus WebSocket URL {url}"))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .with_context(|| format!("WebSocket connection to Janus at {url} failed"))?;
        let (mut sink, mut stream) = socket.split();

        let (outgoing, mut queue) = mpsc::unbounded_channel::<Value>();
        let writer = tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                if sink.send(Message::text(message.to_string())).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let replies = Arc::clone(&pending);
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(reply) = serde_json::from_str::<Value>(&text) else {
                    tracing::warn!(%text, "invalid Janus message ignored");
                    continue;
                };
                route_reply(&replies, reply);
            }
        });

        let mut session = Session {
            outgoing,
            pending,
            session_id: 0,
            handle_id: 0,
            next_transaction: 0,
            tasks: vec![writer, reader],
            timeout,
        };
        let created = session.request(json!({"janus": "create"})).await?;
        session.session_id = reply_id(&created).context("Janus `create` reply")?;
        let attached = session
            .request(json!({"janus": "attach", "plugin": VIDEOROOM}))
            .await?;
        session.handle_id = reply_id(&attached).context("Janus `attach` reply")?;
        Ok(session)
    }

    /// Sends `message` with a new transaction and returns the first reply to it other than
    /// `ack`. Fails on a Janus `error` or a VideoRoom `error` event.
    async fn request(&mut self, mut message: Value) -> anyhow::Result<Value> {
        self.next_transaction += 1;
        let transaction = format!("t{}", self.next_transaction);
        message["transaction"] = json!(transaction);
        if self.session_id != 0 {
            message["session_id"] = json!(self.session_id);
        }
        if self.handle_id != 0 {
            message["handle_id"] = json!(self.handle_id);
        }
        let (reply_sender, reply) = oneshot::channel();
        lock(&self.pending).insert(transaction.clone(), reply_sender);
        let kind = message["janus"].as_str().unwrap_or("?").to_owned();
        let _ = self.outgoing.send(message);

        let reply = tokio::time::timeout(self.timeout, reply)
            .await
            .map_err(|_| anyhow!("no Janus reply to `{kind}` within {:?}", self.timeout))?
            .map_err(|_| anyhow!("the Janus WebSocket closed before the reply to `{kind}`"))?;
        if reply["janus"] == "error" {
            bail!("Janus rejected `{kind}`: {}", reply["error"]);
        }
        if let Some(error) = reply["plugindata"]["data"].get("error") {
            bail!("the VideoRoom plugin rejected `{kind}`: {error}");
        }
        Ok(reply)
    }

    /// Sends a VideoRoom request, with a JSEP description when given.
    async fn message(
        &mut self,
        body: Value,
        jsep: Option<&RTCSessionDescription>,
    ) -> anyhow::Result<Value> {
        let mut message = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            message["jsep"] = json!({"type": jsep.sdp_type.to_string(), "sdp": jsep.sdp});
        }
        self.request(message).await
    }

    /// Returns a function that trickles local candidates on this session's handle. Trickle
    /// requests get only an `ack`, so nothing waits for them.
    fn trickler(&self) -> impl Fn(Option<webrtc::peer_connection::RTCIceCandidateInit>) + 'static {
        let outgoing = self.outgoing.clone();
        let (session_id, handle_id) = (self.session_id, self.handle_id);
        move |candidate| {
            let candidate = match candidate {
                Some(init) => json!({
                    "candidate": init.candidate,
                    "sdpMid": init.sdp_mid,
                    "sdpMLineIndex": init.sdp_mline_index,
                }),
                None => json!({"completed": true}),
            };
            let _ = outgoing.send(json!({
                "janus": "trickle",
                "transaction": "trickle",
                "session_id": session_id,
                "handle_id": handle_id,
                "candidate": candidate,
            }));
        }
    }
}

/// Hands a reply to the request with its transaction, if one waits. Acks and events without a
/// waiting request (`webrtcup`, `media`, `slowlink`) are dropped.
fn route_reply(pending: &Pending, reply: Value) {
    if reply["janus"] == "ack" {
        return;
    }
    let Some(transaction) = reply["transaction"].as_str() else {
        return;
    };
    if let Some(waiting) = lock(pending).remove(transaction) {
        let _ = waiting.send(reply);
    }
}

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Value>>> {
    pending.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn reply_id(reply: &Value) -> anyhow::Result<u64> {
    reply["data"]["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("no numeric `data.id` in {reply}"))
}

fn remote_description(reply: &Value) -> anyhow::Result<RTCSessionDescription> {
    let jsep = &reply["jsep"];
    let sdp = jsep["sdp"]
        .as_str()
        .ok_or_else(|| anyhow!("no JSEP description in {reply}"))?
        .to_owned();
    let parsed = match jsep["type"].as_str() {
        Some("offer") => RTCSessionDescription::offer(sdp),
        Some("answer") => RTCSessionDescription::answer(sdp),
        other => bail!("unexpected JSEP type {other:?}"),
    };
    parsed.map_err(|error| anyhow!("Janus's SDP does not parse: {error}"))
}

/// A publisher in a Janus VideoRoom.
pub struct Publisher {
    /// The feed id that subscribers ask for.
    pub feed: u64,
    pub counters: Arc<SendCounters>,
    session: Session,
    pc: Arc<dyn PeerConnection>,
}

impl Publisher {
    /// Joins `room` as publisher number `index` and starts sending probes once connected.
    pub async fn join(
        url: &str,
        client_ip: IpAddr,
        room: u64,
        index: u32,
        video: VideoProfile,
        timeout: Duration,
    ) -> anyhow::Result<Publisher> {
        let mut session = Session::open(url, timeout).await?;
        let joined = session
            .message(
                json!({"request": "join", "ptype": "publisher", "room": room,
                       "display": format!("loadgen-{index}")}),
                None,
            )
            .await?;
        let feed = joined["plugindata"]["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("no publisher id in the VideoRoom reply {joined}"))?;

        let (events, peer_events) = mpsc::unbounded_channel();
        let pc = peer::build(client_ip, format!("janus publisher {index}"), events, None).await?;
        let mut state = peer::forward_events(peer_events, session.trickler());
        let tracks = peer::add_probe_tracks(&pc, index).await?;
        let offer = pc
            .create_offer(None)
            .await
            .map_err(|error| anyhow!("creating the publisher offer failed: {error}"))?;
        pc.set_local_description(offer.clone())
            .await
            .map_err(|error| anyhow!("applying the publisher offer failed: {error}"))?;
        let published = session
            .message(
                json!({"request": "publish", "audio": true, "video": true}),
                Some(&offer),
            )
            .await?;
        pc.set_remote_description(remote_description(&published)?)
            .await
            .map_err(|error| anyhow!("Janus's answer could not be applied: {error}"))?;
        peer::wait_connected(&mut state, timeout)
            .await
            .with_context(|| format!("Janus publisher {index}"))?;

        let (counters, sender) = peer::start_sending(index, tracks, video).await?;
        session.tasks.push(sender);
        Ok(Publisher {
            feed,
            counters,
            session,
            pc,
        })
    }

    /// Closes the peer connection and the session.
    pub async fn close(self) {
        close(self.session, self.pc).await;
    }
}

/// A subscriber to one or more feeds of a Janus VideoRoom.
pub struct Subscriber {
    session: Session,
    pc: Arc<dyn PeerConnection>,
}

impl Subscriber {
    /// Subscribes to `feeds` in `room` with one peer connection, whose probes go to `recorder`.
    pub async fn join(
        url: &str,
        client_ip: IpAddr,
        room: u64,
        feeds: &[u64],
        recorder: Arc<Recorder>,
        timeout: Duration,
    ) -> anyhow::Result<Subscriber> {
        let mut session = Session::open(url, timeout).await?;
        let streams: Vec<Value> = feeds.iter().map(|feed| json!({"feed": feed})).collect();
        let attached = session
            .message(
                json!({"request": "join", "ptype": "subscriber", "room": room,
                       "streams": streams}),
                None,
            )
            .await?;

        let (events, peer_events) = mpsc::unbounded_channel();
        let pc = peer::build(
            client_ip,
            "janus subscriber".to_owned(),
            events,
            Some(recorder),
        )
        .await?;
        let mut state = peer::forward_events(peer_events, session.trickler());
        pc.set_remote_description(remote_description(&attached)?)
            .await
            .map_err(|error| anyhow!("Janus's offer could not be applied: {error}"))?;
        let answer = pc
            .create_answer(None)
            .await
            .map_err(|error| anyhow!("creating the subscriber answer failed: {error}"))?;
        pc.set_local_description(answer.clone())
            .await
            .map_err(|error| anyhow!("applying the subscriber answer failed: {error}"))?;
        session
            .message(json!({"request": "start"}), Some(&answer))
            .await?;
        peer::wait_connected(&mut state, timeout)
            .await
            .context("Janus subscriber")?;
        Ok(Subscriber { session, pc })
    }

    /// Closes the peer connection and the session.
    pub async fn close(self) {
        close(self.session, self.pc).await;
    }
}

async fn close(mut session: Session, pc: Arc<dyn PeerConnection>) {
    let _ = pc.close().await;
    // `destroy` belongs to the session, not to the handle.
    session.handle_id = 0;
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        session.request(json!({"janus": "destroy"})),
    )
    .await;
    for task in &session.tasks {
        task.abort();
    }
}
