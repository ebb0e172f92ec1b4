// Browser test of the SQL console, run by services/server/tests/it/ui.rs against a platform it
// started, with a device's telemetry published beforehand (set-up in browser.mjs).
//
//   node e2e/sql.mjs admin|customer
//
// Environment (beside browser.mjs's): DEVICE_NAME (for `admin` the device with the points, for
// `customer` the one device of the user's customer), POINTS (how many `temperature` points that
// device has).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { check, fitsWidth, need, run } from './browser.mjs';

const rowsShown = (page) => page.locator('.result-table tbody tr').count();

async function runQuery(page, sql, { keys = false } = {}) {
  const editor = page.getByLabel('SQL query');
  await editor.fill(sql);
  if (keys) await editor.press('Control+Enter');
  else await page.getByRole('button', { name: 'Run', exact: true }).click();
}

async function admin(page, t) {
  const device = need('DEVICE_NAME');
  const points = Number(need('POINTS'));
  await t.login(page);
  await t.nav(page, 'SQL');
  await page.getByRole('heading', { name: 'SQL' }).waitFor();

  t.log('invalid SQL shows the platform message');
  await runQuery(page, 'SELEC key FROM telemetry');
  const invalid = page.getByRole('alert');
  await invalid.waitFor();
  const invalidText = await invalid.innerText();
  check(/SELEC/i.test(invalidText), `the parser's message: ${invalidText}`);
  await t.shot(page, 'invalid');

  t.log('a statement that writes is refused with the platform message');
  await runQuery(page, 'DROP TABLE telemetry');
  await page.getByRole('alert').filter({ hasText: 'only SELECT' }).waitFor();

  t.log('an example query by Ctrl+Enter: the table');
  await page.getByLabel('Example queries').selectOption('Points per device and key');
  check((await page.getByLabel('SQL query').inputValue()).includes('JOIN devices'), 'the example is in the editor');
  await page.getByLabel('SQL query').press('Control+Enter');
  await page.getByRole('status').filter({ hasText: /^1 row in/ }).waitFor();
  const cells = await page.locator('.result-table tbody tr').first().locator('td').allInnerTexts();
  check(cells[0] === device && cells[1] === 'temperature' && cells[2] === String(points), `per device and key: ${cells}`);

  t.log('a time series: the table and the chart with ts as x');
  const series = "SELECT ts, dbl_v AS temperature, long_v FROM telemetry WHERE key = 'temperature' ORDER BY ts";
  await runQuery(page, series, { keys: true });
  await page.getByRole('status').filter({ hasText: `${points} rows in` }).waitFor();
  check((await rowsShown(page)) === points, `${points} rows in the table`);
  check((await page.getByLabel('X axis').locator('option:checked').innerText()) === 'ts (time)', 'ts is the x axis');
  await page.waitForFunction((n) => Number(document.querySelector('.sql-chart .chart')?.dataset.points) === n, points);
  check(await page.getByRole('checkbox', { name: 'temperature' }).isChecked(), 'temperature is drawn');
  await t.shot(page, 'chart');

  t.log('the CSV download holds every row');
  const csvDownload = page.waitForEvent('download');
  await page.getByRole('button', { name: 'Download CSV' }).click();
  const csv = await csvDownload;
  const csvPath = join(t.artifacts, 'sql-admin-result.csv');
  await csv.saveAs(csvPath);
  const lines = readFileSync(csvPath, 'utf8').trim().split(/\r?\n/);
  check(lines[0] === 'ts,temperature,long_v' && lines.length === points + 1, `CSV: ${lines.slice(0, 3)} … ${lines.length} lines`);
  check(csv.suggestedFilename().endsWith('.csv'), `file name ${csv.suggestedFilename()}`);

  t.log('the Parquet download is a Parquet file');
  const pq = page.waitForEvent('download');
  await page.getByRole('button', { name: 'Download Parquet' }).click();
  const file = await pq;
  const path = join(t.artifacts, 'sql-admin-result.parquet');
  await file.saveAs(path);
  const bytes = readFileSync(path);
  check(bytes.length > 8 && bytes.subarray(0, 4).toString() === 'PAR1' && bytes.subarray(-4).toString() === 'PAR1', `a Parquet file of ${bytes.length} bytes`);
  check(file.suggestedFilename().endsWith('.parquet'), `file name ${file.suggestedFilename()}`);

  t.log('more rows than the table shows: a note, the chart has them all');
  await runQuery(page, 'SELECT a.ts AS ts, a.ts % 1000 AS n FROM telemetry a, telemetry b, telemetry c');
  await page.getByText('the table shows the first 200').waitFor();
  check((await rowsShown(page)) === 200, '200 rows shown');

  t.log('a slow answer shows progress and can be cancelled');
  // The request is held back in the browser, so the query is still running when Cancel is clicked.
  await page.route('**/api/sql', async (route) => {
    await new Promise((r) => setTimeout(r, 3000));
    await route.continue().catch(() => {});
  });
  await runQuery(page, 'SELECT count(*) AS n FROM telemetry');
  await page.getByText(/Running… /).waitFor();
  await t.shot(page, 'running');
  await page.getByRole('button', { name: 'Cancel' }).click();
  await page.getByRole('alert').filter({ hasText: 'Cancelled' }).waitFor();
  check((await page.getByRole('button', { name: 'Run', exact: true }).isEnabled()), 'Run is available again');
  await page.unroute('**/api/sql');

  t.log('a narrow screen: the console fits, the table scrolls in its box');
  await runQuery(page, series);
  await page.getByRole('status').filter({ hasText: `${points} rows in` }).waitFor();
  await page.setViewportSize({ width: 390, height: 800 });
  await page.getByRole('button', { name: 'Menu' }).waitFor();
  check(await fitsWidth(page), 'no horizontal scrolling at 390 px');
  await t.shot(page, 'mobile');
  return {};
}

/** A customer user gets the console too (the API answers its queries) and sees only its own. */
async function customer(page, t) {
  const device = need('DEVICE_NAME');
  const points = Number(need('POINTS'));
  await t.login(page);
  t.log('the SQL link shows for a customer user the API answers');
  await t.nav(page, 'SQL');
  await page.getByRole('heading', { name: 'SQL' }).waitFor();
  t.log("only the customer's device and its points");
  await runQuery(page, 'SELECT name FROM devices ORDER BY name');
  await page.getByRole('status').filter({ hasText: /^1 row in/ }).waitFor();
  const names = await page.locator('.result-table tbody td').allInnerTexts();
  check(JSON.stringify(names) === JSON.stringify([device]), `devices: ${names}`);
  await runQuery(page, 'SELECT count(*) AS n FROM telemetry');
  await page.locator('.result-table thead th').filter({ hasText: /^n$/ }).waitFor();
  const n = await page.locator('.result-table tbody td').first().innerText();
  check(n === String(points), `telemetry rows: ${n}`);
  await t.shot(page, 'own-rows');
  return {};
}

await run({ admin, customer }, (phase) => `sql-${phase}`, { acceptDownloads: true });
