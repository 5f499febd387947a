// One driver per home at a time: an exclusive flock(2) on an open fd of <home>/lock, held for
// the life of the Driver. The kernel drops the lock when the fd closes, so a crash, a SIGKILL
// or a reboot leaves no stale lock, and two processes can never hold it at once (flock is
// atomic; the file is never deleted or recreated, so there is no read/remove race). The pid
// written into the file is informational only: it names the holder in the error a second
// process gets.
import { closeSync, constants, ftruncateSync, readFileSync, statSync, writeSync } from 'node:fs';
import { DevmapperError, DmSystemError } from '../errors.js';
import { decodeDev } from '../ioctl/abi.js';
import { LOCK_EX, LOCK_NB, LOCK_UN } from '../ioctl/ffi/binding.js';
import type { Kernel } from '../ioctl/kernel.js';
import { lockFilePath } from './home-layout.js';
import { assertRegularFile, openRegularFile, unsafePathError } from './safe-open.js';

export interface HomeLockOptions {
  /** How long to wait for a busy home, in ms: 0 (the default) fails at once, Infinity waits forever. */
  timeoutMs?: number;
  /** flock(2) goes through this handle. */
  kernel: Kernel;
}

const EWOULDBLOCK = 11; // EAGAIN on Linux
const EINTR = 4;

export class HomeLock {
  readonly path: string;
  /** False when the lock file could only be opened read-only (no pid written). */
  readonly writable: boolean;
  #fd: number | undefined;
  readonly #kernel: Kernel;

  private constructor(path: string, fd: number, writable: boolean, kernel: Kernel) {
    this.path = path;
    this.#fd = fd;
    this.writable = writable;
    this.#kernel = kernel;
  }

  /**
   * Takes the home's lock, waiting up to `timeoutMs` (polling with backoff: 5 ms doubling to
   * 250 ms) when another process holds it. A busy home is an `ERR_DM_HOME_LOCKED` naming the
   * holder's pid when the file says it.
   */
  static async acquire(home: string, options: HomeLockOptions): Promise<HomeLock> {
    const timeoutMs = options.timeoutMs ?? 0;
    const deadline = Date.now() + timeoutMs;
    let delay = 5;
    for (;;) {
      const lock = HomeLock.tryAcquire(home, options);
      if (lock) return lock;
      const left = deadline - Date.now();
      if (left <= 0) throw lockedError(home, timeoutMs);
      await new Promise((resolve) => setTimeout(resolve, Math.min(delay, left)));
      delay = Math.min(delay * 2, 250);
    }
  }

  /** One attempt: the lock, or undefined when another open file description holds it. */
  static tryAcquire(home: string, options: { kernel: Kernel }): HomeLock | undefined {
    const path = lockFilePath(home);
    const libc = options.kernel.libc;
    let fd: number;
    let writable = true;
    const refuse = (kind: string) => unsafePathError(path, kind, "the home's lock file");
    try {
      // No O_TRUNC: the file is only rewritten by the process that holds the lock. (libuv opens
      // every fd O_CLOEXEC, so mkfs and friends never inherit the lock.)
      fd = openRegularFile(path, constants.O_RDWR | constants.O_CREAT, 0o600, refuse);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EACCES' && code !== 'EROFS' && code !== 'EPERM') throw error;
      // A home we may only read (read-only commands): flock works on a read-only fd too.
      fd = openRegularFile(path, constants.O_RDONLY, undefined, refuse);
      writable = false;
    }
    try {
      assertRegularFile(fd, refuse); // a FIFO or device node planted as the lock: no pid written into it
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    let rc: number;
    do rc = libc.flock(fd, LOCK_EX | LOCK_NB);
    while (rc === -EINTR);
    if (rc < 0) {
      closeSync(fd);
      if (-rc === EWOULDBLOCK) return undefined;
      throw new DmSystemError({ errno: -rc, syscall: 'flock', device: path });
    }
    if (writable) {
      try {
        ftruncateSync(fd, 0);
        writeSync(fd, `${process.pid}\n`, 0);
      } catch (error) {
        libc.flock(fd, LOCK_UN);
        closeSync(fd);
        throw error;
      }
    }
    return new HomeLock(path, fd, writable, options.kernel);
  }

  /** Lets go of the home: the pid is cleared, the file stays (it is never removed). Idempotent. */
  release(): void {
    const fd = this.#fd;
    if (fd === undefined) return;
    this.#fd = undefined;
    try {
      if (this.writable) ftruncateSync(fd, 0); // still holding the lock: no one else writes now
    } finally {
      this.#kernel.libc.flock(fd, LOCK_UN);
      closeSync(fd); // closing alone would drop the lock; LOCK_UN makes it explicit
    }
  }
}

/**
 * The pid holding <home>/lock: the kernel's word first (/proc/locks lists each flock with its
 * owner's pid and the file's dev:inode), else the pid written in the file (which lags the lock
 * by a write: just after a takeover it may still name the previous holder).
 */
export function lockHolder(home: string): number | undefined {
  const path = lockFilePath(home);
  try {
    const st = statSync(path, { bigint: true });
    const { major, minor } = decodeDev(st.dev);
    for (const line of readFileSync('/proc/locks', 'utf8').split('\n')) {
      // "1: FLOCK  ADVISORY  WRITE 27967 fe:00:2146453 0 EOF"; blocked waiters have "->" after the number.
      const f = line.trim().split(/\s+/);
      if (f[1] !== 'FLOCK' || f[3] !== 'WRITE') continue;
      const [maj, min, ino] = (f[5] ?? '').split(':');
      if (ino === undefined || BigInt(ino) !== st.ino || parseInt(maj!, 16) !== major || parseInt(min!, 16) !== minor)
        continue;
      const pid = Number(f[4]);
      if (Number.isSafeInteger(pid) && pid > 0) return pid;
    }
  } catch {
    // no /proc, or the file went: fall back to its contents
  }
  try {
    const text = readFileSync(path, 'utf8').trim();
    const pid = Number(text);
    return /^[0-9]+$/.test(text) && Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function lockedError(home: string, timeoutMs: number): DevmapperError {
  const owner = lockHolder(home);
  const who =
    owner === undefined
      ? 'another process'
      : `process ${owner}${owner === process.pid ? ' (this process: call cleanup() on the other driver first)' : ''}`;
  const waited = timeoutMs > 0 ? ` (waited ${timeoutMs} ms for it)` : '';
  const error = new DevmapperError('ERR_DM_HOME_LOCKED', `${home} is in use by ${who}${waited}`);
  return Object.assign(error, { pid: owner, waitedMs: timeoutMs });
}
