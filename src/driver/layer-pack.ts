// <home>/metadata/layers.pack: every layer record as of the last compaction, one entry a line,
// `<crc32 of the JSON, 8 hex digits> <the record as JSON>`, after a header line of the same form
// saying how many entry lines follow (`{"pack":1,"entries":N}`): a pack cut short at a line
// boundary would otherwise read as a smaller valid one, and check --repair would delete the
// lost layers' thin ids as leaked. A pack without the header (written before it) loads as
// before, with nothing to count against. Init reads it with one open, one
// read and one close instead of three syscalls per layer file. Each entry is checked on its
// own (checksum, JSON, every field), so a damaged entry is a MetadataError naming the pack, the
// entry (its line number) and the field, and the other entries still load. A blank line is an
// entry check --repair quarantined: blanked, not dropped, so the line numbers a scan reported
// stay right until the next compaction.
import { crc32 } from 'node:zlib';
import { MetadataError } from '../errors.js';
import { readRegularFile } from './metadata-files.js';
import {
  claimedThinId,
  type DamagedRecord,
  isPlainObject,
  type LayerRecord,
  reasonOf,
  validateLayerRecord,
} from './metadata-schema.js';

export const PACK = 'layers.pack';
/** DamagedRecord.name of a pack whose entry lines are fewer or more than its header says. */
export const PACK_COUNT = `${PACK}#count`;
const PACK_FORMAT = 1;

/** One entry that could not be used. */
export interface DamagedEntry {
  /** 1-based line number in the pack. */
  line: number;
  /** What check --repair puts in the quarantine: the JSON when its checksum held, else the whole line. */
  quarantineText: string;
  error: MetadataError;
  /** The layer the entry names, when its checksum held and it names a usable one. */
  layerId: string | undefined;
  /** The thin id it names, when its checksum held and it names a usable one. */
  claimedDeviceId: number | undefined;
}

/** `<crc32 of the JSON, 8 hex digits> <the JSON>` (no newline): a pack entry's or log line's text. */
export function checksummedLine(value: unknown): string {
  const json = JSON.stringify(value);
  return `${crc32(json).toString(16).padStart(8, '0')} ${json}`;
}

/** Whether a line's checksum matches its JSON (the text after the 9th character). */
export function checksumHolds(raw: string): boolean {
  return (
    raw.charCodeAt(8) === 0x20 &&
    /^[0-9a-f]{8}$/.test(raw.slice(0, 8)) &&
    Number.parseInt(raw.slice(0, 8), 16) === crc32(raw.slice(9))
  );
}

/** One entry's line (no newline). */
export function encodeEntry(record: LayerRecord): string {
  return checksummedLine(record);
}

/** The header line of a pack of `entries` entry lines (blanked ones count: they keep their line). */
export function encodePackHeader(entries: number): string {
  return checksummedLine({ pack: PACK_FORMAT, entries });
}

/** A whole pack's text: the header, then one line per record. */
export function encodePack(records: readonly LayerRecord[]): string {
  return `${encodePackHeader(records.length)}\n${records.map((r) => `${encodeEntry(r)}\n`).join('')}`;
}

/** The entry count a header line states; undefined when the line is not a header (an entry, or damaged). */
function headerCount(raw: string): number | undefined {
  if (!checksumHolds(raw)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(raw.slice(9));
  } catch {
    return undefined;
  }
  if (!isPlainObject(value) || value.pack !== PACK_FORMAT) return undefined;
  const entries = value.entries;
  return typeof entries === 'number' && Number.isSafeInteger(entries) && entries >= 0 ? entries : undefined;
}

function entryField(line: number, id: string | undefined, field: string | undefined): string {
  return `entry ${line}${id === undefined ? '' : ` (layer ${id})`}${field === undefined ? '' : ` ${field}`}`;
}

function damage(
  path: string,
  line: number,
  raw: string,
  reason: string,
  parsed?: { value: unknown; field: string | undefined; cause: unknown },
): DamagedEntry {
  const value = parsed?.value;
  const id = isPlainObject(value) && typeof value.id === 'string' ? value.id : undefined;
  return {
    line,
    quarantineText: parsed ? raw.slice(9) : raw,
    error: new MetadataError(path, entryField(line, id, parsed?.field), reason, parsed && { cause: parsed.cause }),
    layerId: id,
    claimedDeviceId: claimedThinId(value),
  };
}

