// `devmapper ls|status|check`: what a home holds and whether it is sound. Each works on a
// read-only home (check --repair excepted).
import { fromLayer } from '../containerd/records.js';
import type { LayerMetadata } from '../driver/device-set.js';
import { Driver } from '../driver/driver.js';
import { expectPositionals, parseArgs } from './args.js';
import { type Io, recordedOptions, withDriver } from './command-context.js';
import { assertHome } from './home.js';
import { requireDeviceMapper } from './host.js';
import { humanBytes, keyValues, progress, table, toJson } from './output.js';

/** What `ls` shows per layer: the library's view plus the bytes mapped (null when inactive). */
export type LayerRow = LayerMetadata & { mappedBytes: bigint | null; parentRemoved: boolean };

/**
 * What `ls` shows per layer: the library's view plus the bytes mapped (null when inactive) and
 * whether the recorded parent is gone. A parent can be removed while its snapshots live on (thin
 * snapshots do not depend on their origin), and its id can then be taken by a new layer: the
 * parent counts as gone when no layer has its id, or when the layer that has it now got a later
 * thin id than the child (thin ids are handed out in increasing order, so a real parent's is
 * lower; only after 2^24 creates, when the ids wrap, could this misjudge).
 */
export async function layerRows(driver: Driver): Promise<LayerRow[]> {
  const layers = await driver.list();
  const byId = new Map(layers.map((l) => [l.id, l]));
  const rows: LayerRow[] = [];
  for (const layer of layers) {
    const parent = layer.parent === null ? undefined : byId.get(layer.parent);
    const parentRemoved = layer.parent !== null && (parent === undefined || parent.deviceId > layer.deviceId);
    rows.push({ ...layer, mappedBytes: await driver.activeMappedBytes(layer.id), parentRemoved });
  }
  return rows;
}

export function formatLayerRows(rows: Awaited<ReturnType<typeof layerRows>>): string {
  const snapshots = rows.map(snapshotLabel);
  const anySnapshot = snapshots.some((label) => label !== null); // the column only where containerd uses the home
  return table(
    ['ID', 'PARENT', 'THIN ID', 'SIZE', 'MAPPED', 'MOUNTED', ...(anySnapshot ? ['CONTAINERD SNAPSHOT'] : [])],
    rows.map((r, i) => [
      r.id,
      r.parentRemoved ? '(removed)' : r.parent,
      r.deviceId,
      humanBytes(r.size),
      r.mappedBytes === null ? null : humanBytes(r.mappedBytes),
      r.mounted ? 'yes' : 'no',
      ...(anySnapshot ? [snapshots[i]] : []),
    ]),
  );
}

/** `<kind> <name>` of the containerd snapshot a layer holds (null for a plain layer). */
function snapshotLabel(layer: LayerMetadata): string | null {
  try {
    const snapshot = fromLayer(layer);
    return snapshot ? `${snapshot.kind} ${snapshot.name}` : null;
  } catch {
    return 'damaged record';
  }
}

export async function lsCommand(argv: string[], io: Io): Promise<void> {
  expectPositionals(parseArgs(argv, {}), 0, 0, 'devmapper ls');
  await withDriver(
    io,
    async (driver) => {
      const rows = await layerRows(driver);
      io.out(io.json ? `${toJson(rows)}\n` : formatLayerRows(rows));
    },
    { command: 'ls', write: false },
  );
}

export async function statusCommand(argv: string[], io: Io): Promise<void> {
  expectPositionals(parseArgs(argv, {}), 0, 0, 'devmapper status');
  await withDriver(
    io,
    async (driver) => {
      io.out(formatStatus(await driver.status(), io.json));
    },
    { command: 'status', write: false },
  );
}

