// The dashboard widgets: latest-value card, table of latest values, time-series chart (uPlot)
// and a map of the last positions (an SVG plot of latitude/longitude, no map tiles). Each draws
// what the live store holds for its data sources.
import { useEffect, useRef, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import { ErrorBox, Spinner, formatTime } from '../ui';

// uPlot (and its stylesheet) is loaded with the first chart, not with every page.
type UPlot = typeof uPlot;
let loaded: UPlot | undefined;
const loadUPlot = async (): Promise<UPlot> => {
  const [m] = await Promise.all([import('uplot'), import('uplot/dist/uPlot.min.css')]);
  loaded = m.default;
  return loaded;
};

export interface Datasource {
  entityId: { entityType: string; id: string };
  entityName?: string;
  keys: string[];
}

export interface Layout {
  col: number;
  row: number;
  sizeX: number;
  sizeY: number;
}

export type WidgetType = 'timeseries' | 'latest' | 'table' | 'map';

export interface Widget {
  id: string;
  type: WidgetType;
  title: string;
  datasources: Datasource[];
  timewindow?: { realtime?: { timewindowMs?: number } };
  layout: Layout;
}

export const WIDGET_TYPES: [WidgetType, string][] = [
  ['latest', 'Latest value'],
  ['table', 'Table'],
  ['timeseries', 'Time-series chart'],
  ['map', 'Map'],
];

/** Points per entity id and key, oldest first. */
export type Store = Map<string, Record<string, [number, string][]>>;

export const pointsOf = (store: Store, d: Datasource, key: string) => store.get(d.entityId.id)?.[key] ?? [];
const last = (store: Store, d: Datasource, key: string) => pointsOf(store, d, key).at(-1);
const name = (d: Datasource) => d.entityName || d.entityId.id;

export function WidgetBody({ w, store, errors }: { w: Widget; store: Store; errors: Map<string, string> }) {
  const errs = [...new Set(w.datasources.flatMap((d) => [errors.get(d.entityId.id), errors.get(`history:${d.entityId.id}`)]).filter(Boolean))];
  if (!w.datasources.length) return <p class="muted">No data source.</p>;
  return (
    <>
      {errs.map((e) => (
        <div class="error" role="alert" key={e}>
          {e}
        </div>
      ))}
      {w.type === 'latest' && <LatestCard w={w} store={store} />}
      {w.type === 'table' && <LatestTable w={w} store={store} />}
      {w.type === 'timeseries' && <Chart w={w} store={store} />}
      {w.type === 'map' && <MapPlot w={w} store={store} />}
    </>
  );
}

function LatestCard({ w, store }: { w: Widget; store: Store }) {
  return (
    <div class="latest">
      {w.datasources.flatMap((d) =>
        d.keys.map((k) => {
          const p = last(store, d, k);
          return (
            <div class="latest-item" key={`${d.entityId.id}/${k}`}>
              <span class="latest-value" data-key={k} data-entity={d.entityId.id}>
                {p ? p[1] : '–'}
              </span>
              <span class="muted">
                {k} · {name(d)}
                {p ? ` · ${formatTime(p[0])}` : ' · no data yet'}
              </span>
            </div>
          );
        }),
      )}
    </div>
  );
}

function LatestTable({ w, store }: { w: Widget; store: Store }) {
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th>Entity</th>
            <th>Key</th>
            <th>Value</th>
            <th>Time</th>
          </tr>
        </thead>
        <tbody>
          {w.datasources.flatMap((d) =>
            d.keys.map((k) => {
              const p = last(store, d, k);
              return (
                <tr key={`${d.entityId.id}/${k}`}>
                  <td>{name(d)}</td>
                  <td>{k}</td>
                  <td data-key={k} data-entity={d.entityId.id}>
                    {p ? p[1] : '–'}
                  </td>
                  <td title={p ? formatTime(p[0]) : undefined}>{p ? new Date(p[0]).toLocaleTimeString() : ''}</td>
                </tr>
              );
            }),
          )}
        </tbody>
      </table>
    </div>
  );
}

const COLORS = ['#156f8c', '#c0392b', '#27ae60', '#8e44ad', '#d35400', '#2c3e50'];

