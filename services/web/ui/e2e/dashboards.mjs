// Browser test of the dashboards pages, run by services/server/tests/it/ui.rs against a platform
// it started (set-up in browser.mjs).
//
//   node e2e/dashboards.mjs admin|customer
//
// Environment (beside browser.mjs's): for `admin` CUSTOMER_TITLE (the customer to assign the
// dashboard to); for `customer` DASHBOARD_TITLE, DEVICE_TOKEN (to publish with) and EXPECT_VALUE
// (the last of the two values already published: the chart must start with both, from the REST
// range query). Telemetry is published over the device HTTP API (`POST /api/v1/{token}/telemetry`)
// while the page is open; the page must show it without a reload. The admin also changes the
// time window: a realtime window of a day shows points of an hour ago that 5 minutes do not, a
// history range with an aggregation reloads the chart with its buckets.
import { TIMEOUT, check, fitsWidth, need, run } from './browser.mjs';

/** Waits (up to TIMEOUT) until the latest-value card for `key` shows `value`. */
async function waitForValue(page, key, value) {
  await page.waitForFunction(
    ([k, v]) => [...document.querySelectorAll(`.latest-value[data-key="${k}"]`)].some((e) => e.textContent.trim() === v),
    [key, value],
    { timeout: TIMEOUT },
  );
}

async function admin(page, t) {
  const customerTitle = need('CUSTOMER_TITLE');
  await t.login(page);

  t.log('create a device');
  await t.nav(page, 'Devices');
  await page.getByRole('button', { name: 'Add device' }).click();
  const form = page.getByRole('form', { name: 'New device' });
  await form.getByLabel('Name').fill('Kiln 3');
  await form.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: 'Kiln 3' }).waitFor();
  const deviceId = new URL(page.url()).pathname.split('/').pop();
  const { credentialsId: deviceToken } = await t.api('GET', `/api/device/${deviceId}/credentials`);

  t.log('an empty title is refused');
  await t.nav(page, 'Dashboards');
  await page.getByRole('heading', { name: 'Dashboards' }).waitFor();
  const create = page.getByRole('form', { name: 'New dashboard' });
  await create.getByRole('button', { name: 'Create dashboard' }).click();
  await create.getByRole('alert').waitFor();

  t.log('create a dashboard');
  await create.getByLabel('Title').fill('Kiln overview');
  await create.getByRole('button', { name: 'Create dashboard' }).click();
  await page.getByRole('heading', { name: 'Kiln overview' }).waitFor();
  const dashboardId = new URL(page.url()).pathname.split('/').pop();

  t.log('add a latest-value widget and a chart');
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
  t.log('move the chart up and make it full width');
  const chart = page.getByRole('article', { name: 'Kiln chart' });
  await chart.getByRole('button', { name: 'Move up' }).click();
  await page.getByRole('article', { name: 'Kiln chart' }).getByLabel('Width').selectOption('24');
  await t.shot(page, 'editing');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await page.getByRole('button', { name: 'Edit', exact: true }).waitFor();
  await page.getByText('version 2').waitFor();

  t.log('what the browser saved is what the API holds');
  const saved = await t.api('GET', `/api/dashboard/${dashboardId}`);
  const ws = saved.configuration.widgets;
  check(ws.length === 2 && ws[0].title === 'Kiln chart' && ws[0].layout.sizeX === 24 && ws[1].type === 'latest', `saved widgets: ${JSON.stringify(ws)}`);
  check(ws[1].datasources[0].entityId.id === deviceId && ws[1].datasources[0].keys.join() === 'temperature', 'latest widget data source');

  t.log('telemetry published over the device HTTP API shows without a reload');
  await page.getByText('Live', { exact: true }).waitFor();
  await t.publish(deviceToken, { temperature: 21.5 });
  await waitForValue(page, 'temperature', '21.5');
  await t.publish(deviceToken, { temperature: 22.75 });
  await waitForValue(page, 'temperature', '22.75');
  await page.waitForFunction(() => Number(document.querySelector('.chart')?.dataset.points) >= 2, null, { timeout: TIMEOUT });
  await t.shot(page, 'live');

  t.log('a stale version is refused with a clear message (409)');
  await page.getByRole('button', { name: 'Edit', exact: true }).click();
  // Someone else saves a change meanwhile.
  await t.api('POST', '/api/dashboard', { ...saved, configuration: { ...saved.configuration, description: 'changed elsewhere' } });
  await page.getByRole('article', { name: 'Kiln temperature' }).getByLabel('Width').selectOption('12');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  const conflict = page.getByRole('alert').filter({ hasText: '409' });
  await conflict.waitFor();
  await t.shot(page, 'conflict');
  await conflict.getByRole('button', { name: 'Reload' }).click();
  await page.getByText('version 3').waitFor();

  t.log('remove a widget, then discard');
  await page.getByRole('button', { name: 'Edit', exact: true }).click();
  await page.getByRole('article', { name: 'Kiln chart' }).getByRole('button', { name: 'Remove' }).click();
  await page.getByRole('article', { name: 'Kiln chart' }).waitFor({ state: 'detached' });
  await page.getByRole('button', { name: 'Discard changes' }).click();
  await page.getByRole('article', { name: 'Kiln chart' }).waitFor();

  t.log('assign to a customer');
  const assign = page.getByRole('form', { name: 'Assign to customer' });
  await assign.getByLabel('Customer').selectOption({ label: customerTitle });
  await assign.getByRole('button', { name: 'Assign' }).click();
  await page.getByText(`assigned to ${customerTitle}`).waitFor();
  await t.shot(page, 'assigned');

  await timeWindow(page, t, deviceToken, dashboardId);

  t.log('small screens stack the widgets and keep the page within the screen');
  await page.setViewportSize({ width: 390, height: 800 });
  await openPicker(page);
  check(await fitsWidth(page), 'no horizontal scrolling at 390 px');
  await t.shot(page, 'mobile');
  return { deviceId, dashboardId, deviceToken, value: '22.75' };
}

