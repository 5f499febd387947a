// Shared pieces of the kernel tests: unique names, one teardown per test that undoes what the
// test made (fds, dm devices, loop devices, files), and small readers of the kernel's own
// views (sysfs, /proc) used as references next to dmsetup/losetup. The device-mapper-*.test.ts
// files also share their device makers, their hooks and their end-of-file leak check from here;
// the Driver's test files their hooks (useDriverBed).
import test, { type ExecutionContext } from 'ava';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DmSystemError } from '../../src/errors.js';
import { DeviceMapper, type DeviceInfo, type DeviceNumber, type Target } from '../../src/ioctl/device-mapper.js';
import type { FfiBackendName } from '../../src/ioctl/ffi/binding.js';
import { LoopDevices } from '../../src/ioctl/loop.js';
import { removeHomes } from './driver-helpers.js';
import { assertKernelTestBed, dmsetup, run } from './reference-tools.js';

/** Every test that drives the kernel runs once per FFI backend. */
export const BACKENDS: readonly FfiBackendName[] = ['ffi-rs', 'koffi'];

/** Names of everything a test file makes start with this, so leftovers are recognisable. */
export const PREFIX = `kt${process.pid}`;
let counter = 0;

/** A dm device name no other test (or earlier run) uses. */
export function uniqueName(tag: string): string {
  counter += 1;
  return `${PREFIX}-${counter}-${tag}`;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `condition` until it holds (true) or `timeoutMs` passes (false). */
export async function waitFor(condition: () => boolean, timeoutMs = 5000, stepMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (condition()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(stepMs);
  }
}

/** Settles like `promise`, or rejects after `ms` (so a test never hangs on a lost event). */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Watches a promise without awaiting it: `settled()` says whether it settled yet. */
export function track<T>(promise: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let settled = false;
  promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  return { promise, settled: () => settled };
}

/** Open file descriptors of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/** A sparse file of `bytes` in its own directory under os.tmpdir() (the guest's private /tmp). */
export function sparseFile(cleanup: Cleanup, name: string, bytes: number): string {
  const dir = mkdtempSync(join(tmpdir(), `${PREFIX}-`));
  cleanup.path(dir);
  const path = join(dir, name);
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, bytes);
  } finally {
    closeSync(fd);
  }
  return path;
}

/** `major:minor`, the way tables and sysfs write a device number. */
export const devText = (dev: DeviceNumber): string => `${dev.major}:${dev.minor}`;

/** The dm device's block node (devtmpfs makes it once a table is loaded). */
export const dmNode = (dev: DeviceNumber): string => `/dev/dm-${dev.minor}`;

/** A file under /sys/block/<disk>/, trimmed. */
export function sysBlock(disk: string, file: string): string {
  return readFileSync(`/sys/block/${disk}/${file}`, 'utf8').trim();
}

/** The row `dmsetup info -c --noheadings -o name,uuid,major,minor,open,segments,events,attr` prints for this info. */
export function dmsetupInfoRow(info: DeviceInfo): string {
  const attr =
    (info.active ? 'L' : '-') +
    (info.inactiveTable ? 'I' : '-') +
    (info.suspended ? 's' : '-') +
    (info.readOnly ? 'r' : 'w');
  return [
    info.name,
    info.uuid,
    info.dev.major,
    info.dev.minor,
    info.openCount,
    info.targetCount,
    info.eventNr,
    attr,
  ].join(':');
}

export const DMSETUP_INFO_ARGS = [
  'info',
  '-c',
  '--noheadings',
  '-o',
  'name,uuid,major,minor,open,segments,events,attr',
];

/** Lines of reference-tool output that mention this file's devices, trailing blanks dropped. */
export function ownLines(output: string, names?: readonly string[]): string[] {
  return output
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) =>
      names ? names.some((n) => line.startsWith(`${n}:`) || line.startsWith(`${n}\t`)) : line.startsWith(PREFIX),
    )
    .sort();
}

/** The codes a rejected call carried (DmSystemError fields included). */
export function errorFields(error: unknown): Record<string, unknown> {
  const e = error as DmSystemError;
  return { name: e.name, code: e.code, errno: e.errno, syscall: e.syscall, operation: e.operation, device: e.device };
}

/** HDIO_GETGEO on a block device, through koffi directly (an independent reader of the geometry). */
export function readGeometry(path: string): { heads: number; sectors: number; cylinders: number } {
  const require = createRequire(import.meta.url);
  const koffi = require('koffi') as typeof import('koffi');
  const libc = koffi.load('libc.so.6');
  const ioctl = libc.func('int ioctl(int fd, unsigned long request, void *arg)') as (
    fd: number,
    request: number,
    arg: Buffer,
  ) => number;
  const HDIO_GETGEO = 0x0301;
  // struct hd_geometry { unsigned char heads; unsigned char sectors; unsigned short cylinders; unsigned long start; }
  const geo = Buffer.alloc(16);
  const fd = openSync(path, 'r');
  try {
    const rc = ioctl(fd, HDIO_GETGEO, geo);
    if (rc !== 0) throw new Error(`HDIO_GETGEO on ${path} failed: errno ${koffi.errno()}`);
  } finally {
    closeSync(fd);
  }
  return { heads: geo.readUInt8(0), sectors: geo.readUInt8(1), cylinders: geo.readUInt16LE(2) };
}

const isCode = (error: unknown, ...codes: string[]): boolean =>
  error instanceof DmSystemError && codes.includes(error.code);

