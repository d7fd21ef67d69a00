//! Join tokens: JSON Web Tokens (RFC 7519) signed with HMAC-SHA256 (`HS256`, RFC 7518 section
//! 3.2) using an API key's secret.
//!
//! The header names the API key in `kid`. The claims carry the room, the identity (`sub`), an
//! optional display name, the grants and the expiry (`exp`, and `nbf` when present), both in
//! seconds since the Unix epoch. Only `HS256` is accepted, whatever the header's `alg`, so a token
//! with `alg: none` or an asymmetric algorithm never reaches the signature check.
//!
//! Nothing here reads the clock: callers pass `now`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use serde::{Deserialize, Serialize};
use switchyard_proto::ErrorCode;

/// The only signature algorithm accepted.
pub const ALGORITHM: &str = "HS256";

/// Permissions a join token gives its participant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Grants {
    /// Send media: offers on the publisher connection.
    pub publish: bool,
    /// Receive the other participants' tracks on the subscriber connection.
    pub subscribe: bool,
    /// Send chat messages.
    pub publish_data: bool,
    /// Change the room's metadata and other participants' metadata.
    pub room_admin: bool,
}

impl Grants {
    /// Every grant, as a participant gets in development mode.
    pub const ALL: Grants = Grants {
        publish: true,
        subscribe: true,
        publish_data: true,
        room_admin: true,
    };

    /// Parses a comma-separated list of `publish`, `subscribe`, `publish_data` and
    /// `room_admin`. Returns the unknown name on failure.
    pub fn parse_list(list: &str) -> Result<Grants, String> {
        let mut grants = Grants::default();
        for name in list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
        {
            match name {
                "publish" => grants.publish = true,
                "subscribe" => grants.subscribe = true,
                "publish_data" => grants.publish_data = true,
                "room_admin" => grants.room_admin = true,
                other => return Err(other.to_owned()),
            }
        }
        Ok(grants)
    }
}

/// Claims of a join token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Room the token admits to.
    pub room: String,
    /// Participant identity, used for duplicate detection.
    pub sub: String,
    /// Display name; the `join` message's name is used when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Permissions; every grant is false when absent.
    #[serde(default)]
    pub grants: Grants,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Start of validity, in seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

/// API keys and their secrets. `Debug` shows the key names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ApiKeys(BTreeMap<String, String>);

impl ApiKeys {
    /// Creates the set from `(key, secret)` pairs.
    pub fn new(keys: impl IntoIterator<Item = (String, String)>) -> Self {
        ApiKeys(keys.into_iter().collect())
    }

    /// Returns true when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns the key names, without secrets.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    fn secret(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// Reason a join token was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is not three base64url parts with JSON header and claims.
    #[error("join token is malformed: {reason}")]
    Malformed {
        /// The part that failed to parse and why.
        reason: &'static str,
    },
    /// The header names an algorithm other than HS256.
    #[error("join token algorithm {alg:?} is not supported; sign with HS256")]
    UnsupportedAlgorithm {
        /// The header's `alg`.
        alg: String,
    },
    /// The header's `kid` names no configured API key.
    #[error("join token names an unknown API key {kid:?}")]
    UnknownKey {
        /// The header's `kid`, empty when absent.
        kid: String,
    },
    /// The signature does not match the API key's secret.
    #[error("join token signature is invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("join token expired at {exp} (seconds since the Unix epoch)")]
    Expired {
        /// The token's `exp`.
        exp: u64,
    },
    /// `nbf` has not come yet.
    #[error("join token is not valid before {nbf} (seconds since the Unix epoch)")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
    },
    /// The token is for another room.
    #[error("join token is for room {token_room:?}, not {room:?}")]
    WrongRoom {
        /// Room in the token.
        token_room: String,
        /// Room in the `join` message.
        room: String,
    },
}