/** `datetime-local` text of `ms` in the browser's (and this process's) time zone. */
const localInput = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60_000).toISOString().slice(0, 16);

/** The number of points the chart titled `title` draws. */
const chartPoints = (page, title) => page.getByRole('article', { name: title }).locator('.chart').getAttribute('data-points').then(Number);

/** Opens the time window picker unless it is open; its form. */
async function openPicker(page) {
  const form = page.getByRole('form', { name: 'Time window' });
  if (!(await form.isVisible())) await page.getByText('Time window:').click();
  await form.waitFor();
  return form;
}

/** Applies the time window picker's form; the range answer the chart reloads with. */
async function applyWindow(page, fill) {
  const form = await openPicker(page);
  await fill(form);
  const answer = page.waitForResponse((r) => r.url().includes('/values/timeseries?') && r.url().includes('startTs='));
  await form.getByRole('button', { name: 'Apply' }).click();
  const res = await answer;
  check(res.ok(), `the range query answered ${res.status()}`);
  return { url: new URL(res.url()), body: await res.json() };
}

/** Points an hour old: outside the 5-minute window, inside a day; then a history range averaged. */
async function timeWindow(page, t, deviceToken, dashboardId) {
  t.log('points an hour old are outside the default 5-minute window');
  const hourAgo = Date.now() - 3_600_000;
  await t.publish(deviceToken, [
    { ts: hourAgo, values: { temperature: 5 } },
    { ts: hourAgo + 60_000, values: { temperature: 7 } },
  ]);
  await page.getByText('Last 5 minutes · raw points').waitFor();
  // The chart may still be (re)loading after the discard above: wait for the two recent points,
  // then make sure the hour-old ones do not join them.
  await page
    .waitForFunction(() => Number(document.querySelector('[aria-label="Kiln chart"] .chart')?.dataset.points) === 2, null, { timeout: TIMEOUT })
    .catch(() => {});
  await page.waitForTimeout(500);
  check((await chartPoints(page, 'Kiln chart')) === 2, `5 minutes: the two recent points, got ${await chartPoints(page, 'Kiln chart')}`);

  t.log('realtime, the last day: the chart reloads with the old points');
  const day = await applyWindow(page, async (form) => {
    await form.getByLabel('Realtime').check();
    await form.getByLabel('Last', { exact: true }).fill('1');
    await form.getByLabel('Unit').selectOption('days');
  });
  check(day.url.searchParams.get('agg') === 'NONE' && Number(day.url.searchParams.get('startTs')) <= hourAgo, `day query ${day.url}`);
  await page.waitForFunction(() => Number(document.querySelector('[aria-label="Kiln chart"] .chart')?.dataset.points) === 4, null, { timeout: TIMEOUT });
  await page.getByText('Last 1 day · raw points').waitFor();
  await t.shot(page, 'timewindow-day');

  t.log('history range with an average: one 15-minute bucket of the two old points');
  const from = hourAgo - 5 * 60_000;
  const to = hourAgo + 5 * 60_000;
  const avg = await applyWindow(page, async (form) => {
    await form.getByLabel('History').check();
    await form.getByLabel('From', { exact: true }).fill(localInput(from));
    await form.getByLabel('To', { exact: true }).fill(localInput(to));
    await form.getByLabel('Aggregation').selectOption('AVG');
    await form.getByLabel('Interval').selectOption({ label: '15 minutes' });
  });
  check(avg.url.searchParams.get('agg') === 'AVG' && avg.url.searchParams.get('interval') === '900000', `history query ${avg.url}`);
  check(JSON.stringify(avg.body.temperature?.map((p) => p.value)) === '["6.0"]', `one average of 5 and 7: ${JSON.stringify(avg.body)}`);
  await page.waitForFunction(() => Number(document.querySelector('[aria-label="Kiln chart"] .chart')?.dataset.points) === 1, null, { timeout: TIMEOUT });
  await page.getByText('AVG per 15 minutes').waitFor();
  await t.shot(page, 'timewindow-history');

  t.log('a bad range is refused with a message');
  const form = await openPicker(page);
  await form.getByLabel('From', { exact: true }).fill(localInput(to));
  await form.getByLabel('To', { exact: true }).fill(localInput(from));
  await form.getByRole('button', { name: 'Apply' }).click();
  const refused = form.getByRole('alert');
  await refused.waitFor();
  check((await refused.innerText()).includes('before its end'), `range message: ${await refused.innerText()}`);

  t.log("the last 10 minutes, saved as the dashboard's time window");
  await applyWindow(page, async (f) => {
    await f.getByLabel('Realtime').check();
    await f.getByLabel('Last', { exact: true }).fill('10');
    await f.getByLabel('Unit').selectOption('minutes');
    await f.getByLabel('Aggregation').selectOption('NONE');
  });
  await page.waitForFunction(() => Number(document.querySelector('[aria-label="Kiln chart"] .chart')?.dataset.points) === 2, null, { timeout: TIMEOUT });
  // The save is over when its answer is in. The button is renamed "Saving…" at once, so waiting
  // for "Save time window" to go away returned before the save was done and the read below raced
  // it (under load it read the previous window). Reads of the dashboard are held back until the
  // page shows the saved version: it must come from the save's answer, with nothing left to
  // save, not wait for a read (the old version and an enabled Save button stayed on screen).
  let release;
  const held = new Promise((resolve) => (release = resolve));
  const holdReads = async (route) => {
    if (route.request().method() === 'GET') await held;
    await route.fallback();
  };
  await page.route(`**/api/dashboard/${dashboardId}`, holdReads);
  const saving = page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/api/dashboard');
  await page.getByRole('button', { name: 'Save time window' }).click();
  const answer = await saving;
  check(answer.ok(), `saving the time window answered ${answer.status()}`);
  const { version } = await answer.json();
  await page.getByText(`version ${version}`).waitFor();
  check((await page.getByRole('button', { name: /^(Save time window|Saving…)$/ }).count()) === 0, 'no Save time window button once saved');
  release();
  await page.unroute(`**/api/dashboard/${dashboardId}`, holdReads);
  const saved = await t.api('GET', `/api/dashboard/${dashboardId}`);
  check(saved.version === version, `the API holds the saved version ${version}: ${saved.version}`);
  const tw = saved.configuration.timewindow;
  check(tw.selectedTab === 0 && tw.realtime.timewindowMs === 600_000 && tw.aggregation.type === 'NONE', `saved time window ${JSON.stringify(tw)}`);
  check(tw.history?.fixedTimewindow?.startTimeMs === new Date(localInput(from)).getTime(), `the history range is kept too: ${JSON.stringify(tw)}`);
  await page.getByText('Last 10 minutes · raw points').waitFor();
  await page.waitForFunction(() => Number(document.querySelector('[aria-label="Kiln chart"] .chart')?.dataset.points) === 2, null, { timeout: TIMEOUT });
}

