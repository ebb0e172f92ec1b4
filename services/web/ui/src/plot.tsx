// One uPlot chart for the whole UI (dashboard time-series widgets, the SQL console): uPlot and its
// stylesheet are loaded with the first chart, not with every page; the chart follows its box's
// size and is rebuilt only when its series change, new data is set in place.
import { useEffect, useRef, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import { ErrorBox, Spinner } from './ui';

type UPlot = typeof uPlot;
let loaded: UPlot | undefined;
const loadUPlot = async (): Promise<UPlot> => {
  const [m] = await Promise.all([import('uplot'), import('uplot/dist/uPlot.min.css')]);
  loaded = m.default;
  return loaded;
};

export const COLORS = ['#156f8c', '#c0392b', '#27ae60', '#8e44ad', '#d35400', '#2c3e50'];

export interface PlotProps {
  /** x values first (seconds when `time`), then one array per series, aligned. */
  data: uPlot.AlignedData;
  /** One label per y series. */
  labels: string[];
  /** Whether x is a time (seconds since the epoch) or a plain number. */
  time: boolean;
  /** A fixed x range (same unit as x), else fitted to the data. */
  xRange?: [number, number];
  /** For a time chart without `xRange`: x spans the last this many ms up to now. */
  windowMs?: number;
  /** What to show over an empty chart. */
  empty?: string;
  /** The plot's height in px; without it the plot fills its box (less the legend's line). */
  height?: number;
}

export function Plot(props: PlotProps) {
  const [lib, setLib] = useState<UPlot | undefined>(() => loaded);
  const [error, setError] = useState<Error | undefined>();
  useEffect(() => {
    if (!lib) loadUPlot().then((u) => setLib(() => u), setError);
  }, []);
  if (error) return <ErrorBox error={`The chart library did not load: ${error.message}`} />;
  if (!lib) return <Spinner label="Loading chart…" />;
  return <UPlotChart {...props} lib={lib} />;
}

function UPlotChart({ data, labels, time, xRange, windowMs, empty, height, lib }: PlotProps & { lib: UPlot }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = JSON.stringify([labels, time, xRange, windowMs]);
  let points = 0;
  for (const ys of data.slice(1)) for (const y of Array.from(ys as ArrayLike<number | null | undefined>)) if (y !== null && y !== undefined) points++;
  const size = (el: HTMLElement) => ({ width: el.clientWidth || 300, height: height ?? Math.max(120, el.clientHeight - 40) });

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const u = new lib(
      {
        ...size(el),
        scales: {
          x: {
            time,
            ...(xRange ? { range: xRange } : windowMs ? { range: (): uPlot.Range.MinMax => [(Date.now() - windowMs) / 1000, Date.now() / 1000] } : {}),
          },
        },
        series: [{}, ...labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))],
        axes: [{}, { size: 60 }],
      },
      data,
      el,
    );
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize(size(el)));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [shape]);
  useEffect(() => plot.current?.setData(data), [data]);
  return (
    <div class={height ? 'chart fixed' : 'chart'} ref={box} data-points={points} data-series={labels.length}>
      {points === 0 && empty && <p class="muted chart-empty">{empty}</p>}
    </div>
  );
}

/** Aligns series of `[x, y]` points (each sorted by x) on the union of their x values, with
 *  `null` where a series has no point: the shape uPlot draws. */
export function align(series: [number, number][][]): uPlot.AlignedData {
  const xs = [...new Set(series.flatMap((s) => s.map((p) => p[0])))].sort((a, b) => a - b);
  const at = new Map(xs.map((x, i) => [x, i]));
  const ys = series.map((s) => {
    const out: (number | null)[] = new Array(xs.length).fill(null);
    for (const [x, y] of s) out[at.get(x) as number] = y;
    return out;
  });
  return [xs, ...ys] as uPlot.AlignedData;
}
