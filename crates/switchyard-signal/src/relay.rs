//! Time-limited credentials for a TURN relay, minted for each participant when it joins.

use std::time::{Duration, SystemTime};

use switchyard_proto::IceServer;

/// A TURN relay that shares a secret with the signaling server, in the scheme of coturn's
/// `static-auth-secret`: each participant gets its own username and password in
/// `joined.iceServers`, valid for [`TurnRelay::lifetime`] from the join.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnRelay {
    /// `turn:` and `turns:` URLs of the relay.
    pub urls: Vec<String>,
    /// Secret that signs the credentials. The relay must accept it.
    pub secret: String,
    /// Validity of each credential from the moment it is minted.
    pub lifetime: Duration,
}

impl TurnRelay {
    /// Mints credentials for `participant_id`, valid from `now`, and returns the `iceServers`
    /// entry with the relay's URLs. The username is `<expiry unix time>:<participant id>`.
    pub fn ice_server(&self, participant_id: &str, now: SystemTime) -> IceServer {
        let credentials =
            switchyard_turn::mint_credentials(&self.secret, participant_id, now, self.lifetime);
        IceServer {
            urls: self.urls.clone(),
            username: Some(credentials.username),
            credential: Some(credentials.password),
        }
    }
}

impl std::fmt::Debug for TurnRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnRelay")
            .field("urls", &self.urls)
            .field("secret", &"<hidden>")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn relay() -> TurnRelay {
        TurnRelay {
            urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            secret: "secret".into(),
            lifetime: Duration::from_secs(1000),
        }
    }

    #[test]
    fn credentials_name_the_participant() {
        let now = UNIX_EPOCH + Duration::from_secs(1_699_999_000);
        let server = relay().ice_server("ada", now);
        assert_eq!(server.urls, ["turn:127.0.0.1:3478?transport=udp"]);
        assert_eq!(server.username.as_deref(), Some("1700000000:ada"));
        // base64(HMAC-SHA1("secret", "1700000000:ada")), from
        // `printf %s 1700000000:ada | openssl dgst -sha1 -hmac secret -binary | base64`.
        assert_eq!(
            server.credential.as_deref(),
            Some("lV8v9c9TsajfLXLkZIc5nnmtEng=")
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let text = format!("{:?}", relay());
        assert!(!text.contains("\"secret\""), "{text}");
        assert!(text.contains("<hidden>"), "{text}");
    }
}
