//! Reading a TURN relay config file (the format of `switchyard turn --config` and
//! `switchyard serve --turn-config`) and logging the effective settings without secrets.

use std::path::{Path, PathBuf};

use switchyard_turn::TurnConfig;
use tracing::{info, warn};

/// Reason a TURN config file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TurnConfigError {
    /// The file could not be read.
    #[error("could not read TURN config file {path}")]
    Read {
        /// Path of the file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("invalid TURN config file {path}")]
    Parse {
        /// Path of the file.
        path: PathBuf,
        /// The TOML parser's error, with line and column.
        #[source]
        source: toml::de::Error,
    },
}

/// Reads and parses a TURN config file. Relative `tls-cert` and `tls-key` paths are resolved
/// against the file's directory, so a config and its certificate can move together.
///
/// Only the syntax and the types are checked here. [`TurnConfig::validate`], which
/// [`switchyard_turn::start`] calls, checks the rest.
pub fn load(path: &Path) -> Result<TurnConfig, TurnConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| TurnConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut config: TurnConfig =
        toml::from_str(&text).map_err(|source| TurnConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;

    let directory = path.parent().unwrap_or(Path::new(""));
    for file in [&mut config.tls_cert, &mut config.tls_key]
        .into_iter()
        .flatten()
    {
        if file.is_relative() {
            *file = directory.join(&*file);
        }
    }
    Ok(config)
}

/// Logs the settings of a relay at info level. Secrets and passwords are left out: only their
/// number and the user names appear.
pub fn log_effective(config: &TurnConfig, message: &str) {
    let user_names: Vec<&str> = config.users.iter().map(|user| user.name.as_str()).collect();
    info!(
        realm = %config.realm,
        listen_udp = ?config.listen_udp,
        listen_tcp = ?config.listen_tcp,
        listen_tls = ?config.listen_tls,
        tls_cert = ?config.tls_cert,
        tls_key = ?config.tls_key,
        relay_ip = %config.relay_ip,
        relay_ipv6 = ?config.relay_ipv6,
        external_ip = ?config.external_ip,
        min_port = config.min_port,
        max_port = config.max_port,
        auth = config.auth,
        static_auth_secrets = config.static_auth_secrets.len(),
        users = ?user_names,
        credential_lifetime = config.credential_lifetime,
        default_allocation_lifetime = config.default_allocation_lifetime,
        max_allocation_lifetime = config.max_allocation_lifetime,
        permission_lifetime = config.permission_lifetime,
        channel_lifetime = config.channel_lifetime,
        user_quota = config.user_quota,
        total_quota = config.total_quota,
        max_bytes_per_second = config.max_bytes_per_second,
        allowed_peer_ranges = ?config.allowed_peer_ranges,
        allowed_peer_addresses = ?config.allowed_peer_addresses,
        denied_peer_ranges = ?config.denied_peer_ranges,
        metrics_listen = ?config.metrics_listen,
        "{message}"
    );
    if config
        .static_auth_secrets
        .iter()
        .any(|secret| is_weak_secret(secret))
    {
        warn!(
            "a static-auth-secret is an example placeholder or shorter than {MIN_SECRET_BYTES} \
             bytes, so anyone can compute the relay's credentials; set one from \
             `openssl rand -hex 32`"
        );
    }
}

/// Shortest static-auth-secret the relay accepts without a warning: 128 bits.
const MIN_SECRET_BYTES: usize = 16;

/// Returns whether a secret is still one of the example configs' placeholders, or too short to
/// resist guessing.
fn is_weak_secret(secret: &str) -> bool {
    secret.starts_with("replace-with") || secret.len() < MIN_SECRET_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn example_secrets_are_weak() {
        assert!(is_weak_secret("replace-with-the-shared-secret"));
        assert!(is_weak_secret("short"));
        assert!(!is_weak_secret(
            "0f4c1e8d2b7a9c3e5f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a"
        ));
    }

    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let directory =
            std::env::temp_dir().join(format!("switchyard-turn-config-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn keys_are_kebab_case() {
        let path = temp_file(
            "keys.toml",
            r#"
            listen-udp = ["127.0.0.1:3479"]
            static-auth-secrets = ["s1", "s2"]
            allowed-peer-ranges = ["127.0.0.0/8"]
            "#,
        );
        let config = load(&path).unwrap();
        std::fs::remove_file(path).unwrap();

        let udp: SocketAddr = "127.0.0.1:3479".parse().unwrap();
        assert_eq!(config.listen_udp, [udp]);
        assert_eq!(config.static_auth_secrets, ["s1", "s2"]);
        assert_eq!(config.allowed_peer_ranges, ["127.0.0.0/8"]);
        assert_eq!(config.listen_tcp, TurnConfig::default().listen_tcp);
    }

    #[test]
    fn tls_paths_resolve_against_the_file() {
        let path = temp_file(
            "tls.toml",
            r#"
            tls-cert = "certs/relay.pem"
            tls-key = "/etc/switchyard/relay.key"
            "#,
        );
        let config = load(&path).unwrap();
        let directory = path.parent().unwrap().to_owned();
        std::fs::remove_file(path).unwrap();

        assert_eq!(config.tls_cert, Some(directory.join("certs/relay.pem")));
        assert_eq!(
            config.tls_key,
            Some(PathBuf::from("/etc/switchyard/relay.key"))
        );
    }

    #[test]
    fn unknown_key_names_the_file() {
        let path = temp_file("unknown.toml", "listen-udpp = []\n");
        let error = load(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();

        assert!(matches!(error, TurnConfigError::Parse { .. }), "{error:?}");
        assert!(error.to_string().contains("unknown.toml"), "{error}");
        let source = std::error::Error::source(&error).unwrap().to_string();
        assert!(source.contains("listen-udpp"), "{source}");
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let error = load(Path::new("/nonexistent/relay.toml")).unwrap_err();
        assert!(matches!(error, TurnConfigError::Read { .. }), "{error:?}");
    }
}
