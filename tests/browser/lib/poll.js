// Bounded polling for conditions that become true asynchronously in the browser.

import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Calls `probe` until `isDone(value)` is true or `timeoutMs` has passed, waiting `intervalMs`
 * between calls. Returns `{ done, value, elapsedMs }` with the last value either way, so the
 * caller can assert on it and print what it saw.
 */
export async function pollUntil(probe, isDone, { timeoutMs, intervalMs = 250 }) {
  const start = Date.now();
  for (;;) {
    const value = await probe();
    const elapsedMs = Date.now() - start;
    if (isDone(value)) {
      return { done: true, value, elapsedMs };
    }
    if (elapsedMs >= timeoutMs) {
      return { done: false, value, elapsedMs };
    }
    await sleep(intervalMs);
  }
}
