// The driver's persistent state under <home>/metadata: the layer records, the set's own state
// (deviceset.json) and the crash protocol's transaction log (transactions.log).
//
// Layer records live in two places: layers.pack (layer-pack.ts), every record as of the last
// compaction, and one `<id>.layer.json` per layer changed since, the journal. A journal file
// overrides the layer's pack entry; a removed packed layer leaves a tombstone journal file
// (`{"id": …, "removed": true}`). Init compacts the journal into a new pack when it is long and
// the scan was clean, so init reads one pack plus a short journal instead of one file per layer
// (three syscalls each, ~60 µs apiece in UML). A home with only per-layer files (before the
// pack existed) is a pack-less journal: it loads as before and is compacted the same way.
//
// While a process works on the home, every change goes to transactions.log instead
// (transaction-log.ts: one appended line, one fdatasync where one is needed), and what the log
// says overrides the files; fold() writes it into the files and unlinks it, at init, at close and
// when it grows long. Those writes, like every other, are atomic (metadata-dir.ts). A
// transaction.json left by a version before the log is still read as the open transaction, and
// goes once settled.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { MetadataError } from '../errors.js';
import { logger } from '../log.js';
import { encodePack, encodePackHeader, PACK, PACK_COUNT, parsePack, readPack } from './layer-pack.js';
import { applyEntry, LOG, type LogEntry, LogWriter, type LogReplay, replayLog } from './transaction-log.js';
import { fsyncPath, readRegularFile, unlinkIfPresent, writeDurably } from './metadata-files.js';
import { MetadataDir } from './metadata-dir.js';
import { quarantineDirPath } from './home-layout.js';
import { quarantinedFiles, quarantinedThinIds } from './quarantine.js';
import { finishScan, isTombstone, LAYER_SUFFIX, type Scan, scanError } from './layer-scan.js';
import { newQuarantinePath } from './safe-open.js';
import {
  claimedThinId,
  type DamagedRecord,
  type DeviceSetState,
  type LayerRecord,
  type OpenTransaction,
  validateLayerRecord,
  validateState,
  validateTransaction,
} from './metadata-schema.js';

export * from './metadata-schema.js';

const STATE = 'deviceset.json';
const TRANSACTION = 'transaction.json';
/** Journal files at which init compacts them into the pack (bounds init's per-file reads). */
export const COMPACT_AT = 256;
/** Log lines at which the log is folded into the files (bounds its replay and its size). */
export const FOLD_AT = 256;
/** DamagedRecord.name of a pack entry: `layers.pack#<line>`. */
const PACK_ENTRY = /^layers\.pack#([1-9][0-9]*)$/;

export class MetadataStore {
  readonly dir: string;
  readonly #files: MetadataDir;
  /** The valid pack entries by layer id, as last read or written (undefined: not read yet). */
  #pack: Map<string, LayerRecord> | undefined;
  /** The last scan's journal file names and records, while nothing was written since (for compaction). */
  #lastScan: { journal: string[]; scan: Scan } | undefined;
  /** transactions.log replayed (undefined: not read yet), kept current by every append. */
  #log: LogReplay | undefined;
  readonly #logWriter: LogWriter;
  /** The open transaction came from a transaction.json (before the log): unlinked once settled. */
  #legacyIntent = false;

  constructor(dir: string) {
    this.dir = dir;
    this.#files = new MetadataDir(dir);
    this.#logWriter = new LogWriter(join(dir, LOG));
  }

  /** deviceset.json's path (the state as of the last fold; the log holds what changed since). */
  get statePath(): string {
    return join(this.dir, STATE);
  }

  readState(): DeviceSetState | undefined {
    const logged = this.#replay().state;
    if (logged) return logged;
    const value = this.#files.read<unknown>(STATE);
    return value === undefined ? undefined : validateState(value, this.statePath);
  }

  /** deviceset.json changed outside a transaction (one synced log line). */
  writeState(state: DeviceSetState): void {
    this.#append({ state }, true);
  }

  /** The intent no done or abandoned line has settled (or a transaction.json from before the log). */
  readTransaction(): OpenTransaction | undefined {
    const open = this.#replay().open;
    if (open) return open;
    const value = this.#files.read<unknown>(TRANSACTION);
    if (value === undefined) return undefined;
    this.#legacyIntent = true;
    return validateTransaction(value, join(this.dir, TRANSACTION));
  }

