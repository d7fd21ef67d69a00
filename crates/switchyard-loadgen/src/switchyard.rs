//! Switchyard adapter: a participant joins through the real signaling WebSocket (`GET /v1/ws`,
//! messages of `switchyard-proto`), offers its probe tracks on the publisher connection and
//! answers the server's offers on the subscriber connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use switchyard_proto::{Candidate, ClientFrame, ClientMessage, ServerFrame, ServerMessage, Target};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};

use crate::peer::{self, SendCounters, VideoProfile};
use crate::stats::Recorder;

/// A joined participant: its signaling tasks and peer connections, kept open until dropped.
pub struct Participant {
    /// Counters of the probe sender, for a participant that publishes.
    pub counters: Option<Arc<SendCounters>>,
    tasks: Vec<JoinHandle<()>>,
    connections: Vec<Arc<dyn PeerConnection>>,
}

/// What a participant does in the room.
#[derive(Clone, Debug)]
pub struct Role {
    /// Publisher index written into its probes, for a participant that publishes.
    pub publish: Option<u32>,
    /// Where its received probes go, for a participant that subscribes.
    pub recorder: Option<Arc<Recorder>>,
    pub video: VideoProfile,
}

impl Participant {
    /// Joins `room` on the server at `http_addr` as `name`, with peer connections bound to
    /// `client_ip`. Returns once the publisher connection (if any) is up and sending.
    pub async fn join(
        http_addr: SocketAddr,
        client_ip: IpAddr,
        room: &str,
        name: &str,
        role: Role,
        timeout: Duration,
    ) -> anyhow::Result<Participant> {
        let (signaling, mut incoming, mut tasks) = connect(http_addr).await?;
        send(
            &signaling,
            ClientMessage::Join {
                room: room.to_owned(),
                name: name.to_owned(),
                token: None,
                identity: None,
            },
        );
        let first = tokio::time::timeout(timeout, incoming.recv())
            .await
            .map_err(|_| anyhow!("{name}: no reply to join within {timeout:?}"))?
            .ok_or_else(|| anyhow!("{name}: the signaling connection closed before `joined`"))?;
        if !matches!(first.message, ServerMessage::Joined { .. }) {
            bail!(
                "{name}: expected `joined` as the reply to join, got {:?}",
                first.message
            );
        }

        let mut connections = Vec::new();
        let subscriber = match &role.recorder {
            Some(recorder) => {
                let pc = open_connection(
                    client_ip,
                    format!("{name} subscriber"),
                    Target::Subscriber,
                    &signaling,
                    Some(Arc::clone(recorder)),
                )
                .await?
                .0;
                connections.push(Arc::clone(&pc));
                Some(pc)
            }
            None => None,
        };
        let publisher = match role.publish {
            Some(_) => {
                let (pc, state) = open_connection(
                    client_ip,
                    format!("{name} publisher"),
                    Target::Publisher,
                    &signaling,
                    None,
                )
                .await?;
                connections.push(Arc::clone(&pc));
                Some((pc, state))
            }
            None => None,
        };

        tasks.push(tokio::spawn(drive(
            name.to_owned(),
            incoming,
            publisher.as_ref().map(|(pc, _)| Arc::clone(pc)),
            subscriber,
            signaling.clone(),
        )));

        let counters = match (role.publish, publisher) {
            (Some(index), Some((pc, mut state))) => {
                let tracks = peer::add_probe_tracks(&pc, index).await?;
                let offer = pc
                    .create_offer(None)
                    .await
                    .map_err(|error| anyhow!("{name}: creating the offer failed: {error}"))?;
                pc.set_local_description(offer.clone())
                    .await
                    .map_err(|error| anyhow!("{name}: applying the offer failed: {error}"))?;
                send(&signaling, ClientMessage::Offer { sdp: offer.sdp });
                peer::wait_connected(&mut state, timeout)
                    .await
                    .with_context(|| format!("{name}: publisher connection"))?;
                let (counters, sender) = peer::start_sending(index, tracks, role.video).await?;
                tasks.push(sender);
                Some(counters)
            }
            _ => None,
        };
        Ok(Participant {
            counters,
            tasks,
            connections,
        })
    }

    /// Closes the peer connections and stops the signaling tasks.
    pub async fn close(self) {
        for task in &self.tasks {
            task.abort();
        }
        for pc in self.connections {
            let _ = pc.close().await;
        }
    }
}

type Signaling = mpsc::UnboundedSender<ClientFrame>;

/// Opens the signaling WebSocket and starts its writer and reader tasks.
async fn connect(
    http_addr: SocketAddr,
) -> anyhow::Result<(
    Signaling,
    mpsc::UnboundedReceiver<ServerFrame>,
    Vec<JoinHandle<()>>,
)> {
    let url = format!("ws://{http_addr}/v1/ws");
    let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .with_context(|| format!("WebSocket connection to {url} failed"))?;
    let (mut sink, mut stream) = socket.split();

    let (sender, mut outgoing) = mpsc::unbounded_channel::<ClientFrame>();
    let writer = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            let Ok(json) = serde_json::to_string(&frame) else {
                continue;
            };
            if sink.send(Message::text(json)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let (incoming, receiver) = mpsc::unbounded_channel::<ServerFrame>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            match serde_json::from_str::<ServerFrame>(&text) {
                Ok(frame) => {
                    if incoming.send(frame).is_err() {
                        break;
                    }
                }
                Err(error) => tracing::warn!(%error, "invalid server message ignored"),
            }
        }
    });
    Ok((sender, receiver, vec![writer, reader]))
}

