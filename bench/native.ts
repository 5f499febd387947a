// Native FFI overhead on this host, no VM: loop-device ioctls (LOOP_CTL_GET_FREE on
// /dev/loop-control, LOOP_GET_STATUS64 on a loop device attached to a sparse file) through the
// TypeScript path against the same ioctls from C. The cleanest per-call figure is `ioctl()` of
// src/ioctl/syscall.ts (the choke point every ioctl of the library passes through) on an fd
// opened once; the raw LibcBinding call shows the FFI alone, and the public LoopDevices methods
// (which open and close the device per call, and decode the answer) are set against C doing
// open + ioctl + close.
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOOP_INFO64_LAYOUT, LOOP_REQUESTS } from '../src/ioctl/loop-abi.js';
import { decodeLoopInfo64 } from '../src/ioctl/codec.js';
import type { FfiBackendName, LibcBinding } from '../src/ioctl/ffi/binding.js';
import { libcBinding } from '../src/ioctl/ffi/select.js';
import { LoopDevices } from '../src/ioctl/loop.js';
import { ioctl, ioctlInt } from '../src/ioctl/syscall.js';
import type { CPrograms } from './c-build.js';
import { Coprocess, MiB, phase, progress, rotate, sparseFile, summarize, timeSync } from './common.js';
import type { OpResult } from './latency.js';

export interface NativeResult {
  rounds: number;
  loopDevice: string;
  ops: OpResult[];
}

export interface NativeOptions {
  quick: boolean;
  programs: Pick<CPrograms, 'loopFloor'>;
}

const BACKENDS: FfiBackendName[] = ['ffi-rs', 'koffi'];

/** Implementations, and the C implementation each is compared with. */
const FLOORS: Record<string, string> = {
  c: 'c',
  'ffi-rs': 'c',
  koffi: 'c',
  'ffi-rs binding': 'c',
  'koffi binding': 'c',
  'c open+close': 'c open+close',
  'LoopDevices ffi-rs': 'c open+close',
  'LoopDevices koffi': 'c open+close',
};

export function canRunNative(): string | undefined {
  try {
    closeSync(openSync('/dev/loop-control', 'r+'));
    return undefined;
  } catch (error) {
    return `cannot open /dev/loop-control (${(error as NodeJS.ErrnoException).code}): the native part needs root and loop devices`;
  }
}

export async function measureNative(options: NativeOptions): Promise<NativeResult> {
  const rounds = options.quick ? 2 : 5;
  const fast = options.quick ? 500 : 20_000;
  const slow = options.quick ? 200 : 4_000;
  const dir = mkdtempSync(join(tmpdir(), 'devmapper-bench-native-'));
  const loops = new LoopDevices({ ffi: 'koffi' });
  const c = new Coprocess(options.programs.loopFloor, 'loop-floor');
  const bindings: Record<FfiBackendName, LibcBinding> = {
    'ffi-rs': libcBinding('ffi-rs'),
    koffi: libcBinding('koffi'),
  };
  const file = join(dir, 'backing');
  sparseFile(file, 64 * MiB);
  const held = loops.attachAndHold(file, { autoclear: true });
  const loopPath = held.status.path;
  const fds: number[] = [];
  const openOnce = (path: string, flags: 'r' | 'r+'): number => {
    const fd = openSync(path, flags);
    fds.push(fd);
    return fd;
  };
  try {
    const controlFd = openOnce('/dev/loop-control', 'r+');
    const loopFd = openOnce(loopPath, 'r');
    const info = Buffer.alloc(LOOP_INFO64_LAYOUT.size);
    const specs: Array<{
      id: string;
      label: string;
      note: string;
      c: (n: number, reopen: 0 | 1) => Array<string | number>;
      ts: Record<string, () => unknown>;
    }> = [
      {
        id: 'LOOP_CTL_GET_FREE',
        label: 'LOOP_CTL_GET_FREE',
        note: 'on /dev/loop-control',
        c: (n, reopen) => ['getfree', n, reopen],
        ts: Object.fromEntries(
          BACKENDS.flatMap((b) => {
            const binding = bindings[b];
            const lib = new LoopDevices({ ffi: b });
            const context = { operation: 'LOOP_CTL_GET_FREE', device: '/dev/loop-control' };
            return [
              [b, () => ioctlInt(binding, controlFd, LOOP_REQUESTS.LOOP_CTL_GET_FREE, 0, context)],
              [`${b} binding`, () => binding.ioctlInt(controlFd, LOOP_REQUESTS.LOOP_CTL_GET_FREE, 0)],
              [`LoopDevices ${b}`, () => lib.findFree()],
            ];
          }),
        ),
      },
      {
        id: 'LOOP_GET_STATUS64',
        label: 'LOOP_GET_STATUS64',
        note: `on ${loopPath} (attached to a sparse file)`,
        c: (n, reopen) => ['getstatus', loopPath, n, reopen],
        ts: Object.fromEntries(
          BACKENDS.flatMap((b) => {
            const binding = bindings[b];
            const lib = new LoopDevices({ ffi: b });
            const context = { operation: 'LOOP_GET_STATUS64', device: loopPath };
            return [
              [b, () => ioctl(binding, loopFd, LOOP_REQUESTS.LOOP_GET_STATUS64, info, context)],
              [`${b} binding`, () => binding.ioctl(loopFd, LOOP_REQUESTS.LOOP_GET_STATUS64, info)],
              [`LoopDevices ${b}`, () => lib.status(loopPath)],
            ];
          }),
        ),
      },
    ];
    // the answer is right before anything is timed
    ioctl(bindings.koffi, loopFd, LOOP_REQUESTS.LOOP_GET_STATUS64, info, { operation: 'LOOP_GET_STATUS64' });
    if (decodeLoopInfo64(info, 0).number !== held.status.index)
      throw new Error('LOOP_GET_STATUS64 answered for another device');

    const ops: OpResult[] = [];
    for (const spec of specs) {
      const impls = ['c', 'c open+close', ...Object.keys(spec.ts)];
      const samples = new Map<string, number[]>(impls.map((i) => [i, []]));
      await phase(`native ${spec.label}`, async () => {
        for (let round = 0; round < rounds; round++) {
          for (const impl of rotate(impls, round)) {
            const perCall = impl.startsWith('LoopDevices') || impl === 'c open+close';
            const n = perCall ? slow : fast;
            const warm = Math.ceil(n / 10);
            if (impl === 'c' || impl === 'c open+close') {
              const reopen = impl === 'c' ? 0 : 1;
              await c.samples(...spec.c(warm, reopen));
              samples.get(impl)!.push(...(await c.samples(...spec.c(n, reopen))));
            } else {
              const fn = spec.ts[impl]!;
              timeSync(warm, fn);
              samples.get(impl)!.push(...timeSync(n, fn));
            }
          }
        }
      });
      const result: OpResult = { id: spec.id, label: spec.label, note: spec.note, impls: {}, floors: {} };
      for (const impl of impls) {
        result.impls[impl] = summarize(samples.get(impl)!);
        result.floors![impl] = FLOORS[impl]!;
      }
      progress(`  ${spec.label}: medians (µs) ${impls.map((i) => `${i} ${result.impls[i]!.median}`).join(', ')}`);
      ops.push(result);
    }
    return { rounds, loopDevice: loopPath, ops };
  } finally {
    for (const fd of fds) closeSync(fd);
    loops.release(held.fd); // autoclear detaches it
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
