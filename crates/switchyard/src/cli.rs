//! Command line: `switchyard [serve] [OPTIONS]` and `switchyard turn --config FILE`. Every
//! `serve` option also has an environment variable and, except `--config`, a key of the same
//! name in the TOML config file.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// Switchyard real-time communication server: WebSocket signaling, an SFU and the browser
/// client in one process.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// Subcommand to run, `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `serve`, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Logging and tracing options, accepted by every subcommand.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// Options of the async runtime, accepted by every subcommand.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// Options of the async runtime. The runtime starts before any config file is read, so they
/// are flags and environment variables only.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeArgs {
    /// Threads that run the server's tasks. One per CPU lets a busy server use every core.
    /// Fewer threads hand fewer tasks from one core to another, so a lightly loaded TURN relay
    /// uses less CPU per message with 1 [default: one per CPU]
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_WORKER_THREADS",
        value_name = "COUNT",
        value_parser = clap::value_parser!(u16).range(1..=MAX_WORKER_THREADS)
    )]
    pub worker_threads: Option<u16>,
}

/// Largest `--worker-threads`.
pub const MAX_WORKER_THREADS: i64 = 1024;

/// Options that set up logging and tracing. They apply before any config file is read, so
/// they are flags and environment variables only.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct TelemetryArgs {
    /// Format of the log lines on standard error: `text` for people, `json` for one JSON
    /// object a line with timestamp, level, message, target and the fields of the enclosing
    /// spans. RUST_LOG selects what is logged [default: text]
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub log_format: Option<LogFormat>,

    /// Base URL of an OTLP/HTTP receiver, such as http://127.0.0.1:4318, that gets a trace
    /// span for each signaling request in protobuf at URL/v1/traces. Only plain http:// is
    /// supported [default: no tracing]
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    pub otlp_endpoint: Option<String>,
}

/// Value of `--log-format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// Subcommands.
// Parsed once per process, so the size of the `serve` variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(ServeArgs),
    /// Run only the STUN/TURN relay, as a separate relay node.
    Turn(TurnArgs),
    /// Print a join token signed with an API key's secret.
    Token(TokenArgs),
}

/// Options of `switchyard token`.
#[derive(Args, Clone, PartialEq, Eq)]
pub struct TokenArgs {
    /// API key named in the token's `kid` header
    #[arg(long, value_name = "KEY")]
    pub api_key: String,
    /// Secret of the API key, which signs the token
    #[arg(
        long,
        env = "SWITCHYARD_API_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub api_secret: String,
    /// Room the token admits to
    #[arg(long, value_name = "ROOM")]
    pub room: String,
    /// Participant identity (`sub`), used to detect duplicate joins
    #[arg(long, value_name = "IDENTITY")]
    pub identity: String,
    /// Display name; the join message's name is used when absent
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Comma-separated grants: publish, subscribe, publish_data, room_admin
    #[arg(
        long,
        value_name = "LIST",
        default_value = "publish,subscribe,publish_data"
    )]
    pub grants: String,
    /// Seconds from now until the token expires
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub ttl: u64,
}

impl std::fmt::Debug for TokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenArgs")
            .field("api_key", &self.api_key)
            .field("room", &self.room)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// One `--api-key KEY=SECRET` value. `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ApiKeyArg {
    /// Key name, as in a token's `kid`.
    pub key: String,
    /// Secret that signs the key's tokens.
    pub secret: String,
}

impl std::str::FromStr for ApiKeyArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some((key, secret)) if !key.is_empty() && !secret.is_empty() => Ok(ApiKeyArg {
                key: key.to_owned(),
                secret: secret.to_owned(),
            }),
            _ => Err("invalid API key; expected KEY=SECRET with both parts non-empty".into()),
        }
    }
}

impl TryFrom<String> for ApiKeyArg {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl std::fmt::Debug for ApiKeyArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}=<secret>", self.key)
    }
}

impl Cli {
    /// Returns the command to run, `serve` when none was named.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

/// Options of `switchyard turn`.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
pub struct TurnArgs {
    /// TOML file with the relay settings. The examples in turn-config/ list every key.
    /// Relative `tls-cert` and `tls-key` paths are resolved against the file's directory
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Server settings from flags, environment variables or the config file. Unset fields fall back
/// to the next source: flag, then environment variable, then file, then built-in default.
#[derive(Args, Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServeArgs {
    /// TCP address for HTTP, the browser client and WebSocket signaling [default: 127.0.0.1:8080]
    #[arg(long, env = "SWITCHYARD_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,