  /** The file readTransaction() found the open intent in: transactions.log, or a transaction.json from before it. */
  get openTransactionFile(): string {
    return join(this.dir, this.#legacyIntent ? TRANSACTION : LOG);
  }

  /** Step 1 of the crash protocol: the intent, durable before the pool changes (one write, one fdatasync). */
  openTransaction(transaction: OpenTransaction): void {
    this.#append({ intent: transaction }, true);
  }

  /**
   * The open transaction undone (the pool refused it, or recovery rolled it back): its layer has
   * no record. Not synced: lost, it leaves the intent, which init rolls back again.
   */
  abandonTransaction(transaction: OpenTransaction): void {
    this.#append({ abandoned: transaction.transactionId, removed: transaction.layerId }, false);
    this.#settleLegacyIntent();
  }

  /** One layer's record: the log's, else its journal file, else its pack entry. */
  readLayer(id: string): LayerRecord | undefined {
    const logged = this.#replay().records;
    if (logged.has(id)) return logged.get(id) ?? undefined;
    const value = this.#files.read<unknown>(id + LAYER_SUFFIX);
    if (value === undefined) return this.#packed().get(id);
    if (isTombstone(value, id)) return undefined;
    return validateLayerRecord(value, join(this.dir, id + LAYER_SUFFIX), id);
  }

  /** A layer's record written outside a transaction (meta, activated, deferredDelete): one synced log line. */
  writeLayer(record: LayerRecord): void {
    this.#append({ record }, true);
  }

  /** A layer's record removed outside a transaction: one synced log line (fold() unlinks or tombstones). */
  removeLayer(id: string): void {
    this.#append({ removed: id }, true);
  }

  /**
   * Step 4 of the crash protocol (transaction.ts): the done line, carrying the layer's record
   * (or its removal) and the new state, with no sync of its own. Lost in a power cut, it leaves
   * the intent open, and init finishes it again from the intent: same record, same state.
   */
  finishTransaction(change: { write: LayerRecord } | { remove: string } | undefined, state: DeviceSetState): void {
    const done = this.#replay().open?.transactionId ?? state.transactionId;
    const entry: LogEntry =
      change === undefined
        ? { done, state }
        : 'write' in change
          ? { done, state, record: change.write }
          : { done, state, removed: change.remove };
    this.#append(entry, false);
    this.#settleLegacyIntent();
  }

  /**
   * Writes what the log says into the layer files and deviceset.json (each atomic, one directory
   * sync for all), then unlinks the log. Not while an intent is open (recovery settles it first).
   * A crash before the unlink leaves a log that repeats the files: the same records on replay.
   * Returns whether there was anything to fold.
   */
  fold(): boolean {
    const log = this.#replay();
    if (log.lines === 0 || log.open) return false;
    const packed = this.#packed();
    for (const [id, record] of log.records) {
      if (record) this.#files.replace(id + LAYER_SUFFIX, record);
      else if (packed.has(id)) this.#files.replace(id + LAYER_SUFFIX, { id, removed: true });
      // A layer made and removed within one log never had a file: no unlink for it.
      else this.#files.unlinkJournalFile(id + LAYER_SUFFIX);
    }
    if (log.state) this.#files.replace(STATE, log.state);
    this.#files.sync();
    this.#logWriter.remove();
    this.#log = undefined;
    this.#lastScan = undefined;
    return true;
  }

  /** Whether any layer record exists (pack, journal or log): the home has had a pool, so it is not new. */
  holdsRecords(): boolean {
    return existsSync(join(this.dir, PACK)) || this.#files.listJournal().length > 0 || this.#replay().records.size > 0;
  }

  /**
   * Every layer record, each validated. A file or pack entry that cannot be read, parsed or
   * validated is a MetadataError naming it (and the entry) and the field; so are two records
   * naming one thin id.
   */
  readAllLayers(): LayerRecord[] {
    const scan = this.scanLayers();
    const error = scanError(scan, this.dir, this.quarantineDir);
    if (error) throw error;
    return scan.records;
  }

  /**
   * Every layer record, without throwing: the valid ones, the files and pack entries that
   * could not be used (with the thin id they name, when they name one), and thin ids claimed
   * more than once. A damaged journal file hides the layer's pack entry (which may be older).
   */
  scanLayers(): Scan {
    const damaged: DamagedRecord[] = [];
    const byId = this.#readPack(damaged);
    const journal: string[] = [];
    for (const name of this.#files.listJournal()) {
      const path = join(this.dir, name);
      const id = name.slice(0, -LAYER_SUFFIX.length);
      let value: unknown;
      try {
        value = this.#files.read<unknown>(name);
        if (value === undefined) continue; // gone meanwhile
        journal.push(name);
        if (isTombstone(value, id)) byId.delete(id);
        else byId.set(id, validateLayerRecord(value, path, id));
      } catch (error) {
        if (!(error instanceof MetadataError)) throw error;
        let claimed = claimedThinId(value);
        // The pack's (older) record of the layer names its thin id too: unsure unless they agree.
        const packed = byId.get(id);
        if (packed && packed.deviceId !== claimed) claimed = undefined;
        byId.delete(id);
        damaged.push({ name, path, error, claimedDeviceId: claimed });
      }
    }
    const scan = finishScan(byId, damaged, this.#replay().records);
    this.#lastScan = { journal, scan };
    return scan;
  }

  /**
   * Writes every record into a new pack and drops the journal, when the journal has at least
   * `threshold` files and the last scan (nothing written since) was clean. The new pack is
   * durable (renamed, directory fsynced) before any journal file goes, so a crash in between
   * leaves journal files that repeat their pack entries, or tombstones of layers the pack no
   * longer has: the same records either way. Returns whether it compacted.
   */
  compactIfLong(threshold = COMPACT_AT): boolean {
    const last = this.#lastScan;
    if (!last || last.journal.length < threshold || this.#replay().lines > 0) return false;
    const { scan, journal } = last;
    if (scan.damaged.length > 0 || scan.conflicts.length > 0) return false;
    // Only a speed-up: a home that cannot be written (read-only filesystem, full disk) still opens.
    try {
      this.#files.write(PACK, encodePack(scan.records), true);
    } catch (error) {
      logger.warn(`metadata ${this.dir}: not compacted into ${PACK}: ${(error as Error).message}`);
      return false;
    }
    this.#pack = new Map(scan.records.map((r) => [r.id, r]));
    try {
      this.#files.removeJournalFiles(journal);
      this.#files.sync();
    } catch (error) {
      logger.warn(`metadata ${this.dir}: journal files left after compaction: ${(error as Error).message}`);
    }
    this.#lastScan = undefined;
    return true;
  }

  /** <home>/quarantine: where check --repair moves records it cannot use (never deleted). */
  get quarantineDir(): string {
    return quarantineDirPath(dirname(this.dir));
  }

  /**
   * Sets a damaged or unwanted record aside in the quarantine directory (a unique name:
   * `<name>.<ms>`), durably. `name` is a DamagedRecord's: a journal file (moved; a pack entry
   * of the same layer is copied there too and hidden by a tombstone), or `layers.pack#<line>`
   * (the entry's text copied there, its line blanked). A layer file name with no file is a
   * packed layer: its entry is copied there and hidden by a tombstone. Returns the new path.
   */
  quarantine(name: string): string {
    this.fold(); // the files are what is quarantined: the log's changes go into them first
    if (name === PACK_COUNT) return this.#quarantinePackCount();
    const entry = PACK_ENTRY.exec(name);
    if (entry) return this.#quarantinePackEntry(Number(entry[1]));
    const id = name.slice(0, -LAYER_SUFFIX.length);
    const packed = name.endsWith(LAYER_SUFFIX) ? this.#packed().get(id) : undefined;
    let moved: string | undefined;
    if (!packed || existsSync(join(this.dir, name))) {
      moved = this.#quarantinePath(name);
      this.#files.moveJournalFile(name, moved);
    }
    const copy = packed ? this.#quarantinePath(name) : undefined;
    if (packed && copy) writeDurably(copy, `${JSON.stringify(packed, null, 2)}\n`);
    fsyncPath(this.quarantineDir);
    if (packed) this.#files.write(name, { id, removed: true });
    else this.#files.sync();
    this.#lastScan = undefined;
    return moved ?? copy!;
  }

  /** Files in the quarantine directory (records a repair set aside, kept until someone looks at them). */
  quarantined(): string[] {
    return quarantinedFiles(this.quarantineDir);
  }

  /** The thin ids quarantined layer records name (quarantine.ts). */
  quarantinedThinIds(): Array<number | undefined> {
    return quarantinedThinIds(this.quarantineDir);
  }

  /** Removes temp files a crash left mid-write (the renamed file is either old or new, never half). */
  removeStaleTempFiles(): void {
    this.#files.removeStaleTempFiles();
  }

  /** The pack's valid entries by id (damaged ones pushed onto `damaged`); a missing pack is empty. */
  #readPack(damaged: DamagedRecord[]): Map<string, LayerRecord> {
    const pack = readPack(join(this.dir, PACK));
    damaged.push(...pack.damaged);
    this.#pack = new Map(pack.records);
    return pack.records;
  }

  #packed(): Map<string, LayerRecord> {
    return this.#pack ?? this.#readPack([]);
  }

  /** The entry's text into the quarantine, then the pack rewritten with its line blank. */
  #quarantinePackEntry(line: number): string {
    const path = join(this.dir, PACK);
    const lines = readRegularFile(path).split('\n');
    const raw = lines[line - 1];
    if (raw === undefined || raw === '')
      throw new MetadataError(path, `entry ${line}`, 'is not in the pack (quarantined already?)');
    const damaged = parsePack(`${raw}\n`, path).damaged[0];
    const target = this.#quarantinePath(`${PACK}.entry-${line}${LAYER_SUFFIX}`);
    writeDurably(target, `${damaged ? damaged.quarantineText : raw.slice(9)}\n`);
    fsyncPath(this.quarantineDir);
    lines[line - 1] = '';
    this.#files.write(PACK, lines.join('\n'), true);
    this.#pack = undefined;
    this.#lastScan = undefined;
    return target;
  }

