// The benchmark's targets: MET/MISSED lines computed from a merged result's medians (per-ioctl
// latency against libdevmapper, the layer lifecycle against the C floor and the dmsetup route,
// and the scale and snapshotter targets of their own report modules).
import type { OpResult } from './latency.js';
import type { BenchResult, TargetLine } from './report.js';
import { fmt, ratio } from './report-format.js';
import { scaleTargets } from './scale-report.js';
import { snapshotterTargets } from './snapshotter-report.js';

/** The faster synchronous TypeScript backend of an op. */
export function fasterBackend(op: OpResult): 'ffi-rs' | 'koffi' {
  const a = op.impls['ffi-rs']?.median ?? Infinity;
  const b = op.impls.koffi?.median ?? Infinity;
  return b < a ? 'koffi' : 'ffi-rs';
}

export function evaluateTargets(result: Omit<BenchResult, 'targets'>): TargetLine[] {
  const lines: TargetLine[] = [];
  const backend = result.meta.backend;
  const latency = result.guest?.latency;
  if (latency) {
    let all = true;
    for (const op of latency.ops) {
      const libdm = op.impls.libdm;
      if (!libdm) continue;
      const best = fasterBackend(op);
      const other = best === 'koffi' ? 'ffi-rs' : 'koffi';
      const met = op.impls[best]!.median <= libdm.median;
      all &&= met;
      lines.push({
        id: `latency:${op.id}`,
        met,
        text: `${op.label}: ${best} ${fmt(op.impls[best]!.median)} vs libdevmapper ${fmt(libdm.median)} (${other} ${fmt(op.impls[other]!.median)}; C floor ${fmt(op.impls.c!.median)})`,
      });
    }
    lines.push({
      id: 'latency:all',
      met: all,
      text: "every per-ioctl median at or below libdevmapper's (faster FFI backend)",
    });
  }
  const lifecycle = result.guest?.lifecycle;
  if (lifecycle) {
    const c = lifecycle.impls.c!.total.median;
    const drivers = (['driver ffi-rs', 'driver koffi'] as const).map((k) => ({
      k,
      m: lifecycle.impls[k]!.total.median,
    }));
    const best = drivers.reduce((a, b) => (b.m < a.m ? b : a));
    const other = drivers.find((d) => d !== best)!;
    lines.push({
      id: 'lifecycle:c',
      met: best.m <= 1.1 * c,
      text: `layer lifecycle within 1.1× of the C floor: ${best.k} ${fmt(best.m)} = ${ratio(best.m, c)} of C ${fmt(c)} (${other.k} ${ratio(other.m, c)})`,
    });
    const cProtocol = lifecycle.impls['c +protocol']?.total.median;
    if (cProtocol !== undefined) {
      // Issue 16's goal, against the floor that pays for durability as the Driver does.
      const koffi = lifecycle.impls['driver koffi']!.total.median;
      const ffiRs = lifecycle.impls['driver ffi-rs']!.total.median;
      lines.push({
        id: 'lifecycle:c+protocol',
        met: koffi <= 1.15 * cProtocol && ffiRs <= 1.3 * cProtocol,
        text: `layer lifecycle within 1.15× (koffi) / 1.3× (ffi-rs) of C with a synced intent line: koffi ${ratio(koffi, cProtocol)}, ffi-rs ${ratio(ffiRs, cProtocol)} of ${fmt(cProtocol)}`,
      });
    }
    const dmsetup = lifecycle.impls.dmsetup!.total.median;
    const want = backend === 'uml' ? 25 : 9;
    lines.push({
      id: 'lifecycle:dmsetup',
      met: dmsetup / best.m >= want,
      text: `layer lifecycle ≥ ${want}× faster than the dmsetup route (${backend}): ${(dmsetup / best.m).toFixed(1)}× (dmsetup ${fmt(dmsetup)})`,
    });
  }
  if (result.guest?.scale) lines.push(...scaleTargets(result.guest.scale, fmt));
  lines.push(...snapshotterTargets(result.guest?.snapshotter));
  return lines;
}

export function targetLines(targets: TargetLine[]): string {
  return targets.map((t) => `${t.met === null ? 'N/A   ' : t.met ? 'MET   ' : 'MISSED'} ${t.text}`).join('\n');
}
