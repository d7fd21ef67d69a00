// Starts and stops the real switchyard binary for a test.

import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { createWriteStream, existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { REPO_ROOT, artifactPath } from './paths.js';

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;
const PORT_ATTEMPTS = 20;
// Lines of server output kept in memory for failure messages.
const LOG_TAIL_LINES = 40;

/**
 * Returns the server binary: `SWITCHYARD_BIN` when set, else the release build, else the debug
 * build. Builds are looked up in `CARGO_TARGET_DIR` when set, else in `target/`.
 */
export function resolveServerBinary() {
  if (process.env.SWITCHYARD_BIN) {
    return process.env.SWITCHYARD_BIN;
  }
  const targetDir = resolve(REPO_ROOT, process.env.CARGO_TARGET_DIR ?? 'target');
  const candidates = ['release', 'debug'].map((profile) => join(targetDir, profile, 'switchyard'));
  const found = candidates.find((path) => existsSync(path));
  if (!found) {
    throw new Error(
      `switchyard binary not found at ${candidates.join(' or ')}; ` +
        'run `cargo build --release -p switchyard` or set SWITCHYARD_BIN',
    );
  }
  return found;
}

/**
 * Starts the server on free loopback ports and waits until it responds to HTTP. The bundled
 * TURN relay listens on one more free port, for UDP and TCP, set in a relay config file next to
 * the log. `turnConfig` lines are appended to that file, and `args` to the server's arguments.
 *
 * Output goes to `artifacts/<logName>`. Returns `{ url, pid, turnPort, logTail, stop }`, where
 * `stop()` sends SIGTERM to the server's PID and SIGKILL if it has not exited within 5 s.
 */
export async function startServer({ logName = 'server.log', args: extraArgs = [], turnConfig: turnLines = '' } = {}) {
  const binary = resolveServerBinary();
  const httpPort = await findFreePort(['tcp']);
  const mediaPort = await findFreePort(['udp', 'tcp'], [httpPort]);
  const turnPort = await findFreePort(['udp', 'tcp'], [httpPort, mediaPort]);
  const turnConfig = artifactPath(`${logName}.turn.toml`);
  writeFileSync(
    turnConfig,
    `listen-udp = ["127.0.0.1:${turnPort}"]\nlisten-tcp = ["127.0.0.1:${turnPort}"]\n${turnLines}`,
  );
  const args = [
    '--http', `127.0.0.1:${httpPort}`,
    '--media', `127.0.0.1:${mediaPort}`,
    '--turn-config', turnConfig,
    ...extraArgs,
  ];

  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env: serverEnvironment() });
  const log = createWriteStream(artifactPath(logName));
  log.write(`$ ${binary} ${args.join(' ')}\n`);
  const tail = [];
  for (const stream of [child.stdout, child.stderr]) {
    stream.on('data', (chunk) => {
      log.write(chunk);
      tail.push(...chunk.toString().split('\n').filter(Boolean));
      tail.splice(0, Math.max(0, tail.length - LOG_TAIL_LINES));
    });
  }
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const spawnError = new Promise((resolve) => child.on('error', resolve));
  const logTail = () => tail.join('\n');

  const url = `http://127.0.0.1:${httpPort}`;
  const failure = await Promise.race([
    waitForHttp(url).then(() => null),
    exited.then(({ code, signal }) => new Error(`server exited early (code ${code}, signal ${signal})`)),
    spawnError.then((error) => new Error(`cannot start ${binary}: ${error.message}`)),
  ]);
  if (failure) {
    await stopProcess(child, exited);
    log.end();
    throw new Error(`${failure.message}\n--- server output ---\n${logTail()}`);
  }

  return {
    url,
    pid: child.pid,
    turnPort,
    logTail,
    async stop() {
      await stopProcess(child, exited);
      log.end();
    },
  };
}

/**
 * Returns this process's environment without the server's own `SWITCHYARD_*` settings, so that
 * a developer's shell or config file cannot change the server under test.
 */
function serverEnvironment() {
  const environment = { RUST_LOG: 'info' };
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('SWITCHYARD_')) {
      environment[key] = value;
    }
  }
  return environment;
}

async function waitForHttp(url) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let lastError = null;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      await response.arrayBuffer();
      if (response.ok) {
        return;
      }
      lastError = new Error(`GET ${url} returned ${response.status}`);
    } catch (error) {
      lastError = error;
    }
    await sleep(100);
  }
  throw new Error(`server at ${url} not ready within ${READY_TIMEOUT_MS} ms: ${lastError?.message}`);
}

async function stopProcess(child, exited) {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    return;
  }
  process.kill(child.pid, 'SIGTERM');
  const stopped = await Promise.race([exited.then(() => true), sleep(STOP_TIMEOUT_MS, false)]);
  if (!stopped) {
    process.kill(child.pid, 'SIGKILL');
    await exited;
  }
}

/**
 * Returns a loopback port that is free for every protocol in `protocols` and not in `exclude`.
 * Another process can still take it before the server binds it; the server then fails to start
 * and the test reports that.
 */
async function findFreePort(protocols, exclude = []) {
  for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt += 1) {
    const port = await bindAndRelease(protocols[0], 0);
    if (exclude.includes(port)) {
      continue;
    }
    let free = true;
    for (const protocol of protocols.slice(1)) {
      free = free && (await bindAndRelease(protocol, port).then(() => true, () => false));
    }
    if (free) {
      return port;
    }
  }
  throw new Error(`no free loopback port for ${protocols.join('+')} after ${PORT_ATTEMPTS} attempts`);
}

function bindAndRelease(protocol, port) {
  return new Promise((resolve, reject) => {
    if (protocol === 'udp') {
      const socket = dgram.createSocket('udp4');
      socket.once('error', reject);
      socket.bind(port, '127.0.0.1', () => {
        const bound = socket.address().port;
        socket.close(() => resolve(bound));
      });
      return;
    }
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const bound = server.address().port;
      server.close(() => resolve(bound));
    });
  });
}
