//! Time-limited TURN credentials in the format coturn's `static-auth-secret` accepts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use ring::hmac;

/// A TURN username and password pair for a client.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `<expiry unix time>:<user>`.
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub password: String,
    /// Time after which the relay rejects the credentials.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Mints credentials for `user`, valid for `lifetime` from `now`, signed with `secret`.
pub fn mint_credentials(
    secret: &str,
    user: &str,
    now: SystemTime,
    lifetime: Duration,
) -> Credentials {
    let expires_at = now + lifetime;
    let expiry = expires_at
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    let username = format!("{expiry}:{user}");
    Credentials {
        password: password_for(secret, &username),
        username,
        expires_at,
    }
}

/// Returns base64(HMAC-SHA1(secret, username)), the password a relay expects for `username`.
pub fn password_for(secret: &str, username: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_matches_coturn_formula() {
        // HMAC-SHA1("secret", "1700000000:ada"), base64; computed with
        // `printf %s 1700000000:ada | openssl dgst -sha1 -hmac secret -binary | base64`.
        let expected = "lV8v9c9TsajfLXLkZIc5nnmtEng=";
        assert_eq!(password_for("secret", "1700000000:ada"), expected);
        let credentials = mint_credentials(
            "secret",
            "ada",
            UNIX_EPOCH + Duration::from_secs(1_699_999_000),
            Duration::from_secs(1000),
        );
        assert_eq!(credentials.username, "1700000000:ada");
        assert_eq!(credentials.password, expected);
    }
}
