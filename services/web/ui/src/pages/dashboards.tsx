// Dashboards (docs/api.md "Dashboards"): the list (a customer user sees its customer's, read
// only), one dashboard's widgets on a 24-column grid fed live over the WebSocket, its time window
// (realtime or history, raw or aggregated: charts load it over the time-series REST API), and,
// for tenant administrators, editing (add, remove, move, resize widgets, the default time window;
// save with `version`) and assignment to customers.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { ApiError, del, get, post, query } from '../api';
import type { EntityId, PageData } from '../api';
import { LiveSocket } from '../live';
import type { LiveStatus, Points } from '../live';
import { Link, navigate } from '../router';
import { DEFAULT_WINDOW_MS, TimeWindowPicker, describe, resolve } from '../timewindow';
import type { Timewindow } from '../timewindow';
import { ConfirmButton, ErrorBox, Loaded, Pager, Spinner, formatTime, useAction, useAsync, useUser } from '../ui';
import { WIDGET_TYPES, WidgetBody } from './widgets';
import type { ChartSource, Datasource, Store, Widget, WidgetType } from './widgets';

interface Dashboard {
  id: EntityId;
  title: string;
  createdTime: number;
  version: number;
  assignedCustomers?: { customerId: EntityId; title: string }[] | null;
  configuration?: { widgets?: Widget[]; timewindow?: Timewindow; [k: string]: unknown } | null;
  [k: string]: unknown;
}

const PAGE = 20;
/** Points kept per key in the browser. */
const KEEP = 2000;

