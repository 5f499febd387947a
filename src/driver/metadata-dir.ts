// <home>/metadata as a directory of small files: JSON read through one reused buffer, atomic
// replace (temp file, fsync, rename) with the directory's fsync on one fd held open, and which
// layer journal files (`<id>.layer.json`) exist. The store (metadata-store.ts) decides what the
// files say; this file only moves them. Files 0600 (metadata-files.ts), the directory 0700.
import {
  chmodSync,
  closeSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  type Stats,
} from 'node:fs';
import { join } from 'node:path';
import { MetadataError } from '../errors.js';
import { logger } from '../log.js';
import { readSmallFile, unlinkIfPresent, writeDurably } from './metadata-files.js';
import { LAYER_SUFFIX } from './layer-scan.js';
import { assertDirectory } from './safe-open.js';

export class MetadataDir {
  readonly path: string;
  #fd: number | undefined;
  /** readSmallFile's buffer: metadata files are a few hundred bytes. */
  readonly #scratch = Buffer.alloc(64 * 1024);
  /**
   * The journal files in the directory, as the last listing found them and this process changed
   * them since (it alone writes a home it holds the lock of); undefined: not known. An unlink of
   * a file that was never made is then skipped: an ENOENT costs more in Node than the syscall
   * (an Error built per call).
   */
  #journalFiles: Set<string> | undefined;

  constructor(path: string) {
    this.path = path;
    let made: unknown;
    try {
      mkdirSync(path, { recursive: true, mode: 0o700 });
    } catch (error) {
      made = error; // a file or a (dangling) symlink there: EEXIST, ENOENT
    }
    // Never followed: a symlink planted here would put every record (and the chmod below)
    // on a directory outside the home.
    let stat: Stats;
    try {
      stat = lstatSync(path);
    } catch {
      throw made ?? new Error(`${path} vanished`);
    }
    assertDirectory(path, stat, "the home's metadata directory");
    if (made) throw made;
    // One made earlier with a looser mode (or umask) is tightened; only then, so that a home on
    // a read-only filesystem still opens for the commands that only read (ls, status, check).
    if ((stat.mode & 0o777) !== 0o700) chmodSync(path, 0o700);
  }

  /** A file's JSON, undefined when there is no such file; a MetadataError naming it otherwise. */
  read<T>(name: string): T | undefined {
    const path = join(this.path, name);
    let text: string;
    try {
      text = readSmallFile(path, this.#scratch);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new MetadataError(path, undefined, `cannot be read: ${(error as Error).message}`, { cause: error });
    }
    try {
      return JSON.parse(text) as T;
    } catch (error) {
      throw new MetadataError(path, undefined, `is not valid JSON: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Atomic replace of `name` with `value` as JSON (or as text when `raw`), durable when it returns. */
  write(name: string, value: unknown, raw = false): void {
    this.replace(name, value, raw);
    this.sync();
  }

  /** write() without the directory sync: the caller syncs before relying on it. */
  replace(name: string, value: unknown, raw = false): void {
    const path = join(this.path, name);
    const temp = `${path}.${process.pid}.tmp`;
    writeDurably(temp, raw ? (value as string) : `${JSON.stringify(value, null, 2)}\n`);
    renameSync(temp, path);
    if (name.endsWith(LAYER_SUFFIX)) this.#journalFiles?.add(name);
  }

  /** The journal files' names, sorted; from here on the directory knows which exist. */
  listJournal(): string[] {
    const names = readdirSync(this.path)
      .filter((n) => n.endsWith(LAYER_SUFFIX))
      .sort();
    this.#journalFiles = new Set(names);
    return names;
  }

  /** A journal file unlinked (not synced): no syscall when the directory knows there is none. */
  unlinkJournalFile(name: string): void {
    if (this.#journalFiles && !this.#journalFiles.has(name)) return;
    unlinkIfPresent(join(this.path, name));
    this.#journalFiles?.delete(name);
  }

  /** A journal file moved out of the directory (renamed to `target`), not synced. */
  moveJournalFile(name: string, target: string): void {
    renameSync(join(this.path, name), target);
    this.#journalFiles?.delete(name);
  }

  /** Journal files removed (not synced), missing ones skipped. */
  removeJournalFiles(names: readonly string[]): void {
    for (const name of names) {
      rmSync(join(this.path, name), { force: true });
      this.#journalFiles?.delete(name);
    }
  }

  /** Removes temp files a crash left mid-write (the renamed file is either old or new, never half). */
  removeStaleTempFiles(): void {
    for (const entry of readdirSync(this.path, { withFileTypes: true })) {
      if (!entry.name.endsWith('.tmp')) continue;
      // The driver's temp files are files: a directory of that name is someone else's (and
      // rmSync would throw EISDIR, stopping every open of the home).
      if (entry.isDirectory())
        logger.warn(`metadata ${this.path}: ${entry.name} is a directory, not a temp file: left`);
      else rmSync(join(this.path, entry.name), { force: true });
    }
  }

  /** One fsync on a directory fd held while the store is open (not open + fsync + close each time). */
  sync(): void {
    this.#fd ??= openSync(this.path, 'r');
    fsyncSync(this.#fd);
  }

  /** Closes the directory's fd and forgets the listing (another process may change it next). */
  close(): void {
    this.#journalFiles = undefined;
    if (this.#fd === undefined) return;
    closeSync(this.#fd);
    this.#fd = undefined;
  }
}
