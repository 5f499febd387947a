// The benchmark's hand-written SVG chart: latency distributions as box plots on a log axis, the
// lifecycle as stacked bars, the scale curves as small multiples.
import type { OpResult } from './latency.js';
import type { LifecycleResult } from './lifecycle.js';
import type { BenchResult } from './report.js';
import { fmt } from './report-format.js';
import type { ScaleResult } from './scale.js';

const COLORS: Record<string, string> = {
  c: '#333333',
  'c open+close': '#777777',
  libdm: '#1f77b4',
  dmsetup: '#d62728',
  'ffi-rs': '#ff7f0e',
  koffi: '#2ca02c',
  'ffi-rs async': '#f5b470',
  'koffi async': '#98df8a',
  'ffi-rs binding': '#c45c00',
  'koffi binding': '#1a6e1a',
  'LoopDevices ffi-rs': '#ffbb78',
  'LoopDevices koffi': '#b5e5a5',
  'driver ffi-rs': '#ff7f0e',
  'driver koffi': '#2ca02c',
  'js floor koffi': '#8c564b',
};
const PHASE_COLORS: Record<string, string> = { create: '#4e79a7', get: '#f28e2b', put: '#76b7b2', remove: '#e15759' };

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const f1 = (x: number): string => (Math.round(x * 10) / 10).toString();

class Svg {
  readonly parts: string[] = [];
  text(x: number, y: number, s: string, attrs = ''): void {
    this.parts.push(`<text x="${f1(x)}" y="${f1(y)}" ${attrs}>${esc(s)}</text>`);
  }
  line(x1: number, y1: number, x2: number, y2: number, attrs: string): void {
    this.parts.push(`<line x1="${f1(x1)}" y1="${f1(y1)}" x2="${f1(x2)}" y2="${f1(y2)}" ${attrs}/>`);
  }
  rect(x: number, y: number, w: number, h: number, attrs: string): void {
    this.parts.push(`<rect x="${f1(x)}" y="${f1(y)}" width="${f1(Math.max(0, w))}" height="${f1(h)}" ${attrs}/>`);
  }
  raw(s: string): void {
    this.parts.push(s);
  }
}

const WIDTH = 1100;
const LABEL_W = 250;
const PLOT_X = LABEL_W + 110;
const PLOT_W = WIDTH - PLOT_X - 30;

/** A log10 axis covering [lo, hi] (µs), with decade ticks. */
function logAxis(lo: number, hi: number): { x: (v: number) => number; ticks: number[] } {
  const a = Math.floor(Math.log10(Math.max(lo, 1e-3)));
  const b = Math.ceil(Math.log10(Math.max(hi, lo * 10)));
  const x = (v: number): number => PLOT_X + ((Math.log10(Math.max(v, 10 ** a)) - a) / (b - a)) * PLOT_W;
  const ticks: number[] = [];
  for (let e = a; e <= b; e++) ticks.push(10 ** e);
  return { x, ticks };
}

const tickLabel = (us: number): string =>
  us >= 1e6 ? `${us / 1e6} s` : us >= 1000 ? `${us / 1000} ms` : us >= 1 ? `${us} µs` : `${us * 1000} ns`;

/** Box plots (whiskers min–p99, box q1–q3, median line) of every op × implementation. */
function boxPanel(svg: Svg, y0: number, title: string, ops: OpResult[]): number {
  const all = ops.flatMap((op) => Object.values(op.impls));
  const axis = logAxis(Math.min(...all.map((s) => s.min)), Math.max(...all.map((s) => s.p99)));
  let y = y0;
  svg.text(20, y + 16, title, 'font-size="15" font-weight="bold"');
  y += 30;
  const top = y;
  const rowH = 13;
  for (const op of ops) {
    const impls = Object.entries(op.impls);
    const h = impls.length * rowH + 10;
    svg.rect(20, y, WIDTH - 40, h, 'fill="#f7f7f7"');
    svg.text(26, y + h / 2 + 4, op.label, 'font-size="11" font-weight="bold"');
    impls.forEach(([impl, s], i) => {
      const cy = y + 5 + i * rowH + rowH / 2;
      const color = COLORS[impl] ?? '#999';
      svg.text(PLOT_X - 8, cy + 3.5, `${impl} ${fmt(s.median)}`, 'font-size="9.5" text-anchor="end"');
      svg.line(axis.x(s.min), cy, axis.x(s.p99), cy, `stroke="${color}" stroke-width="1"`);
      svg.rect(
        axis.x(s.q1),
        cy - 4,
        axis.x(s.q3) - axis.x(s.q1),
        8,
        `fill="${color}" fill-opacity="0.45" stroke="${color}"`,
      );
      svg.line(axis.x(s.median), cy - 5.5, axis.x(s.median), cy + 5.5, `stroke="${color}" stroke-width="2.5"`);
    });
    y += h + 4;
  }
  for (const t of axis.ticks) {
    svg.line(axis.x(t), top, axis.x(t), y, 'stroke="#bbb" stroke-dasharray="2,3"');
    svg.text(axis.x(t), y + 12, tickLabel(t), 'font-size="10" text-anchor="middle"');
  }
  svg.text(PLOT_X, y + 26, 'log scale; whiskers min–p99, box q1–q3, thick line median', 'font-size="10" fill="#555"');
  return y + 40;
}

