// HTTP proxy in front of the server that rejects every WebSocket upgrade, as some corporate
// proxies do, and passes all other requests through, streamed.

import http from 'node:http';

/**
 * Starts the proxy on a free loopback port in front of `targetUrl` and returns
 * `{ url, rejectedUpgrades, close }`. `rejectedUpgrades()` returns how many WebSocket
 * handshakes it rejected with 403.
 */
export async function startWebSocketBlockingProxy(targetUrl) {
  const target = new URL(targetUrl);
  let rejected = 0;

  const server = http.createServer((request, response) => {
    const upstream = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: request.method,
        path: request.url,
        headers: request.headers,
      },
      (upstreamResponse) => {
        response.writeHead(upstreamResponse.statusCode, upstreamResponse.headers);
        // Send the headers at once, so that the event stream opens before its first event.
        response.flushHeaders();
        upstreamResponse.pipe(response);
      },
    );
    upstream.on('error', (error) => {
      response.destroy(error);
    });
    request.pipe(upstream);
    response.on('close', () => upstream.destroy());
  });
  server.on('upgrade', (_request, socket) => {
    rejected += 1;
    socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  });

  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    rejectedUpgrades: () => rejected,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
