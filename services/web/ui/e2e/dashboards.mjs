// Browser test of the dashboards pages, run by services/server/tests/it/ui.rs against a platform
// it started. Debian's Chromium driven by playwright-core (no browser download).
//
//   node e2e/dashboards.mjs admin|customer
//
// Environment: THINGLAKE_URL, UI_ARTIFACTS (screenshots), LOGIN_EMAIL, LOGIN_PASSWORD; for
// `admin` also CUSTOMER_TITLE (the customer to assign the dashboard to); for `customer` also
// DASHBOARD_TITLE, DEVICE_TOKEN (to publish with) and EXPECT_VALUE (the last of the two values
// already published: the chart must start with both, from the REST range query).
// Telemetry is published over the device HTTP API (`POST /api/v1/{token}/telemetry`) while the
// page is open; the page must show it without a reload. Prints one JSON line of results; exits
// non-zero on any failure, after a screenshot of the page as it was.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const phase = process.argv[2];
const base = need('THINGLAKE_URL');
const artifacts = need('UI_ARTIFACTS');
const email = need('LOGIN_EMAIL');
const password = need('LOGIN_PASSWORD');
const TIMEOUT = 15_000;

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

function check(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}

let step = 'start';
const log = (s) => {
  step = s;
  console.error(`[dashboards-${phase}] ${s}`);
};

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `dashboards-${phase}-${name}.png`), fullPage: true });
}

async function nav(page, name) {
  await page.locator('header nav').getByRole('link', { name, exact: true }).click();
}

async function login(page) {
  log('log in');
  await page.goto(base + '/');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
}

async function apiCall(method, path, body) {
  const res = await fetch(`${base}/api/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: email, password }),
  });
  const { token } = await res.json();
  const r = await fetch(base + path, {
    method,
    headers: { 'X-Authorization': `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  check(r.ok, `${method} ${path} answered ${r.status}`);
  return r.json();
}

/** A real device-API call, as a device would make it. */
async function publish(deviceToken, values) {
  const r = await fetch(`${base}/api/v1/${deviceToken}/telemetry`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(values),
  });
  check(r.ok, `device telemetry answered ${r.status}`);
}

/** Waits (up to TIMEOUT) until the latest-value card for `key` shows `value`. */
async function waitForValue(page, key, value) {
  await page.waitForFunction(
    ([k, v]) => [...document.querySelectorAll(`.latest-value[data-key="${k}"]`)].some((e) => e.textContent.trim() === v),
    [key, value],
    { timeout: TIMEOUT },
  );
}

