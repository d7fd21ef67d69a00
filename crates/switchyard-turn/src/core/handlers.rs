//! STUN and TURN request and indication processing.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tracing::{debug, trace};

use super::allocation::{Allocation, PendingAllocate, RelayTransport};
use super::auth::{AuthError, Authenticated, PASSWORD_ALGORITHMS};
use super::limits::TokenBucket;
use super::policy::unmap;
use super::{ClientAddr, ClientOutput, Core, Now, Reservation, RESERVATION_LIFETIME};
use crate::stun::*;

/// Comprehension-required attributes (types below 0x8000) this server understands
/// (<https://www.rfc-editor.org/rfc/rfc8489#section-14>). DONT-FRAGMENT is handled apart because
/// RFC 8656 section 7.2 treats it as unknown in Allocate requests of a server that cannot set
/// the DF bit.
const KNOWN_ATTRIBUTES: [AttrType; 20] = [
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_ERROR_CODE,
    ATTR_CHANNEL_NUMBER,
    ATTR_LIFETIME,
    ATTR_XOR_PEER_ADDRESS,
    ATTR_DATA,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_XOR_RELAYED_ADDRESS,
    ATTR_REQUESTED_ADDRESS_FAMILY,
    ATTR_EVEN_PORT,
    ATTR_REQUESTED_TRANSPORT,
    ATTR_XORMAPPED_ADDRESS,
    ATTR_RESERVATION_TOKEN,
    ATTR_MESSAGE_INTEGRITY_SHA256,
    ATTR_PASSWORD_ALGORITHM,
    ATTR_USER_HASH,
    ATTR_CONNECTION_ID,
    ATTR_PRIORITY,
];

/// Most unknown attribute types listed in one 420 response.
const MAX_UNKNOWN: usize = 16;

/// A request being processed.
pub(super) struct Request<'a> {
    pub message: MessageView<'a>,
    pub from: ClientAddr,
    pub auth: Option<Authenticated>,
    pub fingerprint: bool,
}

impl Request<'_> {
    fn method(&self) -> Method {
        self.message.message_type().method
    }
}

