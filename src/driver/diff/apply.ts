// Applies one layer tar onto a directory that holds the lower layers' files (a snapshot of the
// parent): whiteouts and opaque markers remove lower entries, everything else is written with
// its owner, mode, times and xattrs. Every entry's path is checked first (entry-paths.ts) and
// each of its parent directories is lstat'ed, never followed: a symlink anywhere on the way
// refuses the entry. Memory stays bounded: file contents stream straight to disk; only paths
// (this layer's names, touched directories) are kept.
import {
  closeSync,
  linkSync,
  lchownSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeSync,
  chmodSync,
  type Stats,
} from 'node:fs';
import type { TimeLike } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type * as tar from 'tar-stream';
import { DevmapperError, LayerTarError, systemErrorOf } from '../../errors.js';
import { makeSpecialNode, setXattr, syncFilesystem } from '../../ioctl/file-attributes.js';
import type { Kernel } from '../../ioctl/kernel.js';
import { ancestorsOf, entryRole, joinPath, layerPath, parentOf } from './entry-paths.js';
import { decompressed, firstEvent, hashed, layerExtract, sha256, xattrsOf } from './tar-format.js';

export interface ApplyResult {
  /** Bytes of file content written. */
  bytes: bigint;
  /** sha256:… of the uncompressed tar (a layer's diff_id). */
  diffId: string;
  /** Directories this layer made opaque (layer paths), for diff() to write the markers again. */
  opaqueDirs: string[];
}

interface Times {
  atime: number;
  mtime: number;
}

const seconds = (date: Date | undefined): number => (date ? date.getTime() / 1000 : 0);

/** uid_t and gid_t: 32 bits, (uid_t)-1 meaning "no change" to chown(2). */
const MAX_ID = 0xffff_fffe;
/** Seconds either side of the epoch a time may lie (a JavaScript Date's range). */
const MAX_SECONDS = 8.64e12;

/**
 * A time in seconds as utimes takes it: Node turns a negative number into "now", so a time
 * before 1970 is passed as the numeric string Node hands on unchanged.
 */
const fsTime = (value: number): TimeLike => (value < 0 ? String(value) : value);

/** A numeric field of an entry (uid, gid, a time), refused when it is not one the kernel can take. */
function numberField(entry: string, field: string, raw: unknown, valid: (n: number) => boolean): number {
  const value = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
  if (!valid(value))
    throw new LayerTarError('ERR_DM_LAYER_TAR_INVALID', entry, `bad ${field} ${JSON.stringify(String(raw))}`);
  return value;
}

/** A device number's major (12 bits) or minor (20 bits), as the kernel's dev_t holds them. */
const isDevicePart =
  (max: number) =>
  (n: number): boolean =>
    Number.isInteger(n) && n >= 0 && n <= max;
const isId = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= MAX_ID;
const isTime = (n: number): boolean => Number.isFinite(n) && Math.abs(n) <= MAX_SECONDS;

