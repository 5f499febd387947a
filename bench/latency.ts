// Per-ioctl latency inside the test kernel: DeviceMapper (sync on ffi-rs and koffi, and the
// async forms where a method has one) against the floor (the same ioctls from C), libdevmapper's
// C API, and one dmsetup process per operation; for the calls with a header-only or fixed
// request, 'koffi binding' is the same ioctl through the LibcBinding alone (bench/binding-calls.ts),
// the floor of a JavaScript caller on that FFI. Implementations alternate within one run: each
// round runs a batch of every implementation in turn, in a rotated order.
import { join } from 'node:path';
import { DM_FLAGS } from '../src/ioctl/abi.js';
import { DeviceMapper } from '../src/ioctl/device-mapper.js';
import type { FfiBackendName } from '../src/ioctl/ffi/binding.js';
import { ThinDevice } from '../src/thin/thin-device.js';
import { BindingCalls } from './binding-calls.js';
import type { CPrograms } from './c-build.js';
import {
  Coprocess,
  GiB,
  MiB,
  phase,
  progress,
  rotate,
  summarize,
  timeAsync,
  timeSync,
  words,
  type Stats,
} from './common.js';
import { createBarePool, warmPool } from './pools.js';

export const LATENCY_IMPLS = [
  'c',
  'libdm',
  'ffi-rs',
  'koffi',
  'koffi binding',
  'ffi-rs async',
  'koffi async',
  'dmsetup',
] as const;
export type LatencyImpl = (typeof LATENCY_IMPLS)[number];

export interface OpResult {
  /** Stable key, e.g. 'DM_LIST_DEVICES/100'. */
  id: string;
  label: string;
  note?: string;
  /** Per implementation; for each, the implementation it is compared with (its floor) is `c` unless floors says otherwise. */
  impls: Record<string, Stats>;
  floors?: Record<string, string>;
}

export interface LatencyResult {
  rounds: number;
  ops: OpResult[];
}

export interface LatencyOptions {
  quick: boolean;
  /** A private scratch directory (the guest's tmpfs). */
  tmp: string;
  programs: CPrograms;
  /** dm names start with this. */
  prefix: string;
}

interface OpSpec {
  id: string;
  label: string;
  note?: string;
  /** Timed calls per round for C, libdm and the TypeScript forms. */
  batch: number;
  /** dmsetup samples in all (0: not measured). */
  dmsetup: number;
  /** The C programs' command for `n` calls; `id` is this implementation's own thin id. */
  c: (n: number, id: number) => Array<string | number>;
  ts: (dm: DeviceMapper, id: number) => () => unknown;
  tsAsync?: (dm: DeviceMapper, id: number) => () => Promise<unknown>;
  /** The same ioctls through the koffi LibcBinding alone (undefined: not measured). */
  binding?: (calls: BindingCalls, id: number) => () => unknown;
  /** The dmsetup commands of one sample. */
  dmsetupArgv: (id: number) => string[][];
}

/** Each implementation messages its own thin id, so none ever sees another's. */
const THIN_IDS: Record<LatencyImpl, number> = {
  c: 0x100001,
  libdm: 0x100002,
  'ffi-rs': 0x100003,
  koffi: 0x100004,
  'ffi-rs async': 0x100005,
  'koffi async': 0x100006,
  dmsetup: 0x100007,
  'koffi binding': 0x100008,
};

