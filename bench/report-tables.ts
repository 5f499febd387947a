// The benchmark's tables, printed on stdout: per-ioctl latency in the guest, the native FFI
// overhead on the host, the layer lifecycle, the scale and snapshotter tables, then the targets.
import type { OpResult } from './latency.js';
import type { BenchResult } from './report.js';
import { ratio } from './report-format.js';
import { targetLines } from './report-targets.js';
import { scaleTable } from './scale-report.js';
import { snapshotterTable } from './snapshotter-report.js';

function table(header: string[], rows: string[][], alignLeft = 2): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i < alignLeft ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const num = (us: number): string => (us >= 1000 ? us.toFixed(0) : us >= 100 ? us.toFixed(1) : us.toFixed(2));
const ms = (us: number): string => (us / 1000).toFixed(1);

function opRows(ops: OpResult[], compareLibdm: boolean): string[][] {
  const rows: string[][] = [];
  for (const op of ops) {
    let first = true;
    for (const [impl, s] of Object.entries(op.impls)) {
      const floor = op.impls[op.floors?.[impl] ?? 'c'];
      const row = [
        first ? op.label : '',
        impl,
        num(s.min),
        num(s.median),
        num(s.p99),
        floor ? ratio(s.median, floor.median) : '',
      ];
      if (compareLibdm) row.push(op.impls.libdm ? ratio(s.median, op.impls.libdm.median) : '');
      row.push(String(s.n));
      rows.push(row);
      first = false;
    }
  }
  return rows;
}

export function renderTables(result: BenchResult): string {
  const out: string[] = [];
  const { meta } = result;
  out.push(
    `devmapper benchmark — ${meta.date}, ${meta.mode} run, guest kernel under ${meta.backend.toUpperCase()}${result.guest ? ` (${result.guest.info.kernel})` : ''}, ${meta.machine}`,
  );
  if (meta.loadavg) {
    const la = (v: number[]): string => v.map((x) => x.toFixed(2)).join(' ');
    out.push(
      `host load average at start ${la(meta.loadavg.start)}, at end ${la(meta.loadavg.end)}${meta.note ? `; ${meta.note}` : ''}`,
    );
  }
  const probe = result.guest?.info.switchProbe;
  if (probe) {
    out.push(
      `guest: reading one byte from each of 2,048 pages takes ${probe.touchUs.toFixed(1)} µs, ${probe.touchAfterSleepUs.toFixed(1)} µs right after a 50 µs sleep (what a context switch, as in every blocking ioctl, adds to the next user-space work)`,
    );
  }
  if (result.guest?.latency) {
    out.push(
      '',
      `Per-ioctl latency in the ${meta.backend.toUpperCase()} guest (µs; ×C: median over the C floor's, ×libdm: over libdevmapper's)`,
    );
    out.push(
      table(
        ['operation', 'implementation', 'min', 'median', 'p99', '×C', '×libdm', 'n'],
        opRows(result.guest.latency.ops, true),
      ),
    );
  }
  if (result.host?.native) {
    out.push(
      '',
      `Native FFI overhead on this host, no VM (µs; ×floor: median over the C figure doing the same; fd opened once unless "open+close" / LoopDevices)`,
    );
    out.push(
      table(
        ['operation', 'implementation', 'min', 'median', 'p99', '×floor', 'n'],
        opRows(result.host.native.ops, false),
      ),
    );
  } else if (result.host?.skipped) {
    out.push('', `Native part skipped: ${result.host.skipped}`);
  }
  const lifecycle = result.guest?.lifecycle;
  if (lifecycle) {
    const c = lifecycle.impls.c?.total.median ?? NaN;
    const cProtocol = lifecycle.impls['c +protocol']?.total.median ?? NaN;
    const libdm = lifecycle.impls.libdm?.total.median ?? NaN;
    const dmsetup = lifecycle.impls.dmsetup?.total.median ?? NaN;
    out.push(
      '',
      `Layer lifecycle create → get → put → remove (ms; ${lifecycle.filesystem}, base ${lifecycle.baseSize}, image layer active and mounted; ×C+protocol: over C with one synced intent line per create and remove)`,
    );
    out.push(
      table(
        [
          'implementation',
          'min',
          'median',
          'p99',
          'create',
          'get',
          'put',
          'remove',
          '×C',
          '×C+protocol',
          '×libdm',
          'dmsetup ÷',
          'n',
        ],
        Object.entries(lifecycle.impls).map(([impl, r]) => [
          impl,
          ms(r.total.min),
          ms(r.total.median),
          ms(r.total.p99),
          ...['create', 'get', 'put', 'remove'].map((p) => ms(r.phases[p]!.median)),
          ratio(r.total.median, c),
          ratio(r.total.median, cProtocol),
          ratio(r.total.median, libdm),
          `${(dmsetup / r.total.median).toFixed(1)}×`,
          String(r.total.n),
        ]),
        1,
      ),
    );
  }
  if (result.guest?.scale) out.push('', scaleTable(result.guest.scale, table, num));
  if (result.guest?.snapshotter) out.push('', snapshotterTable(result.guest.snapshotter, table));
  if (result.targets.length) out.push('', 'Targets', targetLines(result.targets));
  return out.join('\n');
}