    /// UDP address that carries all media, shared by every media worker [default:
    /// 127.0.0.1:40000]
    #[arg(long, env = "SWITCHYARD_MEDIA", value_name = "ADDR")]
    pub media: Option<SocketAddr>,

    /// IP address advertised in the server's ICE candidates instead of the media address, for a
    /// server behind 1:1 NAT. Also the bundled TURN relay's external-ip unless its config sets
    /// one [default: the media address]
    #[arg(long, env = "SWITCHYARD_PUBLIC_IP", value_name = "IP")]
    pub public_ip: Option<IpAddr>,

    /// STUN or TURN URL given to clients in `joined.iceServers`, such as
    /// stun:stun.example.org:3478. Repeat the flag, or separate URLs with commas in the
    /// environment variable [default: none]
    #[arg(
        long,
        env = "SWITCHYARD_ICE_SERVER",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub ice_server: Vec<String>,

    /// Maximum size in bytes of one client message. Larger messages close the connection with
    /// code 1009 [default: 65536]
    #[arg(long, env = "SWITCHYARD_MAX_MESSAGE_SIZE", value_name = "BYTES")]
    pub max_message_size: Option<usize>,

    /// Number of messages that may wait for one client. A client whose queue is full is
    /// disconnected with code 4008 [default: 256]
    #[arg(long, env = "SWITCHYARD_OUTBOUND_QUEUE", value_name = "N")]
    pub outbound_queue: Option<usize>,

    /// Seconds without STUN traffic from a peer before its connection counts as disconnected
    /// and the SFU stops forwarding to it. Media does not count, so keep it above the 2-second
    /// ICE keepalive interval [default: 5]
    #[arg(long, env = "SWITCHYARD_ICE_DISCONNECTED_TIMEOUT", value_name = "SECS")]
    pub ice_disconnected_timeout: Option<u64>,

    /// Further seconds without STUN traffic before a disconnected connection fails. A failed
    /// publisher connection removes the participant's tracks from the room [default: 25]
    #[arg(long, env = "SWITCHYARD_ICE_FAILED_TIMEOUT", value_name = "SECS")]
    pub ice_failed_timeout: Option<u64>,

    /// Number of SFU tasks, each with its own socket on the media address (SO_REUSEPORT).
    /// Participants are spread over them by room [default: the number of CPUs]
    #[arg(long, env = "SWITCHYARD_MEDIA_WORKERS", value_name = "COUNT")]
    pub media_workers: Option<usize>,

    /// Members of one room that its home SFU task takes before later members go to the task
    /// with the fewest of the room, so that a large room uses several CPUs [default: 50]
    #[arg(long, env = "SWITCHYARD_ROOM_SPREAD_AFTER", value_name = "COUNT")]
    pub room_spread_after: Option<usize>,

    /// Offer only the SRTP profile AEAD_AES_128_GCM, so that browsers, which list AES-CM first,
    /// use it. A client without it cannot connect. The environment variable accepts true,
    /// false, yes, no, on, off, 1 and 0
    #[arg(
        long,
        env = "SWITCHYARD_SRTP_AEAD_ONLY",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    #[serde(default)]
    pub srtp_aead_only: bool,

    /// TOML file with the settings of the bundled STUN/TURN relay, in the format of
    /// `switchyard turn --config`. The relay always allows the SFU's media address as a peer,
    /// and gets a random secret for the credentials in `joined.iceServers` when the file sets
    /// no static-auth-secrets. A relative path in the serve config file is resolved against
    /// that file's directory [default: the relay's defaults, listening on 127.0.0.1:3478 UDP
    /// and TCP]
    #[arg(long, env = "SWITCHYARD_TURN_CONFIG", value_name = "FILE")]
    pub turn_config: Option<PathBuf>,

