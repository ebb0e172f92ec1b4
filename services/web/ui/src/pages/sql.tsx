// The SQL console (docs/api.md "SQL"): read-only SQL over the caller's views (a tenant
// administrator: the tenant's rows; a customer user: its customer's) through
// `POST /api/sql`, run with the button or Ctrl/Cmd+Enter and cancellable (the platform cancels a
// query whose client goes away); the platform's message for a refused or failed statement; the
// first rows as a table and a chart of the result (x: a time or number column, y: numeric
// columns); the whole result downloaded as CSV or Parquet (`?format=csv|parquet`).
import { useEffect, useMemo, useState } from 'preact/hooks';
import { Cancelled, api, download } from '../api';
import { Plot, align } from '../plot';
import { ErrorBox, Spinner } from '../ui';

interface SqlResult {
  columns: string[];
  rows: unknown[][];
}

/** Rows shown in the table; the chart and the downloads take every row. */
export const SHOWN = 200;
const DRAFT = 'thinglake.sql';

/** The views `POST /api/sql` offers and their columns (docs/api.md "SQL"). */
const VIEWS: [string, string][] = [
  ['telemetry', 'tenant_id, day, entity_type, entity_id, key, ts, bool_v, long_v, dbl_v, str_v, json_v, received_at, seq'],
  ['latest', 'entity_type, entity_id, key, ts, bool_v, long_v, dbl_v, str_v, json_v'],
  ['attributes', 'entity_type, entity_id, scope, key, bool_v, long_v, dbl_v, str_v, json_v, last_update_ts'],
  ['devices', 'id, name, type, label, customer_id, created_time'],
  ['assets', 'id, name, type, label, customer_id, created_time'],
  ['customers', 'id, title, email, phone, country, state, city, address, zip, created_time'],
  ['relations', 'from_type, from_id, to_type, to_id, relation_type, type_group, additional_info, created_time'],
  ['events', 'tenant_id, month, seq, event_id, entity_type, entity_id, version, event_type, schema_version, occurred_at, recorded_at, actor_kind, actor_id, actor_name, payload'],
];

const EXAMPLES: [string, string][] = [
  ['Latest points', 'SELECT ts, entity_id, key, coalesce(CAST(dbl_v AS VARCHAR), CAST(long_v AS VARCHAR), str_v, CAST(bool_v AS VARCHAR), json_v) AS value\nFROM telemetry\nORDER BY ts DESC\nLIMIT 100'],
  ['Points per device and key', 'SELECT d.name AS device, t.key, count(*) AS points, min(t.ts) AS first_ts, max(t.ts) AS last_ts\nFROM telemetry t JOIN devices d ON d.id = t.entity_id\nGROUP BY d.name, t.key\nORDER BY d.name, t.key'],
  ['Average per minute (chart)', "SELECT (ts / 60000) * 60000 AS ts, avg(coalesce(dbl_v, CAST(long_v AS DOUBLE))) AS avg_value, count(*) AS points\nFROM telemetry\nWHERE key = 'temperature'\nGROUP BY 1\nORDER BY 1"],
  ['Latest value of every device', 'SELECT d.name AS device, l.key, l.ts, coalesce(CAST(l.dbl_v AS VARCHAR), CAST(l.long_v AS VARCHAR), l.str_v, CAST(l.bool_v AS VARCHAR), l.json_v) AS value\nFROM latest l JOIN devices d ON d.id = l.entity_id\nORDER BY d.name, l.key'],
  ['Devices', 'SELECT name, type, label, customer_id, created_time FROM devices ORDER BY created_time DESC'],
  ['Recent changes (audit trail)', 'SELECT recorded_at, actor_name, entity_type, entity_id, event_type\nFROM events\nORDER BY seq DESC\nLIMIT 100'],
];

type Kind = 'time' | 'number' | 'other';

const looksTime = (name: string) => /(^|_)(ts|time|timestamp|date|day|bucket)$|_ts$|^ts_|time$/i.test(name);

/** What a column holds, from its name and values: epoch milliseconds or date text, numbers, other. */
function kindOf(name: string, values: unknown[]): Kind {
  const present = values.filter((v) => v !== null && v !== undefined);
  if (!present.length) return 'other';
  if (present.every((v) => typeof v === 'number')) return looksTime(name) && present.every((v) => (v as number) > 1e11 && (v as number) < 1e14) ? 'time' : 'number';
  if (present.every((v) => typeof v === 'string' && /^\d{4}-\d{2}-\d{2}/.test(v) && Number.isFinite(Date.parse(v)))) return 'time';
  return 'other';
}