function lstatOrNull(path: string): Stats | null {
  try {
    return lstatSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
}

class LayerApplier {
  readonly #root: string;
  readonly #kernel: Kernel;
  /** Directories known to be real directories (not symlinks) in this apply. */
  readonly #checkedDirs = new Set<string>();
  /** Paths this layer wrote: an opaque marker keeps them. */
  readonly #unpacked = new Set<string>();
  /** Directories whose entries changed, with their times before: restored unless the tar sets them. */
  readonly #touched = new Map<string, Times>();
  /** Directory entries of the tar, with their times: set once their content is complete. */
  readonly #dirTimes = new Map<string, Times>();
  readonly opaqueDirs: string[] = [];
  bytes = 0n;

  constructor(root: string, kernel: Kernel) {
    this.#root = root;
    this.#kernel = kernel;
  }

  async apply(header: tar.Header, body: Readable): Promise<void> {
    const name = header.name;
    const path = layerPath(name);
    const role = entryRole(path, name);
    if (role.role === 'ignored') return drain(body);
    if (role.role === 'whiteout') {
      await drain(body);
      if (this.#ensureParents(role.path, name, false)) this.#remove(role.path); // a missing parent: nothing to hide
      return;
    }
    if (role.role === 'opaque') {
      await drain(body);
      this.#ensureParents(joinPath(role.dir, 'x'), name);
      this.#makeOpaque(role.dir, name);
      return;
    }
    this.#ensureParents(path, name);
    const target = this.#abs(path);
    const existing = lstatOrNull(target);
    switch (header.type) {
      case 'directory':
        await drain(body);
        if (!existing?.isDirectory()) {
          if (existing) this.#remove(path);
          else this.#touch(parentOf(path));
          mkdirSync(target, { mode: 0o700 });
        }
        this.#checkedDirs.add(path);
        break;
      case 'file':
      case 'contiguous-file':
        this.#replace(path, existing);
        await this.#writeFile(target, body);
        break;
      case 'symlink': {
        await drain(body);
        const linkname = header.linkname ?? '';
        if (linkname === '' || linkname.includes('\0'))
          throw new LayerTarError(
            'ERR_DM_LAYER_TAR_INVALID',
            name,
            linkname === '' ? 'a symlink without a target' : 'the symlink target contains a NUL byte',
          );
        this.#replace(path, existing);
        symlinkSync(linkname, target);
        break;
      }
      case 'link':
        await drain(body);
        this.#link(path, header.linkname ?? '', existing, name);
        break;
      case 'character-device':
      case 'block-device':
      case 'fifo':
        await drain(body);
        this.#replace(path, existing);
        makeSpecialNode(
          this.#kernel,
          target,
          header.type,
          0o600,
          numberField(name, 'devmajor', header.devmajor ?? 0, isDevicePart(0xfff)),
          numberField(name, 'devminor', header.devminor ?? 0, isDevicePart(0xfffff)),
        );
        break;
      default:
        await drain(body);
        throw new LayerTarError(
          'ERR_DM_LAYER_TAR_INVALID',
          name,
          `unsupported entry type ${JSON.stringify(header.type)}`,
        );
    }
    this.#unpacked.add(path);
    this.#setAttributes(path, header);
  }

  /** Sets the tar's times on its directories (now that their content is complete) and puts back the others'. */
  finish(): void {
    for (const [path, times] of this.#touched) {
      if (this.#dirTimes.has(path)) continue;
      const target = this.#abs(path);
      if (lstatOrNull(target)?.isDirectory()) utimesSync(target, fsTime(times.atime), fsTime(times.mtime));
    }
    for (const [path, times] of this.#dirTimes) {
      const target = this.#abs(path);
      if (lstatOrNull(target)?.isDirectory()) utimesSync(target, fsTime(times.atime), fsTime(times.mtime));
    }
  }

  #abs(path: string): string {
    return path === '' ? this.#root : join(this.#root, path);
  }

  /**
   * Every directory above `path` is a real directory, never a symlink; a missing one is made
   * (0755) unless `create` is false, which then answers false.
   */
  #ensureParents(path: string, entry: string, create = true): boolean {
    for (const dir of ancestorsOf(path)) {
      if (this.#checkedDirs.has(dir)) continue;
      const target = this.#abs(dir);
      const st = lstatOrNull(target);
      if (st === null) {
        if (!create) return false;
        this.#touch(parentOf(dir));
        mkdirSync(target, { mode: 0o755 });
      } else if (st.isSymbolicLink()) {
        throw new LayerTarError('ERR_DM_LAYER_TAR_UNSAFE', entry, `its path goes through the symlink /${dir}`);
      } else if (!st.isDirectory()) {
        throw new LayerTarError('ERR_DM_LAYER_TAR_INVALID', entry, `/${dir} is not a directory`);
      }
      this.#checkedDirs.add(dir);
    }
    return true;
  }

  /** Records a directory's times before its first change in this apply. */
  #touch(dir: string): void {
    if (this.#touched.has(dir)) return;
    const st = lstatSync(this.#abs(dir));
    this.#touched.set(dir, { atime: st.atimeMs / 1000, mtime: st.mtimeMs / 1000 });
  }

  /** Removes `path` and all under it (a symlink itself, never what it points to). */
  #remove(path: string): void {
    if (path === '') return;
    const target = this.#abs(path);
    if (lstatOrNull(target) === null) return;
    this.#touch(parentOf(path));
    rmSync(target, { recursive: true, force: true });
    for (const dir of this.#checkedDirs) if (dir === path || dir.startsWith(`${path}/`)) this.#checkedDirs.delete(dir);
  }

  /** Clears the way for a non-directory entry at `path`. */
  #replace(path: string, existing: Stats | null): void {
    if (path === '') throw new LayerTarError('ERR_DM_LAYER_TAR_INVALID', '.', 'the root can only be a directory');
    if (existing) this.#remove(path);
    else this.#touch(parentOf(path));
  }

  #makeOpaque(dir: string, entry: string): void {
    const target = this.#abs(dir);
    const st = lstatOrNull(target);
    if (st === null) {
      if (dir !== '') this.#touch(parentOf(dir));
      mkdirSync(target, { mode: 0o755 });
    } else if (st.isSymbolicLink()) {
      throw new LayerTarError('ERR_DM_LAYER_TAR_UNSAFE', entry, `its directory /${dir} is a symlink`);
    } else if (!st.isDirectory()) {
      throw new LayerTarError('ERR_DM_LAYER_TAR_INVALID', entry, `/${dir} is not a directory`);
    }
    this.#checkedDirs.add(dir);
    for (const name of readdirSync(target)) {
      const child = joinPath(dir, name);
      if (!this.#unpacked.has(child)) this.#remove(child);
    }
    this.opaqueDirs.push(dir);
  }

  #link(path: string, linkname: string, existing: Stats | null, entry: string): void {
    const source = layerPath(linkname, 'hard link target', entry);
    if (source === '' || source === path)
      throw new LayerTarError('ERR_DM_LAYER_TAR_UNSAFE', entry, `bad hard link target ${JSON.stringify(linkname)}`);
    this.#ensureParents(source, entry);
    const st = lstatOrNull(this.#abs(source));
    if (st === null)
      throw new LayerTarError('ERR_DM_LAYER_TAR_INVALID', entry, `hard link target /${source} does not exist`);
    if (st.isDirectory())
      throw new LayerTarError('ERR_DM_LAYER_TAR_INVALID', entry, `hard link target /${source} is a directory`);
    this.#replace(path, existing);
    linkSync(this.#abs(source), this.#abs(path)); // link(2) does not follow a symlink target
  }

  async #writeFile(target: string, body: Readable): Promise<void> {
    const fd = openSync(target, 'wx', 0o600); // O_EXCL: never through something already there
    try {
      for await (const chunk of body) {
        const data = chunk as Buffer;
        for (let at = 0; at < data.length; ) at += writeSync(fd, data, at, data.length - at);
        this.bytes += BigInt(data.length);
      }
    } finally {
      closeSync(fd);
    }
  }

  #setAttributes(path: string, header: tar.Header): void {
    const target = this.#abs(path);
    const pax = (header as { pax?: Record<string, string> | null }).pax ?? {};
    const entry = header.name;
    const uid = numberField(entry, 'uid', pax.uid ?? header.uid ?? 0, isId);
    const gid = numberField(entry, 'gid', pax.gid ?? header.gid ?? 0, isId);
    const mtime = numberField(entry, 'mtime', pax.mtime ?? seconds(header.mtime), isTime);
    const atime = numberField(entry, 'atime', pax.atime ?? mtime, isTime);
    const mode = numberField(entry, 'mode', header.mode ?? 0o644, (n) => Number.isInteger(n) && n >= 0);
    const symlink = header.type === 'symlink';
    // A hard link to a symlink shares the symlink's inode: no chmod through it either.
    const linkToSymlink = header.type === 'link' && lstatSync(target).isSymbolicLink();
    lchownSync(target, uid, gid);
    if (!symlink && !linkToSymlink) chmodSync(target, mode & 0o7777); // after chown, which clears setuid/setgid
    for (const [name, value] of xattrsOf(header)) setXattr(this.#kernel, target, name, value); // after chown, which drops security.capability
    if (header.type === 'directory') this.#dirTimes.set(path, { atime, mtime });
    else if (symlink || linkToSymlink) lutimesSync(target, fsTime(atime), fsTime(mtime));
    else utimesSync(target, fsTime(atime), fsTime(mtime));
  }
}

async function drain(body: Readable): Promise<void> {
  for await (const _ of body) {
    /* skip content */
  }
}

/**
 * Applies the layer tar `input` (gzip, zstd or plain) onto `root`. Throws a LayerTarError for
 * an unsafe or malformed entry (what was written before it stays: the caller drops the layer).
 */
export async function applyLayerTar(
  root: string,
  input: AsyncIterable<Uint8Array>,
  options: { kernel: Kernel },
): Promise<ApplyResult> {
  const applier = new LayerApplier(root, options.kernel);
  const hash = sha256();
  const extract = layerExtract();
  let failure: unknown;
  const feeding = (async () => {
    try {
      for await (const chunk of hashed(decompressed(input), hash)) {
        if (failure !== undefined) return;
        if (!extract.write(chunk))
          await firstEvent([
            [extract, 'drain'],
            [extract, 'close'],
          ]);
      }
      extract.end(() => undefined);
    } catch (error) {
      failure ??= error;
      extract.destroy(error as Error);
    }
  })();
  try {
    for await (const entry of extract) {
      try {
        await applier.apply(entry.header, entry as unknown as Readable);
      } catch (error) {
        throw entryError(error, entry.header.name);
      }
    }
  } catch (error) {
    failure ??= error;
    extract.destroy(error as Error);
  }
  await feeding;
  if (failure !== undefined) throw asLayerError(failure);
  applier.finish();
  syncFilesystem(options.kernel, root); // a write the pool could not take fails here, not silently at unmount
  return { bytes: applier.bytes, diffId: `sha256:${hash.digest('hex')}`, opaqueDirs: applier.opaqueDirs };
}

/**
 * A failed system call while an entry was written, as a typed error naming the entry: a name
 * the filesystem cannot hold is the tar's fault (ERR_DM_LAYER_TAR_INVALID); anything else (ENOSPC,
 * EIO …) a DmSystemError with the call, the path and the entry.
 */
function entryError(error: unknown, entry: string): unknown {
  if (error instanceof DevmapperError) return error;
  const e = error as NodeJS.ErrnoException;
  if (e?.code === 'ENAMETOOLONG')
    return new LayerTarError('ERR_DM_LAYER_TAR_INVALID', entry, 'a name longer than the filesystem takes', {
      cause: error,
    });
  if (typeof e?.syscall !== 'string') return error;
  return systemErrorOf(error, { syscall: e.syscall, detail: `layer tar entry ${JSON.stringify(entry)}` });
}

/** tar-stream's own errors (bad header, truncated data) become ERR_DM_LAYER_TAR_INVALID. */
function asLayerError(error: unknown): unknown {
  if (
    error instanceof Error &&
    !(error as NodeJS.ErrnoException).code &&
    /tar|Unexpected end|header/i.test(error.message)
  ) {
    return new LayerTarError('ERR_DM_LAYER_TAR_INVALID', undefined, error.message, { cause: error });
  }
  return error;
}