export async function measureLatency(options: LatencyOptions): Promise<LatencyResult> {
  const { quick, prefix } = options;
  const rounds = quick ? 2 : 5;
  const scale = (n: number): number => (quick ? Math.max(3, Math.ceil(n / 10)) : n);
  const dmsetupSamples = quick ? 2 : 20;
  const dms: Record<FfiBackendName, DeviceMapper> = {
    'ffi-rs': DeviceMapper.open({ ffi: 'ffi-rs' }),
    koffi: DeviceMapper.open({ ffi: 'koffi' }),
  };
  const dm = dms['ffi-rs'];
  const bindingCalls = new BindingCalls(dms.koffi.kernel.libc);
  const floor = new Coprocess(options.programs.dmFloor, 'dm-floor');
  const libdm = new Coprocess(options.programs.dmLibdm, 'dm-libdm');
  const ops: OpResult[] = [];
  const fillers: string[] = [];
  let pool: ReturnType<typeof createBarePool> | undefined;
  let thin: ThinDevice | undefined;

  const run = async (spec: OpSpec): Promise<void> => {
    ops.push(await phase(`latency ${spec.label}`, () => runOp(spec, rounds, dms, bindingCalls, floor, libdm)));
  };
  const dmsetup = (...argv: string[]): string[] => ['dmsetup', ...argv];

  try {
    await run({
      id: 'DM_VERSION',
      label: 'DM_VERSION',
      batch: scale(400),
      dmsetup: dmsetupSamples,
      c: (n) => ['version', n],
      ts: (d) => () => d.version(),
      binding: (b) => b.simple('DM_VERSION', undefined),
      dmsetupArgv: () => [dmsetup('version')],
    });
    const listOp = (count: number, batch: number): OpSpec => ({
      id: `DM_LIST_DEVICES/${count}`,
      label: `DM_LIST_DEVICES (${count} devices)`,
      note: `${count} dm devices`,
      batch,
      dmsetup: dmsetupSamples,
      c: (n) => ['list', n],
      ts: (d) => () => d.list(),
      dmsetupArgv: () => [dmsetup('ls')],
    });
    await run(listOp(dm.list().length, scale(400)));

    pool = await phase('latency: pool set-up', () => {
      const p = createBarePool(dm, join(options.tmp, 'latency-pool'), `${prefix}-lpool`, {
        metadata: (quick ? 16 : 64) * MiB,
        data: 4 * GiB,
      });
      warmPool(dm, p.name, quick ? 50 : 1500);
      p.pool.createThin(1);
      thin = ThinDevice.activate(p.pool, { name: `${prefix}-lthin`, id: 1, size: 2n * 1024n * 1024n });
      return p;
    });
    const poolName = pool.name;
    const thinName = thin!.name;

    await run({
      id: 'DM_DEV_STATUS',
      label: 'DM_DEV_STATUS',
      note: 'of the pool',
      batch: scale(400),
      dmsetup: dmsetupSamples,
      c: (n) => ['info', poolName, n],
      ts: (d) => () => d.info(poolName),
      binding: (b) => b.simple('DM_DEV_STATUS', poolName),
      dmsetupArgv: () => [dmsetup('info', poolName)],
    });
    await run({
      id: 'DM_TABLE_STATUS/pool',
      label: 'DM_TABLE_STATUS (pool)',
      note: 'commits metadata first',
      batch: scale(100),
      dmsetup: dmsetupSamples,
      c: (n) => ['status', poolName, n, 0],
      ts: (d) => () => d.status(poolName),
      binding: (b) => b.answer('DM_TABLE_STATUS', poolName),
      dmsetupArgv: () => [dmsetup('status', poolName)],
    });
    await run({
      id: 'DM_TABLE_STATUS/pool-noflush',
      label: 'DM_TABLE_STATUS (pool, no-flush)',
      batch: scale(400),
      dmsetup: dmsetupSamples,
      c: (n) => ['status', poolName, n, 1],
      ts: (d) => () => d.status(poolName, { noFlush: true }),
      binding: (b) => b.answer('DM_TABLE_STATUS', poolName, DM_FLAGS.DM_NOFLUSH_FLAG),
      dmsetupArgv: () => [dmsetup('status', '--noflush', poolName)],
    });
    await run({
      id: 'DM_TARGET_MSG/create_thin+delete',
      label: 'DM_TARGET_MSG (create_thin + delete)',
      note: 'two messages per sample',
      batch: scale(60),
      dmsetup: dmsetupSamples,
      c: (n, id) => ['msgpair', poolName, n, id],
      ts: (d, id) => {
        const create = `create_thin ${id}`;
        const remove = `delete ${id}`;
        return () => {
          d.message(poolName, 0, create);
          d.message(poolName, 0, remove);
        };
      },
      binding: (b, id) => {
        const create = b.message(poolName, `create_thin ${id}`);
        const remove = b.message(poolName, `delete ${id}`);
        return () => {
          create();
          remove();
        };
      },
      dmsetupArgv: (id) => [
        dmsetup('message', poolName, '0', `create_thin ${id}`),
        dmsetup('message', poolName, '0', `delete ${id}`),
      ],
    });
    await run({
      id: 'DM_DEV_SUSPEND/suspend+resume',
      label: 'DM_DEV_SUSPEND (suspend + resume)',
      note: 'of an idle thin device; two ioctls per sample',
      batch: scale(60),
      dmsetup: dmsetupSamples,
      c: (n) => ['suspres', thinName, n],
      ts: (d) => () => {
        d.suspend(thinName);
        d.resume(thinName);
      },
      tsAsync: (d) => async () => {
        await d.suspendAsync(thinName);
        await d.resumeAsync(thinName);
      },
      binding: (b) => {
        const suspend = b.simple('DM_DEV_SUSPEND', thinName, DM_FLAGS.DM_SUSPEND_FLAG);
        const resume = b.simple('DM_DEV_SUSPEND', thinName);
        return () => {
          suspend();
          resume();
        };
      },
      dmsetupArgv: () => [dmsetup('--noudevsync', 'suspend', thinName), dmsetup('--noudevsync', 'resume', thinName)],
    });

    for (const [count, batch] of [
      [100, 200],
      [1000, 40],
    ] as const) {
      await phase(`latency: ${count} dm devices`, () => {
        for (let i = dm.list().length; i < count; i++) {
          const name = `${prefix}-filler-${String(fillers.length).padStart(4, '0')}`;
          dm.create(name);
          fillers.push(name);
        }
      });
      await run(listOp(dm.list().length, scale(batch)));
    }

    // The pool's status with 1,000 thin devices in it (the thin ids 1..1000; only id 1 is active).
    const thinCount = quick ? 100 : 1000;
    await phase(`latency: ${thinCount} thin devices in the pool`, () => {
      for (let id = 2; id <= thinCount; id++) pool!.pool.createThin(id);
    });
    await run({
      id: `DM_TABLE_STATUS/pool-noflush/${thinCount}-thins`,
      label: `DM_TABLE_STATUS (pool, no-flush, ${thinCount} thin devices)`,
      note: `${thinCount} thin devices in the pool`,
      batch: scale(400),
      dmsetup: dmsetupSamples,
      c: (n) => ['status', poolName, n, 1],
      ts: (d) => () => d.status(poolName, { noFlush: true }),
      dmsetupArgv: () => [dmsetup('status', '--noflush', poolName)],
    });
    await run({
      id: `DM_TABLE_STATUS/pool/${thinCount}-thins`,
      label: `DM_TABLE_STATUS (pool, ${thinCount} thin devices)`,
      note: `commits metadata first; ${thinCount} thin devices in the pool`,
      batch: scale(100),
      dmsetup: dmsetupSamples,
      c: (n) => ['status', poolName, n, 0],
      ts: (d) => () => d.status(poolName),
      dmsetupArgv: () => [dmsetup('status', poolName)],
    });
  } finally {
    await phase('latency: clean-up', () => {
      for (const name of fillers) dm.remove(name);
      thin?.deactivate();
      pool?.remove();
    });
    await floor.close();
    await libdm.close();
    bindingCalls.close();
    dms['ffi-rs'].close();
    dms.koffi.close();
  }
  return { rounds, ops };
}