  /**
   * A pack whose header's count does not hold: a copy of it as it is into the quarantine (where,
   * naming no readable thin id, it holds every leaked id back until someone looks), then its
   * header rewritten to count the lines it has, the entries kept as they are.
   */
  #quarantinePackCount(): string {
    const path = join(this.dir, PACK);
    const text = readRegularFile(path);
    const target = this.#quarantinePath(PACK);
    writeDurably(target, text);
    fsyncPath(this.quarantineDir);
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    lines[0] = encodePackHeader(lines.length - 1);
    this.#files.write(PACK, `${lines.join('\n')}\n`, true);
    this.#pack = undefined;
    this.#lastScan = undefined;
    return target;
  }

  /** A new name in the quarantine directory (made if missing) for `name`. */
  #quarantinePath(name: string): string {
    return newQuarantinePath(this.quarantineDir, name);
  }

  /** transactions.log as replayed, read on first use. */
  #replay(): LogReplay {
    this.#log ??= replayLog(join(this.dir, LOG));
    return this.#log;
  }

  /** One line appended to the log (created with a directory sync the first time), folded when long. */
  #append(entry: LogEntry, durable: boolean): void {
    const log = this.#replay();
    if (this.#logWriter.open(log.validLength)) this.#files.sync();
    this.#logWriter.append(entry, durable);
    applyEntry(log, entry);
    this.#lastScan = undefined;
    if (log.lines >= FOLD_AT && !log.open) this.fold();
  }

  /** A settled transaction.json (from before the log) goes once the log line that settles it is durable. */
  #settleLegacyIntent(): void {
    if (!this.#legacyIntent) return;
    this.#logWriter.sync();
    unlinkIfPresent(join(this.dir, TRANSACTION));
    this.#files.sync();
    this.#legacyIntent = false;
  }

  /**
   * Folds what this process logged into the files (a log it only read, as check does, stays),
   * then closes the log's and the directory's fds and forgets what it read (another process may
   * change the home next); a later use reads and opens again.
   */
  close(): void {
    if (this.#logWriter.isOpen) {
      try {
        this.fold();
      } catch (error) {
        logger.warn(`metadata ${this.dir}: ${LOG} not folded into the files: ${(error as Error).message}`);
      }
      this.#logWriter.close();
    }
    this.#log = undefined;
    this.#pack = undefined;
    this.#lastScan = undefined;
    this.#files.close();
  }
}
