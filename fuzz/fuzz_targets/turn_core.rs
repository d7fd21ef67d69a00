//! The sans-IO core's input: a sequence of client messages, peer datagrams and clock steps.
//!
//! Input layout: the first byte turns authentication on (odd) or off (even). Then records of
//! one operation byte, a two-byte big-endian length and that many bytes. The operation byte
//! modulo 5 picks the operation: 0 a UDP client message, 1 a TCP client message, 2 a datagram
//! from a peer to the first relay, 3 a clock step of up to 255 seconds. Operation 4 switches
//! between relay binds that succeed and binds that fail.

#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switchyard_turn::core::{ClientAddr, Command, Core, CoreConfig, Now, RelayId, Transport};
use switchyard_turn::{StaticUser, TurnConfig, TurnCounters};

fn core(auth: bool, now: Instant) -> Core {
    let config = TurnConfig {
        auth,
        realm: "fuzz".to_owned(),
        users: vec![StaticUser {
            name: "user".to_owned(),
            password: "pass".to_owned(),
        }],
        static_auth_secrets: vec!["secret".to_owned()],
        allowed_peer_ranges: vec!["127.0.0.0/8".to_owned()],
        min_port: 50000,
        max_port: 50003,
        max_bytes_per_second: 5000,
        ..TurnConfig::default()
    };
    let own = vec!["127.0.0.1:3478".parse().unwrap()];
    let config = CoreConfig::from_turn_config(&config, own, [3; 32]).unwrap();
    Core::new(config, Arc::new(TurnCounters::default()), now)
}

fn drain(core: &mut Core, now: Now, fail_binds: bool) {
    for _ in 0..64 {
        let Some(command) = core.poll_command() else {
            return;
        };
        if let Command::BindRelay { relay, addr, .. } = command {
            let result = if fail_binds {
                Err(std::io::Error::from(std::io::ErrorKind::AddrInUse))
            } else {
                Ok(addr)
            };
            core.handle_relay_bound(now, relay, result);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let start = Instant::now();
    let mut now = Now {
        instant: start,
        unix_secs: 1_700_000_000,
    };
    let mut core = core(flags % 2 == 1, start);
    let server: SocketAddr = "127.0.0.1:3478".parse().unwrap();
    let remote: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let mut out = Vec::new();
    let mut fail_binds = false;
    while rest.len() >= 3 {
        let op = rest[0] % 5;
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let payload = &rest[3..3 + len];
        rest = &rest[3 + len..];
        match op {
            0 | 1 => {
                let transport = if op == 0 {
                    Transport::Udp
                } else {
                    Transport::Tcp
                };
                let client = ClientAddr {
                    transport,
                    local: server,
                    remote,
                };
                core.handle_client(now, client, payload, &mut out);
            }
            2 => {
                core.handle_peer(now.instant, RelayId(1), peer, payload, &mut out);
            }
            3 => {
                let seconds = payload.first().copied().unwrap_or(1);
                now.instant += Duration::from_secs(u64::from(seconds));
                now.unix_secs += u64::from(seconds);
                core.handle_timeout(now.instant);
            }
            _ => fail_binds = !fail_binds,
        }
        drain(&mut core, now, fail_binds);
    }
});