/**
 * The pack's entries by line, each validated; damaged ones reported, never thrown. `miscounted`:
 * the header's count does not match the entry lines (lines lost or added as whole lines).
 */
export function parsePack(
  text: string,
  path: string,
): {
  entries: Array<{ line: number; record: LayerRecord }>;
  damaged: DamagedEntry[];
  miscounted: MetadataError | undefined;
} {
  const entries: Array<{ line: number; record: LayerRecord }> = [];
  const damaged: DamagedEntry[] = [];
  const lines = text.split('\n');
  // A pack is written whole (temp file, rename), so it ends with a newline: a last line
  // without one is a damaged entry like any other.
  if (lines[lines.length - 1] === '') lines.pop();
  const stated = lines.length > 0 ? headerCount(lines[0]!) : undefined;
  const found = lines.length - 1;
  const miscounted =
    stated === undefined || stated === found
      ? undefined
      : new MetadataError(
          path,
          'header',
          `says ${stated} entries and ${found} follow (${stated > found ? 'cut short: the lost entries are unknown' : 'lines added'})`,
        );
  for (let i = stated === undefined ? 0 : 1; i < lines.length; i++) {
    const raw = lines[i]!;
    if (raw === '') continue;
    const line = i + 1;
    const json = raw.slice(9);
    if (!checksumHolds(raw)) {
      const reason = `checksum ${JSON.stringify(raw.slice(0, 8))} does not match the entry (a torn or altered line)`;
      damaged.push(damage(path, line, raw, reason));
      continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch (error) {
      damaged.push(damage(path, line, raw, `is not valid JSON: ${(error as Error).message}`));
      continue;
    }
    try {
      entries.push({ line, record: validateLayerRecord(value, path) });
    } catch (error) {
      if (!(error instanceof MetadataError)) throw error;
      damaged.push(damage(path, line, raw, reasonOf(error), { value, field: error.field, cause: error }));
    }
  }
  return { entries, damaged, miscounted };
}

/**
 * The pack at `path`: its valid entries by layer id, and what could not be used as
 * DamagedRecords named `layers.pack#<line>` (a second entry for one layer among them;
 * `layers.pack#count` when the header's count does not hold; the whole pack when it cannot be
 * read). A missing pack is an empty one.
 */
export function readPack(path: string): { records: Map<string, LayerRecord>; damaged: DamagedRecord[] } {
  const records = new Map<string, LayerRecord>();
  const damaged: DamagedRecord[] = [];
  let text: string;
  try {
    text = readRegularFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      const reason = `cannot be read: ${(error as Error).message}`;
      const e = new MetadataError(path, undefined, reason, { cause: error });
      damaged.push({ name: PACK, path, error: e, claimedDeviceId: undefined });
    }
    return { records, damaged };
  }
  const parsed = parsePack(text, path);
  const lineOf = new Map<string, number>();
  for (const { line, record } of parsed.entries) {
    const first = lineOf.get(record.id);
    if (first === undefined) {
      records.set(record.id, record);
      lineOf.set(record.id, line);
      continue;
    }
    const error = new MetadataError(
      path,
      entryField(line, record.id, 'id'),
      `layer ${JSON.stringify(record.id)} is entry ${first} already`,
    );
    damaged.push({ name: `${PACK}#${line}`, path, error, claimedDeviceId: record.deviceId });
  }
  for (const d of parsed.damaged)
    damaged.push({ name: `${PACK}#${d.line}`, path, error: d.error, claimedDeviceId: d.claimedDeviceId });
  damaged.sort((x, y) => Number(x.name.slice(PACK.length + 1)) - Number(y.name.slice(PACK.length + 1)));
  // The lost entries' thin ids are unknown: named by no readable id, it holds every leaked id back.
  if (parsed.miscounted) damaged.push({ name: PACK_COUNT, path, error: parsed.miscounted, claimedDeviceId: undefined });
  return { records, damaged };
}
