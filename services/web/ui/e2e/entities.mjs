// Browser test of the web UI's entity pages, run by services/server/tests/it/ui.rs against a
// platform it started. Debian's Chromium driven by playwright-core (no browser download).
//
//   node e2e/entities.mjs admin|customer
//
// Environment: THINGLAKE_URL, UI_ARTIFACTS (screenshots), LOGIN_EMAIL, LOGIN_PASSWORD; for
// `customer` also OTHER_DEVICE_ID (a device of another customer) and EXPECT_DEVICE (the one
// device this customer sees). Prints one JSON line of results; exits non-zero on any failure,
// after a screenshot of the page as it was.
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
  console.error(`[${phase}] ${s}`);
};

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${phase}-${name}.png`), fullPage: true });
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

/** The access token of a device as the API tells it, to compare with the clipboard. */
async function apiToken(deviceId) {
  const res = await fetch(`${base}/api/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: email, password }),
  });
  const { token } = await res.json();
  const creds = await fetch(`${base}/api/device/${deviceId}/credentials`, { headers: { 'X-Authorization': `Bearer ${token}` } });
  return (await creds.json()).credentialsId;
}

async function admin(page) {
  const result = {};
  // Bad credentials first: the API's message is shown.
  log('wrong password is refused with a message');
  await page.goto(base + '/');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').waitFor();
  check((await page.getByRole('alert').innerText()).trim().length > 0, 'login error has a message');
  await shot(page, 'login-error');

  await login(page);
  await page.getByRole('heading', { name: 'Home' }).waitFor();
  await page.locator('[data-count="devices"]').waitFor();
  // The Rust test made one device of another customer beforehand.
  check((await page.locator('[data-count="devices"]').innerText()) === '1', 'the home page counts the one device');

  log('empty name is refused with a clear message');
  await nav(page, 'Devices');
  await page.getByRole('button', { name: 'Add device' }).click();
  await page.getByRole('button', { name: 'Create' }).click();
  const alert = page.getByRole('form', { name: 'New device' }).getByRole('alert');
  await alert.waitFor();
  check((await alert.innerText()).includes('Name is required'), `empty name message, got: ${await alert.innerText()}`);
  await shot(page, 'empty-name');

  log('create a device');
  const form = page.getByRole('form', { name: 'New device' });
  await form.getByLabel('Name').fill('Boiler 7');
  await form.getByLabel('Label').fill('Basement');
  await form.getByLabel('Type (device profile)').fill('thermostat');
  await form.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'Boiler 7' }).waitFor();
  const deviceId = new URL(page.url()).pathname.split('/').pop();
  result.deviceId = deviceId;

  log('the device is in the list, found by search');
  await nav(page, 'Devices');
  await page.getByLabel('Search devices').fill('boiler');
  await page.getByRole('link', { name: 'Boiler 7' }).waitFor();
  await page.locator('tbody tr', { hasText: 'Red pump' }).waitFor({ state: 'detached' });
  check((await page.locator('tbody tr').count()) === 1, 'one device matches the search');
  await shot(page, 'device-list');

  log('a duplicate name shows the API message');
  await page.getByRole('button', { name: 'Add device' }).click();
  await page.getByRole('form', { name: 'New device' }).getByLabel('Name').fill('Boiler 7');
  await page.getByRole('form', { name: 'New device' }).getByRole('button', { name: 'Create' }).click();
  const dup = page.getByRole('form', { name: 'New device' }).getByRole('alert');
  await dup.waitFor();
  check((await dup.innerText()).includes('already exists'), `duplicate message, got: ${await dup.innerText()}`);
  await page.getByRole('button', { name: 'Cancel' }).click();

  log('copy the access token');
  await page.getByRole('link', { name: 'Boiler 7' }).click();
  await page.getByRole('button', { name: 'Copy access token' }).click();
  await page.getByText('Access token copied').waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  const expected = await apiToken(deviceId);
  check(copied && copied === expected, `clipboard holds the device's token (${copied} vs ${expected})`);

  log('edit the label');
  await page.getByRole('button', { name: 'Edit' }).click();
  const edit = page.getByRole('form', { name: 'Edit device' });
  await edit.getByLabel('Label').fill('Boiler room');
  await edit.getByRole('button', { name: 'Save' }).click();
  await page.locator('dd[data-field="label"]', { hasText: 'Boiler room' }).waitFor();
  await shot(page, 'device-detail');

  log('history shows both events and the state after the first');
  await page.getByRole('link', { name: 'History' }).click();
  const events = page.getByRole('list', { name: 'Events' }).locator('li');
  await events.first().waitFor();
  const types = await events.evaluateAll((lis) => lis.map((li) => li.dataset.eventType));
  check(JSON.stringify(types) === JSON.stringify(['DeviceCreated', 'DeviceUpdated']), `events ${JSON.stringify(types)}`);
  check((await events.first().locator('.who').innerText()) === email, 'the actor is the admin');
  await events.first().getByRole('button', { name: 'State after this change' }).click();
  const state = page.locator('[aria-label="State"]');
  await state.getByText('Version 1.').waitFor();
  check((await state.innerText()).includes('"label": "Basement"'), 'state after creation has the first label');
  await shot(page, 'history');

  log('create a customer and assign the device');
  await nav(page, 'Customers');
  await page.getByRole('button', { name: 'Add customer' }).click();
  const cform = page.getByRole('form', { name: 'New customer' });
  await cform.getByLabel('Title').fill('Green Acres');
  await cform.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'Green Acres' }).waitFor();
  await page.goto(`${base}/devices/${deviceId}`);
  await page.locator('select[name="customer"]').selectOption({ label: 'Green Acres' });
  await page.getByRole('button', { name: 'Assign', exact: true }).click();
  await page.getByText('Assigned to').waitFor();
  check((await page.locator('dd[data-field="customer"]').innerText()) === 'Green Acres', 'device shows its customer');

  log('relate the device to the customer');
  const rel = page.getByRole('form', { name: 'Add relation' });
  await rel.locator('select').nth(1).selectOption('CUSTOMER');
  await rel.locator('select[name="relationTarget"]').selectOption({ label: 'Green Acres' });
  await rel.getByRole('button', { name: 'Add relation' }).click();
  await page.locator('[aria-label="Relations"] tbody tr', { hasText: 'Green Acres' }).waitFor();
  await shot(page, 'assigned');

  log('home counts');
  await nav(page, 'Home');
  await page.locator('[data-count="devices"]', { hasText: '2' }).waitFor();
  check((await page.locator('[data-count="customers"]').innerText()) === '2', 'two customers');
  await shot(page, 'home');
  return result;
}