impl TokenError {
    /// Returns the error code sent to the client.
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::Malformed { .. } | TokenError::UnsupportedAlgorithm { .. } => {
                ErrorCode::InvalidToken
            }
            TokenError::UnknownKey { .. } => ErrorCode::UnknownApiKey,
            TokenError::BadSignature => ErrorCode::InvalidSignature,
            TokenError::Expired { .. } | TokenError::NotYetValid { .. } => ErrorCode::TokenExpired,
            TokenError::WrongRoom { .. } => ErrorCode::WrongRoom,
        }
    }
}

/// Signs `claims` with `secret` and names `key` in the header.
pub fn sign(claims: &Claims, key: &str, secret: &str) -> String {
    let header = Header {
        alg: ALGORITHM.to_owned(),
        kid: Some(key.to_owned()),
        typ: Some("JWT".to_owned()),
    };
    // Serializing these structs cannot fail: every field is a string, number, bool or map.
    let header = serde_json::to_vec(&header).expect("header serializes");
    let claims = serde_json::to_vec(claims).expect("claims serialize");
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let signature = hmac::sign(&key, signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    )
}

/// Verifies `token` for a join to `room` at `now`, and returns its claims.
///
/// The checks run in this order: shape, header, API key, signature, then the claims. So a
/// client learns nothing about the claims of a token it cannot sign.
pub fn verify(
    token: &str,
    keys: &ApiKeys,
    room: &str,
    now: SystemTime,
) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header_part), Some(claims_part), Some(signature_part), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected three dot-separated parts"));
    };

    let header: Header = decode_json(
        header_part,
        "header is not base64url",
        "header is not a JSON object with alg",
    )?;
    if header.alg != ALGORITHM {
        return Err(TokenError::UnsupportedAlgorithm { alg: header.alg });
    }
    let kid = header.kid.unwrap_or_default();
    let Some(secret) = keys.secret(&kid) else {
        return Err(TokenError::UnknownKey { kid });
    };

    let signature = URL_SAFE_NO_PAD
        .decode(signature_part)
        .map_err(|_| malformed("signature is not base64url"))?;
    let signing_input = &token[..header_part.len() + 1 + claims_part.len()];
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    // ring compares the tags in constant time.
    hmac::verify(&key, signing_input.as_bytes(), &signature)
        .map_err(|_| TokenError::BadSignature)?;

    let claims: Claims = decode_json(
        claims_part,
        "claims are not base64url",
        "claims are not a JSON object with room, sub and exp",
    )?;
    check_claims(&claims, room, now)?;
    Ok(claims)
}

fn check_claims(claims: &Claims, room: &str, now: SystemTime) -> Result<(), TokenError> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    // RFC 7519 section 4.1.4: reject on or after `exp`.
    if now >= claims.exp {
        return Err(TokenError::Expired { exp: claims.exp });
    }
    // RFC 7519 section 4.1.5: reject before `nbf`.
    if let Some(nbf) = claims.nbf.filter(|&nbf| now < nbf) {
        return Err(TokenError::NotYetValid { nbf });
    }
    if claims.room != room {
        return Err(TokenError::WrongRoom {
            token_room: claims.room.clone(),
            room: room.to_owned(),
        });
    }
    Ok(())
}

fn decode_json<T: serde::de::DeserializeOwned>(
    part: &str,
    not_base64: &'static str,
    not_json: &'static str,
) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed(not_base64))?;
    serde_json::from_slice(&bytes).map_err(|_| malformed(not_json))
}

