//! The long-term credential mechanism of RFC 8489 section 9.2: nonces, password algorithms,
//! USERHASH and the MESSAGE-INTEGRITY checks, for static users and time-limited credentials.
//!
//! NOTE: user names, realms and passwords are used as UTF-8 bytes without the OpaqueString
//! preparation (RFC 8265) that RFC 8489 requires, which matters only for non-ASCII values.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use base64::Engine;
use md5::{Digest, Md5};
use ring::{digest, hmac};

use crate::credentials::password_for;
use crate::stun::{
    verify_integrity, Integrity, MessageView, ATTR_MESSAGE_INTEGRITY,
    ATTR_MESSAGE_INTEGRITY_SHA256, ATTR_NONCE, ATTR_PASSWORD_ALGORITHM, ATTR_PASSWORD_ALGORITHMS,
    ATTR_REALM, ATTR_USERNAME, ATTR_USER_HASH,
};

/// Nonce prefix that announces STUN security features
/// (<https://www.rfc-editor.org/rfc/rfc8489#section-9.2>).
const NONCE_COOKIE: &str = "obMatJos2";
/// Base64 of the 24 feature bits with bit 0 (password algorithms) and bit 1 (username
/// anonymity) set; bit 0 is the most significant.
const SECURITY_FEATURES: &str = "wAAA";
/// Bytes of the nonce MAC kept in the nonce.
const NONCE_MAC_LEN: usize = 12;

/// PASSWORD-ALGORITHMS value this server sends: SHA-256 first, then MD5, each without
/// parameters (<https://www.rfc-editor.org/rfc/rfc8489#section-14.11>).
pub const PASSWORD_ALGORITHMS: [u8; 8] = [0, 2, 0, 0, 0, 1, 0, 0];

/// Algorithm that derives the long-term key from the password
/// (<https://www.rfc-editor.org/rfc/rfc8489#section-18.5>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordAlgorithm {
    /// MD5, 16-byte key.
    Md5,
    /// SHA-256, 32-byte key.
    Sha256,
}

/// A long-term key: MD5 or SHA-256 of `username:realm:password`.
#[derive(Clone, PartialEq, Eq)]
pub struct LongTermKey {
    bytes: [u8; 32],
    len: usize,
}

impl fmt::Debug for LongTermKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LongTermKey(<{} bytes hidden>)", self.len)
    }
}

impl LongTermKey {
    /// Derives the key of `username` in `realm` (<https://www.rfc-editor.org/rfc/rfc8489#section-9.2.2>).
    pub fn derive(
        algorithm: PasswordAlgorithm,
        username: &str,
        realm: &str,
        password: &str,
    ) -> Self {
        let input = [username, ":", realm, ":", password];
        let mut bytes = [0; 32];
        let len = match algorithm {
            PasswordAlgorithm::Md5 => {
                let mut hasher = Md5::new();
                for part in input {
                    hasher.update(part.as_bytes());
                }
                bytes[..16].copy_from_slice(&hasher.finalize());
                16
            }
            PasswordAlgorithm::Sha256 => {
                let mut context = digest::Context::new(&digest::SHA256);
                for part in input {
                    context.update(part.as_bytes());
                }
                bytes.copy_from_slice(context.finish().as_ref());
                32
            }
        };
        LongTermKey { bytes, len }
    }

    /// Returns the key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// USERHASH of `username` in `realm`: SHA-256 of `username:realm`
/// (<https://www.rfc-editor.org/rfc/rfc8489#section-14.4>).
pub fn userhash(username: &str, realm: &str) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(username.as_bytes());
    context.update(b":");
    context.update(realm.as_bytes());
    let mut hash = [0; 32];
    hash.copy_from_slice(context.finish().as_ref());
    hash
}

/// A request whose integrity check passed.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// USERNAME, or the user that USERHASH names.
    pub username: String,
    /// Key to sign the response with.
    pub key: LongTermKey,
    /// Integrity attribute the response carries: the one the request used.
    pub integrity: Integrity,
}

