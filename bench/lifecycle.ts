// Layer lifecycle inside the test kernel: create -> get -> put -> remove of a container layer on
// an (active, mounted) image layer, through the Driver on each FFI backend, against the same
// steps in C with raw ioctls + mount(2) (the floor), the same through libdevmapper, and the way a
// dmsetup-based snapshotter does them (one dmsetup process per step). All share one pool and
// one image layer; rounds alternate between implementations.
//
// 'driver koffi +flush' is the Driver as it was before issue 16: a flushing pool status (a second
// metadata commit) after every set_transaction_id, put back by wrapping ThinPool's method for
// its rounds only, so the cost of that commit is measured in the same run as the Driver today.
//
// 'js floor koffi' is the C floor's steps done from this Node process through DeviceMapper on
// koffi (the same ioctls, mount(2), mkdir and rmdir, nothing else): the Driver's distance to it
// is the Driver's own work, and its distance to C is Node's and the FFI's on the same calls.
//
// 'c +protocol' is the C floor with the cheapest crash protocol there is: an intent line appended
// and fdatasync'd before create and remove change the kernel, and a done line after (what the
// Driver's transactions.log costs, without its JavaScript), so the Driver's ratio to it is the
// price of the library rather than of durability.
//
// The C routes commit with set_transaction_id like the Driver (create: t -> t+1, remove: back to
// t), so the pool's transaction id is where the Driver left it and the Driver's own bookkeeping
// stays valid between its rounds.
import { mkdirSync, rmdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../src/driver/driver.js';
import { makeDirectory } from '../src/driver/mounts.js';
import type { DriverOptions } from '../src/driver/options.js';
import { DeviceMapper } from '../src/ioctl/device-mapper.js';
import type { FfiBackendName } from '../src/ioctl/ffi/binding.js';
import { Kernel } from '../src/ioctl/kernel.js';
import { MNT_DETACH, mountFilesystem, unmountFilesystem } from '../src/ioctl/mount.js';
import { ThinPool } from '../src/thin/pool.js';
import { bytes, bytesToSectors } from '../src/thin/units.js';
import type { CPrograms } from './c-build.js';
import { Coprocess, MiB, phase, progress, rotate, since, summarize, type Stats } from './common.js';
import { prefillDriverMetadata, transactionId, warmPool } from './pools.js';

export const LIFECYCLE_PHASES = ['create', 'get', 'put', 'remove'] as const;
export const LIFECYCLE_IMPLS = [
  'driver ffi-rs',
  'driver koffi',
  'driver koffi +flush',
  'js floor koffi',
  'c',
  'c +protocol',
  'libdm',
  'dmsetup',
] as const;
export type LifecycleImpl = (typeof LIFECYCLE_IMPLS)[number];

export interface LifecycleImplResult {
  total: Stats;
  phases: Record<string, Stats>;
}

export interface LifecycleResult {
  rounds: number;
  baseSize: string;
  filesystem: string;
  impls: Record<string, LifecycleImplResult>;
}

export interface LifecycleOptions {
  quick: boolean;
  tmp: string;
  programs: CPrograms;
  prefix: string;
}

type Samples = Record<(typeof LIFECYCLE_PHASES)[number], number[]>;

type CImpl = 'c' | 'c +protocol' | 'libdm' | 'dmsetup';
const JS_FLOOR_THIN_ID = 0x7f0005;
const THIN_IDS: Record<CImpl, number> = { c: 0x7f0001, libdm: 0x7f0002, dmsetup: 0x7f0003, 'c +protocol': 0x7f0004 };
/** For the dm device's name and the mount point: no space or '+'. */
const SHORT_NAMES: Record<CImpl, string> = { c: 'c', libdm: 'libdm', dmsetup: 'dmsetup', 'c +protocol': 'cp' };
const C_COMMANDS: Record<CImpl, string> = {
  c: 'lifecycle',
  libdm: 'lifecycle',
  dmsetup: 'dmlifecycle',
  'c +protocol': 'plifecycle',
};

export async function measureLifecycle(options: LifecycleOptions): Promise<LifecycleResult> {
  const { quick, prefix } = options;
  // 90 samples per implementation (30 of dmsetup): at 30, two implementations 4 % apart (C and
  // C + protocol) came out in either order, the medians moving by ±15 % between runs.
  const rounds = quick ? 1 : 15;
  const perRound = quick ? 1 : 6;
  const dmsetupPerRound = quick ? 1 : 2;
  const home = join(options.tmp, 'lifecycle-home');
  const baseSize = quick ? '64M' : '512M';
  const driverOptions: DriverOptions = { home, baseSize, loopDataSize: '8G', loopMetadataSize: quick ? '16M' : '64M' };
  const samples = new Map<LifecycleImpl, Samples>(
    LIFECYCLE_IMPLS.map((impl) => [impl, { create: [], get: [], put: [], remove: [] }]),
  );
  const floor = new Coprocess(options.programs.dmFloor, 'dm-floor');
  const libdm = new Coprocess(options.programs.dmLibdm, 'dm-libdm');
  const dm = DeviceMapper.open();
  const jsKernel = Kernel.for('koffi');
  const jsDm = DeviceMapper.open({ kernel: jsKernel });
  let serial = 0;

  prefillDriverMetadata(home, quick ? 16 * MiB : 64 * MiB);
  const setup = await phase('lifecycle: driver home, image layer', async () => {
    const driver = await Driver.init(driverOptions);
    const status = await driver.status();
    warmPool(dm, status.poolName, quick ? 50 : 500);
    await driver.create('img');
    await driver.get('img'); // the image layer stays active and mounted throughout
    const img = await driver.metadata('img');
    const { dev } = dm.info(status.poolName);
    await driver.close();
    return { pool: status.poolName, poolDev: `${dev.major}:${dev.minor}`, img };
  });
  const sectors = bytesToSectors(bytes(setup.img.size));

  const runDriver = async (
    ffi: FfiBackendName,
    count: number,
    out: Samples | undefined,
    forcedFlush = false,
  ): Promise<void> => {
    const driver = await Driver.init({ ...driverOptions, ffi });
    const setTransactionId = ThinPool.prototype.setTransactionId;
    if (forcedFlush) {
      ThinPool.prototype.setTransactionId = function (this: ThinPool, current, next) {
        setTransactionId.call(this, current, next);
        this.status({ committed: true });
      };
    }
    try {
      for (let i = 0; i < count; i++) {
        const id = `ctr-${ffi}-${++serial}`;
        let t = process.hrtime.bigint();
        await driver.create(id, 'img');
        const create = since(t);
        t = process.hrtime.bigint();
        await driver.get(id);
        const get = since(t);
        t = process.hrtime.bigint();
        await driver.put(id);
        const put = since(t);
        t = process.hrtime.bigint();
        await driver.remove(id);
        const remove = since(t);
        if (out) {
          out.create.push(create);
          out.get.push(get);
          out.put.push(put);
          out.remove.push(remove);
        }
      }
    } finally {
      ThinPool.prototype.setTransactionId = setTransactionId;
      await driver.close();
    }
  };
  const runC = async (impl: CImpl, count: number, out: Samples | undefined): Promise<void> => {
    const program = impl === 'libdm' ? libdm : floor;
    const short = SHORT_NAMES[impl];
    const log = impl === 'c +protocol' ? [join(options.tmp, 'lc-protocol.log')] : [];
    const reply = await program.call(
      C_COMMANDS[impl],
      setup.pool,
      setup.poolDev,
      setup.img.deviceName,
      setup.img.deviceId,
      `${prefix}-lc-${short}`,
      THIN_IDS[impl],
      sectors,
      transactionId(dm, setup.pool),
      count,
      join(options.tmp, `lc-mnt-${short}`),
      ...log,
    );
    if (!out) return;
    for (const key of LIFECYCLE_PHASES) out[key].push(...reply.phases![key]!);
  };
  // The JS floor: thin id, dm name and mount point of its own, like each C route.
  const js = { thinId: JS_FLOOR_THIN_ID, name: `${prefix}-lc-js`, mnt: join(options.tmp, 'lc-mnt-js') };
  const jsIteration = (tid: bigint, out: Samples | undefined): void => {
    const { pool, poolDev, img } = setup;
    let t = process.hrtime.bigint();
    jsDm.suspend(img.deviceName);
    try {
      jsDm.message(pool, 0, `create_snap ${js.thinId} ${img.deviceId}`);
    } finally {
      jsDm.resume(img.deviceName);
    }
    jsDm.message(pool, 0, `set_transaction_id ${tid} ${tid + 1n}`);
    const create = since(t);
    t = process.hrtime.bigint();
    jsDm.create(js.name);
    jsDm.load(js.name, [{ start: 0n, length: sectors, type: 'thin', params: `${poolDev} ${js.thinId}` }]);
    const { dev } = jsDm.resume(js.name);
    mkdirSync(js.mnt, { mode: 0o755 });
    mountFilesystem(`/dev/dm-${dev.minor}`, js.mnt, 'ext4', { kernel: jsKernel });
    makeDirectory(join(js.mnt, 'rootfs'), 0o755); // mkdir, EEXIST fine: as the C floor's make_rootfs()
    const get = since(t);
    t = process.hrtime.bigint();
    unmountFilesystem(js.mnt, { kernel: jsKernel });
    jsDm.remove(js.name);
    const put = since(t);
    t = process.hrtime.bigint();
    jsDm.message(pool, 0, `delete ${js.thinId}`);
    jsDm.message(pool, 0, `set_transaction_id ${tid + 1n} ${tid}`);
    rmdirSync(js.mnt);
    const remove = since(t);
    if (!out) return;
    out.create.push(create);
    out.get.push(get);
    out.put.push(put);
    out.remove.push(remove);
  };
  /** After a failed iteration: the pool back as it was (the C routes' undo()), quietly. */
  const jsUndo = (tid: bigint): void => {
    const quietly = (step: () => unknown): void => {
      try {
        step();
      } catch {}
    };
    quietly(() => unmountFilesystem(js.mnt, { kernel: jsKernel, flags: MNT_DETACH }));
    quietly(() => jsDm.remove(js.name));
    quietly(() => jsDm.message(setup.pool, 0, `delete ${js.thinId}`));
    quietly(() => {
      if (transactionId(jsDm, setup.pool) !== tid) jsDm.message(setup.pool, 0, `set_transaction_id ${tid + 1n} ${tid}`);
    });
    quietly(() => rmdirSync(js.mnt));
  };
  const runJsFloor = (count: number, out: Samples | undefined): void => {
    for (let i = 0; i < count; i++) {
      const tid = transactionId(jsDm, setup.pool); // outside the timing, as the C routes are given it
      try {
        jsIteration(tid, out);
      } catch (error) {
        jsUndo(tid);
        throw error;
      }
    }
  };
  const runImpl = async (impl: LifecycleImpl, count: number, out: Samples | undefined): Promise<void> => {
    switch (impl) {
      case 'driver ffi-rs':
        return runDriver('ffi-rs', count, out);
      case 'driver koffi':
        return runDriver('koffi', count, out);
      case 'driver koffi +flush':
        return runDriver('koffi', count, out, true);
      case 'js floor koffi':
        return runJsFloor(count, out);
      default:
        return runC(impl, count, out);
    }
  };

  try {
    await phase('lifecycle: warm-up', async () => {
      for (const impl of LIFECYCLE_IMPLS) await runImpl(impl, 1, undefined);
    });
    for (let round = 0; round < rounds; round++) {
      await phase(`lifecycle: round ${round + 1}/${rounds}`, async () => {
        for (const impl of rotate(LIFECYCLE_IMPLS, round))
          await runImpl(impl, impl === 'dmsetup' ? dmsetupPerRound : perRound, samples.get(impl));
      });
    }
  } finally {
    await phase('lifecycle: clean-up', async () => {
      await floor.close();
      await libdm.close();
      const driver = await Driver.init(driverOptions);
      await driver.put('img');
      await driver.remove('img');
      await driver.cleanup();
      dm.close();
      jsDm.close();
      rmSync(home, { recursive: true, force: true });
    });
  }

  const impls: Record<string, LifecycleImplResult> = {};
  for (const impl of LIFECYCLE_IMPLS) {
    const s = samples.get(impl)!;
    const totals = s.create.map((_, i) => s.create[i]! + s.get[i]! + s.put[i]! + s.remove[i]!);
    impls[impl] = {
      total: summarize(totals),
      phases: Object.fromEntries(LIFECYCLE_PHASES.map((p) => [p, summarize(s[p])])),
    };
  }
  progress(
    `  lifecycle medians (ms): ${LIFECYCLE_IMPLS.map((impl) => `${impl} ${(impls[impl]!.total.median / 1000).toFixed(1)}`).join(', ')}`,
  );
  return { rounds, baseSize, filesystem: 'ext4', impls };
}
