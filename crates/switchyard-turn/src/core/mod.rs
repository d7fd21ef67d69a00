//! Sans-IO TURN core: allocations, permissions, channel bindings, nonces, quotas and
//! authentication. It takes the current time and received bytes and returns what to send, with
//! no sockets, tasks or clock of its own.

/// Transport between a client and a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP datagrams.
    Udp,
    /// TCP stream (RFC 8489 section 6.2.2 framing).
    Tcp,
    /// TLS over TCP.
    Tls,
}
