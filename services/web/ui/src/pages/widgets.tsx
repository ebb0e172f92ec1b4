// The dashboard widgets: latest-value card, table of latest values, time-series chart (uPlot)
// and a map of the last positions (an SVG plot of latitude/longitude, no map tiles). Cards,
// tables and maps draw what the live store holds; charts draw their time window's points
// (`ChartSource`).
import { COLORS, Plot, align } from '../plot';
import { formatTime } from '../ui';

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

/** What the charts draw: points of `[from, to)` (ms) from `store`; x fixed to that range
 *  (history) or sliding over the last `windowMs` (realtime). */
export interface ChartSource {
  store: Store;
  from: number;
  to: number;
  fixed: boolean;
  windowMs?: number;
  empty: string;
}

export function WidgetBody({ w, store, errors, chart }: { w: Widget; store: Store; errors: Map<string, string>; chart: ChartSource }) {
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
      {w.type === 'timeseries' && <Chart w={w} source={chart} />}
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

function Chart({ w, source }: { w: Widget; source: ChartSource }) {
  const lines = w.datasources.flatMap((d) => d.keys.map((k) => ({ d, k })));
  const series = lines.map(({ d, k }) => {
    const pts = pointsOf(source.store, d, k).filter((p) => p[0] >= source.from && p[0] < source.to && Number.isFinite(Number(p[1])));
    return pts.map((p) => [p[0] / 1000, Number(p[1])] as [number, number]);
  });
  return (
    <Plot
      data={align(series)}
      labels={lines.map(({ d, k }) => `${k} · ${name(d)}`)}
      time
      xRange={source.fixed ? [source.from / 1000, source.to / 1000] : undefined}
      windowMs={source.windowMs}
      empty={source.empty}
    />
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