async function admin(page) {
  const customerTitle = need('CUSTOMER_TITLE');
  await login(page);

  log('create a device');
  await nav(page, 'Devices');
  await page.getByRole('button', { name: 'Add device' }).click();
  const form = page.getByRole('form', { name: 'New device' });
  await form.getByLabel('Name').fill('Kiln 3');
  await form.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'Kiln 3' }).waitFor();
  const deviceId = new URL(page.url()).pathname.split('/').pop();
  const { credentialsId: deviceToken } = await apiCall('GET', `/api/device/${deviceId}/credentials`);

  log('an empty title is refused');
  await nav(page, 'Dashboards');
  await page.getByRole('heading', { name: 'Dashboards' }).waitFor();
  const create = page.getByRole('form', { name: 'New dashboard' });
  await create.getByRole('button', { name: 'Create dashboard' }).click();
  await create.getByRole('alert').waitFor();

  log('create a dashboard');
  await create.getByLabel('Title').fill('Kiln overview');
  await create.getByRole('button', { name: 'Create dashboard' }).click();
  await page.getByRole('heading', { name: 'Kiln overview' }).waitFor();
  const dashboardId = new URL(page.url()).pathname.split('/').pop();

  log('add a latest-value widget and a chart');
  const add = page.getByRole('form', { name: 'Add widget' });
  await add.getByLabel('Device', { exact: true }).locator('option', { hasText: 'Kiln 3' }).waitFor({ state: 'attached' });
  await add.getByLabel('Widget type').selectOption('latest');
  await add.getByLabel('Widget title').fill('Kiln temperature');
  await add.getByLabel('Device', { exact: true }).selectOption({ label: 'Kiln 3' });
  await add.getByLabel('Keys (comma-separated)').fill('temperature');
  await add.getByRole('button', { name: 'Add widget' }).click();
  await page.getByRole('article', { name: 'Kiln temperature' }).waitFor();
  await add.getByLabel('Widget type').selectOption('timeseries');
  await add.getByLabel('Widget title').fill('Kiln chart');
  await add.getByLabel('Keys (comma-separated)').fill('temperature');
  await add.getByRole('button', { name: 'Add widget' }).click();
  await page.getByRole('article', { name: 'Kiln chart' }).waitFor();
  log('move the chart up and make it full width');
  const chart = page.getByRole('article', { name: 'Kiln chart' });
  await chart.getByRole('button', { name: 'Move up' }).click();
  await page.getByRole('article', { name: 'Kiln chart' }).getByLabel('Width').selectOption('24');
  await shot(page, 'editing');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.getByRole('button', { name: 'Edit', exact: true }).waitFor();
  await page.getByText('version 2').waitFor();

  log('what the browser saved is what the API holds');
  const saved = await apiCall('GET', `/api/dashboard/${dashboardId}`);
  const ws = saved.configuration.widgets;
  check(ws.length === 2 && ws[0].title === 'Kiln chart' && ws[0].layout.sizeX === 24 && ws[1].type === 'latest', `saved widgets: ${JSON.stringify(ws)}`);
  check(ws[1].datasources[0].entityId.id === deviceId && ws[1].datasources[0].keys.join() === 'temperature', 'latest widget data source');

  log('telemetry published over the device HTTP API shows without a reload');
  await page.getByText('Live', { exact: true }).waitFor();
  await publish(deviceToken, { temperature: 21.5 });
  await waitForValue(page, 'temperature', '21.5');
  await publish(deviceToken, { temperature: 22.75 });
  await waitForValue(page, 'temperature', '22.75');
  await page.waitForFunction(() => Number(document.querySelector('.chart')?.dataset.points) >= 2, null, { timeout: TIMEOUT });
  await shot(page, 'live');

  log('a stale version is refused with a clear message (409)');
  await page.getByRole('button', { name: 'Edit', exact: true }).click();
  // Someone else saves a change meanwhile.
  await apiCall('POST', '/api/dashboard', { ...saved, configuration: { ...saved.configuration, description: 'changed elsewhere' } });
  await page.getByRole('article', { name: 'Kiln temperature' }).getByLabel('Width').selectOption('12');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  const conflict = page.getByRole('alert').filter({ hasText: '409' });
  await conflict.waitFor();
  await shot(page, 'conflict');
  await conflict.getByRole('button', { name: 'Reload' }).click();
  await page.getByText('version 3').waitFor();

  log('remove a widget, then discard');
  await page.getByRole('button', { name: 'Edit', exact: true }).click();
  await page.getByRole('article', { name: 'Kiln chart' }).getByRole('button', { name: 'Remove' }).click();
  await page.getByRole('article', { name: 'Kiln chart' }).waitFor({ state: 'detached' });
  await page.getByRole('button', { name: 'Discard changes' }).click();
  await page.getByRole('article', { name: 'Kiln chart' }).waitFor();

  log('assign to a customer');
  const assign = page.getByRole('form', { name: 'Assign to customer' });
  await assign.getByLabel('Customer').selectOption({ label: customerTitle });
  await assign.getByRole('button', { name: 'Assign' }).click();
  await page.getByText(`assigned to ${customerTitle}`).waitFor();
  await shot(page, 'assigned');

  log('small screens stack the widgets');
  await page.setViewportSize({ width: 390, height: 800 });
  await shot(page, 'mobile');
  return { deviceId, dashboardId, deviceToken, value: '22.75' };
}

async function customer(page) {
  const title = need('DASHBOARD_TITLE');
  const deviceToken = need('DEVICE_TOKEN');
  const expect = need('EXPECT_VALUE');
  await login(page);
  log('the assigned dashboard is listed');
  await nav(page, 'Dashboards');
  await page.getByRole('link', { name: title }).click();
  await page.getByRole('heading', { name: title }).waitFor();
  log('read only');
  await page.getByText('Read-only').waitFor();
  check((await page.getByRole('button', { name: 'Edit', exact: true }).count()) === 0, 'no Edit button for a customer user');
  check((await page.getByRole('form', { name: 'Assign to customer' }).count()) === 0, 'no assignment for a customer user');
  log('current value, the chart starts with the points of its time window, then a live one');
  await waitForValue(page, 'temperature', expect);
  await page.waitForFunction(() => Number(document.querySelector('.chart')?.dataset.points) >= 2, null, { timeout: TIMEOUT });
  await publish(deviceToken, { temperature: 23.5 });
  await waitForValue(page, 'temperature', '23.5');
  await shot(page, 'live');
  return {};
}

async function main() {
  mkdirSync(artifacts, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'thinglake-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 },
  });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[dashboards-${phase}] page error: ${e.stack ?? e.message}`));
  try {
    const result = phase === 'admin' ? await admin(page) : phase === 'customer' ? await customer(page) : null;
    if (!result) throw new Error(`unknown phase ${phase}`);
    console.log(JSON.stringify(result));
  } catch (e) {
    console.error(`[dashboards-${phase}] failed at step "${step}": ${e.stack ?? e}`);
    await shot(page, 'failure').catch(() => {});
    process.exitCode = 1;
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

await main();