export function Dashboards() {
  const user = useUser();
  const admin = user.authority === 'TENANT_ADMIN';
  const [page, setPage] = useState(0);
  const [search, setSearch] = useState('');
  const path = admin ? '/api/tenant/dashboards' : `/api/customer/${user.customerId.id}/dashboards`;
  const list = useAsync(
    () => get<PageData<Dashboard>>(path + query({ pageSize: PAGE, page, textSearch: search, sortProperty: 'title', sortOrder: 'ASC' })),
    [page, search],
  );
  const [title, setTitle] = useState('');
  const create = useAction();
  return (
    <section>
      <div class="toolbar">
        <h1>Dashboards</h1>
        <input aria-label="Search dashboards" placeholder="Search" value={search} onInput={(e) => (setSearch(e.currentTarget.value), setPage(0))} />
      </div>
      {admin && (
        <form
          class="inline card"
          aria-label="New dashboard"
          onSubmit={(e) => {
            e.preventDefault();
            void create.run(async () => {
              if (!title.trim()) throw new Error('Title is required.');
              const d = await post<Dashboard>('/api/dashboard', { title: title.trim(), configuration: { widgets: [], timewindow: { selectedTab: 0, realtime: { realtimeType: 0, timewindowMs: DEFAULT_WINDOW_MS }, aggregation: { type: 'NONE', limit: 2000 } } } });
              navigate(`/dashboards/${d.id.id}?edit=1`);
            });
          }}
        >
          <label>
            Title
            <input value={title} onInput={(e) => setTitle(e.currentTarget.value)} />
          </label>
          <button class="primary" disabled={create.busy}>
            Create dashboard
          </button>
          <ErrorBox error={create.error} />
        </form>
      )}
      <Loaded value={list}>
        {(p) =>
          p.data.length === 0 ? (
            <p class="empty">{admin ? 'No dashboards yet.' : 'No dashboard is assigned to your customer.'}</p>
          ) : (
            <>
              <div class="table-wrap">
                <table>
                  <thead>
                    <tr>
                      <th>Title</th>
                      <th>Customers</th>
                      <th>Created</th>
                    </tr>
                  </thead>
                  <tbody>
                    {p.data.map((d) => (
                      <tr key={d.id.id}>
                        <td>
                          <Link href={`/dashboards/${d.id.id}`}>{d.title}</Link>
                        </td>
                        <td>{(d.assignedCustomers ?? []).map((c) => c.title).join(', ')}</td>
                        <td>{formatTime(d.createdTime)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
              <Pager page={page} totalPages={p.totalPages} total={p.totalElements} onPage={setPage} />
            </>
          )
        }
      </Loaded>
    </section>
  );
}

export function DashboardPage({ id, edit }: { id: string; edit: boolean }) {
  const dash = useAsync(() => get<Dashboard>(`/api/dashboard/${id}`), [id]);
  if (dash.error instanceof ApiError && dash.error.status === 404) return <ErrorBox error="This dashboard does not exist (or was deleted)." />;
  return (
    <Loaded value={dash}>
      {(d) => <DashboardView key={`${d.id.id}-${d.version}`} initial={d} startEditing={edit} reload={dash.reload} saved={dash.set} />}
    </Loaded>
  );
}

/** Lays widgets out in list order, left to right on the 24-column grid, wrapping into rows. */
function reflow(ws: Widget[]): Widget[] {
  let col = 0;
  let row = 0;
  let rowHeight = 0;
  return ws.map((w) => {
    const sizeX = Math.min(24, Math.max(1, w.layout?.sizeX ?? 8));
    const sizeY = Math.max(2, w.layout?.sizeY ?? 4);
    if (col + sizeX > 24) {
      row += rowHeight;
      col = 0;
      rowHeight = 0;
    }
    const layout = { col, row, sizeX, sizeY };
    col += sizeX;
    rowHeight = Math.max(rowHeight, sizeY);
    return { ...w, layout };
  });
}

const byPosition = (a: Widget, b: Widget) => (a.layout?.row ?? 0) - (b.layout?.row ?? 0) || (a.layout?.col ?? 0) - (b.layout?.col ?? 0);

/**
 * One dashboard at `initial.version`. A save hands the dashboard it answered to `saved`, which
 * shows that version at once: re-reading it instead would leave the old version on screen, Save
 * enabled again with a stale version (a second click a 409), until the read came back.
 */
function DashboardView({ initial, startEditing, reload, saved }: { initial: Dashboard; startEditing: boolean; reload: () => void; saved: (d: Dashboard) => void }) {
  const user = useUser();
  const admin = user.authority === 'TENANT_ADMIN';
  const [editing, setEditing] = useState(admin && startEditing);
  const original = useMemo(() => [...(initial.configuration?.widgets ?? [])].sort(byPosition), [initial]);
  const [widgets, setWidgets] = useState<Widget[]>(original);
  const [dirty, setDirty] = useState(false);
  const stored = initial.configuration?.timewindow;
  // The window shown: anyone may change it for the view; tenant administrators may save it.
  const [timewindow, setTimewindow] = useState<Timewindow | undefined>(stored);
  const windowChanged = JSON.stringify(timewindow ?? null) !== JSON.stringify(stored ?? null);
  const save = useAction();
  const change = (ws: Widget[]) => {
    setWidgets(reflow(ws));
    setDirty(true);
  };
  const { store, windowStore, errors, status, windowLoading } = useLive(widgets, timewindow);
  const range = resolve(timewindow);
  const rawLive = range.realtime && range.agg === 'NONE';
  const windowMs = range.endTs - 1 - range.startTs;
  const chart: ChartSource = rawLive
    ? { store, from: Date.now() - windowMs, to: Infinity, fixed: false, windowMs, empty: 'No points in this time window yet: new ones appear as they arrive.' }
    : { store: windowStore, from: range.startTs, to: range.endTs, fixed: !range.realtime, windowMs: range.realtime ? windowMs : undefined, empty: windowLoading ? 'Loading…' : 'No points in this time window.' };

  const doSave = () =>
    save.run(async () => {
      let answer: Dashboard;
      try {
        answer = await post<Dashboard>('/api/dashboard', { ...initial, configuration: { ...(initial.configuration ?? {}), widgets, timewindow } });
      } catch (e) {
        if (e instanceof ApiError && e.status === 409)
          throw new Error('Someone changed this dashboard since you opened it (409 Conflict): nothing was saved. Reload to see their version, then make your changes again.');
        throw e;
      }
      navigate(`/dashboards/${initial.id.id}`, true);
      saved(answer);
    });

  return (
    <section>
      <div class="toolbar">
        <h1>{initial.title}</h1>
        <span class={`live live-${status}`} role="status" title="Live updates over the WebSocket">
          {status === 'open' ? 'Live' : status === 'connecting' ? 'Connecting…' : 'Disconnected, reconnecting…'}
        </span>
        {!admin && <span class="muted">Read-only</span>}
        {admin && !editing && (
          <button type="button" onClick={() => setEditing(true)}>
            Edit
          </button>
        )}
        {admin && editing && (
          <>
            <button type="button" class="primary" disabled={save.busy || !(dirty || windowChanged)} onClick={() => void doSave()}>
              {save.busy ? 'Saving…' : 'Save'}
            </button>
            <button type="button" disabled={save.busy} onClick={() => {
                setWidgets(original);
                setTimewindow(stored);
                setDirty(false);
                setEditing(false);
                save.setError(undefined);
                if (location.search) navigate(`/dashboards/${initial.id.id}`, true);
              }}>
              {dirty || windowChanged ? 'Discard changes' : 'Done'}
            </button>
          </>
        )}
      </div>
      <p class="crumbs">
        <Link href="/dashboards">Dashboards</Link> · version {initial.version}
        {initial.assignedCustomers?.length ? ` · assigned to ${initial.assignedCustomers.map((c) => c.title).join(', ')}` : ''}
      </p>
      {save.error && (
        <div class="error" role="alert">
          {save.error.message}{' '}
          {save.error.message.includes('409') && (
            <button type="button" onClick={reload}>
              Reload
            </button>
          )}
        </div>
      )}
      <div class="toolbar">
        <TimeWindowPicker key={JSON.stringify(timewindow ?? null)} value={timewindow} onApply={setTimewindow} busy={windowLoading} />
        {admin && !editing && windowChanged && (
          <button type="button" disabled={save.busy} onClick={() => void doSave()} title={`Save “${describe(timewindow)}” as this dashboard's time window`}>
            {save.busy ? 'Saving…' : 'Save time window'}
          </button>
        )}
      </div>
      {editing && <AddWidget onAdd={(w) => change([...widgets, w])} />}
      {widgets.length === 0 && <p class="empty">{admin ? 'No widgets yet: edit the dashboard to add one.' : 'This dashboard has no widgets.'}</p>}
      <div class="dash-grid">
        {widgets.map((w, i) => (
          <article
            class="widget card"
            key={w.id}
            aria-label={w.title}
            style={{ '--col': w.layout.col + 1, '--row': w.layout.row + 1, '--w': w.layout.sizeX, '--h': w.layout.sizeY } as Record<string, number>}
          >
            <div class="widget-head">
              <h2>{w.title}</h2>
              {editing && (
                <span class="widget-tools" role="group" aria-label={`Arrange ${w.title}`}>
                  <button type="button" aria-label="Move up" disabled={i === 0} onClick={() => change(swap(widgets, i, i - 1))}>
                    ↑
                  </button>
                  <button type="button" aria-label="Move down" disabled={i === widgets.length - 1} onClick={() => change(swap(widgets, i, i + 1))}>
                    ↓
                  </button>
                  <select aria-label="Width" value={w.layout.sizeX} onChange={(e) => change(widgets.map((x) => (x === w ? { ...x, layout: { ...x.layout, sizeX: Number(e.currentTarget.value) } } : x)))}>
                    {[6, 8, 12, 16, 24].map((n) => (
                      <option value={n} key={n}>
                        {n}/24 wide
                      </option>
                    ))}
                  </select>
                  <select aria-label="Height" value={w.layout.sizeY} onChange={(e) => change(widgets.map((x) => (x === w ? { ...x, layout: { ...x.layout, sizeY: Number(e.currentTarget.value) } } : x)))}>
                    {[3, 4, 6, 8, 12].map((n) => (
                      <option value={n} key={n}>
                        {n} high
                      </option>
                    ))}
                  </select>
                  <button type="button" class="danger" onClick={() => change(widgets.filter((x) => x !== w))}>
                    Remove
                  </button>
                </span>
              )}
            </div>
            <WidgetBody w={w} store={store} errors={errors} chart={chart} />
          </article>
        ))}
      </div>
      {admin && !editing && <Assignment d={initial} onChange={reload} />}
    </section>
  );
}

function swap<T>(xs: T[], i: number, j: number): T[] {
  const out = [...xs];
  [out[i], out[j]] = [out[j], out[i]];
  return out;
}

/** Data sources by entity: `{id, type, keys}` sorted, for effects keyed by their JSON. */
function sourcesOf(widgets: Widget[], want: (w: Widget) => boolean, keysOf: (w: Widget, d: Datasource) => string[]) {
  const m = new Map<string, { type: string; keys: Set<string> }>();
  for (const w of widgets.filter(want))
    for (const d of w.datasources) {
      const e = m.get(d.entityId.id) ?? { type: d.entityId.entityType, keys: new Set<string>() };
      keysOf(w, d).forEach((k) => e.keys.add(k));
      m.set(d.entityId.id, e);
    }
  return [...m].map(([id, e]) => ({ id, type: e.type, keys: [...e.keys].sort() }));
}

const POSITION = ['latitude', 'longitude'];

type TsAnswer = Record<string, { ts: number; value: string }[]>;
const asPoints = (r: TsAnswer): Points => Object.fromEntries(Object.entries(r).map(([k, pts]) => [k, pts.map((p) => [p.ts, String(p.value)] as [number, string])]));

/**
 * One WebSocket for the page (a subscription per entity with the union of its widgets' keys:
 * latest values, then every new point), and the charts' time window over REST: raw points of a
 * realtime window join the live store (the WebSocket adds what arrives after); an aggregated or
 * history window goes to `windowStore`, reloaded every interval while it is realtime.
 */
function useLive(widgets: Widget[], timewindow: Timewindow | undefined) {
  const [store, setStore] = useState<Store>(() => new Map());
  const [windowStore, setWindowStore] = useState<Store>(() => new Map());
  const [windowLoading, setWindowLoading] = useState(false);
  const [errors, setErrors] = useState<Map<string, string>>(() => new Map());
  const [status, setStatus] = useState<LiveStatus>('connecting');
  const [socket, setSocket] = useState<LiveSocket | null>(null);
  useEffect(() => {
    const s = new LiveSocket(setStatus);
    setSocket(s);
    return () => s.close();
  }, []);
  const wanted = useMemo(() => sourcesOf(widgets, () => true, (w, d) => (w.type === 'map' ? [...d.keys, ...POSITION] : d.keys)), [widgets]);
  const signature = JSON.stringify(wanted);
  const merge = (id: string, data: Points) =>
    setStore((prev) => {
      const next = new Map(prev);
      const cur = { ...(next.get(id) ?? {}) };
      for (const [k, pts] of Object.entries(data)) {
        const have = cur[k] ?? [];
        const seen = new Set(have.map((p) => p[0]));
        const merged = [...have, ...pts.filter((p) => !seen.has(p[0]))].sort((a, b) => a[0] - b[0]);
        cur[k] = merged.slice(-KEEP);
      }
      next.set(id, cur);
      return next;
    });
  const setError = (key: string, message: string | undefined) =>
    setErrors((m) => {
      if (message === undefined) return m.has(key) ? (m.delete(key), new Map(m)) : m;
      return new Map(m).set(key, message);
    });
  useEffect(() => {
    if (!socket) return;
    const offs = wanted.map(({ id, type, keys }) =>
      socket.subscribe(
        type,
        id,
        keys,
        (data: Points) => {
          setError(id, undefined);
          merge(id, data);
        },
        (message) => setError(id, message),
      ),
    );
    return () => offs.forEach((off) => off());
  }, [socket, signature]);

  // Maps start with the raw points of the last realtime window.
  const positions = useMemo(() => sourcesOf(widgets, (w) => w.type === 'map', () => POSITION), [widgets]);
  const positionWindow = timewindow?.realtime?.timewindowMs ?? DEFAULT_WINDOW_MS;
  useEffect(() => {
    let stale = false;
    const now = Date.now();
    for (const { id, type, keys } of positions) {
      const q = query({ keys: keys.join(','), startTs: now - positionWindow, endTs: now + 1, agg: 'NONE', limit: KEEP });
      get<TsAnswer>(`/api/plugins/telemetry/${type}/${id}/values/timeseries${q}`).then(
        (r) => !stale && merge(id, asPoints(r)),
        (e: Error) => !stale && setError(`history:${id}`, `The last positions could not be loaded: ${e.message}`),
      );
    }
    return () => {
      stale = true;
    };
  }, [JSON.stringify(positions), positionWindow]);

  // Charts: the points of the time window.
  const charted = useMemo(() => sourcesOf(widgets, (w) => w.type === 'timeseries', (_, d) => d.keys), [widgets]);
  const windowSignature = JSON.stringify(timewindow ?? null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const r = resolve(timewindow);
    if (!r.realtime || r.agg === 'NONE') return;
    const t = setInterval(() => setTick((n) => n + 1), Math.min(60_000, Math.max(1000, r.interval)));
    return () => clearInterval(t);
  }, [windowSignature]);
  useEffect(() => {
    let stale = false;
    const r = resolve(timewindow);
    const raw = r.agg === 'NONE';
    const rawLive = r.realtime && raw;
    const params = { startTs: r.startTs, endTs: r.endTs, agg: r.agg, interval: raw ? undefined : r.interval, limit: raw ? Math.min(r.limit, KEEP) : undefined };
    setWindowLoading(true);
    Promise.all(
      charted.map(({ id, type, keys }) =>
        get<TsAnswer>(`/api/plugins/telemetry/${type}/${id}/values/timeseries${query({ keys: keys.join(','), ...params })}`).then(
          (r) => {
            if (!stale) setError(`history:${id}`, undefined);
            return [id, asPoints(r)] as const;
          },
          (e: Error) => {
            if (!stale) setError(`history:${id}`, `The time window could not be loaded: ${e.message}`);
            return [id, {} as Points] as const;
          },
        ),
      ),
    ).then((answers) => {
      if (stale) return;
      setWindowLoading(false);
      if (rawLive) answers.forEach(([id, pts]) => merge(id, pts));
      else
        setWindowStore(
          new Map(answers.map(([id, pts]) => [id, Object.fromEntries(Object.entries(pts).map(([k, p]) => [k, [...p].sort((a, b) => a[0] - b[0])]))])),
        );
    });
    return () => {
      stale = true;
    };
  }, [JSON.stringify(charted), windowSignature, tick]);
  return { store, windowStore, errors, status, windowLoading };
}

interface Device {
  id: EntityId;
  name: string;
}

function AddWidget({ onAdd }: { onAdd: (w: Widget) => void }) {
  const devices = useAsync(() => get<PageData<Device>>('/api/tenant/devices?pageSize=100&page=0&sortProperty=name&sortOrder=ASC'), []);
  const [type, setType] = useState<WidgetType>('latest');
  const [title, setTitle] = useState('');
  const [device, setDevice] = useState('');
  const [keys, setKeys] = useState('');
  const [error, setError] = useState('');
  return (
    <form
      class="card inline"
      aria-label="Add widget"
      onSubmit={(e) => {
        e.preventDefault();
        const d = devices.data?.data.find((x) => x.id.id === device);
        const ks = type === 'map' ? ['latitude', 'longitude'] : keys.split(',').map((k) => k.trim()).filter(Boolean);
        if (!title.trim()) return setError('Title is required.');
        if (!d) return setError('Choose a device.');
        if (!ks.length) return setError('Give at least one key, e.g. temperature.');
        setError('');
        const source: Datasource = { entityId: d.id, entityName: d.name, keys: ks };
        const size = type === 'timeseries' || type === 'map' ? { sizeX: 16, sizeY: 8 } : { sizeX: 8, sizeY: 4 };
        onAdd({
          id: `w-${Date.now().toString(36)}`,
          type,
          title: title.trim(),
          datasources: [source],
          layout: { col: 0, row: 0, ...size },
        });
        setTitle('');
        setKeys('');
      }}
    >
      <label>
        Widget type
        <select aria-label="Widget type" value={type} onChange={(e) => setType(e.currentTarget.value as WidgetType)}>
          {WIDGET_TYPES.map(([v, l]) => (
            <option value={v} key={v}>
              {l}
            </option>
          ))}
        </select>
      </label>
      <label>
        Widget title
        <input aria-label="Widget title" value={title} onInput={(e) => setTitle(e.currentTarget.value)} />
      </label>
      <label>
        Device
        {devices.data ? (
          <select aria-label="Device" value={device} onChange={(e) => setDevice(e.currentTarget.value)}>
            <option value="">Choose…</option>
            {devices.data.data.map((d) => (
              <option value={d.id.id} key={d.id.id}>
                {d.name}
              </option>
            ))}
          </select>
        ) : devices.error ? (
          <ErrorBox error={devices.error} />
        ) : (
          <Spinner />
        )}
      </label>
      {type !== 'map' && (
        <label>
          Keys (comma-separated)
          <input aria-label="Keys (comma-separated)" value={keys} placeholder="temperature" onInput={(e) => setKeys(e.currentTarget.value)} />
        </label>
      )}
      <button class="primary">Add widget</button>
      {error && <ErrorBox error={error} />}
    </form>
  );
}

function Assignment({ d, onChange }: { d: Dashboard; onChange: () => void }) {
  const customers = useAsync(() => get<PageData<{ id: EntityId; title: string }>>('/api/customers?pageSize=100&page=0&sortProperty=title&sortOrder=ASC'), []);
  const [customer, setCustomer] = useState('');
  const act = useAction();
  const assigned = d.assignedCustomers ?? [];
  return (
    <div class="card">
      <h2>Customers</h2>
      {assigned.length === 0 && <p class="muted">Not assigned: only tenant administrators see it.</p>}
      <ul>
        {assigned.map((c) => (
          <li key={c.customerId.id}>
            {c.title}{' '}
            <ConfirmButton
              label="Unassign"
              question={`Unassign from ${c.title}?`}
              busy={act.busy}
              onConfirm={() => void act.run(async () => (await del(`/api/customer/${c.customerId.id}/dashboard/${d.id.id}`), onChange()))}
            />
          </li>
        ))}
      </ul>
      <form
        class="inline"
        aria-label="Assign to customer"
        onSubmit={(e) => {
          e.preventDefault();
          void act.run(async () => {
            if (!customer) throw new Error('Choose a customer.');
            await post(`/api/customer/${customer}/dashboard/${d.id.id}`);
            onChange();
          });
        }}
      >
        <label>
          Customer
          <select aria-label="Customer" value={customer} onChange={(e) => setCustomer(e.currentTarget.value)}>
            <option value="">Choose…</option>
            {(customers.data?.data ?? [])
              .filter((c) => !assigned.some((a) => a.customerId.id === c.id.id))
              .map((c) => (
                <option value={c.id.id} key={c.id.id}>
                  {c.title}
                </option>
              ))}
          </select>
        </label>
        <button disabled={act.busy}>Assign</button>
        <ErrorBox error={act.error ?? customers.error} />
      </form>
    </div>
  );
}