async function customer(page) {
  const other = need('OTHER_DEVICE_ID');
  const mine = need('EXPECT_DEVICE');
  await login(page);
  log('the customer sees only its device');
  await nav(page, 'Devices');
  await page.getByRole('link', { name: mine }).waitFor();
  check((await page.locator('tbody tr').count()) === 1, 'exactly one device listed');
  check((await page.getByRole('button', { name: 'Add device' }).count()) === 0, 'no create button for customers');
  await shot(page, 'devices');
  await page.getByRole('link', { name: mine }).click();
  await page.getByRole('heading', { name: mine }).waitFor();
  check((await page.getByRole('button', { name: 'Delete' }).count()) === 0, 'no delete for customers');

  log("another customer's device is refused with a clear message");
  await page.goto(`${base}/devices/${other}`);
  const alert = page.getByRole('alert');
  await alert.waitFor();
  const text = await alert.innerText();
  check(/permission/i.test(text), `permission message, got: ${text}`);
  await shot(page, 'other-device-refused');

  log('small screens get the collapsed menu');
  await page.setViewportSize({ width: 390, height: 800 });
  await page.goto(base + '/devices');
  await page.getByRole('button', { name: 'Menu' }).waitFor();
  await shot(page, 'mobile');
  return {};
}

async function main() {
  mkdirSync(artifacts, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'thinglake-chromium-'));
  // A persistent context over a fresh profile directory: Chromium's own --user-data-dir.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 860 },
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[${phase}] page error: ${e.message}`));
  try {
    const result = phase === 'admin' ? await admin(page) : phase === 'customer' ? await customer(page) : null;
    if (!result) throw new Error(`unknown phase ${phase}`);
    console.log(JSON.stringify(result));
  } catch (e) {
    console.error(`[${phase}] failed at step "${step}": ${e.stack ?? e}`);
    await shot(page, 'failure').catch(() => {});
    process.exitCode = 1;
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

await main();
