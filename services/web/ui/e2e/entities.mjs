// Browser test of the web UI's entity pages, run by services/server/tests/it/ui.rs against a
// platform it started (set-up in browser.mjs).
//
//   node e2e/entities.mjs admin|customer
//
// Environment (beside browser.mjs's): for `customer` OTHER_DEVICE_ID (a device of another
// customer) and EXPECT_DEVICE (the one device this customer sees).
import { check, need, run } from './browser.mjs';

async function admin(page, t) {
  const result = {};
  // Bad credentials first: the API's message is shown.
  t.log('wrong password is refused with a message');
  await page.goto(t.base + '/');
  await page.getByLabel('Email').fill(t.email);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').waitFor();
  check((await page.getByRole('alert').innerText()).trim().length > 0, 'login error has a message');
  await t.shot(page, 'login-error');

  await t.login(page);
  await page.getByRole('heading', { name: 'Home' }).waitFor();
  await page.locator('[data-count="devices"]').waitFor();
  // The Rust test made one device of another customer beforehand.
  check((await page.locator('[data-count="devices"]').innerText()) === '1', 'the home page counts the one device');

  t.log('empty name is refused with a clear message');
  await t.nav(page, 'Devices');
  await page.getByRole('button', { name: 'Add device' }).click();
  await page.getByRole('button', { name: 'Create' }).click();
  const alert = page.getByRole('form', { name: 'New device' }).getByRole('alert');
  await alert.waitFor();
  check((await alert.innerText()).includes('Name is required'), `empty name message, got: ${await alert.innerText()}`);
  await t.shot(page, 'empty-name');

  t.log('create a device');
  const form = page.getByRole('form', { name: 'New device' });
  await form.getByLabel('Name').fill('Boiler 7');
  await form.getByLabel('Label').fill('Basement');
  await form.getByLabel('Type (device profile)').fill('thermostat');
  await form.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'Boiler 7' }).waitFor();
  const deviceId = new URL(page.url()).pathname.split('/').pop();
  result.deviceId = deviceId;

  t.log('the device is in the list, found by search');
  await t.nav(page, 'Devices');
  await page.getByLabel('Search devices').fill('boiler');
  await page.getByRole('link', { name: 'Boiler 7' }).waitFor();
  await page.locator('tbody tr', { hasText: 'Red pump' }).waitFor({ state: 'detached' });
  check((await page.locator('tbody tr').count()) === 1, 'one device matches the search');
  await t.shot(page, 'device-list');

  t.log('a duplicate name shows the API message');
  await page.getByRole('button', { name: 'Add device' }).click();
  await page.getByRole('form', { name: 'New device' }).getByLabel('Name').fill('Boiler 7');
  await page.getByRole('form', { name: 'New device' }).getByRole('button', { name: 'Create' }).click();
  const dup = page.getByRole('form', { name: 'New device' }).getByRole('alert');
  await dup.waitFor();
  check((await dup.innerText()).includes('already exists'), `duplicate message, got: ${await dup.innerText()}`);
  await page.getByRole('button', { name: 'Cancel' }).click();

  t.log('copy the access token');
  await page.getByRole('link', { name: 'Boiler 7' }).click();
  await page.getByRole('button', { name: 'Copy access token' }).click();
  await page.getByText('Access token copied').waitFor();
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  const expected = (await t.api('GET', `/api/device/${deviceId}/credentials`)).credentialsId;
  check(copied && copied === expected, `clipboard holds the device's token (${copied} vs ${expected})`);

  t.log('edit the label');
  await page.getByRole('button', { name: 'Edit' }).click();
  const edit = page.getByRole('form', { name: 'Edit device' });
  await edit.getByLabel('Label').fill('Boiler room');
  await edit.getByRole('button', { name: 'Save' }).click();
  await page.locator('dd[data-field="label"]', { hasText: 'Boiler room' }).waitFor();
  await t.shot(page, 'device-detail');

  t.log('history shows both events and the state after the first');
  await page.getByRole('link', { name: 'History' }).click();
  const events = page.getByRole('list', { name: 'Events' }).locator('li');
  await events.first().waitFor();
  const types = await events.evaluateAll((lis) => lis.map((li) => li.dataset.eventType));
  check(JSON.stringify(types) === JSON.stringify(['DeviceCreated', 'DeviceUpdated']), `events ${JSON.stringify(types)}`);
  check((await events.first().locator('.who').innerText()) === t.email, 'the actor is the admin');
  await events.first().getByRole('button', { name: 'State after this change' }).click();
  const state = page.locator('[aria-label="State"]');
  await state.getByText('Version 1.').waitFor();
  check((await state.innerText()).includes('"label": "Basement"'), 'state after creation has the first label');
  await t.shot(page, 'history');

  t.log('create a customer and assign the device');
  await t.nav(page, 'Customers');
  await page.getByRole('button', { name: 'Add customer' }).click();
  const cform = page.getByRole('form', { name: 'New customer' });
  await cform.getByLabel('Title').fill('Green Acres');
  await cform.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'Green Acres' }).waitFor();
  await page.goto(`${t.base}/devices/${deviceId}`);
  await page.locator('select[name="customer"]').selectOption({ label: 'Green Acres' });
  await page.getByRole('button', { name: 'Assign', exact: true }).click();
  await page.getByText('Assigned to').waitFor();
  check((await page.locator('dd[data-field="customer"]').innerText()) === 'Green Acres', 'device shows its customer');

  t.log('relate the device to the customer');
  const rel = page.getByRole('form', { name: 'Add relation' });
  await rel.locator('select').nth(1).selectOption('CUSTOMER');
  await rel.locator('select[name="relationTarget"]').selectOption({ label: 'Green Acres' });
  await rel.getByRole('button', { name: 'Add relation' }).click();
  await page.locator('[aria-label="Relations"] tbody tr', { hasText: 'Green Acres' }).waitFor();
  await t.shot(page, 'assigned');

  t.log('home counts');
  await t.nav(page, 'Home');
  await page.locator('[data-count="devices"]', { hasText: '2' }).waitFor();
  check((await page.locator('[data-count="customers"]').innerText()) === '2', 'two customers');
  await t.shot(page, 'home');
  return result;
}

async function customer(page, t) {
  const other = need('OTHER_DEVICE_ID');
  const mine = need('EXPECT_DEVICE');
  await t.login(page);
  t.log('the customer sees only its device');
  await t.nav(page, 'Devices');
  await page.getByRole('link', { name: mine }).waitFor();
  check((await page.locator('tbody tr').count()) === 1, 'exactly one device listed');
  check((await page.getByRole('button', { name: 'Add device' }).count()) === 0, 'no create button for customers');
  await t.shot(page, 'devices');
  await page.getByRole('link', { name: mine }).click();
  await page.getByRole('heading', { name: mine }).waitFor();
  check((await page.getByRole('button', { name: 'Delete' }).count()) === 0, 'no delete for customers');

  t.log("another customer's device is refused with a clear message");
  await page.goto(`${t.base}/devices/${other}`);
  const alert = page.getByRole('alert');
  await alert.waitFor();
  const text = await alert.innerText();
  check(/permission/i.test(text), `permission message, got: ${text}`);
  await t.shot(page, 'other-device-refused');

  t.log('small screens get the collapsed menu');
  await page.setViewportSize({ width: 390, height: 800 });
  await page.goto(t.base + '/devices');
  await page.getByRole('button', { name: 'Menu' }).waitFor();
  await t.shot(page, 'mobile');
  return {};
}

await run({ admin, customer }, (phase) => phase, { permissions: ['clipboard-read', 'clipboard-write'] });
