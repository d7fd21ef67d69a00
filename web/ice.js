// RTCPeerConnection configuration from the `iceServers` of `joined`, with an optional forced
// relay for testing and debugging TURN.

/** Transports accepted by `?relay=`: the transport between the browser and the TURN server. */
export const RELAY_TRANSPORTS = ['udp', 'tcp'];

/**
 * Returns the configuration for both peer connections.
 *
 * Without `relay`, every server in `iceServers` is used and ICE picks any candidate pair. With
 * `relay` set to `udp` or `tcp`, ICE uses only relayed candidates (`iceTransportPolicy:
 * 'relay'`) and only the `turn:` URLs with that transport, so the call goes through the TURN
 * server over that transport or fails. A `turn:` URL without `?transport=` is UDP (RFC 7065).
 * `turns:` URLs are left out then, because they carry TURN over TLS.
 */
export function rtcConfiguration(iceServers, relay = null) {
  const servers = iceServers ?? [];
  if (!relay) {
    return { iceServers: servers };
  }
  const relayServers = [];
  for (const server of servers) {
    const urls = (Array.isArray(server.urls) ? server.urls : [server.urls])
      .filter((url) => isTurnUrlWithTransport(url, relay));
    if (urls.length > 0) {
      relayServers.push({ ...server, urls });
    }
  }
  return { iceServers: relayServers, iceTransportPolicy: 'relay' };
}

function isTurnUrlWithTransport(url, transport) {
  const [scheme, rest = ''] = String(url).split(/:(.*)/s);
  if (scheme.toLowerCase() !== 'turn') {
    return false;
  }
  const query = rest.includes('?') ? rest.slice(rest.indexOf('?') + 1) : '';
  const urlTransport = new URLSearchParams(query).get('transport')?.toLowerCase() ?? 'udp';
  return urlTransport === transport;
}