function lifecyclePanel(svg: Svg, y0: number, lifecycle: LifecycleResult): number {
  let y = y0;
  svg.text(
    20,
    y + 16,
    `Layer lifecycle: median per phase (ms), create → get → put → remove`,
    'font-size="15" font-weight="bold"',
  );
  y += 30;
  const entries = Object.entries(lifecycle.impls);
  const maxTotal = Math.max(...entries.map(([, r]) => Object.values(r.phases).reduce((a, s) => a + s.median, 0)));
  const scaleX = (us: number): number => (us / maxTotal) * PLOT_W;
  for (const [impl, r] of entries) {
    svg.text(PLOT_X - 8, y + 13, `${impl} ${fmt(r.total.median)}`, 'font-size="11" text-anchor="end"');
    let x = PLOT_X;
    for (const phaseName of ['create', 'get', 'put', 'remove']) {
      const w = scaleX(r.phases[phaseName]!.median);
      svg.rect(x, y + 2, w, 16, `fill="${PHASE_COLORS[phaseName]}"`);
      x += w;
    }
    y += 22;
  }
  let lx = PLOT_X;
  for (const phaseName of ['create', 'get', 'put', 'remove']) {
    svg.rect(lx, y + 4, 10, 10, `fill="${PHASE_COLORS[phaseName]}"`);
    svg.text(lx + 14, y + 13, phaseName, 'font-size="10"');
    lx += 70;
  }
  svg.text(lx + 10, y + 13, `linear scale, 0 – ${fmt(maxTotal)}`, 'font-size="10" fill="#555"');
  return y + 34;
}

/** One small chart: x = devices (log), y = µs (linear from 0). */
function miniChart(
  svg: Svg,
  x0: number,
  y0: number,
  w: number,
  h: number,
  title: string,
  points: Array<{ n: number; us: number }>,
  note: string,
  format: (v: number) => string = fmt,
): void {
  svg.rect(x0, y0, w, h, 'fill="#f7f7f7"');
  svg.text(x0 + 6, y0 + 14, title, 'font-size="10.5" font-weight="bold"');
  svg.text(x0 + 6, y0 + 27, note, 'font-size="9.5" fill="#555"');
  const px = x0 + 40;
  const pw = w - 55;
  const py = y0 + 36;
  const ph = h - 58;
  const xs = points.map((p) => p.n);
  const lo = Math.log10(Math.max(1, Math.min(...xs)));
  const hi = Math.log10(Math.max(...xs));
  const ymax = Math.max(...points.map((p) => p.us)) * 1.15 || 1;
  const X = (n: number): number => px + (hi > lo ? ((Math.log10(n) - lo) / (hi - lo)) * pw : pw / 2);
  const Y = (us: number): number => py + ph - (us / ymax) * ph;
  svg.line(px, py + ph, px + pw, py + ph, 'stroke="#888"');
  svg.line(px, py, px, py + ph, 'stroke="#888"');
  svg.text(px - 4, py + 8, format(ymax / 1.15), 'font-size="9" text-anchor="end"');
  svg.text(px - 4, py + ph, '0', 'font-size="9" text-anchor="end"');
  svg.raw(
    `<polyline fill="none" stroke="#4e79a7" stroke-width="2" points="${points.map((p) => `${f1(X(p.n))},${f1(Y(p.us))}`).join(' ')}"/>`,
  );
  for (const p of points) svg.raw(`<circle cx="${f1(X(p.n))}" cy="${f1(Y(p.us))}" r="2.5" fill="#4e79a7"/>`);
  const labelled = points.length <= 4 ? points : [points[0]!, points[points.length - 1]!];
  for (const p of labelled)
    svg.text(X(p.n), py + ph + 12, p.n.toLocaleString('en-US'), 'font-size="9" text-anchor="middle"');
}