impl Core {
    pub(super) fn handle_stun(
        &mut self,
        now: Now,
        from: ClientAddr,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> ClientOutput {
        let message = match MessageView::parse(data) {
            Ok(message) => message,
            Err(error) => {
                debug!(client = %from.remote, %error, "dropped malformed STUN message");
                return ClientOutput::None;
            }
        };
        let fingerprint = match message.get(ATTR_FINGERPRINT) {
            Some(attribute) => {
                if !fingerprint_matches(&message, attribute) {
                    debug!(client = %from.remote, "dropped STUN message with a wrong FINGERPRINT");
                    return ClientOutput::None;
                }
                true
            }
            None => false,
        };
        let class = message.message_type().class;
        let mut request = Request {
            message,
            from,
            auth: None,
            fingerprint,
        };
        match class {
            CLASS_REQUEST => self.handle_request(now, &mut request, out),
            CLASS_INDICATION => self.handle_indication(now, &request),
            _ => {
                debug!(client = %from.remote, "dropped STUN response sent to the server");
                ClientOutput::None
            }
        }
    }

    fn handle_request(
        &mut self,
        now: Now,
        request: &mut Request<'_>,
        out: &mut Vec<u8>,
    ) -> ClientOutput {
        let method = request.method();
        trace!(client = %request.from.remote, %method, "request");
        if let Some(unknown) = unknown_attributes(&request.message, method == METHOD_ALLOCATE) {
            debug!(client = %request.from.remote, %method, "rejected request with unknown comprehension-required attributes");
            write_unknown_attributes(out, request, &unknown);
            return ClientOutput::Reply;
        }
        if method == METHOD_BINDING {
            write_binding_success(out, request);
            return ClientOutput::Reply;
        }
        if !is_turn_request(method) {
            debug!(client = %request.from.remote, %method, "rejected request with an unknown method");
            write_error(out, request, 400);
            return ClientOutput::Reply;
        }
        if self.config.auth {
            match self
                .auth
                .authenticate(&request.message, request.from.remote.ip(), now.unix_secs)
            {
                Ok(auth) => request.auth = Some(auth),
                Err(error) => return self.reject_auth(now, request, error, out),
            }
        }
        match method {
            METHOD_ALLOCATE => self.allocate(now, request, out),
            METHOD_REFRESH => self.refresh(now, request, out),
            METHOD_CREATE_PERMISSION => self.create_permission(now, request, out),
            METHOD_CHANNEL_BIND => self.channel_bind(now, request, out),
            METHOD_CONNECT => super::tcp::connect(self, now, request, out),
            METHOD_CONNECTION_BIND => super::tcp::connection_bind(self, now, request, out),
            _ => {
                write_error(out, request, 400);
                ClientOutput::Reply
            }
        }
    }

    fn reject_auth(
        &mut self,
        now: Now,
        request: &Request<'_>,
        error: AuthError,
        out: &mut Vec<u8>,
    ) -> ClientOutput {
        let client = request.from.remote;
        match error {
            AuthError::NoIntegrity => trace!(%client, "challenging request without credentials"),
            _ => debug!(%client, %error, "rejected request"),
        }
        if matches!(
            error,
            AuthError::UnknownUser | AuthError::Expired | AuthError::IntegrityMismatch
        ) {
            self.counters.auth_failure();
        }
        let code = error.code();
        if code == 401 && !self.unauthorized.allow(client.ip(), now.instant) {
            debug!(%client, "dropped request over the 401 rate limit");
            return ClientOutput::None;
        }
        if code == 400 {
            write_error(out, request, 400);
        } else {
            let nonce = self.auth.nonce(client.ip(), now.unix_secs);
            let mut writer = start_response(out, request, CLASS_ERROR_RESPONSE);
            writer.error_code(code);
            writer.attr(ATTR_REALM, self.auth.realm().as_bytes());
            writer.attr(ATTR_NONCE, nonce.as_bytes());
            writer.attr(ATTR_PASSWORD_ALGORITHMS, &PASSWORD_ALGORITHMS);
            if request.fingerprint {
                writer.fingerprint();
            }
        }
        ClientOutput::Reply
    }

    /// Allocate (<https://www.rfc-editor.org/rfc/rfc8656#section-7.2>), in the order of checks
    /// the RFC gives, plus TCP relays (<https://www.rfc-editor.org/rfc/rfc6062#section-5.1>).
    fn allocate(&mut self, now: Now, request: &Request<'_>, out: &mut Vec<u8>) -> ClientOutput {
        let message = &request.message;
        if let Some(relay) = self.by_client.get(&request.from).copied() {
            let retransmission = self.allocations.get(&relay).is_some_and(|allocation| {
                allocation.allocate_transaction == message.transaction_id()
            });
            if retransmission {
                return self.resend_allocate_success(now, relay, request, out);
            }
            return reply_error(out, request, 437);
        }

        let transport = match message.get(ATTR_REQUESTED_TRANSPORT).map(|a| a.value) {
            Some([17, 0, 0, 0]) => RelayTransport::Udp,
            Some([6, 0, 0, 0]) => RelayTransport::Tcp,
            Some([_, 0, 0, 0]) => return reply_error(out, request, 442),
            _ => return reply_error(out, request, 400),
        };
        let even_port = message.get(ATTR_EVEN_PORT);
        let token = message.get(ATTR_RESERVATION_TOKEN);
        let family = message.get(ATTR_REQUESTED_ADDRESS_FAMILY);
        if transport == RelayTransport::Tcp {
            let bad = !request.from.transport.is_stream()
                || even_port.is_some()
                || token.is_some()
                || message.contains(ATTR_DONT_FRAGMENT);
            if bad {
                return reply_error(out, request, 400);
            }
        }
        if token.is_some() && (even_port.is_some() || family.is_some()) {
            return reply_error(out, request, 400);
        }
        let even_port = match even_port.map(|a| a.value) {
            None => None,
            Some([flags]) => Some(flags & 0x80 != 0),
            Some(_) => return reply_error(out, request, 400),
        };
        let ipv6 = match family.map(|a| a.value) {
            None | Some([1, 0, 0, 0]) => false,
            Some([2, 0, 0, 0]) => true,
            Some([_, 0, 0, 0]) => return reply_error(out, request, 440),
            Some(_) => return reply_error(out, request, 400),
        };
        let relay_ip = match (ipv6, self.config.relay_ipv6) {
            (false, _) => self.config.relay_ipv4,
            (true, Some(ip)) => ip,
            (true, None) => return reply_error(out, request, 440),
        };

        let username = request
            .auth
            .as_ref()
            .map(|auth| auth.username.clone())
            .unwrap_or_default();
        // An Allocate with a token takes over the reservation's place in the quotas, and one
        // that reserves a port needs a place for the reservation too.
        let places = if even_port == Some(true) { 2 } else { 1 };
        if token.is_none() && self.over_quota(&username, places) {
            self.counters.quota_rejection();
            debug!(client = %request.from.remote, user = %username, "rejected Allocate over quota");
            return reply_error(out, request, 486);
        }

        let reserve_next = even_port == Some(true);
        let (relay_ip, port, reserved_port) = match token.map(|a| a.value) {
            Some(value) => {
                let Ok(token): Result<[u8; 8], _> = value.try_into() else {
                    return reply_error(out, request, 400);
                };
                let Some(reservation) = self.reservations.get(&token) else {
                    return reply_error(out, request, 508);
                };
                // The reservation's place in the quota moves to the requesting user.
                if reservation.username != username && self.over_quota(&username, 1) {
                    self.counters.quota_rejection();
                    return reply_error(out, request, 486);
                }
                let Some(reservation) = self.reservations.remove(&token) else {
                    return reply_error(out, request, 508);
                };
                self.release_reservation_quota(&reservation.username);
                if now.instant >= reservation.expires {
                    // Expired but not yet swept.
                    self.release_reserved_port(reservation.addr);
                    return reply_error(out, request, 508);
                }
                (reservation.addr.ip(), reservation.addr.port(), true)
            }
            None => {
                let pool = if ipv6 {
                    &mut self.ports_v6
                } else {
                    &mut self.ports_v4
                };
                let Some(port) = pool.acquire(even_port.is_some(), reserve_next) else {
                    debug!(client = %request.from.remote, "rejected Allocate: no free relay port");
                    return reply_error(out, request, 508);
                };
                (relay_ip, port, false)
            }
        };

        let lifetime = self.allocation_lifetime(message);
        let relay = self.new_relay_id();
        let pending = PendingAllocate {
            transaction_id: message.transaction_id(),
            lifetime,
            auth: request
                .auth
                .as_ref()
                .map(|auth| (auth.integrity, auth.key.clone())),
            fingerprint: request.fingerprint,
            reservation_token: None,
            even_port: even_port.is_some(),
            reserve_next,
            attempts: 0,
            reserved_port,
        };
        let relay_addr = SocketAddr::new(relay_ip, port);
        let budget = (self.config.max_bytes_per_second > 0).then(|| {
            let rate = self.config.max_bytes_per_second;
            TokenBucket::new(rate, rate, now.instant)
        });
        let allocation = Allocation {
            id: relay,
            client: request.from,
            username: username.clone(),
            transport,
            relay_addr,
            advertised_addr: relay_addr,
            expires: now.instant + lifetime,
            permissions: Default::default(),
            channels: Default::default(),
            channel_by_peer: Default::default(),
            to_peer_budget: budget.clone(),
            to_client_budget: budget,
            pending: Some(pending),
            allocate_transaction: message.transaction_id(),
            reservation_token: None,
        };
        self.allocations.insert(relay, allocation);
        self.by_client.insert(request.from, relay);
        *self.by_user.entry(username).or_default() += 1;
        self.commands.push_back(super::Command::BindRelay {
            relay,
            addr: relay_addr,
            transport,
            client: request.from,
            reserve_next,
        });
        ClientOutput::None
    }

    fn resend_allocate_success(
        &mut self,
        now: Now,
        relay: super::RelayId,
        request: &Request<'_>,
        out: &mut Vec<u8>,
    ) -> ClientOutput {
        let Some(allocation) = self.allocations.get(&relay) else {
            return ClientOutput::None;
        };
        if allocation.pending.is_some() {
            return ClientOutput::None;
        }
        let mut writer = start_response(out, request, CLASS_SUCCESS_RESPONSE);
        writer.xor_address(ATTR_XOR_RELAYED_ADDRESS, allocation.advertised_addr);
        writer.xor_address(ATTR_XORMAPPED_ADDRESS, allocation.client.remote);
        let remaining = allocation.expires.saturating_duration_since(now.instant);
        writer.attr_u32(ATTR_LIFETIME, remaining.as_secs() as u32);
        // A client whose first success response was lost still needs the token.
        if let Some(token) = allocation.reservation_token {
            let live = self
                .reservations
                .get(&token)
                .is_some_and(|reservation| now.instant < reservation.expires);
            if live {
                writer.attr(ATTR_RESERVATION_TOKEN, &token);
            }
        }
        finish(writer, request);
        ClientOutput::Reply
    }

    /// True when `places` more allocations would exceed the total or the user's quota. A port
    /// reserved with EVEN-PORT counts as an allocation until its token is used or it expires,
    /// so a user cannot hold ports beyond the quota by allocating with the R bit and deleting.
    fn over_quota(&self, username: &str, places: u32) -> bool {
        let total = self.config.total_quota;
        let in_use = self.allocations.len() + self.reservations.len();
        if total > 0 && in_use + places as usize > total as usize {
            return true;
        }
        let per_user = self.config.user_quota;
        per_user > 0 && self.by_user.get(username).copied().unwrap_or(0) + places > per_user
    }

    /// Keeps `addr` for a later Allocate with the returned RESERVATION-TOKEN, for
    /// [`RESERVATION_LIFETIME`], and counts it in `username`'s quota. The drivers hold its
    /// socket meanwhile.
    pub(super) fn reserve(&mut self, now: Now, addr: SocketAddr, username: &str) -> [u8; 8] {
        let token = self.reservation_token(addr.port(), now);
        self.reservations.insert(
            token,
            Reservation {
                addr,
                expires: now.instant + RESERVATION_LIFETIME,
                username: username.to_owned(),
            },
        );
        *self.by_user.entry(username.to_owned()).or_default() += 1;
        token
    }

    fn reservation_token(&self, port: u16, now: Now) -> [u8; 8] {
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.config.nonce_key),
            &[
                &port.to_be_bytes()[..],
                &self.next_relay.to_be_bytes(),
                &now.unix_secs.to_be_bytes(),
            ]
            .concat(),
        );
        let mut token = [0; 8];
        token.copy_from_slice(&tag.as_ref()[..8]);
        token
    }

    /// Lifetime of a new allocation: the requested one capped at the maximum, and at least the
    /// default (<https://www.rfc-editor.org/rfc/rfc8656#section-7.2>).
    fn allocation_lifetime(&self, message: &MessageView<'_>) -> Duration {
        let requested = requested_lifetime(message).unwrap_or(self.config.default_lifetime);
        requested
            .min(self.config.max_lifetime)
            .max(self.config.default_lifetime)
    }

    /// Refresh (<https://www.rfc-editor.org/rfc/rfc8656#section-7.5>).
    fn refresh(&mut self, now: Now, request: &Request<'_>, out: &mut Vec<u8>) -> ClientOutput {
        let Some(relay) = self.active_allocation(now, request) else {
            return reply_error(out, request, 437);
        };
        if let Some(code) = self.check_same_user(relay, request) {
            return reply_error(out, request, code);
        }
        let message = &request.message;
        if let Some(family) = message.get(ATTR_REQUESTED_ADDRESS_FAMILY) {
            let relay_is_v6 = self
                .allocations
                .get(&relay)
                .is_some_and(|allocation| allocation.relay_addr.is_ipv6());
            let ok = matches!(
                (family.value, relay_is_v6),
                ([1, 0, 0, 0], false) | ([2, 0, 0, 0], true)
            );
            if !ok {
                return reply_error(out, request, 443);
            }
        }
        let lifetime = match requested_lifetime(message) {
            Some(requested) => requested.min(self.config.max_lifetime),
            None => self.config.default_lifetime,
        };
        if lifetime.is_zero() {
            debug!(relay = relay.0, "allocation deleted by Refresh");
            self.delete_allocation(relay);
        } else if let Some(allocation) = self.allocations.get_mut(&relay) {
            allocation.expires = now.instant + lifetime;
        }
        let mut writer = start_response(out, request, CLASS_SUCCESS_RESPONSE);
        writer.attr_u32(ATTR_LIFETIME, lifetime.as_secs() as u32);
        finish(writer, request);
        ClientOutput::Reply
    }

    /// CreatePermission (<https://www.rfc-editor.org/rfc/rfc8656#section-9.2>). Either every peer
    /// address gets a permission or none does.
    fn create_permission(
        &mut self,
        now: Now,
        request: &Request<'_>,
        out: &mut Vec<u8>,
    ) -> ClientOutput {
        let Some(relay) = self.active_allocation(now, request) else {
            return reply_error(out, request, 437);
        };
        if let Some(code) = self.check_same_user(relay, request) {
            return reply_error(out, request, code);
        }
        let mut peers = Vec::new();
        for attribute in request.message.attributes() {
            if attribute.typ != ATTR_XOR_PEER_ADDRESS {
                continue;
            }
            match decode_xor_address(attribute.value, &request.message.transaction_id()) {
                Ok(peer) => peers.push(peer),
                Err(_) => return reply_error(out, request, 400),
            }
        }
        if peers.is_empty() {
            return reply_error(out, request, 400);
        }
        for peer in &peers {
            if let Some(code) = self.check_peer(relay, *peer) {
                debug!(client = %request.from.remote, %peer, code, "rejected CreatePermission");
                return reply_error(out, request, code);
            }
        }
        let expires = now.instant + self.config.permission_lifetime;
        if !self.has_room_for_permissions(relay, &peers) {
            debug!(client = %request.from.remote, "rejected CreatePermission over the permission limit");
            return reply_error(out, request, 508);
        }
        if let Some(allocation) = self.allocations.get_mut(&relay) {
            for peer in peers {
                if allocation.permit(peer.ip(), expires) {
                    self.counters.permission_created();
                }
            }
        }
        let writer = start_response(out, request, CLASS_SUCCESS_RESPONSE);
        finish(writer, request);
        ClientOutput::Reply
    }

    /// ChannelBind (<https://www.rfc-editor.org/rfc/rfc8656#section-11.2>).
    fn channel_bind(&mut self, now: Now, request: &Request<'_>, out: &mut Vec<u8>) -> ClientOutput {
        let Some(relay) = self.active_allocation(now, request) else {
            return reply_error(out, request, 437);
        };
        if let Some(code) = self.check_same_user(relay, request) {
            return reply_error(out, request, code);
        }
        let message = &request.message;
        let number = match message.get(ATTR_CHANNEL_NUMBER).map(|a| a.value) {
            Some([high, low, _, _]) => u16::from_be_bytes([*high, *low]),
            _ => return reply_error(out, request, 400),
        };
        let Some(Ok(peer)) = message
            .get(ATTR_XOR_PEER_ADDRESS)
            .map(|a| decode_xor_address(a.value, &message.transaction_id()))
        else {
            return reply_error(out, request, 400);
        };
        if !is_channel_number(number) {
            debug!(client = %request.from.remote, channel = number, "rejected ChannelBind with an invalid channel number");
            return reply_error(out, request, 400);
        }

        let is_tcp = self
            .allocations
            .get(&relay)
            .is_some_and(|allocation| allocation.transport == RelayTransport::Tcp);
        if is_tcp {
            return reply_error(out, request, 400);
        }
        if let Some(code) = self.check_peer(relay, peer) {
            debug!(client = %request.from.remote, %peer, code, "rejected ChannelBind");
            return reply_error(out, request, code);
        }
        if !self.has_room_for_permissions(relay, &[peer]) {
            return reply_error(out, request, 508);
        }

        let Some(allocation) = self.allocations.get_mut(&relay) else {
            return reply_error(out, request, 437);
        };
        if !allocation.can_bind(number, peer) {
            debug!(client = %request.from.remote, %peer, channel = number, "rejected ChannelBind that conflicts with another binding");
            return reply_error(out, request, 400);
        }
        if allocation.bind_channel(number, peer, now.instant + self.config.channel_lifetime) {
            self.counters.channel_created();
        }
        if allocation.permit(peer.ip(), now.instant + self.config.permission_lifetime) {
            self.counters.permission_created();
        }
        let writer = start_response(out, request, CLASS_SUCCESS_RESPONSE);
        finish(writer, request);
        ClientOutput::Reply
    }

    /// Send indication (<https://www.rfc-editor.org/rfc/rfc8656#section-10.2>). Indications get
    /// no response, so every failure is a silent drop.
    fn handle_indication(&mut self, now: Now, request: &Request<'_>) -> ClientOutput {
        let message = &request.message;
        if message.message_type().method != METHOD_SEND {
            return ClientOutput::None;
        }
        if unknown_attributes(message, false).is_some() {
            return ClientOutput::None;
        }
        let Some(relay) = self.active_allocation(now, request) else {
            return ClientOutput::None;
        };

        let (Some(peer), Some(data)) = (message.get(ATTR_XOR_PEER_ADDRESS), message.get(ATTR_DATA))
        else {
            debug!(client = %request.from.remote, "dropped Send indication without XOR-PEER-ADDRESS or DATA");
            return ClientOutput::None;
        };
        let Ok(peer) = decode_xor_address(peer.value, &message.transaction_id()) else {
            return ClientOutput::None;
        };
        if let Some(code) = self.check_peer(relay, peer) {
            debug!(client = %request.from.remote, %peer, code, "dropped Send indication");
            return ClientOutput::None;
        }
        let Some(allocation) = self.allocations.get_mut(&relay) else {
            return ClientOutput::None;
        };
        if allocation.transport != RelayTransport::Udp
            || !allocation.has_permission(peer.ip(), now.instant)
        {
            return ClientOutput::None;
        }

        let len = data.value.len();
        if !super::take_budget(&mut allocation.to_peer_budget, len, now.instant) {
            return ClientOutput::None;
        }
        self.counters.add_relayed(
            crate::counters::Direction::ToPeer,
            request.from.transport,
            len,
        );
        let start = data.offset + 4;
        ClientOutput::ToPeer {
            relay,
            peer,
            payload: start..start + len,
        }
    }

    fn has_room_for_permissions(&self, relay: super::RelayId, peers: &[SocketAddr]) -> bool {
        let Some(allocation) = self.allocations.get(&relay) else {
            return false;
        };
        let mut new_ips: Vec<IpAddr> = peers
            .iter()
            .map(|peer| unmap(peer.ip()))
            .filter(|ip| !allocation.permissions.contains_key(ip))
            .collect();
        new_ips.sort_unstable();
        new_ips.dedup();
        allocation.permissions.len() + new_ips.len() <= super::MAX_PERMISSIONS
    }

    pub(super) fn active_allocation(
        &self,
        now: Now,
        request: &Request<'_>,
    ) -> Option<super::RelayId> {
        let relay = *self.by_client.get(&request.from)?;
        self.allocations
            .get(&relay)
            .filter(|allocation| allocation.is_active(now.instant))
            .map(|allocation| allocation.id)
    }

    /// 441 when a request for an existing allocation uses another user
    /// (<https://www.rfc-editor.org/rfc/rfc8656#section-5>).
    pub(super) fn check_same_user(
        &self,
        relay: super::RelayId,
        request: &Request<'_>,
    ) -> Option<u16> {
        let auth = request.auth.as_ref()?;
        let allocation = self.allocations.get(&relay)?;
        (allocation.username != auth.username).then_some(441)
    }

    /// 443 when the peer's family differs from the relayed address's, 403 when the policy
    /// denies the peer.
    pub(super) fn check_peer(&self, relay: super::RelayId, peer: SocketAddr) -> Option<u16> {
        let allocation = self.allocations.get(&relay)?;
        let peer_is_v6 = matches!(unmap(peer.ip()), IpAddr::V6(_));
        if peer_is_v6 != allocation.relay_addr.is_ipv6() {
            return Some(443);
        }
        if !self.config.policy.allows(peer) {
            self.counters.denied_peer();
            return Some(403);
        }
        None
    }
}

