// Small-file I/O for the metadata directory: reads through a reused buffer, and the durable
// write (fsync before close) that every atomic replace starts with. Neither follows a symlink
// nor blocks on a FIFO (safe-open.ts): a record is only ever a regular file of the home's.
import { closeSync, constants, fsyncSync, openSync, readFileSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { assertRegularFile, openRegularFile, unsafePathError } from './safe-open.js';

/** A metadata path that is not a regular file (readers wrap it in a MetadataError naming the file). */
const notRegular = (path: string) => (kind: string) => unsafePathError(path, kind, 'a regular file');

/**
 * A file's text through the caller's reused buffer (open, read, close): a quarter faster than
 * readFileSync (no fstat, no allocation), which counts when init reads many journal files.
 * A read that fails, comes back empty or fills the buffer first checks the file is regular (a
 * FIFO or a directory fails pread, a device node never ends), then a full buffer is read whole.
 */
export function readSmallFile(path: string, scratch: Buffer): string {
  const refuse = notRegular(path);
  const fd = openRegularFile(path, constants.O_RDONLY, undefined, refuse);
  try {
    let length: number;
    try {
      length = readSync(fd, scratch, 0, scratch.length, 0);
    } catch (error) {
      assertRegularFile(fd, refuse); // a FIFO fails pread with ESPIPE, a directory with EISDIR
      throw error;
    }
    if (length > 0 && length < scratch.length) return scratch.toString('utf8', 0, length);
    assertRegularFile(fd, refuse);
    return length === 0 ? '' : readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** A whole file's text, refusing what is not a regular file (a symlink, a FIFO, a device). */
export function readRegularFile(path: string): string {
  const refuse = notRegular(path);
  const fd = openRegularFile(path, constants.O_RDONLY, undefined, refuse);
  try {
    assertRegularFile(fd, refuse);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** A new file with `text`, fsynced before it is closed (mode 0600); never through a symlink. */
export function writeDurably(path: string, text: string): void {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC;
  const fd = openRegularFile(path, flags, 0o600, notRegular(path));
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync of a directory by path (open, fsync, close). */
export function fsyncPath(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Unlinks a file that may be gone already. One syscall where rmSync({ force }) makes three
 * (two lstats, then the unlink): step 4 of every create and remove unlinks one or two files.
 */
export function unlinkIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}