function scalePanel(svg: Svg, y0: number, scale: ScaleResult): number {
  let y = y0;
  svg.text(
    20,
    y + 16,
    `Scale: per-item time vs devices in the pool (x log, y linear from 0)`,
    'font-size="15" font-weight="bold"',
  );
  y += 28;
  const cols = 4;
  const gap = 10;
  const w = (WIDTH - 40 - gap * (cols - 1)) / cols;
  const h = 130;
  miniChart(
    svg,
    20,
    y,
    WIDTH - 40,
    150,
    'create_thin message during the fill (median per bucket)',
    scale.fillCurve,
    'per item',
  );
  y += 160;
  type Chart = {
    title: string;
    points: Array<{ n: number; us: number }>;
    note: string;
    format?: (v: number) => string;
  };
  const charts: Chart[] = scale.curves.map((c) => ({
    title: c.label,
    points: c.points,
    note: `${c.unit}; ×${c.growth}${c.exponent === undefined ? '' : `, n^${c.exponent.toFixed(2)}`} ${c.linear ? 'linear' : 'NOT linear'}`,
  }));
  const memory = scale.points.filter((p) => p.memory);
  if (memory.length)
    charts.push({
      title: 'memory per layer after Driver.init (heap)',
      points: memory.map((p) => ({ n: p.n, us: p.memory!.heapPerLayer })),
      note: `bytes; RSS: ${memory.map((p) => p.memory!.rssPerLayer).join(' / ')}`,
      format: (v) => `${Math.round(v)} B`,
    });
  charts.forEach((c, i) => {
    const cx = 20 + (i % cols) * (w + gap);
    const cy = y + Math.floor(i / cols) * (h + gap);
    miniChart(svg, cx, cy, w, h, c.title, c.points, c.note, c.format);
  });
  return y + Math.ceil(charts.length / cols) * (h + gap) + 10;
}

function legend(svg: Svg, y: number, impls: string[]): number {
  let x = 20;
  for (const impl of impls) {
    svg.rect(x, y, 10, 10, `fill="${COLORS[impl] ?? '#999'}"`);
    svg.text(x + 14, y + 9, impl, 'font-size="10"');
    x += 18 + impl.length * 6.2;
    if (x > WIDTH - 120) {
      x = 20;
      y += 16;
    }
  }
  return y + 22;
}

export function renderSvg(result: BenchResult): string {
  const svg = new Svg();
  const { meta } = result;
  svg.text(
    20,
    28,
    `devmapper benchmark — ${meta.date}, ${meta.mode} run, ${meta.backend.toUpperCase()} guest${result.guest ? ` ${result.guest.info.kernel}` : ''}; ${meta.machine}`,
    'font-size="17" font-weight="bold"',
  );
  let y = 44;
  const met = result.targets.filter((t) => t.met === true).length;
  const missed = result.targets.filter((t) => t.met === false).length;
  svg.text(20, y + 8, `targets: ${met} met, ${missed} missed (see latest.json)`, 'font-size="11" fill="#555"');
  y += 22;
  const impls = new Set<string>();
  for (const op of [...(result.guest?.latency?.ops ?? []), ...(result.host?.native?.ops ?? [])])
    for (const k of Object.keys(op.impls)) impls.add(k);
  y = legend(svg, y, [...impls]);
  if (result.guest?.latency)
    y = boxPanel(svg, y, `Per-ioctl latency in the ${meta.backend.toUpperCase()} guest`, result.guest.latency.ops);
  if (result.host?.native)
    y = boxPanel(svg, y, 'Native FFI overhead on the host (loop ioctls, no VM)', result.host.native.ops);
  if (result.guest?.lifecycle) y = lifecyclePanel(svg, y, result.guest.lifecycle);
  if (result.guest?.scale) y = scalePanel(svg, y, result.guest.scale);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${Math.ceil(y)}" viewBox="0 0 ${WIDTH} ${Math.ceil(y)}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...svg.parts,
    '</svg>',
    '',
  ].join('\n');
}