    /// Run without the bundled STUN/TURN relay. `joined.iceServers` then lists only the
    /// --ice-server URLs. The environment variable accepts true, false, yes, no, on, off, 1
    /// and 0
    #[arg(
        long,
        env = "SWITCHYARD_NO_TURN",
        value_parser = clap::builder::BoolishValueParser::new(),
        conflicts_with = "turn_config"
    )]
    #[serde(default)]
    pub no_turn: bool,

    /// TURN URL of another relay node that accepts the bundled relay's secret, such as
    /// turn:relay2.example.org:3478?transport=udp. Clients get it in the bundled relay's
    /// `joined.iceServers` entry, with the same credentials. Repeat the flag, or separate URLs
    /// with commas in the environment variable [default: none]
    #[arg(
        long,
        env = "SWITCHYARD_TURN_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub turn_url: Vec<String>,

    /// Seconds a participant whose connection dropped without `leave` stays in the room,
    /// waiting for a resume. 0 removes it at once [default: 20]
    #[arg(long, env = "SWITCHYARD_RECONNECT_GRACE", value_name = "SECS")]
    pub reconnect_grace: Option<u64>,

    /// Seconds between SIGTERM or SIGINT and closing the sessions, while GET /readyz answers
    /// 503 so that load balancers stop sending new clients first [default: 0]
    #[arg(long, env = "SWITCHYARD_DRAIN_DELAY", value_name = "SECS")]
    pub drain_delay: Option<u64>,

    /// Number of unacknowledged messages kept per session for resume. A resume that needs an
    /// older message fails and the client joins again [default: 1000]
    #[arg(long, env = "SWITCHYARD_OUTBOX_MESSAGES", value_name = "N")]
    pub outbox_messages: Option<usize>,

    /// Seconds an unacknowledged message is kept for resume [default: 120]
    #[arg(long, env = "SWITCHYARD_OUTBOX_AGE", value_name = "SECS")]
    pub outbox_age: Option<u64>,

    /// Seconds between WebSocket pings [default: 10]
    #[arg(long, env = "SWITCHYARD_PING_INTERVAL", value_name = "SECS")]
    pub ping_interval: Option<u64>,

    /// Seconds without any frame from a WebSocket client, pongs included, before its
    /// connection counts as dropped [default: 30]
    #[arg(long, env = "SWITCHYARD_PING_TIMEOUT", value_name = "SECS")]
    pub ping_timeout: Option<u64>,

    /// Policy for a join whose identity matches a participant in the room: `replace` the old
    /// session, or `reject` the new join with `duplicate_identity` [default: replace]
    #[arg(long, env = "SWITCHYARD_DUPLICATE_IDENTITY", value_name = "POLICY")]
    pub duplicate_identity: Option<DuplicateIdentityPolicy>,

    /// API key and secret that sign join tokens, as KEY=SECRET. Repeat the flag, or separate
    /// pairs with commas in the environment variable. With no key and the HTTP address on
    /// loopback, joins without a token are allowed (development mode) [default: none]
    #[arg(
        long,
        env = "SWITCHYARD_API_KEYS",
        value_name = "KEY=SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    #[serde(default)]
    pub api_key: Vec<ApiKeyArg>,

    /// Messages per second one connection may send on average, with bursts of twice as many.
    /// Messages over it get `rate_limited`, and a connection that keeps going is closed with
    /// code 4029 [default: 50]
    #[arg(long, env = "SWITCHYARD_MAX_MESSAGES_PER_SECOND", value_name = "N")]
    pub max_messages_per_second: Option<u32>,

    /// Maximum number of participants in one room [default: 100]
    #[arg(long, env = "SWITCHYARD_MAX_PARTICIPANTS_PER_ROOM", value_name = "N")]
    pub max_participants_per_room: Option<usize>,

    /// Maximum number of rooms on this server [default: 1000]
    #[arg(long, env = "SWITCHYARD_MAX_ROOMS", value_name = "N")]
    pub max_rooms: Option<usize>,

    /// Largest file in bytes that the web client sends or accepts in a peer-to-peer file
    /// transfer, handed to clients in `joined.maxFileSize`. Files never pass through the
    /// server [default: 2147483648]
    #[arg(long, env = "SWITCHYARD_MAX_FILE_SIZE", value_name = "BYTES")]
    pub max_file_size: Option<u64>,

    /// Origin allowed to open signaling connections, such as https://app.example.org. Repeat
    /// the flag, or separate origins with commas in the environment variable. Other origins
    /// get HTTP 403 [default: any origin]
    #[arg(
        long,
        env = "SWITCHYARD_ALLOWED_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allowed_origin: Vec<String>,

    /// TOML file with any of the keys http, media, media-workers, room-spread-after,
    /// srtp-aead-only, public-ip, ice-server (a list),
    /// max-message-size, outbound-queue, ice-disconnected-timeout, ice-failed-timeout,
    /// reconnect-grace, drain-delay, outbox-messages, outbox-age, ping-interval, ping-timeout,
    /// duplicate-identity, api-key (a list), max-messages-per-second,
    /// max-participants-per-room, max-rooms, max-file-size, allowed-origin (a list),
    /// turn-config, no-turn and turn-url (a list). Flags and environment variables override it
    #[arg(long, env = "SWITCHYARD_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

