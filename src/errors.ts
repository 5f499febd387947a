// Typed errors. Every failure the library reports is one of these, each with a string `code`
// (better-sqlite3 / Node style) so callers switch on codes, never on message text.
import { constants as osConstants } from 'node:os';
import { getSystemErrorName } from 'node:util';

/**
 * Every `code` a devmapper error can carry; docs/errors.md says when each is thrown. A failed
 * system call carries the errno's name instead ('EBUSY', 'ENXIO' ...: an `ErrnoCode`).
 */
export type LibraryErrorCode =
  | 'ERR_DM_BASE_MISMATCH'
  | 'ERR_DM_CLOSED'
  | 'ERR_DM_HOME_LOCKED'
  | 'ERR_DM_IMAGE_DIGEST'
  | 'ERR_DM_IMAGE_INVALID'
  | 'ERR_DM_INVALID_ARGUMENT'
  | 'ERR_DM_LAYER_EXISTS'
  | 'ERR_DM_LAYER_TAR_INVALID'
  | 'ERR_DM_LAYER_TAR_UNSAFE'
  | 'ERR_DM_METADATA'
  | 'ERR_DM_METADATA_FULL'
  | 'ERR_DM_NOT_A_POOL'
  | 'ERR_DM_NOT_A_THIN_DEVICE'
  | 'ERR_DM_NOT_INITIALISED'
  | 'ERR_DM_NO_SPACE'
  | 'ERR_DM_NO_THIN_ID'
  | 'ERR_DM_PARSE'
  | 'ERR_DM_POOL_MISMATCH'
  | 'ERR_DM_POOL_MODE'
  | 'ERR_DM_THIN_ID_MISSING'
  | 'ERR_DM_TOOL_FAILED'
  | 'ERR_DM_TOOL_MISSING'
  | 'ERR_DM_TRANSACTION_MISMATCH'
  | 'ERR_DM_UNAVAILABLE'
  | 'ERR_DM_UNKNOWN_IMAGE'
  | 'ERR_DM_UNKNOWN_LAYER'
  | 'ERR_DM_UNKNOWN_PARENT'
  | 'ERR_DM_UNSAFE_PATH'
  | 'ERR_DM_USAGE'
  | `ERR_SNAPSHOT_${'NOT_FOUND' | 'ALREADY_EXISTS' | 'FAILED_PRECONDITION' | 'INVALID_ARGUMENT' | 'RESOURCE_EXHAUSTED' | 'UNIMPLEMENTED' | 'INTERNAL'}`;

/**
 * An errno's symbolic name as Node spells it ('EBUSY'), or `ERRNO_<n>` for one Node does not
 * know. Branded: only errnoName() makes one, so a misspelt library code cannot pass for it.
 */
export type ErrnoCode = string & { readonly __errnoCode: true };

export type DevmapperErrorCode = LibraryErrorCode | ErrnoCode;

/** Base class: every error thrown by devmapper has a stable string `code`. */
export class DevmapperError extends Error {
  /** One of DevmapperErrorCode (typed string so callers compare it with any string). */
  readonly code: string;
  constructor(code: DevmapperErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A failed system call, shaped like Node's `SystemError`: `code` ('EBUSY'), `errno` (positive,
 * as the kernel returned it), `syscall` ('ioctl', 'open', 'mount' ...), plus what devmapper
 * was doing: the dm `operation` (e.g. 'DM_DEV_REMOVE') and the `device` name or path. A
 * failed ioctl (dm, loop or block request) is the subclass IoctlError; open, mount, umount2,
 * mknod, flock, poll, stat and the xattr calls are plain DmSystemErrors.
 */
export class DmSystemError extends DevmapperError {
  readonly errno: number;
  readonly syscall: string;
  readonly operation: string | undefined;
  readonly device: string | undefined;
  /** Extra context, e.g. the thin-pool message text that the kernel refused. */
  readonly detail: string | undefined;

