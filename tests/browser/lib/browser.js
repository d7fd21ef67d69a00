// Launches headless Chromium with fake camera and microphone, one profile per browser.

import { appendFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { chromium } from 'playwright-core';

import { artifactPath } from './paths.js';

/** Debian's Chromium; `CHROMIUM_PATH` overrides it. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Chromium switches for every test browser. The fake devices replace camera and microphone
 * with a test pattern and a beep, the fake UI grants their permission, and loopback candidates
 * are needed because the tests run where only loopback exists.
 */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
];

export const VIEWPORT = { width: 1280, height: 720 };

/**
 * Starts one Chromium with a new temporary profile directory and returns
 * `{ context, page, close }`. `close()` stops the browser and removes the profile.
 * The page's console output goes to `artifacts/<label>.console.log`.
 */
export async function launchBrowser(label) {
  const userDataDir = await mkdtemp(join(tmpdir(), 'switchyard-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: VIEWPORT,
    });
  } catch (error) {
    await rm(userDataDir, { recursive: true, force: true });
    throw error;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  recordConsole(page, label);

  return {
    context,
    page,
    async close() {
      await context.close().catch(() => {});
      await rm(userDataDir, { recursive: true, force: true });
    },
  };
}

function recordConsole(page, label) {
  const path = artifactPath(`${label}.console.log`);
  writeFileSync(path, `--- ${new Date().toISOString()} ---\n`);
  page.on('console', (message) => {
    appendFileSync(path, `[${message.type()}] ${message.text()}\n`);
  });
  page.on('pageerror', (error) => {
    appendFileSync(path, `[pageerror] ${error.stack ?? error.message}\n`);
  });
}