fn is_turn_request(method: Method) -> bool {
    [
        METHOD_ALLOCATE,
        METHOD_REFRESH,
        METHOD_CREATE_PERMISSION,
        METHOD_CHANNEL_BIND,
        METHOD_CONNECT,
        METHOD_CONNECTION_BIND,
    ]
    .contains(&method)
}

fn requested_lifetime(message: &MessageView<'_>) -> Option<Duration> {
    match message.get(ATTR_LIFETIME)?.value {
        [a, b, c, d] => Some(Duration::from_secs(u64::from(u32::from_be_bytes([
            *a, *b, *c, *d,
        ])))),
        _ => None,
    }
}

fn fingerprint_matches(message: &MessageView<'_>, attribute: Attribute<'_>) -> bool {
    let Ok(value) = <[u8; 4]>::try_from(attribute.value) else {
        return false;
    };
    // `MessageView::parse` guarantees FINGERPRINT is the last attribute, so the length field
    // already covers it.
    let expected = rtc_stun::fingerprint::fingerprint_value(&message.raw()[..attribute.offset]);
    u32::from_be_bytes(value) == expected
}

/// Unknown comprehension-required attribute types, or `None` when there are none.
fn unknown_attributes(message: &MessageView<'_>, is_allocate: bool) -> Option<Vec<u16>> {
    let mut unknown = Vec::new();
    for attribute in message.attributes() {
        let typ = attribute.typ;
        let required = typ.0 < 0x8000;
        let known = KNOWN_ATTRIBUTES.contains(&typ) || (typ == ATTR_DONT_FRAGMENT && !is_allocate);
        if required && !known && !unknown.contains(&typ.0) && unknown.len() < MAX_UNKNOWN {
            unknown.push(typ.0);
        }
    }
    (!unknown.is_empty()).then_some(unknown)
}

