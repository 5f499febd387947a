// What the CLI checks about --home before the Driver touches it, so that an odd home gets an
// error naming the real cause and the way out instead of a raw errno from deep inside init:
// a path that is a file, a home on a read-only filesystem (or one this user may not write), and
// a home an interrupted `init` left half-made.
import { accessSync, constants, existsSync, lstatSync, readFileSync, type Stats } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { dirname, join } from 'node:path';
import { DevmapperError, errnoName } from '../errors.js';
import type { FfiBackendName } from '../ioctl/ffi/binding.js';

/** Where init keeps the options it was given while it runs; renamed to cli-options.json when it is done. */
export const PENDING_OPTIONS = 'cli-options.init.json';
export const RECORDED_OPTIONS = 'cli-options.json';

function kindOf(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isSymbolicLink()) return 'a symlink';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isSocket()) return 'a socket';
  if (st.isFIFO()) return 'a fifo';
  return 'not a directory';
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined; // ENOTDIR: a file on the way
    throw error;
  }
}

/** Why `dir` cannot be written to, or undefined when it can (EROFS: a read-only filesystem; EACCES/EPERM: permissions). */
function notWritable(dir: string): 'EROFS' | 'EACCES' | undefined {
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EROFS') return 'EROFS';
    if (code === 'EACCES' || code === 'EPERM') return 'EACCES';
    throw error;
  }
}

/** The error's code is the errno's name (ENOTDIR, EROFS, EACCES), as a failed system call's would be. */
function homeError(name: 'ENOTDIR' | 'EROFS' | 'EACCES', message: string): DevmapperError {
  return new DevmapperError(errnoName(osConstants.errno[name]), message);
}

/**
 * Checks `home` for a command. `write`: the command changes the home (init, create, mount …);
 * read-only commands (ls, status, check without --repair) work on a home they can only read.
 * `command` is shown in the messages.
 */
export function assertHome(home: string, options: { write: boolean; command: string }): void {
  const st = lstatOrUndefined(home);
  if (st !== undefined && !st.isDirectory()) {
    throw homeError(
      'ENOTDIR',
      `--home ${home} is ${kindOf(st)}, not a directory: give a directory, or a path that does not exist yet (init creates it)`,
    );
  }
  if (!options.write) return;
  // The directory itself, or for a home init is to create, the nearest part of the path that exists.
  let dir = home;
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  const above = lstatOrUndefined(dir);
  if (above !== undefined && !above.isDirectory() && dir !== home) {
    throw homeError('ENOTDIR', `--home ${home} cannot be created: ${dir} is ${kindOf(above)}, not a directory`);
  }
  const why = notWritable(dir);
  if (why === undefined) return;
  const where = dir === home ? `${home} is` : `${home} would be created in ${dir}, which is`;
  if (why === 'EROFS') {
    throw homeError(
      'EROFS',
      `${where} on a read-only filesystem: \`devmapper ${options.command}\` writes to the home ` +
        '(ls, status and check without --repair work on a read-only home); remount it read-write or choose another --home',
    );
  }
  throw homeError(
    'EACCES',
    `${where} not writable by this user: \`devmapper ${options.command}\` needs root (or write access to the home)`,
  );
}

/**
 * Why a home has no cli-options.json: undefined when nothing suggests an init ever ran there
 * (never initialised), else the explanation of the half-made home an interrupted init left.
 */
export function unfinishedInit(home: string): { pendingOptions: string | undefined; message: string } | undefined {
  const pending = join(home, PENDING_OPTIONS);
  const hasPending = existsSync(pending);
  if (!hasPending && !existsSync(join(home, 'metadata')) && !existsSync(join(home, 'devicemapper'))) return undefined;
  const how = hasPending
    ? `(the options it was given are in ${pending})`
    : '(it left no record of its options: give the same ones again)';
  return {
    pendingOptions: hasPending ? pending : undefined,
    message:
      `\`devmapper init\` on ${home} did not finish: it was interrupted, and its pool and loop devices may still be active ${how}. ` +
      `Run \`devmapper --home ${home} init\` with the same options to finish it${hasPending ? `, or \`devmapper --home ${home} cleanup\` to deactivate what it left before removing the home` : ''}`,
  };
}

/**
 * The FFI backend `init` recorded for `home` (its cli-options.json), for the commands that open
 * no Driver (`dm ...`); undefined when the home has none or no readable record (then the
 * default, DEVMAPPER_FFI or ffi-rs, applies). The name is checked where it is used (Kernel.for).
 */
export function recordedFfi(home: string): FfiBackendName | undefined {
  let recorded: unknown;
  try {
    recorded = JSON.parse(readFileSync(join(home, RECORDED_OPTIONS), 'utf8'));
  } catch {
    return undefined; // no home, or not initialised: commands that need one say so themselves
  }
  const ffi = (recorded as { ffi?: unknown } | null)?.ffi;
  return ffi === undefined ? undefined : (ffi as FfiBackendName);
}