  constructor(args: { errno: number; syscall: string; operation?: string; device?: string; detail?: string }) {
    const code = errnoName(args.errno);
    const what = [args.syscall, args.operation, args.device && `'${args.device}'`].filter(Boolean).join(' ');
    const detail = args.detail ? ` (${args.detail})` : '';
    super(code, `${what} failed: ${code} (errno ${args.errno})${detail}`);
    this.errno = args.errno;
    this.syscall = args.syscall;
    this.operation = args.operation;
    this.device = args.device;
    this.detail = args.detail;
  }
}

/**
 * A failed Node fs call (an ErrnoException: numeric errno, syscall, path) as a DmSystemError
 * naming `device` (default: the path the call failed on); any other error is returned as it is.
 */
export function systemErrorOf(error: unknown, context: { syscall: string; device?: string; detail?: string }): unknown {
  const e = error as NodeJS.ErrnoException | undefined;
  if (error instanceof DevmapperError || typeof e?.errno !== 'number') return error;
  return Object.assign(
    new DmSystemError({
      errno: Math.abs(e.errno),
      syscall: e.syscall ?? context.syscall,
      device: context.device ?? e.path,
      detail: context.detail,
    }),
    { cause: error },
  );
}

/** A failed ioctl(2): `syscall` is 'ioctl' and `operation` names the request ('DM_DEV_REMOVE', 'LOOP_CONFIGURE'). */
export class IoctlError extends DmSystemError {
  constructor(args: { errno: number; operation: string; device?: string; detail?: string }) {
    super({ ...args, syscall: 'ioctl' });
  }
}

/**
 * remove of a layer that is mounted (get() without its put()), refused before the dm remove
 * that would fail: the kernel's EBUSY (errno from Node's table), `operation` 'remove'.
 */
export class LayerBusyError extends DmSystemError {
  readonly layer: string;
  readonly users: number;
  constructor(args: { layer: string; users: number; device: string }) {
    super({
      errno: osConstants.errno.EBUSY,
      syscall: 'ioctl',
      operation: 'remove',
      device: args.device,
      detail: `layer ${args.layer} is mounted (${args.users} users): put() it first`,
    });
    this.layer = args.layer;
    this.users = args.users;
  }
}

/**
 * The thin pool is in a mode that refuses the operation: `out_of_data_space`, `ro` (read-only,
 * also after a metadata error), `fail` (the kernel gave up on its metadata), `error` (its status
 * could not be read), or `needsCheck` set (read-only until the metadata is repaired offline).
 * `code` is 'ERR_DM_POOL_MODE'; `mode` and `needsCheck` say which.
 */
export class PoolModeError extends DevmapperError {
  readonly pool: string;
  readonly mode: string;
  readonly needsCheck: boolean;
  constructor(args: { pool: string; mode: string; needsCheck: boolean; operation: string; cause?: unknown }) {
    const state = `${args.mode}${args.needsCheck ? ' and needs_check' : ''}`;
    super(
      'ERR_DM_POOL_MODE',
      `${args.operation}: pool ${args.pool} is ${state}`,
      args.cause === undefined ? undefined : { cause: args.cause },
    );
    this.pool = args.pool;
    this.mode = args.mode;
    this.needsCheck = args.needsCheck;
  }
}

/**
 * The pool's metadata device is full: the kernel switched the pool to read-only (its status
 * says `ro`, every metadata block used, no `needs_check`). `code` is 'ERR_DM_METADATA_FULL';
 * `metadataDevice` names the device (the loop metadata file and its loop device, or
 * `metadataDevice`). Way out: `growPool({ metadataSize })` (loop files), or grow the metadata
 * device and call `growPool()`; the pool then goes back to rw by itself.
 */
export class MetadataSpaceError extends PoolModeError {
  readonly metadataDevice: string;
  constructor(args: { pool: string; metadataDevice: string; operation: string; remedy: string; cause?: unknown }) {
    super({ pool: args.pool, mode: 'ro', needsCheck: false, operation: args.operation, cause: args.cause });
    (this as { code: string }).code = 'ERR_DM_METADATA_FULL';
    this.metadataDevice = args.metadataDevice;
    this.message = `${args.operation}: pool ${args.pool} is read-only because its metadata device ${args.metadataDevice} is full: ${args.remedy}`;
  }
}

/** Bad input, caught before anything is touched. `argument` names what was wrong. */
export class InvalidArgumentError extends DevmapperError {
  readonly argument: string;
  constructor(argument: string, message: string) {
    super('ERR_DM_INVALID_ARGUMENT', `${argument}: ${message}`);
    this.argument = argument;
  }
}

/**
 * A layer tar that cannot be applied. `code` 'ERR_DM_LAYER_TAR_UNSAFE': an entry would land
 * outside the layer (`..`, an absolute path, a path or hard link through a symlink, a whiteout
 * naming `..`); 'ERR_DM_LAYER_TAR_INVALID': the stream is not a tar (or a truncated or corrupt
 * gzip/zstd one). `entry` names the tar entry, when there is one.
 */
export class LayerTarError extends DevmapperError {
  readonly entry: string | undefined;
  constructor(
    code: 'ERR_DM_LAYER_TAR_UNSAFE' | 'ERR_DM_LAYER_TAR_INVALID',
    entry: string | undefined,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(
      code,
      entry === undefined ? `layer tar: ${reason}` : `layer tar entry ${JSON.stringify(entry)}: ${reason}`,
      options,
    );
    this.entry = entry;
  }
}

/** Kernel output (status line, ioctl payload) that does not match the documented grammar. */
export class ParseError extends DevmapperError {
  readonly input: string;
  constructor(what: string, input: string, reason: string) {
    super('ERR_DM_PARSE', `cannot parse ${what} ${JSON.stringify(input)}: ${reason}`);
    this.input = input;
  }
}

/** Symbolic name for a positive errno ('EBUSY'), from Node's own table; never from text. */
export function errnoName(errno: number): ErrnoCode {
  try {
    return getSystemErrorName(-Math.abs(errno)) as ErrnoCode;
  } catch {
    return `ERRNO_${errno}` as ErrnoCode;
  }
}

/**
 * A file of the driver's own metadata (`<home>/metadata/*.json`, `<home>/cli-options.json`)
 * that cannot be read, is not JSON, or does not hold what it must: `file` is its path and
 * `field` the offending field (undefined when the whole file is unreadable). `code` is
 * 'ERR_DM_METADATA'. `devmapper check --repair` moves unreadable layer records to
 * `<home>/quarantine/` (it never deletes them).
 */
export class MetadataError extends DevmapperError {
  readonly file: string;
  readonly field: string | undefined;
  constructor(file: string, field: string | undefined, reason: string, options?: { cause?: unknown }) {
    super(
      'ERR_DM_METADATA',
      `metadata file ${file}${field === undefined ? '' : `, field ${JSON.stringify(field)}`}: ${reason}`,
      options,
    );
    this.file = file;
    this.field = field;
  }
}