pub(super) fn start_response<'b>(
    out: &'b mut Vec<u8>,
    request: &Request<'_>,
    class: MessageClass,
) -> MessageWriter<'b> {
    MessageWriter::new(
        out,
        MessageType::new(request.method(), class),
        request.message.transaction_id(),
    )
}

/// Adds MESSAGE-INTEGRITY(-SHA256) for authenticated requests and FINGERPRINT when the
/// request had one.
pub(super) fn finish(mut writer: MessageWriter<'_>, request: &Request<'_>) {
    if let Some(auth) = &request.auth {
        writer.integrity(auth.integrity, auth.key.as_bytes());
    }
    if request.fingerprint {
        writer.fingerprint();
    }
}

pub(super) fn write_error(out: &mut Vec<u8>, request: &Request<'_>, code: u16) {
    out.clear();
    let mut writer = start_response(out, request, CLASS_ERROR_RESPONSE);
    writer.error_code(code);
    finish(writer, request);
}

pub(super) fn reply_error(out: &mut Vec<u8>, request: &Request<'_>, code: u16) -> ClientOutput {
    write_error(out, request, code);
    ClientOutput::Reply
}

pub(super) fn write_error_for_pending(out: &mut Vec<u8>, pending: &PendingAllocate, code: u16) {
    let mut writer = MessageWriter::new(
        out,
        MessageType::new(METHOD_ALLOCATE, CLASS_ERROR_RESPONSE),
        pending.transaction_id,
    );
    writer.error_code(code);
    if let Some((integrity, key)) = &pending.auth {
        writer.integrity(*integrity, key.as_bytes());
    }
    if pending.fingerprint {
        writer.fingerprint();
    }
}

fn write_unknown_attributes(out: &mut Vec<u8>, request: &Request<'_>, unknown: &[u16]) {
    let mut writer = start_response(out, request, CLASS_ERROR_RESPONSE);
    writer.error_code(420);
    let mut value = Vec::with_capacity(unknown.len() * 2);
    for typ in unknown {
        value.extend_from_slice(&typ.to_be_bytes());
    }
    writer.attr(ATTR_UNKNOWN_ATTRIBUTES, &value);
    if request.fingerprint {
        writer.fingerprint();
    }
}

fn write_binding_success(out: &mut Vec<u8>, request: &Request<'_>) {
    let mut writer = start_response(out, request, CLASS_SUCCESS_RESPONSE);
    writer.xor_address(ATTR_XORMAPPED_ADDRESS, request.from.remote);
    if request.fingerprint {
        writer.fingerprint();
    }
}