/** x in uPlot's units: seconds for times. */
function xOf(kind: Kind, v: unknown): number | null {
  if (v === null || v === undefined) return null;
  if (kind === 'time') return typeof v === 'number' ? v / 1000 : Date.parse(String(v)) / 1000;
  return typeof v === 'number' ? v : null;
}

/** A time cell's value as a local date and time, for its tooltip. */
function timeTitle(v: unknown): string {
  const ms = typeof v === 'number' ? v : Date.parse(String(v));
  return Number.isFinite(ms) ? new Date(ms).toLocaleString() : '';
}

function show(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export function SqlConsole() {
  const [text, setText] = useState(() => sessionStorage.getItem(DRAFT) ?? EXAMPLES[1][1]);
  const [result, setResult] = useState<{ data: SqlResult; ms: number; query: string } | undefined>();
  const [error, setError] = useState<Error | undefined>();
  const [running, setRunning] = useState<AbortController | null>(null);
  const [downloading, setDownloading] = useState('');
  const [started, setStarted] = useState(0);

  useEffect(() => sessionStorage.setItem(DRAFT, text), [text]);
  useEffect(() => () => running?.abort(), [running]);

  const run = async () => {
    if (running) return;
    if (!text.trim()) return setError(new Error('Write a query first, e.g. SELECT * FROM devices.'));
    const controller = new AbortController();
    const t0 = performance.now();
    setRunning(controller);
    setStarted(Date.now());
    setError(undefined);
    try {
      const data = await api<SqlResult>('POST', '/api/sql', { query: text }, { signal: controller.signal });
      setResult({ data, ms: Math.round(performance.now() - t0), query: text });
    } catch (e) {
      setError(e instanceof Cancelled ? new Error('Cancelled: the query was stopped.') : (e as Error));
    } finally {
      setRunning(null);
    }
  };

  const save = async (format: 'csv' | 'parquet') => {
    setDownloading(format);
    setError(undefined);
    try {
      const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
      await download('POST', `/api/sql?format=${format}`, { query: text }, `thinglake-${stamp}.${format}`);
    } catch (e) {
      setError(new Error(`The ${format.toUpperCase()} download failed: ${(e as Error).message}`));
    } finally {
      setDownloading('');
    }
  };

  return (
    <section class="sql">
      <div class="toolbar">
        <h1>SQL</h1>
        <label class="examples">
          Examples{' '}
          <select
            aria-label="Example queries"
            value=""
            onChange={(e) => {
              const ex = EXAMPLES.find(([name]) => name === e.currentTarget.value);
              if (ex) setText(ex[1]);
            }}
          >
            <option value="">Choose…</option>
            {EXAMPLES.map(([name]) => (
              <option key={name} value={name}>
                {name}
              </option>
            ))}
          </select>
        </label>
      </div>
      <details class="views">
        <summary class="muted">
          Read-only SQL over the views of what you may see: {VIEWS.map(([v]) => v).join(', ')}. Timestamps are milliseconds since the epoch. Columns…
        </summary>
        <dl>
          {VIEWS.map(([v, cols]) => (
            <div key={v}>
              <dt>
                <code>{v}</code>
              </dt>
              <dd>{cols}</dd>
            </div>
          ))}
        </dl>
      </details>
      <form
        class="card sql-editor"
        aria-label="Query"
        onSubmit={(e) => {
          e.preventDefault();
          void run();
        }}
      >
        <textarea
          aria-label="SQL query"
          spellcheck={false}
          rows={8}
          value={text}
          onInput={(e) => setText(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
              e.preventDefault();
              void run();
            }
          }}
        />
        <div class="actions">
          <button class="primary" disabled={!!running}>
            Run
          </button>
          {running && (
            <button type="button" onClick={() => running.abort()}>
              Cancel
            </button>
          )}
          <span class="muted hint">Ctrl+Enter (⌘+Enter) runs</span>
          <span class="spacer" />
          <button type="button" disabled={!!downloading} onClick={() => void save('csv')}>
            {downloading === 'csv' ? 'Downloading…' : 'Download CSV'}
          </button>
          <button type="button" disabled={!!downloading} onClick={() => void save('parquet')}>
            {downloading === 'parquet' ? 'Downloading…' : 'Download Parquet'}
          </button>
        </div>
        {running && <Running since={started} />}
      </form>
      <ErrorBox error={error} />
      {result && <Result key={result.query + result.ms} data={result.data} ms={result.ms} />}
    </section>
  );
}

