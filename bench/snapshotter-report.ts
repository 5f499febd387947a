// The snapshotter benchmark's table and targets: each row side by side for dmthin (this
// project, through containerd), the same server called directly, containerd's devmapper and
// overlayfs, with the ratios the goal is stated in (dmthin over devmapper, dmthin over overlayfs).
import type { TargetLine } from './report.js';
import { SNAPSHOT_BACKENDS, SNAPSHOT_OPS, type SnapshotterResult } from './snapshotter.js';
import { renderSnapshotterLoad, snapshotterLoadTargets } from './snapshotter-load.js';

const msOf = (us: number | undefined): string => (us === undefined ? '' : (us / 1000).toFixed(2));
const ratio = (a: number | undefined, b: number | undefined): string =>
  a !== undefined && b ? `${(a / b).toFixed(2)}×` : '';

export function snapshotterTable(
  result: SnapshotterResult,
  table: (header: string[], rows: string[][], alignLeft?: number) => string,
): string {
  const rows: string[][] = [];
  for (const op of SNAPSHOT_OPS) {
    const median = (backend: (typeof SNAPSHOT_BACKENDS)[number]) => result.ops[backend]?.[op]?.median;
    rows.push([
      op,
      ...SNAPSHOT_BACKENDS.map((b) => msOf(median(b))),
      ratio(median('dmthin'), median('devmapper')),
      ratio(median('dmthin'), median('overlayfs')),
    ]);
  }
  for (const key of ['importS', 'runS', 'removeS'] as const) {
    const of = (backend: string) => result.image.rows.find((r) => r.backend === backend)?.[key];
    const label = { importS: 'ctr images import', runS: 'ctr run --rm … true', removeS: 'ctr images rm --sync' }[key];
    rows.push([
      label,
      ...SNAPSHOT_BACKENDS.map((b) => (of(b) === undefined ? '' : (of(b)! * 1000).toFixed(0))),
      ratio(of('dmthin'), of('devmapper')),
      ratio(of('dmthin'), of('overlayfs')),
    ]);
  }
  const server = result.image.rows.find((r) => r.backend === 'dmthin')?.serverS;
  return [
    `containerd snapshotters (ms, median per call; ${result.layers} layers in a chain and ${result.layers} views of its top; remove is per snapshot with containerd's GC;`,
    `image: ${result.image.layers} layers, ${(result.image.bytes / 2 ** 20).toFixed(1)} MiB, whole commands, median of ${result.image.rounds} round(s) after a warm-up, a ctr process alone ${(result.ctrStartS * 1000).toFixed(0)} ms)`,
    table(['call', ...SNAPSHOT_BACKENDS, 'dmthin ÷ devmapper', 'dmthin ÷ overlayfs'], rows, 1),
    ...(server === undefined
      ? []
      : [`of dmthin's import, the server spent ${(server * 1000).toFixed(0)} ms in its RPCs`]),
    ...(result.load ? renderSnapshotterLoad(result.load) : []),
  ].join('\n');
}

/** Issue 11's goal: faster than containerd's devmapper on every row. */
export function snapshotterTargets(result: SnapshotterResult | undefined): TargetLine[] {
  if (!result) return [];
  const lines: TargetLine[] = [];
  for (const op of SNAPSHOT_OPS) {
    const ours = result.ops.dmthin?.[op]?.median;
    const theirs = result.ops.devmapper?.[op]?.median;
    if (ours === undefined || theirs === undefined) continue;
    lines.push({
      id: `snapshotter-${op}`,
      met: ours < theirs,
      text: `snapshotter ${op}: dmthin ${msOf(ours)} ms vs containerd devmapper ${msOf(theirs)} ms (${ratio(ours, theirs)})`,
    });
  }
  for (const key of ['importS', 'runS', 'removeS'] as const) {
    const ours = result.image.rows.find((r) => r.backend === 'dmthin')?.[key];
    const theirs = result.image.rows.find((r) => r.backend === 'devmapper')?.[key];
    if (ours === undefined || theirs === undefined) continue;
    lines.push({
      id: `snapshotter-image-${key}`,
      met: ours < theirs,
      text: `image ${key.replace(/S$/, '')}: dmthin ${ours.toFixed(2)} s vs containerd devmapper ${theirs.toFixed(2)} s (${ratio(ours, theirs)})`,
    });
  }
  lines.push(...snapshotterLoadTargets(result.load));
  return lines;
}