/// Builds one of the participant's peer connections, whose candidates trickle to the server.
async fn open_connection(
    client_ip: IpAddr,
    name: String,
    target: Target,
    signaling: &Signaling,
    recorder: Option<Arc<Recorder>>,
) -> anyhow::Result<(
    Arc<dyn PeerConnection>,
    tokio::sync::watch::Receiver<webrtc::peer_connection::RTCPeerConnectionState>,
)> {
    let (events, peer_events) = mpsc::unbounded_channel();
    let pc = peer::build(client_ip, name, events, recorder).await?;
    let signaling = signaling.clone();
    let state = peer::forward_events(peer_events, move |candidate| {
        let candidate = candidate.map(to_proto_candidate).unwrap_or_default();
        send(&signaling, ClientMessage::Candidate { target, candidate });
    });
    Ok((pc, state))
}

fn to_proto_candidate(init: RTCIceCandidateInit) -> Candidate {
    Candidate {
        candidate: init.candidate,
        sdp_mid: init.sdp_mid,
        sdp_mline_index: init.sdp_mline_index,
        username_fragment: init.username_fragment,
    }
}

/// Applies server messages in arrival order: the answer and candidates to the publisher
/// connection, offers and candidates to the subscriber connection, whose offers it answers.
async fn drive(
    name: String,
    mut incoming: mpsc::UnboundedReceiver<ServerFrame>,
    publisher: Option<Arc<dyn PeerConnection>>,
    subscriber: Option<Arc<dyn PeerConnection>>,
    signaling: Signaling,
) {
    while let Some(frame) = incoming.recv().await {
        let outcome = match frame.message {
            ServerMessage::Answer { sdp } => set_answer(publisher.as_ref(), sdp).await,
            ServerMessage::Offer { sdp } => answer(subscriber.as_ref(), sdp, &signaling).await,
            ServerMessage::Candidate { target, candidate } if !candidate.is_end_of_candidates() => {
                let pc = match target {
                    Target::Publisher => publisher.as_ref(),
                    Target::Subscriber => subscriber.as_ref(),
                };
                add_candidate(pc, candidate).await
            }
            ServerMessage::Error { code, message, .. } => {
                Err(anyhow!("server error {code:?}: {message}"))
            }
            _ => Ok(()),
        };
        if let Err(error) = outcome {
            tracing::warn!(%name, "{error:#}");
        }
    }
}

async fn set_answer(pc: Option<&Arc<dyn PeerConnection>>, sdp: String) -> anyhow::Result<()> {
    let pc = pc.ok_or_else(|| anyhow!("answer for a publisher connection that does not exist"))?;
    let answer = RTCSessionDescription::answer(sdp)
        .map_err(|error| anyhow!("the server's answer does not parse: {error}"))?;
    pc.set_remote_description(answer)
        .await
        .map_err(|error| anyhow!("the server's answer could not be applied: {error}"))
}

async fn answer(
    pc: Option<&Arc<dyn PeerConnection>>,
    sdp: String,
    signaling: &Signaling,
) -> anyhow::Result<()> {
    let pc = pc.ok_or_else(|| anyhow!("offer for a subscriber connection that does not exist"))?;
    let offer = RTCSessionDescription::offer(sdp)
        .map_err(|error| anyhow!("the server's offer does not parse: {error}"))?;
    pc.set_remote_description(offer)
        .await
        .map_err(|error| anyhow!("the server's offer could not be applied: {error}"))?;
    let answer = pc
        .create_answer(None)
        .await
        .map_err(|error| anyhow!("creating the answer failed: {error}"))?;
    pc.set_local_description(answer.clone())
        .await
        .map_err(|error| anyhow!("applying the answer failed: {error}"))?;
    send(signaling, ClientMessage::Answer { sdp: answer.sdp });
    Ok(())
}

async fn add_candidate(
    pc: Option<&Arc<dyn PeerConnection>>,
    candidate: Candidate,
) -> anyhow::Result<()> {
    let pc = pc.ok_or_else(|| anyhow!("candidate for a connection that does not exist"))?;
    let init = RTCIceCandidateInit {
        candidate: candidate.candidate,
        sdp_mid: candidate.sdp_mid,
        sdp_mline_index: candidate.sdp_mline_index,
        username_fragment: candidate.username_fragment,
        ..Default::default()
    };
    pc.add_ice_candidate(init)
        .await
        .map_err(|error| anyhow!("the server's candidate was rejected: {error}"))
}

fn send(signaling: &Signaling, message: ClientMessage) {
    // The writer task stops only when the connection fails, which the reader sees.
    let _ = signaling.send(ClientFrame { id: None, message });
}