export function formatStatus(s: Awaited<ReturnType<Driver['status']>>, json: boolean): string {
  if (json) return `${toJson(s)}\n`;
  const space = (u: { used: bigint; total: bigint; available: bigint }): string =>
    `${humanBytes(u.used)} used, ${humanBytes(u.total)} total, ${humanBytes(u.available)} available`;
  return keyValues([
    ['Pool Name', s.poolName],
    ['Pool Blocksize', humanBytes(s.poolBlockSize)],
    ['Base Device Size', humanBytes(s.baseDeviceSize)],
    ['Backing Filesystem', s.backingFilesystem],
    ['Data file', s.dataFile],
    ['Metadata file', s.metadataFile],
    ['Data loop device', s.dataLoopDevice],
    ['Metadata loop device', s.metadataLoopDevice],
    ['Data Space', space(s.dataSpace)],
    ['Metadata Space', space(s.metadataSpace)],
    ['Min Free Space', `${s.minFreeSpacePercent}%`],
    ['Deferred Removal Enabled', s.deferredRemovalEnabled],
    ['Deferred Deletion Enabled', s.deferredDeletionEnabled],
    ['Deferred Deleted Device Count', s.deferredDeletedDeviceCount],
    ['Library Version', `kernel dm ${s.driverVersion}`],
    ['Pool Mode', s.poolMode],
    ['Needs Check', s.needsCheck],
    ['Transaction Id', s.transactionId],
    ['Layers', s.layerCount],
  ]);
}

/** Exit status 3 when problems remain (1 is for a check that could not run). */
export const CHECK_PROBLEMS = 3;

export async function checkCommand(argv: string[], io: Io): Promise<number> {
  const parsed = parseArgs(argv, { flags: ['repair', 'thin-check'] });
  expectPositionals(parsed, 0, 0, 'devmapper check [--repair] [--thin-check]');
  assertHome(io.home, {
    command: parsed.flags.has('repair') ? 'check --repair' : 'check',
    write: parsed.flags.has('repair'),
  });
  requireDeviceMapper();
  const options = recordedOptions(io.home, io.lockTimeoutMs);
  progress('probing the pool for every thin id ever allocated');
  const report = await Driver.check(options, {
    repair: parsed.flags.has('repair'),
    thinCheck: parsed.flags.has('thin-check'),
  });
  if (io.json) {
    io.out(`${toJson(report)}\n`);
  } else {
    const list = (items: unknown[]): string =>
      items.length === 0
        ? 'none'
        : items.map((i) => (typeof i === 'object' ? JSON.stringify(i) : String(i))).join(', ');
    // A layer that holds a containerd snapshot is named by it too: `ctrd-7 (active "default/3/x")`.
    const named = (layer: string): string => {
      const label = report.layerMeta[layer]
        ? snapshotLabel({ id: layer, meta: report.layerMeta[layer] } as LayerMetadata)
        : null;
      return label === null ? layer : `${layer} (${label})`;
    };
    io.out(
      keyValues([
        ['Pool mode', `${report.poolMode}${report.needsCheck ? ', needs_check' : ''}`],
        ['Leaked thin ids', list(report.leakedThinIds)],
        [
          'Layers with missing thin ids',
          list(report.missingThinIds.map((m) => `${named(m.layer)} thin id ${m.deviceId}`)),
        ],
        ['Damaged records', list(report.damagedRecords.map((d) => d.reason))],
        [
          'Thin ids claimed twice',
          list(report.thinIdConflicts.map((c) => `${c.deviceId} (${c.layers.map(named).join(', ')})`)),
        ],
        ['Quarantined files', list(report.quarantined)],
        ['Stray dm devices', list(report.strayDevices)],
        ['Unheld mounts', list(report.unheldMounts)],
        ['Pending deferred deletions', list(report.pendingDeferredDeletions.map(named))],
        [
          'Transaction id (pool / metadata)',
          `${report.transactionId.pool} / ${report.transactionId.metadata}${report.transactionId.consistent ? '' : '  MISMATCH'}`,
        ],
        ...(report.thinCheck ? [['thin_check', report.thinCheck.summary] as const] : []),
      ]),
    );
    if (report.thinCheck?.ran && !report.thinCheck.ok)
      io.out(`${report.thinCheck.output.replace(/^/gm, 'thin_check: ')}\n`);
    for (const line of report.repairs) io.out(`repaired: ${line}\n`);
    for (const line of report.skipped) io.out(`left alone: ${line}\n`);
    io.out(report.clean ? 'clean\n' : 'problems found (run with --repair to fix them)\n');
  }
  return report.clean ? 0 : CHECK_PROBLEMS;
}