/**
 * What one test made, undone in its teardown: open fds first, then dm devices (newest first,
 * so stacked devices go before what they sit on), then loop devices, then files. Anything
 * already gone is fine; anything that cannot be undone fails the test.
 */
export class Cleanup {
  readonly #fds = new Set<number>();
  readonly #handles: DeviceMapper[] = [];
  readonly #devices: string[] = [];
  readonly #loops: number[] = [];
  readonly #paths: string[] = [];

  constructor(t: ExecutionContext) {
    t.teardown(() => this.run());
  }

  /** An fd to close (closeFd() closes it earlier; forgetFd() when something else closed it). */
  fd(fd: number): number {
    this.#fds.add(fd);
    return fd;
  }

  closeFd(fd: number): void {
    this.#fds.delete(fd);
    closeSync(fd);
  }

  /** The test closed `fd` itself (e.g. through the library). */
  forgetFd(fd: number): void {
    this.#fds.delete(fd);
  }

  handle(dm: DeviceMapper): DeviceMapper {
    this.#handles.push(dm);
    return dm;
  }

  device(name: string): string {
    this.#devices.push(name);
    return name;
  }

  loop(index: number): number {
    this.#loops.push(index);
    return index;
  }

  path(path: string): string {
    this.#paths.push(path);
    return path;
  }

  async run(): Promise<void> {
    for (const fd of this.#fds) {
      try {
        closeSync(fd);
      } catch {
        // closed by the test already
      }
    }
    this.#fds.clear();
    for (const dm of this.#handles) dm.close();
    if (this.#devices.length > 0) {
      const dm = DeviceMapper.open();
      try {
        for (const name of [...this.#devices].reverse()) {
          for (let attempt = 0; ; attempt++) {
            try {
              // A device left suspended would hold a stacked device's I/O: resume it first.
              if (dm.info(name).suspended) dm.resume(name);
              dm.remove(name);
              break;
            } catch (error) {
              if (isCode(error, 'ENXIO')) break;
              // A just-closed opener can take a moment to let go (deferred close work).
              if (isCode(error, 'EBUSY') && attempt < 100) {
                await sleep(20);
                continue;
              }
              throw error;
            }
          }
          // dmsetup (with --verifyudev) makes /dev/mapper/<name> itself; drop a stale node.
          rmSync(`/dev/mapper/${name}`, { force: true });
        }
      } finally {
        dm.close();
      }
    }
    if (this.#loops.length > 0) {
      const loops = new LoopDevices();
      for (const index of [...this.#loops].reverse()) {
        try {
          loops.detach(index);
        } catch (error) {
          if (!isCode(error, 'ENXIO')) throw error;
        }
      }
    }
    for (const path of this.#paths.reverse()) rmSync(path, { recursive: true, force: true });
  }
}

/** A table of one zero target over `sectors`. */
export const zero = (sectors: number): Target[] => [{ start: 0n, length: BigInt(sectors), type: 'zero', params: '' }];

/** A DeviceMapper handle closed by the test's teardown. */
export function openDm(c: Cleanup, ffi: FfiBackendName): DeviceMapper {
  return c.handle(DeviceMapper.open({ ffi }));
}

/** create + load + resume: a live device, removed by the teardown. */
export function makeDevice(
  dm: DeviceMapper,
  c: Cleanup,
  tag: string,
  targets: Target[] = zero(1024),
  options: { uuid?: string; readOnly?: boolean } = {},
): DeviceInfo {
  const name = c.device(uniqueName(tag));
  dm.create(name, { uuid: options.uuid });
  dm.load(name, targets, { readOnly: options.readOnly });
  return dm.resume(name);
}

/**
 * The end-of-file check of each device-mapper-*.test.ts file: no dm device, loop device or
 * mount of this process (named with PREFIX) is left.
 */
export function assertNothingLeftBehind(t: ExecutionContext): void {
  const dm = DeviceMapper.open();
  try {
    t.deepEqual(
      dm
        .list()
        .filter((x) => x.name.startsWith(PREFIX))
        .map((x) => x.name),
      [],
    );
  } finally {
    dm.close();
  }
  t.deepEqual(
    dmsetup('ls')
      .split('\n')
      .filter((line) => line.startsWith(PREFIX)),
    [],
  );
  t.deepEqual(
    run('losetup', ['--list', '--noheadings', '-O', 'NAME,BACK-FILE'])
      .split('\n')
      .filter((line) => line.includes(PREFIX)),
    [],
  );
  t.deepEqual(
    new LoopDevices().list().filter((l) => l.backingFile.includes(PREFIX)),
    [],
  );
  t.false(readFileSync('/proc/self/mounts', 'utf8').includes(PREFIX));
}

/**
 * Registers a device-mapper-*.test.ts file's hooks: the kernel check before its tests and, when
 * `leakCheckHook`, the end-of-file leak check after them (device-mapper-lifecycle.test.ts carries
 * it as its last test instead).
 */
export function useDeviceMapperBed(options: { leakCheckHook: boolean }): void {
  test.before(() => assertKernelTestBed());
  if (options.leakCheckHook) {
    test.serial.after.always('nothing is left behind: no dm device and no loop device from this file', (t) =>
      assertNothingLeftBehind(t),
    );
  }
}

/**
 * Registers the hooks of a Driver test file whose homes come from newHome() (driver-helpers.ts):
 * the kernel check before its tests, the removal of every home after them.
 */
export function useDriverBed(): void {
  test.before(() => assertKernelTestBed());
  test.after.always(() => removeHomes());
}
