// <home>/metadata/layers.pack: every layer record as of the last compaction, one entry a line,
// `<crc32 of the JSON, 8 hex digits> <the record as JSON>`. Init reads it with one open, one
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

/** A whole pack's text. */
export function encodePack(records: readonly LayerRecord[]): string {
  return records.map((r) => `${encodeEntry(r)}\n`).join('');
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

/** The pack's entries by line, each validated; damaged ones reported, never thrown. */
export function parsePack(
  text: string,
  path: string,
): { entries: Array<{ line: number; record: LayerRecord }>; damaged: DamagedEntry[] } {
  const entries: Array<{ line: number; record: LayerRecord }> = [];
  const damaged: DamagedEntry[] = [];
  const lines = text.split('\n');
  // A pack is written whole (temp file, rename), so it ends with a newline: a last line
  // without one is a damaged entry like any other.
  if (lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
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
  return { entries, damaged };
}

/**
 * The pack at `path`: its valid entries by layer id, and what could not be used as
 * DamagedRecords named `layers.pack#<line>` (a second entry for one layer among them; the
 * whole pack when it cannot be read). A missing pack is an empty one.
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
  return { records, damaged };
}