async function runOp(
  spec: OpSpec,
  rounds: number,
  dms: Record<FfiBackendName, DeviceMapper>,
  bindingCalls: BindingCalls,
  floor: Coprocess,
  libdm: Coprocess,
): Promise<OpResult> {
  const impls: LatencyImpl[] = ['c', 'libdm', 'ffi-rs', 'koffi'];
  if (spec.binding) impls.push('koffi binding');
  if (spec.tsAsync) impls.push('ffi-rs async', 'koffi async');
  if (spec.dmsetup > 0) impls.push('dmsetup');
  const samples = new Map<LatencyImpl, number[]>(impls.map((impl) => [impl, []]));
  const warm = Math.max(3, Math.ceil(spec.batch / 10));
  const dmsetupPerRound = Math.ceil(spec.dmsetup / rounds);
  for (let round = 0; round < rounds; round++) {
    for (const impl of rotate(impls, round)) {
      const id = THIN_IDS[impl];
      const out = samples.get(impl)!;
      switch (impl) {
        case 'c':
        case 'libdm': {
          const program = impl === 'c' ? floor : libdm;
          await program.samples(...spec.c(warm, id));
          out.push(...(await program.samples(...spec.c(spec.batch, id))));
          break;
        }
        case 'ffi-rs':
        case 'koffi':
        case 'koffi binding': {
          const fn = impl === 'koffi binding' ? spec.binding!(bindingCalls, id) : spec.ts(dms[impl], id);
          timeSync(warm, fn);
          out.push(...timeSync(spec.batch, fn));
          break;
        }
        case 'ffi-rs async':
        case 'koffi async': {
          const fn = spec.tsAsync!(dms[impl === 'ffi-rs async' ? 'ffi-rs' : 'koffi'], id);
          await timeAsync(warm, fn);
          out.push(...(await timeAsync(spec.batch, fn)));
          break;
        }
        case 'dmsetup': {
          const commands = spec.dmsetupArgv(id).map(words);
          if (round === 0) await floor.samples('spawn', 1, ...commands);
          out.push(...(await floor.samples('spawn', dmsetupPerRound, ...commands)));
          break;
        }
      }
    }
  }
  const result: OpResult = { id: spec.id, label: spec.label, impls: {} };
  if (spec.note) result.note = spec.note;
  for (const impl of impls) result.impls[impl] = summarize(samples.get(impl)!);
  const medians = impls.map((impl) => `${impl} ${result.impls[impl]!.median}`).join(', ');
  progress(`  ${spec.label}: medians (µs) ${medians}`);
  return result;
}
