// The driver's persistent state under <home>/metadata: one JSON file per layer, the set's own
// state (deviceset.json), and the open transaction (transaction.json) of the crash protocol.
// Every write is atomic: temp file, fsync, rename, fsync of the directory. Files 0600, dirs 0700.
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { DevmapperError } from '../errors.js';

/** One layer's device. */
export interface LayerRecord {
  id: string;
  parent: string | null;
  /** The thin id in the pool. */
  deviceId: number;
  /** Virtual size in bytes (decimal string: JSON has no bigint). */
  size: string;
  /** The pool transaction id that created it. */
  transactionId: string;
  /** Removal was asked while the device was busy; the deletion is retried later. */
  deferredDelete?: boolean;
  /**
   * Kept active for a user outside the driver (an engine that mounts the device itself):
   * init leaves its dm device in place instead of removing it as a leftover.
   */
  activated?: boolean;
  /** What the layer's creator attached to it (an engine adapter's own fields), stored as given. */
  meta?: Record<string, unknown>;
}

/** The set's own state. */
export interface DeviceSetState {
  formatVersion: 1;
  /** The next thin id to try. */
  nextDeviceId: number;
  /** The pool's transaction id as of the last committed change. */
  transactionId: string;
  base?: { deviceId: number; size: string; filesystem: string; filesystemUuid: string };
}

/** The intent written before the pool is changed (moby's "open transaction"). */
export interface OpenTransaction {
  /** The pool transaction id this change commits with set_transaction_id. */
  transactionId: string;
  op: 'create' | 'delete';
  layerId: string;
  deviceId: number;
  /** For create: the layer record to write once committed. */
  record?: LayerRecord;
}

export const BASE_LAYER = '.base';
const STATE = 'deviceset.json';
const TRANSACTION = 'transaction.json';
const LAYER_SUFFIX = '.layer.json';

/** Reused by readSmallFile: metadata files are a few hundred bytes. */
const scratch = Buffer.alloc(64 * 1024);

/**
 * A file's text through one reused buffer (open, read, close): a quarter faster than
 * readFileSync (no fstat, no allocation), which counts when init reads 10,000 layer files.
 */
function readSmallFile(path: string): string {
  const fd = openSync(path, 'r');
  let length: number;
  try {
    length = readSync(fd, scratch, 0, scratch.length, 0);
  } finally {
    closeSync(fd);
  }
  return length < scratch.length ? scratch.toString('utf8', 0, length) : readFileSync(path, 'utf8');
}

export class MetadataStore {
  readonly dir: string;
  #dirFd: number | undefined;

  constructor(dir: string) {
    this.dir = dir;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700); // one made earlier with a looser mode (or umask) is tightened
  }

  readState(): DeviceSetState | undefined {
    return this.#read<DeviceSetState>(STATE);
  }

  writeState(state: DeviceSetState): void {
    this.#write(STATE, state);
  }

  readTransaction(): OpenTransaction | undefined {
    return this.#read<OpenTransaction>(TRANSACTION);
  }

  openTransaction(transaction: OpenTransaction): void {
    this.#write(TRANSACTION, transaction);
  }

  closeTransaction(): void {
    this.#remove(TRANSACTION);
  }

  readLayer(id: string): LayerRecord | undefined {
    return this.#read<LayerRecord>(id + LAYER_SUFFIX);
  }

  writeLayer(record: LayerRecord): void {
    this.#write(record.id + LAYER_SUFFIX, record);
  }

  removeLayer(id: string): void {
    this.#remove(id + LAYER_SUFFIX);
  }

  /** Every layer record. A file that cannot be read or parsed is an error naming it. */
  readAllLayers(): LayerRecord[] {
    return readdirSync(this.dir)
      .filter((name) => name.endsWith(LAYER_SUFFIX))
      .map((name) => this.#read<LayerRecord>(name)!)
      .filter((record) => record !== undefined);
  }

  /** Removes temp files a crash left mid-write (the renamed file is either old or new, never half). */
  removeStaleTempFiles(): void {
    for (const name of readdirSync(this.dir)) if (name.endsWith('.tmp')) rmSync(join(this.dir, name), { force: true });
  }

  #read<T>(name: string): T | undefined {
    const path = join(this.dir, name);
    let text: string;
    try {
      text = readSmallFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new DevmapperError('ERR_DM_METADATA', `cannot read metadata file ${path}: ${(error as Error).message}`, { cause: error });
    }
    try {
      return JSON.parse(text) as T;
    } catch (error) {
      throw new DevmapperError('ERR_DM_METADATA', `corrupt metadata file ${path}: ${(error as Error).message}`, { cause: error });
    }
  }

  #write(name: string, value: unknown): void {
    const path = join(this.dir, name);
    const temp = `${path}.${process.pid}.tmp`;
    const fd = openSync(temp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(value, null, 2) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
    this.#syncDir();
  }

  #remove(name: string): void {
    rmSync(join(this.dir, name), { force: true });
    this.#syncDir();
  }

  /** One fsync on a directory fd held while the store is open (not open + fsync + close each time). */
  #syncDir(): void {
    this.#dirFd ??= openSync(this.dir, 'r');
    fsyncSync(this.#dirFd);
  }

  /** Closes the directory fd; a later write opens it again. */
  close(): void {
    if (this.#dirFd === undefined) return;
    closeSync(this.#dirFd);
    this.#dirFd = undefined;
  }
}
