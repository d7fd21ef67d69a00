// Paths shared by the browser tests.

import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Root of the repository (two levels above tests/browser). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The browser client that the server embeds and serves at `/`. */
export const WEB_DIR = join(REPO_ROOT, 'web');

/** Logs of the last run: server output and each page's console. Ignored by git. */
export const ARTIFACTS_DIR = join(REPO_ROOT, 'tests', 'browser', 'artifacts');

/** Creates the artifacts directory and returns the path of one file in it. */
export function artifactPath(name) {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  return join(ARTIFACTS_DIR, name);
}