fn malformed(reason: &'static str) -> TokenError {
    TokenError::Malformed { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn keys() -> ApiKeys {
        ApiKeys::new([("key1".to_owned(), "secret1".to_owned())])
    }

    fn claims() -> Claims {
        Claims {
            room: "demo".into(),
            sub: "ada".into(),
            name: Some("Ada".into()),
            grants: Grants {
                publish: true,
                ..Grants::default()
            },
            exp: NOW + 60,
            nbf: None,
        }
    }

    fn encode_part(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn signed_token_verifies() {
        let token = sign(&claims(), "key1", "secret1");
        assert_eq!(verify(&token, &keys(), "demo", now()), Ok(claims()));
    }

    #[test]
    fn wrong_secret_is_bad_signature() {
        let token = sign(&claims(), "key1", "other");
        assert_eq!(
            verify(&token, &keys(), "demo", now()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn unknown_key_is_rejected() {
        let token = sign(&claims(), "key2", "secret1");
        let error = verify(&token, &keys(), "demo", now()).unwrap_err();
        assert_eq!(error.code(), ErrorCode::UnknownApiKey);
    }

    #[test]
    fn expiry_and_not_before_are_checked() {
        let expired = Claims {
            exp: NOW,
            ..claims()
        };
        let token = sign(&expired, "key1", "secret1");
        assert_eq!(
            verify(&token, &keys(), "demo", now()),
            Err(TokenError::Expired { exp: NOW })
        );

        let early = Claims {
            nbf: Some(NOW + 1),
            ..claims()
        };
        let token = sign(&early, "key1", "secret1");
        assert_eq!(
            verify(&token, &keys(), "demo", now()),
            Err(TokenError::NotYetValid { nbf: NOW + 1 })
        );
    }

    #[test]
    fn other_room_is_rejected() {
        let token = sign(&claims(), "key1", "secret1");
        let error = verify(&token, &keys(), "other", now()).unwrap_err();
        assert_eq!(error.code(), ErrorCode::WrongRoom);
    }

    #[test]
    fn algorithms_other_than_hs256_are_rejected() {
        let token = sign(&claims(), "key1", "secret1");
        let claims_part = token.split('.').nth(1).unwrap();
        for alg in ["none", "HS512", "RS256", "hs256"] {
            let header = encode_part(&format!(r#"{{"alg":"{alg}","kid":"key1"}}"#));
            let forged = format!("{header}.{claims_part}.");
            let error = verify(&forged, &keys(), "demo", now()).unwrap_err();
            assert_eq!(
                error,
                TokenError::UnsupportedAlgorithm { alg: alg.into() },
                "{alg}"
            );
        }
    }

    #[test]
    fn malformed_tokens_are_invalid_token() {
        let header = encode_part(r#"{"alg":"HS256","kid":"key1"}"#);
        let cases = [
            String::new(),
            "a.b".into(),
            "a.b.c.d".into(),
            "!!!.e30.sig".into(),
            format!("{}.e30.sig", encode_part("[1]")),
            format!("{header}.e30.***"),
        ];
        for token in cases {
            let error = verify(&token, &keys(), "demo", now()).unwrap_err();
            assert_eq!(error.code(), ErrorCode::InvalidToken, "{token:?}: {error}");
        }
    }

    #[test]
    fn signed_claims_of_wrong_shape_are_invalid_token() {
        let header = encode_part(r#"{"alg":"HS256","kid":"key1"}"#);
        let claims = encode_part(r#"{"room":"demo"}"#);
        let input = format!("{header}.{claims}");
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret1");
        let signature = URL_SAFE_NO_PAD.encode(hmac::sign(&key, input.as_bytes()).as_ref());
        let token = format!("{input}.{signature}");
        let error = verify(&token, &keys(), "demo", now()).unwrap_err();
        assert_eq!(error.code(), ErrorCode::InvalidToken);
    }

    #[test]
    fn grant_list_parses() {
        let grants = Grants::parse_list("publish, room_admin").unwrap();
        assert!(grants.publish);
        assert!(grants.room_admin);
        assert!(!grants.subscribe);
        assert!(!grants.publish_data);
        assert_eq!(Grants::parse_list("").unwrap(), Grants::default());
        assert_eq!(Grants::parse_list("publish,fly"), Err("fly".to_owned()));
    }

    #[test]
    fn debug_hides_secrets() {
        let debug = format!("{:?}", keys());
        assert!(debug.contains("key1"), "{debug}");
        assert!(!debug.contains("secret1"), "{debug}");
    }
}
