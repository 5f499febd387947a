// Opening the driver's own files under <home> without being led elsewhere: a symlink is never
// followed (O_NOFOLLOW), a FIFO never blocks the open (O_NONBLOCK), and only a regular file is
// used. A hand edit, a restored backup or someone with write access to the home could plant
// any of these; following one would truncate or read a file outside the home.
import { constants, existsSync, fstatSync, lstatSync, mkdirSync, openSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { DevmapperError } from '../errors.js';

/** What a non-regular file is, for the error that refuses it. */
export function fileKind(mode: number): string {
  switch (mode & constants.S_IFMT) {
    case constants.S_IFDIR:
      return 'a directory';
    case constants.S_IFIFO:
      return 'a FIFO';
    case constants.S_IFCHR:
      return 'a character device';
    case constants.S_IFBLK:
      return 'a block device';
    case constants.S_IFSOCK:
      return 'a socket';
    case constants.S_IFLNK:
      return 'a symlink';
    case constants.S_IFREG:
      return 'a file'; // where a directory belongs
    default:
      return 'not a regular file';
  }
}

/** ERR_DM_UNSAFE_PATH for `path`, which is `kind` ('a symlink' …) where `wanted` belongs. */
export function unsafePathError(path: string, kind: string, wanted: string): DevmapperError {
  return Object.assign(new DevmapperError('ERR_DM_UNSAFE_PATH', `${path} is ${kind}, not ${wanted}: not using it`), {
    path,
  });
}

/** ERR_DM_UNSAFE_PATH unless `stat`, an lstat of `path`, is a directory (never a symlink to one). */
export function assertDirectory(path: string, stat: Stats, wanted: string): void {
  if (!stat.isDirectory()) throw unsafePathError(path, fileKind(stat.mode), wanted);
}

/**
 * An fd of the regular file at `path`, opened with `flags` plus O_NOFOLLOW | O_NONBLOCK. A
 * symlink, directory or reader-less FIFO there fails the open and is `refuse(kind)`'s error;
 * other open errors (ENOENT, EACCES …) are thrown as they are. What opens but is not a regular
 * file (a FIFO with O_RDONLY, a device node) is for assertRegularFile to catch.
 */
export function openRegularFile(
  path: string,
  flags: number,
  mode: number | undefined,
  refuse: (kind: string) => Error,
): number {
  let fd: number;
  try {
    fd = openSync(path, flags | constants.O_NOFOLLOW | constants.O_NONBLOCK, mode);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw refuse('a symlink');
    if (code === 'EISDIR') throw refuse('a directory');
    if (code === 'ENXIO') throw refuse('a FIFO or socket'); // O_WRONLY | O_NONBLOCK on a FIFO without readers
    throw error;
  }
  return fd;
}

/** Throws `refuse(kind)` unless `fd` is a regular file (the caller still owns and closes `fd`). */
export function assertRegularFile(fd: number, refuse: (kind: string) => Error): void {
  const { mode } = fstatSync(fd);
  if ((mode & constants.S_IFMT) !== constants.S_IFREG) throw refuse(fileKind(mode));
}

/**
 * A fresh path for `name` in the home's quarantine directory `dir`, made (0700) if missing.
 * The directory must be a real one: a file or a symlink planted there would lose what is moved
 * in, or move it out of the home (ERR_DM_UNSAFE_PATH).
 */
export function newQuarantinePath(dir: string, name: string): string {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const stat = lstatSync(dir);
  if (!stat.isDirectory()) {
    throw unsafePathError(dir, fileKind(stat.mode), "the home's quarantine directory (remove it, then repair again)");
  }
  const stamp = Date.now();
  let path = join(dir, `${name}.${stamp}`);
  for (let n = 1; existsSync(path); n++) path = join(dir, `${name}.${stamp}.${n}`);
  return path;
}
