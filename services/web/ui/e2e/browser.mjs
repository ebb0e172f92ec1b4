// What every browser test shares: the environment services/server/tests/it/ui.rs sets, Debian's
// Chromium launched through playwright-core (no browser download) on a fresh profile, logging in,
// the navigation, screenshots, REST calls as the test user, and the run of one phase that prints
// one JSON line of results or exits non-zero after a screenshot of the page as it was.
//
// Environment: THINGLAKE_URL, UI_ARTIFACTS (screenshots), LOGIN_EMAIL, LOGIN_PASSWORD, optional
// CHROMIUM (the browser binary, default /usr/bin/chromium).
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const TIMEOUT = 15_000;

export function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

export function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}

/**
 * The test's context for one phase: `tag` names its log lines and screenshots
 * (`<tag>-<name>.png`).
 */
/** Whether the page fits the viewport's width without horizontal scrolling, once charts have
 *  followed a viewport change (uPlot resizes on a ResizeObserver callback, a frame or more later). */
export async function fitsWidth(page) {
  return page
    .waitForFunction(() => document.documentElement.scrollWidth <= window.innerWidth, null, { timeout: 5_000 })
    .then(() => true, () => false);
}

export function context(tag) {
  const base = need('THINGLAKE_URL');
  const artifacts = need('UI_ARTIFACTS');
  const email = need('LOGIN_EMAIL');
  const password = need('LOGIN_PASSWORD');
  let step = 'start';
  let token;
  const t = {
    base,
    artifacts,
    email,
    password,
    tag,
    get step() {
      return step;
    },
    log(s) {
      step = s;
      console.error(`[${tag}] ${s}`);
    },
    async shot(page, name) {
      await page.screenshot({ path: join(artifacts, `${tag}-${name}.png`), fullPage: true });
    },
    async nav(page, name) {
      await page.locator('header nav').getByRole('link', { name, exact: true }).click();
    },
    async login(page) {
      t.log('log in');
      await page.goto(base + '/');
      await page.getByLabel('Email').fill(email);
      await page.getByLabel('Password').fill(password);
      await page.getByRole('button', { name: 'Log in' }).click();
      await page.getByRole('button', { name: 'Log out' }).waitFor();
    },
    /** A REST call as the test user (logged in once); the JSON answer, or a failure. */
    async api(method, path, body) {
      if (!token) {
        const res = await fetch(`${base}/api/auth/login`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ username: email, password }),
        });
        check(res.ok, `login answered ${res.status}`);
        token = (await res.json()).token;
      }
      const r = await fetch(base + path, {
        method,
        headers: { 'X-Authorization': `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      check(r.ok, `${method} ${path} answered ${r.status}`);
      const text = await r.text();
      return text ? JSON.parse(text) : undefined;
    },
    /** Telemetry as a device sends it over the device HTTP API. */
    async publish(deviceToken, values) {
      const r = await fetch(`${base}/api/v1/${deviceToken}/telemetry`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(values),
      });
      check(r.ok, `device telemetry answered ${r.status}`);
    },
  };
  return t;
}

/**
 * Runs the phase named by the first argument (`node e2e/x.mjs PHASE`) from `phases`
 * (`{name: async (page, t) => result}`) in a fresh headless Chromium; `tag(phase)` names its
 * artifacts.
 */
export async function run(phases, tag, { permissions = [], acceptDownloads = false } = {}) {
  const phase = process.argv[2];
  const t = context(tag(phase));
  mkdirSync(t.artifacts, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'thinglake-chromium-'));
  // A persistent context over a fresh profile directory: Chromium's own --user-data-dir.
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 },
    acceptDownloads,
  });
  if (permissions.length) await browser.grantPermissions(permissions, { origin: t.base });
  browser.setDefaultTimeout(TIMEOUT);
  const page = await browser.newPage();
  page.on('pageerror', (e) => console.error(`[${t.tag}] page error: ${e.stack ?? e.message}`));
  try {
    const body = phases[phase];
    if (!body) throw new Error(`unknown phase ${phase}: ${Object.keys(phases).join(', ')}`);
    console.log(JSON.stringify(await body(page, t)));
  } catch (e) {
    console.error(`[${t.tag}] failed at step "${t.step}": ${e.stack ?? e}`);
    await t.shot(page, 'failure').catch(() => {});
    process.exitCode = 1;
  } finally {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  }
}