function Running({ since }: { since: number }) {
  const [, setNow] = useState(0);
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(t);
  }, []);
  return <Spinner label={`Running… ${((Date.now() - since) / 1000).toFixed(1)} s`} />;
}

function Result({ data, ms }: { data: SqlResult; ms: number }) {
  const { columns, rows } = data;
  const kinds = useMemo(() => columns.map((c, i) => kindOf(c, rows.map((r) => r[i]))), [data]);
  const xCandidates = columns.map((c, i) => ({ c, i })).filter(({ i }) => kinds[i] !== 'other');
  const numeric = columns.map((c, i) => ({ c, i })).filter(({ i }) => kinds[i] === 'number');
  const defaultX = (xCandidates.find(({ c }) => c === 'ts') ?? xCandidates.find(({ i }) => kinds[i] === 'time') ?? xCandidates[0])?.i ?? -1;
  const [x, setX] = useState(defaultX);
  const [ys, setYs] = useState<number[]>(() => numeric.filter(({ i }) => i !== defaultX).slice(0, 4).map(({ i }) => i));
  const shownYs = ys.filter((i) => i !== x);

  return (
    <>
      <p class="muted" role="status">
        {rows.length} {rows.length === 1 ? 'row' : 'rows'} in {ms} ms
        {rows.length > SHOWN ? ` · the table shows the first ${SHOWN}; the chart and the downloads have them all` : ''}
      </p>
      {x >= 0 && numeric.length > 0 && (
        <div class="card">
          <div class="inline chart-axes">
            <label>
              X axis
              <select aria-label="X axis" value={x} onChange={(e) => setX(Number(e.currentTarget.value))}>
                {xCandidates.map(({ c, i }) => (
                  <option key={i} value={i}>
                    {c} ({kinds[i]})
                  </option>
                ))}
              </select>
            </label>
            <fieldset class="y-axis">
              <legend>Y axis</legend>
              {numeric.map(({ c, i }) => (
                <label key={i} class="check">
                  <input
                    type="checkbox"
                    disabled={i === x}
                    checked={shownYs.includes(i)}
                    onChange={(e) => setYs(e.currentTarget.checked ? [...ys, i] : ys.filter((j) => j !== i))}
                  />{' '}
                  {c}
                </label>
              ))}
            </fieldset>
          </div>
          {shownYs.length ? <ResultChart data={data} x={x} xKind={kinds[x]} ys={shownYs} /> : <p class="muted">Choose a column for the Y axis.</p>}
        </div>
      )}
      <div class="table-wrap card result-table">
        <table>
          <thead>
            <tr>
              {columns.map((c) => (
                <th key={c}>{c}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.slice(0, SHOWN).map((r, n) => (
              <tr key={n}>
                {r.map((v, i) => (
                  <td key={i} class={v === null ? 'null' : kinds[i] !== 'other' ? 'num' : undefined} title={kinds[i] === 'time' && v !== null ? timeTitle(v) : undefined}>
                    {show(v)}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
        {rows.length === 0 && <p class="empty">No rows.</p>}
      </div>
    </>
  );
}

function ResultChart({ data, x, xKind, ys }: { data: SqlResult; x: number; xKind: Kind; ys: number[] }) {
  const aligned = useMemo(() => {
    const series = ys.map((y) =>
      data.rows
        .map((r) => [xOf(xKind, r[x]), typeof r[y] === 'number' ? (r[y] as number) : null] as const)
        .filter((p): p is readonly [number, number] => p[0] !== null && p[1] !== null)
        .map((p) => [p[0], p[1]] as [number, number])
        .sort((a, b) => a[0] - b[0]),
    );
    return align(series);
  }, [data, x, ys.join()]);
  return (
    <div class="sql-chart">
      <Plot data={aligned} labels={ys.map((i) => data.columns[i])} time={xKind === 'time'} empty="No numeric points to draw." height={260} />
    </div>
  );
}
