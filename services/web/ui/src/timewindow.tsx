// A dashboard's time window, stored in its configuration the way ThingsBoard stores
// `timewindow`: `selectedTab` 0 (realtime: the last `realtime.timewindowMs`) or 1 (history: a
// fixed `history.fixedTimewindow` range, `historyType` 1, or the last `history.timewindowMs`,
// `historyType` 0), with `aggregation.type` (NONE, AVG, MIN, MAX, SUM, COUNT) over buckets of
// the tab's `interval` ms and `aggregation.limit` raw points. The picker edits it; `resolve`
// turns it into the range query the time-series REST API answers.
import { useState } from 'preact/hooks';
import { ErrorBox, toLocalInput } from './ui';

export type Agg = 'NONE' | 'AVG' | 'MIN' | 'MAX' | 'SUM' | 'COUNT';
export const AGGS: Agg[] = ['NONE', 'AVG', 'MIN', 'MAX', 'SUM', 'COUNT'];

export interface Timewindow {
  selectedTab?: number;
  realtime?: { realtimeType?: number; timewindowMs?: number; interval?: number; [k: string]: unknown };
  history?: {
    historyType?: number;
    timewindowMs?: number;
    interval?: number;
    fixedTimewindow?: { startTimeMs: number; endTimeMs: number };
    [k: string]: unknown;
  };
  aggregation?: { type?: Agg; limit?: number };
  [k: string]: unknown;
}

/** What a time window asks for at one moment: `[startTs, endTs)`, aggregated or raw. */
export interface Range {
  realtime: boolean;
  startTs: number;
  endTs: number;
  agg: Agg;
  /** Bucket length in ms (aggregated windows only). */
  interval: number;
  /** Raw points per key. */
  limit: number;
}

/** The platform (as ThingsBoard) answers at most this many buckets. */
export const MAX_BUCKETS = 700;
export const DEFAULT_WINDOW_MS = 300_000;
/** Raw points per key a chart asks for unless the window says otherwise. */
export const DEFAULT_LIMIT = 2000;

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
export const INTERVALS: [number, string][] = [
  [SECOND, '1 second'],
  [5 * SECOND, '5 seconds'],
  [10 * SECOND, '10 seconds'],
  [30 * SECOND, '30 seconds'],
  [MINUTE, '1 minute'],
  [5 * MINUTE, '5 minutes'],
  [15 * MINUTE, '15 minutes'],
  [HOUR, '1 hour'],
  [6 * HOUR, '6 hours'],
  [DAY, '1 day'],
];
const UNITS: [number, string][] = [
  [DAY, 'days'],
  [HOUR, 'hours'],
  [MINUTE, 'minutes'],
];

/** The smallest listed interval that splits `spanMs` into at most 200 buckets. */
export function defaultInterval(spanMs: number): number {
  return (INTERVALS.find(([ms]) => spanMs / ms <= 200) ?? INTERVALS[INTERVALS.length - 1])[0];
}

export function resolve(tw: Timewindow | undefined, now = Date.now()): Range {
  const agg = tw?.aggregation?.type && AGGS.includes(tw.aggregation.type) ? tw.aggregation.type : 'NONE';
  const limit = tw?.aggregation?.limit ?? DEFAULT_LIMIT;
  let startTs: number;
  let endTs: number;
  let interval: number | undefined;
  const realtime = tw?.selectedTab !== 1;
  if (realtime) {
    const windowMs = tw?.realtime?.timewindowMs ?? DEFAULT_WINDOW_MS;
    // The range is [startTs, endTs): a point stamped now is in.
    [startTs, endTs] = [now - windowMs, now + 1];
    interval = tw?.realtime?.interval;
  } else {
    const h = tw?.history ?? {};
    if (h.historyType !== 0 && h.fixedTimewindow) [startTs, endTs] = [h.fixedTimewindow.startTimeMs, h.fixedTimewindow.endTimeMs];
    else [startTs, endTs] = [now - (h.timewindowMs ?? DEFAULT_WINDOW_MS), now + 1];
    interval = h.interval;
  }
  const every = interval && interval >= 1 ? interval : defaultInterval(endTs - startTs);
  // As ThingsBoard's dashboards do: an aggregated realtime window starts on a multiple of its
  // interval, so buckets stay put as time goes on (and whole-hour ones come from the hourly rollup).
  if (realtime && agg !== 'NONE') startTs -= startTs % every;
  return { realtime, startTs, endTs, agg, interval: every, limit };
}

/** Why a range cannot be asked for, or undefined. */
export function problem(r: Range): string | undefined {
  if (!(r.startTs < r.endTs)) return 'The start of the range must be before its end.';
  if (r.agg !== 'NONE') {
    const buckets = Math.ceil((r.endTs - r.startTs) / r.interval);
    if (buckets > MAX_BUCKETS) return `${buckets} intervals in this range: at most ${MAX_BUCKETS}. Choose a longer interval or a shorter range.`;
  }
  return undefined;
}

function duration(ms: number): string {
  const [unit, name] = UNITS.find(([u]) => ms % u === 0 && ms >= u) ?? [SECOND, 'seconds'];
  const n = ms / unit;
  return `${n} ${n === 1 ? name.slice(0, -1) : name}`;
}

const intervalName = (ms: number) => INTERVALS.find(([v]) => v === ms)?.[1] ?? duration(ms);

