// What one scan of <home>/metadata found (MetadataStore.scanLayers), and how its parts are put
// together: journal files over the pack, transactions.log over both, the records in file-name
// order, and the one error init refuses a damaged or conflicting home with.
import { join } from 'node:path';
import { MetadataError } from '../errors.js';
import {
  type DamagedRecord,
  isPlainObject,
  type LayerRecord,
  reasonOf,
  type ThinIdConflict,
  thinIdConflicts,
} from './metadata-schema.js';

export const LAYER_SUFFIX = '.layer.json';

export interface Scan {
  records: LayerRecord[];
  damaged: DamagedRecord[];
  conflicts: ThinIdConflict[];
}

/** A journal file that hides a packed layer: `{"id": …, "removed": true}`. */
export function isTombstone(value: unknown, id: string): boolean {
  return isPlainObject(value) && value.removed === true && value.id === id && Object.keys(value).length === 2;
}

/** The sort order of the layer files, kept for records wherever they come from. */
function byFileName(a: LayerRecord, b: LayerRecord): number {
  const x = a.id + LAYER_SUFFIX;
  const y = b.id + LAYER_SUFFIX;
  return x < y ? -1 : x > y ? 1 : 0;
}

/**
 * The scan's result from the records by id (pack and journal files applied), with what the log
 * says of a layer over them: the log is newer than any file, so it replaces the file, damaged
 * or not (null: the layer was removed).
 */
export function finishScan(
  byId: Map<string, LayerRecord>,
  damaged: DamagedRecord[],
  logged: ReadonlyMap<string, LayerRecord | null>,
): Scan {
  if (logged.size > 0) {
    for (const [id, record] of logged) {
      if (record) byId.set(id, record);
      else byId.delete(id);
    }
    for (let i = damaged.length - 1; i >= 0; i--)
      if (logged.has(damaged[i]!.name.slice(0, -LAYER_SUFFIX.length))) damaged.splice(i, 1);
  }
  const records = [...byId.values()];
  // Pack entries come sorted and journal-only layers are few: sort only when out of order.
  for (let i = 1; i < records.length; i++)
    if (byFileName(records[i - 1]!, records[i]!) > 0) {
      records.sort(byFileName);
      break;
    }
  return { records, damaged, conflicts: thinIdConflicts(records) };
}

/** The error a normal init refuses the scan with (undefined: clean), naming file and field. */
export function scanError(scan: Scan, dir: string, quarantineDir: string): MetadataError | undefined {
  const { damaged, conflicts } = scan;
  if (damaged.length > 0) {
    const first = damaged[0]!.error;
    const more =
      damaged.length > 1 ? ` (and ${damaged.length - 1} more damaged record${damaged.length > 2 ? 's' : ''})` : '';
    return new MetadataError(
      first.file,
      first.field,
      `${reasonOf(first)}${more}; \`devmapper check --repair\` moves damaged records to ${quarantineDir}`,
      { cause: first },
    );
  }
  if (conflicts.length > 0) {
    const c = conflicts[0]!;
    return new MetadataError(
      join(dir, c.layers[0]! + LAYER_SUFFIX),
      'deviceId',
      `thin id ${c.deviceId} is claimed by layers ${c.layers.join(' and ')} (${c.layers.map((l) => l + LAYER_SUFFIX).join(', ')}): at most one of them owns it; fix the other record by hand (check reports the conflict)`,
    );
  }
  return undefined;
}