async function customer(page, t) {
  const title = need('DASHBOARD_TITLE');
  const deviceToken = need('DEVICE_TOKEN');
  const expect = need('EXPECT_VALUE');
  await t.login(page);
  t.log('the assigned dashboard is listed');
  await t.nav(page, 'Dashboards');
  await page.getByRole('link', { name: title }).click();
  await page.getByRole('heading', { name: title }).waitFor();
  t.log('read only');
  await page.getByText('Read-only').waitFor();
  check((await page.getByRole('button', { name: 'Edit', exact: true }).count()) === 0, 'no Edit button for a customer user');
  check((await page.getByRole('form', { name: 'Assign to customer' }).count()) === 0, 'no assignment for a customer user');
  t.log('current value, the chart starts with the points of its time window, then a live one');
  await page.getByText('Last 10 minutes · raw points').waitFor();
  await waitForValue(page, 'temperature', expect);
  await page.waitForFunction(() => Number(document.querySelector('.chart')?.dataset.points) >= 2, null, { timeout: TIMEOUT });
  await t.publish(deviceToken, { temperature: 23.5 });
  await waitForValue(page, 'temperature', '23.5');
  await t.shot(page, 'live');
  return {};
}

await run({ admin, customer }, (phase) => `dashboards-${phase}`);