/** "Last 5 minutes · raw points", "25.11.2026, 10:00:00 – 12:00:00 · AVG per 1 minute". */
export function describe(tw: Timewindow | undefined): string {
  const r = resolve(tw);
  const what = r.agg === 'NONE' ? 'raw points' : `${r.agg} per ${intervalName(r.interval)}`;
  if (r.realtime || tw?.history?.historyType === 0) return `Last ${duration(r.endTs - 1 - r.startTs)} · ${what}`;
  return `${new Date(r.startTs).toLocaleString()} – ${new Date(r.endTs).toLocaleString()} · ${what}`;
}

/** Edits a time window; `onApply` gets the new one (the fields it does not know kept). */
export function TimeWindowPicker({ value, onApply, busy }: { value: Timewindow | undefined; onApply: (tw: Timewindow) => void; busy?: boolean }) {
  const r = resolve(value);
  const windowMs = r.realtime ? r.endTs - 1 - r.startTs : (value?.realtime?.timewindowMs ?? DEFAULT_WINDOW_MS);
  const [unit] = UNITS.find(([u]) => windowMs % u === 0) ?? [MINUTE];
  const [mode, setMode] = useState<'realtime' | 'history'>(r.realtime ? 'realtime' : 'history');
  const [last, setLast] = useState(String(Math.max(1, Math.round(windowMs / unit))));
  const [lastUnit, setLastUnit] = useState(unit);
  const [from, setFrom] = useState(toLocalInput(r.realtime ? Date.now() - HOUR : r.startTs).slice(0, 16));
  const [to, setTo] = useState(toLocalInput(r.realtime ? Date.now() : r.endTs).slice(0, 16));
  const [agg, setAgg] = useState<Agg>(r.agg);
  const [interval, setBucket] = useState(value?.[r.realtime ? 'realtime' : 'history']?.interval ? r.interval : 0);
  const [error, setError] = useState('');
  const [open, setOpen] = useState(false);

  const apply = (e: Event) => {
    e.preventDefault();
    const tw: Timewindow = { ...(value ?? {}), aggregation: { ...(value?.aggregation ?? {}), type: agg, limit: value?.aggregation?.limit ?? DEFAULT_LIMIT } };
    if (mode === 'realtime') {
      const n = Number(last);
      if (!Number.isInteger(n) || n < 1) return setError('“Last” must be a whole number of at least 1.');
      tw.selectedTab = 0;
      tw.realtime = { ...(value?.realtime ?? {}), realtimeType: 0, timewindowMs: n * lastUnit, interval: interval || undefined };
    } else {
      const [start, end] = [new Date(from).getTime(), new Date(to).getTime()];
      if (!Number.isFinite(start) || !Number.isFinite(end)) return setError('Give both ends of the range.');
      tw.selectedTab = 1;
      tw.history = { ...(value?.history ?? {}), historyType: 1, fixedTimewindow: { startTimeMs: start, endTimeMs: end }, interval: interval || undefined };
    }
    const wrong = problem(resolve(tw));
    if (wrong) return setError(wrong);
    setError('');
    setOpen(false);
    onApply(tw);
  };

  return (
    <details class="timewindow" open={open} onToggle={(e) => setOpen((e.currentTarget as HTMLDetailsElement).open)}>
      <summary>
        <span class="muted">Time window:</span> <span data-testid="timewindow-summary">{describe(value)}</span>
        {busy && <span class="spinner-dot" role="status" aria-label="Loading the time window" />}
      </summary>
      <form class="card inline" aria-label="Time window" onSubmit={apply}>
        <fieldset class="tabs" aria-label="Mode">
          <label>
            <input type="radio" name="tw-mode" checked={mode === 'realtime'} onChange={() => setMode('realtime')} /> Realtime
          </label>
          <label>
            <input type="radio" name="tw-mode" checked={mode === 'history'} onChange={() => setMode('history')} /> History
          </label>
        </fieldset>
        {mode === 'realtime' ? (
          <label>
            Last
            <span class="inline-pair">
              <input type="number" min="1" step="1" aria-label="Last" value={last} onInput={(e) => setLast(e.currentTarget.value)} />
              <select aria-label="Unit" value={lastUnit} onChange={(e) => setLastUnit(Number(e.currentTarget.value))}>
                {[...UNITS].reverse().map(([u, name]) => (
                  <option value={u} key={u}>
                    {name}
                  </option>
                ))}
              </select>
            </span>
          </label>
        ) : (
          <>
            <label>
              From
              <input type="datetime-local" aria-label="From" value={from} onInput={(e) => setFrom(e.currentTarget.value)} />
            </label>
            <label>
              To
              <input type="datetime-local" aria-label="To" value={to} onInput={(e) => setTo(e.currentTarget.value)} />
            </label>
          </>
        )}
        <label>
          Aggregation
          <select aria-label="Aggregation" value={agg} onChange={(e) => setAgg(e.currentTarget.value as Agg)}>
            {AGGS.map((a) => (
              <option value={a} key={a}>
                {a === 'NONE' ? 'None (raw points)' : a}
              </option>
            ))}
          </select>
        </label>
        {agg !== 'NONE' && (
          <label>
            Interval
            <select aria-label="Interval" value={interval} onChange={(e) => setBucket(Number(e.currentTarget.value))}>
              <option value={0}>Automatic</option>
              {INTERVALS.map(([ms, name]) => (
                <option value={ms} key={ms}>
                  {name}
                </option>
              ))}
            </select>
          </label>
        )}
        <button class="primary">Apply</button>
        {error && <ErrorBox error={error} />}
      </form>
    </details>
  );
}