/// Authentication failure of a request, mapped to its error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request carries no integrity attribute; the client gets a challenge (401).
    #[error("request has no MESSAGE-INTEGRITY")]
    NoIntegrity,
    /// USERNAME or USERHASH, REALM or NONCE is missing, or the password algorithm attributes
    /// do not match what the server offered (400).
    #[error("request has missing or inconsistent authentication attributes")]
    BadRequest,
    /// The nonce was not issued by this server to this address, or has expired (438).
    #[error("nonce is stale or unknown")]
    StaleNonce,
    /// Unknown user (401).
    #[error("unknown user")]
    UnknownUser,
    /// Time-limited credentials whose expiry time has passed (401).
    #[error("credentials expired")]
    Expired,
    /// The integrity check failed (401).
    #[error("message integrity check failed")]
    IntegrityMismatch,
}

impl AuthError {
    /// STUN error code of the response.
    pub fn code(self) -> u16 {
        match self {
            AuthError::BadRequest => 400,
            AuthError::StaleNonce => 438,
            AuthError::NoIntegrity
            | AuthError::UnknownUser
            | AuthError::Expired
            | AuthError::IntegrityMismatch => 401,
        }
    }
}

/// Credentials and nonce state of one server.
pub struct Authenticator {
    realm: String,
    users: HashMap<String, String>,
    userhashes: HashMap<[u8; 32], String>,
    secrets: Vec<String>,
    nonce_key: hmac::Key,
    nonce_lifetime: u64,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// `users` maps names to passwords, `secrets` sign time-limited credentials, `nonce_key`
    /// signs nonces and nonces expire `nonce_lifetime` seconds after they are issued.
    pub fn new(
        realm: String,
        users: HashMap<String, String>,
        secrets: Vec<String>,
        nonce_key: [u8; 32],
        nonce_lifetime: u64,
    ) -> Self {
        let userhashes = users
            .keys()
            .map(|name| (userhash(name, &realm), name.clone()))
            .collect();
        Authenticator {
            realm,
            users,
            userhashes,
            secrets,
            nonce_key: hmac::Key::new(hmac::HMAC_SHA256, &nonce_key),
            nonce_lifetime,
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Issues a nonce for `client` at `now_unix`: the security feature cookie, the issue time
    /// and a MAC over both and the client address.
    pub fn nonce(&self, client: IpAddr, now_unix: u64) -> String {
        let issued = format!("{now_unix:x}");
        let mac = self.nonce_mac(&issued, client);
        let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac);
        format!("{NONCE_COOKIE}{SECURITY_FEATURES}{issued}.{mac}")
    }

    fn nonce_mac(&self, issued: &str, client: IpAddr) -> [u8; NONCE_MAC_LEN] {
        let mut context = hmac::Context::with_key(&self.nonce_key);
        context.update(issued.as_bytes());
        match client {
            IpAddr::V4(ip) => context.update(&ip.octets()),
            IpAddr::V6(ip) => context.update(&ip.octets()),
        }
        let mut mac = [0; NONCE_MAC_LEN];
        mac.copy_from_slice(&context.sign().as_ref()[..NONCE_MAC_LEN]);
        mac
    }

    fn nonce_is_fresh(&self, nonce: &[u8], client: IpAddr, now_unix: u64) -> bool {
        let Ok(nonce) = std::str::from_utf8(nonce) else {
            return false;
        };
        let Some(rest) = nonce.strip_prefix(NONCE_COOKIE) else {
            return false;
        };
        let Some(rest) = rest.strip_prefix(SECURITY_FEATURES) else {
            return false;
        };
        let Some((issued, mac)) = rest.split_once('.') else {
            return false;
        };
        let Ok(issued_unix) = u64::from_str_radix(issued, 16) else {
            return false;
        };
        let expected = self.nonce_mac(issued, client);
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(expected);
        let fresh = now_unix < issued_unix.saturating_add(self.nonce_lifetime);
        mac == expected && issued_unix <= now_unix.saturating_add(60) && fresh
    }

    /// Authenticates a request (<https://www.rfc-editor.org/rfc/rfc8489#section-9.2.4>), checking
    /// in the order the RFC gives.
    pub fn authenticate(
        &self,
        message: &MessageView<'_>,
        client: IpAddr,
        now_unix: u64,
    ) -> Result<Authenticated, AuthError> {
        let sha256 = message.get(ATTR_MESSAGE_INTEGRITY_SHA256);
        let sha1 = message.get(ATTR_MESSAGE_INTEGRITY);
        let (integrity_attr, integrity) = match (sha256, sha1) {
            (Some(attr), _) => (attr, Integrity::Sha256),
            (None, Some(attr)) => (attr, Integrity::Sha1),
            (None, None) => return Err(AuthError::NoIntegrity),
        };

        let username = message.get(ATTR_USERNAME);
        let user_hash = message.get(ATTR_USER_HASH);
        let realm = message.get(ATTR_REALM);
        let nonce = message.get(ATTR_NONCE);
        let (Some(nonce), Some(_realm)) = (nonce, realm) else {
            return Err(AuthError::BadRequest);
        };
        if username.is_none() && user_hash.is_none() {
            return Err(AuthError::BadRequest);
        }
        let algorithm = password_algorithm(message)?;
        if !self.nonce_is_fresh(nonce.value, client, now_unix) {
            return Err(AuthError::StaleNonce);
        }

        let candidates = match (username, user_hash) {
            (Some(username), _) => {
                let name =
                    std::str::from_utf8(username.value).map_err(|_| AuthError::UnknownUser)?;
                self.passwords_for(name, now_unix)?
            }
            (None, Some(hash)) => {
                let hash: [u8; 32] = hash.value.try_into().map_err(|_| AuthError::BadRequest)?;
                let name = self.userhashes.get(&hash).ok_or(AuthError::UnknownUser)?;
                self.passwords_for(name, now_unix)?
            }
            (None, None) => return Err(AuthError::BadRequest),
        };

        for (name, password) in candidates.iter() {
            let key = LongTermKey::derive(algorithm, name, &self.realm, password);
            if verify_integrity(message, integrity_attr, integrity, key.as_bytes()) {
                return Ok(Authenticated {
                    username: name.clone(),
                    key,
                    integrity,
                });
            }
        }
        Err(AuthError::IntegrityMismatch)
    }

    /// Passwords that `name` may use: its static password, or one per secret for time-limited
    /// credentials.
    fn passwords_for(&self, name: &str, now_unix: u64) -> Result<Vec<(String, String)>, AuthError> {
        if let Some(password) = self.users.get(name) {
            return Ok(vec![(name.to_owned(), password.clone())]);
        }
        if self.secrets.is_empty() {
            return Err(AuthError::UnknownUser);
        }
        let expiry = name.split_once(':').map_or(name, |(expiry, _)| expiry);
        let expiry: u64 = expiry.parse().map_err(|_| AuthError::UnknownUser)?;
        if expiry < now_unix {
            return Err(AuthError::Expired);
        }
        Ok(self
            .secrets
            .iter()
            .map(|secret| (name.to_owned(), password_for(secret, name)))
            .collect())
    }
}

/// Password algorithm of a request whose nonce has the password algorithms bit.
fn password_algorithm(message: &MessageView<'_>) -> Result<PasswordAlgorithm, AuthError> {
    let offered = message.get(ATTR_PASSWORD_ALGORITHMS);
    let chosen = message.get(ATTR_PASSWORD_ALGORITHM);
    match (offered, chosen) {
        (None, None) => Ok(PasswordAlgorithm::Md5),
        (Some(offered), Some(chosen)) if offered.value == PASSWORD_ALGORITHMS => {
            match chosen.value {
                [0, 1, 0, 0] => Ok(PasswordAlgorithm::Md5),
                [0, 2, 0, 0] => Ok(PasswordAlgorithm::Sha256),
                _ => Err(AuthError::BadRequest),
            }
        }
        _ => Err(AuthError::BadRequest),
    }
}
