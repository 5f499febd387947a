// Typed errors. Every failure the library reports is one of these, each with a string `code`
// (better-sqlite3 / Node style) so callers switch on codes, never on message text.
import { getSystemErrorName } from 'node:util';

/** Base class: every error thrown by devmapper has a stable string `code`. */
export class DevmapperError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A failed system call, shaped like Node's `SystemError`: `code` ('EBUSY'), `errno` (positive,
 * as the kernel returned it), `syscall` ('ioctl', 'open', 'mount' ...), plus what devmapper
 * was doing: the dm `operation` (e.g. 'DM_DEV_REMOVE') and the `device` name or path.
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
    super('ERR_DM_POOL_MODE', `${args.operation}: pool ${args.pool} is ${state}`, args.cause === undefined ? undefined : { cause: args.cause });
    this.pool = args.pool;
    this.mode = args.mode;
    this.needsCheck = args.needsCheck;
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
  constructor(code: 'ERR_DM_LAYER_TAR_UNSAFE' | 'ERR_DM_LAYER_TAR_INVALID', entry: string | undefined, reason: string, options?: { cause?: unknown }) {
    super(code, entry === undefined ? `layer tar: ${reason}` : `layer tar entry ${JSON.stringify(entry)}: ${reason}`, options);
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
export function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-Math.abs(errno));
  } catch {
    return `ERRNO_${errno}`;
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
    super('ERR_DM_METADATA', `metadata file ${file}${field === undefined ? '' : `, field ${JSON.stringify(field)}`}: ${reason}`, options);
    this.file = file;
    this.field = field;
  }
}
