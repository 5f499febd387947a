// <home>/metadata/transactions.log: the crash protocol's one durable write per operation. Each
// line is `<crc32 of the JSON, 8 hex digits> <JSON>` (as in layers.pack), appended with one
// write(2) on an O_APPEND fd:
//
//   {"intent": <OpenTransaction>}                      before the pool changes; fdatasync'd
//   {"done": "<tid>", "state": …, "record"|"removed"}   after the pool committed; not synced
//   {"abandoned": "<tid>", "removed": "<layer>"}       the change undone; not synced
//   {"record": …} / {"removed": "<layer>"} / {"state": …}  outside a transaction; fdatasync'd
//
// A done or abandoned line needs no sync of its own: lost in a power cut, it leaves the intent
// open, and init settles that intent from the pool's transaction id as it always has (the
// record to write is in the intent). Any later synced line makes the earlier ones durable too
// (fdatasync flushes the whole file), so only the last line can be lost or torn. A last line
// without its newline is that torn write: never acted on (its intent's sync had not returned,
// so the pool was not changed) and cut off before the next append. Any other line that fails
// its checksum, JSON or fields is damage: a MetadataError naming the log, the line and field.
//
// MetadataStore overlays what the log says on the layer files and deviceset.json, and folds it
// into them (fold(): durable writes, then the log unlinked) at init, at close and when it grows
// long, so between processes the home looks as it did before the log existed.
import { closeSync, constants, fdatasyncSync, ftruncateSync, fstatSync, writeSync } from 'node:fs';
import { MetadataError } from '../errors.js';
import { checksumHolds, checksummedLine } from './layer-pack.js';
import { readRegularFile, unlinkIfPresent } from './metadata-files.js';
import {
  type DeviceSetState,
  type LayerRecord,
  type OpenTransaction,
  reasonOf,
  validateLogEntry,
} from './metadata-schema.js';
import { openRegularFile, unsafePathError } from './safe-open.js';

export const LOG = 'transactions.log';

/** One line's value. */
export type LogEntry =
  | { intent: OpenTransaction }
  | { done: string; state: DeviceSetState; record?: LayerRecord; removed?: string }
  | { abandoned: string; removed: string }
  | { record: LayerRecord }
  | { removed: string }
  | { state: DeviceSetState };

/** What the log's lines add up to. */
export interface LogReplay {
  /** Layer records by id as the log leaves them (null: removed). */
  records: Map<string, LayerRecord | null>;
  /** deviceset.json as the log leaves it (undefined: the log does not change it). */
  state: DeviceSetState | undefined;
  /** The last intent, when no done or abandoned line follows it. */
  open: OpenTransaction | undefined;
  /** Lines replayed (the torn tail not counted). */
  lines: number;
  /** Bytes up to the end of the last whole line: where the next append goes. */
  validLength: number;
}

const emptyReplay = (): LogReplay => ({
  records: new Map(),
  state: undefined,
  open: undefined,
  lines: 0,
  validLength: 0,
});

/** One line's entry, each field checked; a MetadataError names the line and field. */
function decodeLine(raw: string, path: string, line: number): LogEntry {
  const at = (field?: string) => `line ${line}${field === undefined ? '' : ` ${field}`}`;
  if (!checksumHolds(raw))
    throw new MetadataError(
      path,
      at(),
      `checksum ${JSON.stringify(raw.slice(0, 8))} does not match the line (an altered line)`,
    );
  let value: unknown;
  try {
    value = JSON.parse(raw.slice(9));
  } catch (error) {
    throw new MetadataError(path, at(), `is not valid JSON: ${(error as Error).message}`);
  }
  try {
    validateLogEntry(value, path);
  } catch (error) {
    if (!(error instanceof MetadataError)) throw error;
    throw new MetadataError(path, at(error.field), reasonOf(error), { cause: error });
  }
  return value as LogEntry;
}

/** The log's lines replayed in order (a missing log is an empty one). */
export function replayLog(path: string): LogReplay {
  let text: string;
  try {
    text = readRegularFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return emptyReplay();
    throw new MetadataError(path, undefined, `cannot be read: ${(error as Error).message}`, { cause: error });
  }
  const replay = emptyReplay();
  const end = text.lastIndexOf('\n') + 1; // past it: the torn tail of an append cut short
  replay.validLength = Buffer.byteLength(text.slice(0, end));
  let line = 0;
  for (let start = 0; start < end; ) {
    const stop = text.indexOf('\n', start);
    line++;
    applyEntry(replay, decodeLine(text.slice(start, stop), path, line));
    start = stop + 1;
  }
  return replay;
}

/** Folds one entry into the replay (also what an append does to the in-memory copy). */
export function applyEntry(replay: LogReplay, entry: LogEntry): void {
  replay.lines++;
  if ('intent' in entry) replay.open = entry.intent;
  else if ('done' in entry) {
    if (entry.record) replay.records.set(entry.record.id, entry.record);
    else if (entry.removed !== undefined) replay.records.set(entry.removed, null);
    replay.state = entry.state;
    replay.open = undefined;
  } else if ('abandoned' in entry) {
    replay.records.set(entry.removed, null);
    replay.open = undefined;
  } else if ('record' in entry) replay.records.set(entry.record.id, entry.record);
  else if ('removed' in entry) replay.records.set(entry.removed, null);
  else replay.state = entry.state;
}

/** The append side: one fd held open with O_APPEND while the store is open. */
export class LogWriter {
  readonly path: string;
  #fd: number | undefined;

  constructor(path: string) {
    this.path = path;
  }

  /** Whether the file is open (it was created or reopened by this process). */
  get isOpen(): boolean {
    return this.#fd !== undefined;
  }

  /**
   * Opens (or creates) the log for appending, cutting off a torn tail first. Returns whether the
   * file was created: its directory entry then needs a directory sync before it is relied on.
   */
  open(validLength: number): boolean {
    if (this.#fd !== undefined) return false;
    const flags = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT;
    const fd = openRegularFile(this.path, flags, 0o600, (kind) => unsafePathError(this.path, kind, 'a regular file'));
    const size = fstatSync(fd).size;
    if (size > validLength) {
      ftruncateSync(fd, validLength);
      fdatasyncSync(fd);
    }
    this.#fd = fd;
    return size === 0;
  }

  /** Appends one line with one write; `durable`: fdatasync before returning. */
  append(entry: LogEntry, durable: boolean): void {
    if (this.#fd === undefined) throw new Error('transaction log not open');
    writeSync(this.#fd, `${checksummedLine(entry)}\n`);
    if (durable) fdatasyncSync(this.#fd);
  }

  sync(): void {
    if (this.#fd !== undefined) fdatasyncSync(this.#fd);
  }

  /** Closes the fd and unlinks the log (after a fold made everything in it durable elsewhere). */
  remove(): void {
    this.close();
    unlinkIfPresent(this.path);
  }

  close(): void {
    if (this.#fd === undefined) return;
    closeSync(this.#fd);
    this.#fd = undefined;
  }
}