function Chart({ w, store }: { w: Widget; store: Store }) {
  const [lib, setLib] = useState<UPlot | undefined>(() => loaded);
  const [error, setError] = useState<Error | undefined>();
  useEffect(() => {
    if (!lib) loadUPlot().then((u) => setLib(() => u), setError);
  }, []);
  if (error) return <ErrorBox error={`The chart library did not load: ${error.message}`} />;
  if (!lib) return <Spinner label="Loading chart…" />;
  return <UChart w={w} store={store} lib={lib} />;
}

function UChart({ w, store, lib }: { w: Widget; store: Store; lib: UPlot }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const lines = w.datasources.flatMap((d) => d.keys.map((k) => ({ d, k })));
  const windowMs = w.timewindow?.realtime?.timewindowMs ?? 300_000;
  const since = Date.now() - windowMs;
  const tables = lines.map(({ d, k }) => {
    const pts = pointsOf(store, d, k).filter((p) => p[0] >= since && Number.isFinite(Number(p[1])));
    return [pts.map((p) => p[0] / 1000), pts.map((p) => Number(p[1]))] as uPlot.AlignedData;
  });
  const data: uPlot.AlignedData = tables.length > 1 ? lib.join(tables) : (tables[0] ?? [[]]);
  const shape = lines.map(({ d, k }) => `${d.entityId.id}/${k}`).join('|');
  const points = tables.reduce((n, t) => n + t[0].length, 0);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const u = new lib(
      {
        width: el.clientWidth || 300,
        height: Math.max(120, el.clientHeight - 40),
        series: [{}, ...lines.map(({ d, k }, i) => ({ label: `${k} · ${name(d)}`, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))],
        axes: [{}, { size: 50 }],
      },
      data,
      el,
    );
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: el.clientWidth, height: Math.max(120, el.clientHeight - 40) }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [shape]);
  useEffect(() => plot.current?.setData(data), [data]);
  return (
    <div class="chart" ref={box} data-points={points}>
      {points === 0 && <p class="muted chart-empty">No points in this time window yet: new ones appear as they arrive.</p>}
    </div>
  );
}

function MapPlot({ w, store }: { w: Widget; store: Store }) {
  const tracks = w.datasources.map((d) => {
    const lat = pointsOf(store, d, 'latitude');
    const lon = pointsOf(store, d, 'longitude');
    const byTs = new Map(lon.map((p) => [p[0], Number(p[1])]));
    const pts = lat.filter((p) => byTs.has(p[0])).map((p) => [byTs.get(p[0]) as number, Number(p[1])] as [number, number]);
    return { d, pts: pts.slice(-200) };
  });
  const all = tracks.flatMap((t) => t.pts);
  if (!all.length) return <p class="muted">No latitude/longitude received yet.</p>;
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  // Equal scale on both axes (a degree of longitude shrinks with cos(latitude)), centred.
  const [minX, maxX, minY, maxY] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const k = Math.cos((((minY + maxY) / 2) * Math.PI) / 180) || 1;
  const span = Math.max((maxX - minX) * k, maxY - minY, 0.001) * 1.1;
  const [cx, cy] = [(minX + maxX) / 2, (minY + maxY) / 2];
  const X = (x: number) => 50 + (((x - cx) * k) / span) * 100;
  const Y = (y: number) => 50 - ((y - cy) / span) * 100;
  return (
    <div class="map">
      <svg viewBox="-4 -4 108 108" preserveAspectRatio="xMidYMid meet" role="img" aria-label={`Last positions: ${w.title}`}>
        <rect x="-4" y="-4" width="108" height="108" fill="#eef3f6" />
        {tracks.map((t, i) => (
          <g key={t.d.entityId.id} stroke={COLORS[i % COLORS.length]} fill={COLORS[i % COLORS.length]}>
            <polyline fill="none" stroke-width="0.6" vector-effect="non-scaling-stroke" points={t.pts.map((p) => `${X(p[0])},${Y(p[1])}`).join(' ')} />
            {t.pts.length > 0 && <circle cx={X(t.pts.at(-1)![0])} cy={Y(t.pts.at(-1)![1])} r="1.8" />}
          </g>
        ))}
      </svg>
      <p class="muted">
        {tracks
          .filter((t) => t.pts.length)
          .map((t) => `${name(t.d)}: ${t.pts.at(-1)![1].toFixed(5)}, ${t.pts.at(-1)![0].toFixed(5)}`)
          .join(' · ')}
      </p>
    </div>
  );
}