/// Value of `--duplicate-identity`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DuplicateIdentityPolicy {
    /// Remove the participant already in the room and admit the new join.
    Replace,
    /// Reject the new join with `duplicate_identity`.
    Reject,
}

impl From<DuplicateIdentityPolicy> for switchyard_signal::DuplicateIdentity {
    fn from(policy: DuplicateIdentityPolicy) -> Self {
        match policy {
            DuplicateIdentityPolicy::Replace => switchyard_signal::DuplicateIdentity::Replace,
            DuplicateIdentityPolicy::Reject => switchyard_signal::DuplicateIdentity::Reject,
        }
    }
}

impl ServeArgs {
    /// Returns `self` with every unset field taken from `lower`. `turn-config` and `no-turn`
    /// count as one setting: when `self` sets either, both come from `self`.
    pub fn or(self, lower: ServeArgs) -> ServeArgs {
        let (turn_config, no_turn) = if self.no_turn || self.turn_config.is_some() {
            (self.turn_config, self.no_turn)
        } else {
            (lower.turn_config, lower.no_turn)
        };
        ServeArgs {
            http: self.http.or(lower.http),
            media: self.media.or(lower.media),
            public_ip: self.public_ip.or(lower.public_ip),
            ice_server: if self.ice_server.is_empty() {
                lower.ice_server
            } else {
                self.ice_server
            },
            max_message_size: self.max_message_size.or(lower.max_message_size),
            outbound_queue: self.outbound_queue.or(lower.outbound_queue),
            ice_disconnected_timeout: self
                .ice_disconnected_timeout
                .or(lower.ice_disconnected_timeout),
            ice_failed_timeout: self.ice_failed_timeout.or(lower.ice_failed_timeout),
            media_workers: self.media_workers.or(lower.media_workers),
            room_spread_after: self.room_spread_after.or(lower.room_spread_after),
            srtp_aead_only: self.srtp_aead_only || lower.srtp_aead_only,
            reconnect_grace: self.reconnect_grace.or(lower.reconnect_grace),
            drain_delay: self.drain_delay.or(lower.drain_delay),
            outbox_messages: self.outbox_messages.or(lower.outbox_messages),
            outbox_age: self.outbox_age.or(lower.outbox_age),
            ping_interval: self.ping_interval.or(lower.ping_interval),
            ping_timeout: self.ping_timeout.or(lower.ping_timeout),
            duplicate_identity: self.duplicate_identity.or(lower.duplicate_identity),
            api_key: if self.api_key.is_empty() {
                lower.api_key
            } else {
                self.api_key
            },
            max_messages_per_second: self
                .max_messages_per_second
                .or(lower.max_messages_per_second),
            max_participants_per_room: self
                .max_participants_per_room
                .or(lower.max_participants_per_room),
            max_rooms: self.max_rooms.or(lower.max_rooms),
            max_file_size: self.max_file_size.or(lower.max_file_size),
            allowed_origin: if self.allowed_origin.is_empty() {
                lower.allowed_origin
            } else {
                self.allowed_origin
            },
            turn_config,
            no_turn,
            turn_url: if self.turn_url.is_empty() {
                lower.turn_url
            } else {
                self.turn_url
            },
            config: self.config.or(lower.config),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["switchyard"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().into_command() {
            Command::Serve(args) => args,
            other => panic!("expected serve, got {other:?}"),
        }
    }

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_is_the_default_subcommand() {
        let with = parse(&["serve", "--http", "127.0.0.1:9000"]);
        let without = parse(&["--http", "127.0.0.1:9000"]);
        assert_eq!(
            with.http,
            Some("127.0.0.1:9000".parse::<SocketAddr>().unwrap())
        );
        assert_eq!(with, without);
    }

    #[test]
    fn ice_server_repeats() {
        let args = parse(&[
            "--ice-server",
            "stun:127.0.0.1:3478",
            "--ice-server",
            "turn:127.0.0.1:3478?transport=udp,stun:[::1]:3478",
        ]);
        assert_eq!(
            args.ice_server,
            [
                "stun:127.0.0.1:3478",
                "turn:127.0.0.1:3478?transport=udp",
                "stun:[::1]:3478"
            ]
        );
    }

    #[test]
    fn ice_timeouts_parse_as_seconds() {
        let args = parse(&[
            "--ice-disconnected-timeout",
            "1",
            "--ice-failed-timeout",
            "2",
        ]);
        assert_eq!(args.ice_disconnected_timeout, Some(1));
        assert_eq!(args.ice_failed_timeout, Some(2));

        let fractional = Cli::try_parse_from(["switchyard", "--ice-failed-timeout", "1.5"]);
        assert!(fractional.is_err());
    }

    #[test]
    fn turn_subcommand_takes_config_file() {
        let cli = Cli::try_parse_from(["switchyard", "turn", "--config", "relay.toml"]).unwrap();
        match cli.into_command() {
            Command::Turn(args) => assert_eq!(args.config, PathBuf::from("relay.toml")),
            other => panic!("expected turn, got {other:?}"),
        }

        let missing = Cli::try_parse_from(["switchyard", "turn"]);
        assert!(missing.is_err());
        let serve_flag = Cli::try_parse_from(["switchyard", "turn", "--http", "127.0.0.1:1"]);
        assert!(serve_flag.is_err());
    }

    #[test]
    fn turn_flags_of_serve() {
        let args = parse(&["--turn-config", "relay.toml"]);
        assert_eq!(args.turn_config, Some(PathBuf::from("relay.toml")));
        assert!(!args.no_turn);

        let args = parse(&["serve", "--no-turn"]);
        assert!(args.no_turn);
        assert_eq!(args.turn_config, None);

        let both = Cli::try_parse_from(["switchyard", "--no-turn", "--turn-config", "relay.toml"]);
        assert!(both.is_err());

        let args = parse(&[
            "--turn-url",
            "turn:127.0.0.2:3478?transport=udp",
            "--turn-url",
            "turn:127.0.0.3:3478?transport=udp,turn:127.0.0.3:3478?transport=tcp",
        ]);
        assert_eq!(
            args.turn_url,
            [
                "turn:127.0.0.2:3478?transport=udp",
                "turn:127.0.0.3:3478?transport=udp",
                "turn:127.0.0.3:3478?transport=tcp"
            ]
        );
    }

    #[test]
    fn session_settings_parse() {
        let args = parse(&[
            "--reconnect-grace",
            "0",
            "--outbox-messages",
            "50",
            "--outbox-age",
            "7",
            "--ping-interval",
            "2",
            "--ping-timeout",
            "6",
            "--duplicate-identity",
            "reject",
        ]);
        assert_eq!(args.reconnect_grace, Some(0));
        assert_eq!(args.outbox_messages, Some(50));
        assert_eq!(args.outbox_age, Some(7));
        assert_eq!(args.ping_interval, Some(2));
        assert_eq!(args.ping_timeout, Some(6));
        assert_eq!(
            args.duplicate_identity,
            Some(DuplicateIdentityPolicy::Reject)
        );

        let unknown = Cli::try_parse_from(["switchyard", "--duplicate-identity", "merge"]);
        assert!(unknown.is_err());
    }

    #[test]
    fn api_keys_and_limits_parse() {
        let args = parse(&[
            "--api-key",
            "key1=secret1",
            "--api-key",
            "key2=se=cret2",
            "--max-messages-per-second",
            "5",
            "--max-participants-per-room",
            "3",
            "--max-rooms",
            "2",
            "--allowed-origin",
            "http://127.0.0.1:8080",
        ]);
        assert_eq!(args.api_key.len(), 2);
        assert_eq!(args.api_key[1].key, "key2");
        assert_eq!(args.api_key[1].secret, "se=cret2");
        assert_eq!(args.max_messages_per_second, Some(5));
        assert_eq!(args.max_participants_per_room, Some(3));
        assert_eq!(args.max_rooms, Some(2));
        assert_eq!(args.allowed_origin, ["http://127.0.0.1:8080"]);
        assert!(!format!("{args:?}").contains("secret1"));

        for bad in ["key1", "=secret", "key1="] {
            let result = Cli::try_parse_from(["switchyard", "--api-key", bad]);
            assert!(result.is_err(), "{bad}");
        }
        let file: ServeArgs = toml::from_str("api-key = [\"k=s\"]\nmax-rooms = 4\n").unwrap();
        assert_eq!(file.api_key[0].key, "k");
        assert_eq!(file.max_rooms, Some(4));
    }

    #[test]
    fn token_subcommand_parses() {
        let cli = Cli::try_parse_from([
            "switchyard",
            "token",
            "--api-key",
            "key1",
            "--api-secret",
            "secret1",
            "--room",
            "demo",
            "--identity",
            "ada",
        ])
        .unwrap();
        let Command::Token(args) = cli.into_command() else {
            panic!("expected token");
        };
        assert_eq!(args.grants, "publish,subscribe,publish_data");
        assert_eq!(args.ttl, 3600);
        assert!(!format!("{args:?}").contains("secret1"));
    }

    #[test]
    fn invalid_address_is_rejected() {
        let result = Cli::try_parse_from(["switchyard", "--http", "localhost"]);
        assert!(result.is_err());
    }

    #[test]
    fn telemetry_flags_before_and_after_subcommand() {
        let cli = Cli::try_parse_from(["switchyard", "--log-format", "json"]).unwrap();
        assert_eq!(cli.telemetry.log_format, Some(LogFormat::Json));
        let cli = Cli::try_parse_from(["switchyard", "serve", "--log-format", "json"]).unwrap();
        assert_eq!(cli.telemetry.log_format, Some(LogFormat::Json));

        let cli = Cli::try_parse_from([
            "switchyard",
            "turn",
            "--config",
            "relay.toml",
            "--log-format",
            "json",
            "--otlp-endpoint",
            "http://127.0.0.1:4318",
        ])
        .unwrap();
        assert_eq!(cli.telemetry.log_format, Some(LogFormat::Json));
        assert_eq!(
            cli.telemetry.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4318")
        );

        let unknown = Cli::try_parse_from(["switchyard", "--log-format", "xml"]);
        assert!(unknown.is_err());
    }

    #[test]
    fn flags_override_lower_source() {
        let flags = parse(&["--http", "127.0.0.1:1", "--outbound-queue", "8"]);
        let file: ServeArgs = toml::from_str(
            r#"
            http = "127.0.0.1:2"
            media = "127.0.0.1:3"
            ice-server = ["stun:127.0.0.1:3478"]
            outbound-queue = 16
            ice-failed-timeout = 4
            ping-timeout = 12
            duplicate-identity = "reject"
            no-turn = true
            "#,
        )
        .unwrap();
        let merged = flags.or(file);
        assert!(merged.no_turn);
        assert_eq!(
            merged.http,
            Some("127.0.0.1:1".parse::<SocketAddr>().unwrap())
        );
        assert_eq!(
            merged.media,
            Some("127.0.0.1:3".parse::<SocketAddr>().unwrap())
        );
        assert_eq!(merged.ice_server, ["stun:127.0.0.1:3478"]);
        assert_eq!(merged.outbound_queue, Some(8));
        assert_eq!(merged.ice_failed_timeout, Some(4));
        assert_eq!(merged.ice_disconnected_timeout, None);
        assert_eq!(merged.ping_timeout, Some(12));
        assert_eq!(
            merged.duplicate_identity,
            Some(DuplicateIdentityPolicy::Reject)
        );
    }

    #[test]
    fn help_lists_env_variables_and_defaults() {
        let help = Cli::command().render_long_help().to_string();
        for expected in [
            "SWITCHYARD_HTTP",
            "SWITCHYARD_MEDIA",
            "SWITCHYARD_PUBLIC_IP",
            "SWITCHYARD_ICE_SERVER",
            "SWITCHYARD_MAX_MESSAGE_SIZE",
            "SWITCHYARD_OUTBOUND_QUEUE",
            "SWITCHYARD_ICE_DISCONNECTED_TIMEOUT",
            "SWITCHYARD_ICE_FAILED_TIMEOUT",
            "SWITCHYARD_RECONNECT_GRACE",
            "SWITCHYARD_OUTBOX_MESSAGES",
            "SWITCHYARD_OUTBOX_AGE",
            "SWITCHYARD_PING_INTERVAL",
            "SWITCHYARD_PING_TIMEOUT",
            "SWITCHYARD_DUPLICATE_IDENTITY",
            "SWITCHYARD_TURN_CONFIG",
            "SWITCHYARD_NO_TURN",
            "SWITCHYARD_TURN_URL",
            "SWITCHYARD_CONFIG",
            &crate::config::DEFAULT_HTTP.to_string(),
            &crate::config::DEFAULT_MEDIA.to_string(),
            &switchyard_signal::DEFAULT_MAX_MESSAGE_SIZE.to_string(),
            &switchyard_signal::DEFAULT_OUTBOUND_QUEUE.to_string(),
        ] {
            assert!(
                help.contains(expected),
                "help is missing {expected}:\n{help}"
            );
        }
    }
}
