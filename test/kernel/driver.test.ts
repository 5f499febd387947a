// The Driver (Docker's devicemapper graph driver operations) against a real kernel: the seed's
// semantics end to end, busy and deferred removal, reference-counted mounts, undo of a failed
// get, the free-space guard, concurrency over one parent, bad input, two drivers side by side,
// and the pool's transaction id as the driver's own. Every test has its own home under the
// guest's private /tmp and ends with cleanup(); dmsetup, losetup and /proc/self/mounts check
// from outside. The crash protocol has its own file, driver-crash.test.ts.
import test from 'ava';
import { Kernel } from '../../src/ioctl/kernel.js';
import {
  existsSync,
  fsyncSync,
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { resolve, join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { HomeLock } from '../../src/driver/home-lock.js';
import type { DriverOptions } from '../../src/driver/options.js';
import { DmSystemError, InvalidArgumentError } from '../../src/errors.js';
import { dmsetup } from './reference-tools.js';
import {
  SMALL,
  assertNothingLeaked,
  dmNames,
  driverDmNames,
  eventually,
  loopLines,
  metadataSnapshot,
  mountsUnder,
  newHome,
  openTransactionExists,
  poolThinIds,
  savedState,
  savedThinIds,
} from './driver-helpers.js';
import { useDriverBed } from './helpers.js';

/** No one holds the home: its flock on <home>/lock can be taken (the file itself stays). */
function homeLockFree(home: string): boolean {
  const lock = HomeLock.tryAcquire(home, { kernel: Kernel.for() });
  lock?.release();
  return lock !== undefined;
}

useDriverBed();

const codeOf = (error: unknown): string | undefined => (error as { code?: string } | undefined)?.code;
const ids = (layers: { id: string }[]): string[] => layers.map((l) => l.id).sort();

/** Opens a driver whose cleanup() also runs at teardown if the test fails half-way (cleanup is idempotent). */
async function open(t: { teardown: (fn: () => Promise<void>) => void }, options: DriverOptions): Promise<Driver> {
  const driver = await Driver.init(options);
  t.teardown(() => driver.cleanup());
  return driver;
}

test.serial('the seed end to end: create, get, put, snapshots isolated, remove, cleanup and reopen', async (t) => {
  const home = newHome('seed');
  const options = { home, ...SMALL };
  let driver = await open(t, options);

  await driver.create('img');
  const rootfs = await driver.get('img');
  t.is(rootfs, join(home, 'mnt', 'img', 'rootfs'));
  const idFile = join(home, 'mnt', 'img', 'id');
  t.is(readFileSync(idFile, 'utf8'), 'img');
  t.is(statSync(idFile).mode & 0o777, 0o600);
  t.true(statSync(rootfs).isDirectory());
  t.is(statSync(rootfs).mode & 0o777, 0o755);
  t.deepEqual(mountsUnder(home), [join(home, 'mnt', 'img')]);
  mkdirSync(join(rootfs, 'etc'));
  writeFileSync(join(rootfs, 'etc', 'os-release'), 'image');
  writeFileSync(join(rootfs, 'shared'), 'from img');
  await driver.put('img');
  t.deepEqual(mountsUnder(home), []);

  await driver.create('ctr', 'img');
  const ctrRoot = await driver.get('ctr');
  t.is(ctrRoot, join(home, 'mnt', 'ctr', 'rootfs'));
  // The seed writes <mp>/id only when absent, and it lives in the layer's own filesystem: a
  // snapshot inherits its parent's (as in Docker).
  t.is(readFileSync(join(home, 'mnt', 'ctr', 'id'), 'utf8'), 'img');
  t.is(readFileSync(join(ctrRoot, 'etc', 'os-release'), 'utf8'), 'image');
  t.is(readFileSync(join(ctrRoot, 'shared'), 'utf8'), 'from img');
  writeFileSync(join(ctrRoot, 'shared'), 'changed in ctr');
  writeFileSync(join(ctrRoot, 'only-ctr'), 'ctr');
  const imgRoot = await driver.get('img');
  t.is(readFileSync(join(imgRoot, 'shared'), 'utf8'), 'from img', "the container's writes do not reach its image");
  t.false(existsSync(join(imgRoot, 'only-ctr')));
  await driver.put('img');
  await driver.put('ctr');

  await driver.create('ctr2', 'img');
  const ctr2Root = await driver.get('ctr2');
  writeFileSync(join(ctr2Root, 'only-ctr2'), 'ctr2');
  await driver.put('ctr2');

  await t.notThrowsAsync(driver.remove('missing'), 'removing an id that does not exist is a no-op');
  t.true(await driver.exists('ctr'));
  await driver.remove('ctr');
  t.false(await driver.exists('ctr'));
  t.false(existsSync(join(home, 'mnt', 'ctr')));
  t.deepEqual(ids(await driver.list()), ['ctr2', 'img']);
  const { transactionId } = await driver.status();
  t.is(transactionId, BigInt(savedState(home).transactionId));

  await driver.cleanup();
  t.deepEqual(driverDmNames(), [], 'cleanup deactivates every device and the pool');
  t.deepEqual(loopLines(), [], 'and the loop devices go with the pool');
  t.deepEqual(mountsUnder(home), []);

  driver = await open(t, options);
  t.deepEqual(ids(await driver.list()), ['ctr2', 'img']);
  t.is((await driver.status()).transactionId, transactionId);
  const img = await driver.get('img');
  t.is(readFileSync(join(img, 'etc', 'os-release'), 'utf8'), 'image');
  t.is(readFileSync(join(img, 'shared'), 'utf8'), 'from img');
  const ctr2 = await driver.get('ctr2');
  t.is(readFileSync(join(ctr2, 'only-ctr2'), 'utf8'), 'ctr2');
  t.is(readFileSync(join(ctr2, 'shared'), 'utf8'), 'from img');
  t.false(existsSync(join(ctr2, 'only-ctr')));
  await driver.put('img');
  await driver.put('ctr2');
  await driver.cleanup();
});

test.serial(
  'remove of a mounted layer: EBUSY and nothing lost; with deferredDeletion it completes after put or at the next init',
  async (t) => {
    const home = newHome('busy');
    let driver = await open(t, { home, ...SMALL });
    await driver.create('x');
    await driver.get('x');
    const before = metadataSnapshot(home);
    const error = await t.throwsAsync(driver.remove('x'));
    t.true(error instanceof DmSystemError, String(error));
    t.is(codeOf(error), 'EBUSY');
    t.true(await driver.exists('x'));
    t.is(driver.mountCount('x'), 1);
    t.deepEqual(metadataSnapshot(home), before);
    await driver.put('x');
    await driver.remove('x');
    t.false(await driver.exists('x'));
    await driver.cleanup();

    driver = await open(t, { home, ...SMALL, deferredDeletion: true, deferredDeletionIntervalMs: 200 });
    await driver.create('x');
    const { deviceId, deviceName } = await driver.metadata('x');
    await driver.get('x');
    await driver.remove('x');
    t.false(await driver.exists('x'), 'a deferred-deleted layer no longer exists for the caller');
    t.false(ids(await driver.list()).includes('x'));
    t.is((await driver.status()).deferredDeletedDeviceCount, 1);
    t.true(dmNames().includes(deviceName), 'still mounted, still active');
    await driver.put('x');
    t.true(
      await eventually(async () => (await driver.status()).deferredDeletedDeviceCount === 0, 5000),
      'the retry timer finishes the deletion',
    );
    t.false(dmNames().includes(deviceName));
    t.false(savedThinIds(home).has('x'), 'its record is gone');
    t.false(existsSync(join(home, 'mnt', 'x')));
    const { poolName } = await driver.status();
    t.false(poolThinIds(poolName, deviceId + 1).includes(deviceId), 'its thin id is gone from the pool');

    // Deferred while mounted, then the driver stops: the next init finishes the deletion.
    await driver.create('y');
    await driver.get('y');
    await driver.remove('y');
    t.is((await driver.status()).deferredDeletedDeviceCount, 1);
    await driver.cleanup();
    driver = await open(t, { home, ...SMALL, deferredDeletion: true, deferredDeletionIntervalMs: 0 });
    const status = await driver.status();
    t.is(status.deferredDeletedDeviceCount, 0);
    t.false(savedThinIds(home).has('y'), 'its record is gone');
    t.is(status.transactionId, BigInt(savedState(home).transactionId));
    t.deepEqual(ids(await driver.list()), []);
    await driver.cleanup();
  },
);

test.serial(
  'get and put are reference-counted; the last put unmounts and deactivates; put of an unmounted layer is a no-op',
  async (t) => {
    const home = newHome('refs');
    const driver = await open(t, { home, ...SMALL });
    await driver.create('x');
    const { deviceName } = await driver.metadata('x');
    const first = await driver.get('x');
    const second = await driver.get('x');
    t.is(second, first);
    t.is(driver.mountCount('x'), 2);
    t.deepEqual(mountsUnder(home), [join(home, 'mnt', 'x')], 'mounted once, not twice');
    await driver.put('x');
    t.is(driver.mountCount('x'), 1);
    t.deepEqual(mountsUnder(home), [join(home, 'mnt', 'x')]);
    t.true(dmNames().includes(deviceName));
    await driver.put('x');
    t.is(driver.mountCount('x'), 0);
    t.deepEqual(mountsUnder(home), []);
    t.false(dmNames().includes(deviceName), 'the last put deactivates the thin device');
    await t.notThrowsAsync(driver.put('x'));
    await t.notThrowsAsync(driver.put('never-created'));
    t.true(await driver.exists('x'));
    await driver.cleanup();
  },
);

test.serial('a failing mount inside get leaves no mount, no mount directory and no active device', async (t) => {
  const home = newHome('badmount');
  const driver = await open(t, { home, ...SMALL, mountOptions: 'nosuchoption' });
  await driver.create('x');
  const { deviceName } = await driver.metadata('x');
  const error = await t.throwsAsync(driver.get('x'));
  t.true(error instanceof DmSystemError, String(error));
  t.is((error as DmSystemError).syscall, 'mount');
  t.is(codeOf(error), 'EINVAL');
  t.deepEqual(mountsUnder(home), []);
  t.false(existsSync(join(home, 'mnt', 'x')));
  t.false(dmNames().includes(deviceName));
  t.is(driver.mountCount('x'), 0);
  t.true(await driver.exists('x'));
  await driver.cleanup();
});

test.serial('get of a layer activate() holds adopts its device, and the last put leaves it active', async (t) => {
  const home = newHome('held');
  const driver = await open(t, { home, ...SMALL });
  await driver.create('x');
  const active = await driver.activate('x');
  const rootfs = await driver.get('x');
  t.deepEqual(mountsUnder(home), [join(home, 'mnt', 'x')]);
  writeFileSync(join(rootfs, 'kept'), 'data');
  await driver.put('x');
  t.deepEqual(mountsUnder(home), []);
  t.true(dmNames().includes(active.deviceName), 'activate() still holds the device after the last put');
  t.false(existsSync(join(home, 'mnt', 'x', 'rootfs')), 'the mount point is empty once unmounted');
  // The device held is the same one: get again sees what was written.
  t.is(readFileSync(join(await driver.get('x'), 'kept'), 'utf8'), 'data');
  await driver.put('x');
  await driver.deactivate('x');
  t.false(dmNames().includes(active.deviceName), 'deactivate() ends the hold');
  await driver.cleanup();
});

test.serial('a failed get of a layer activate() holds leaves its device active', async (t) => {
  const home = newHome('heldbad');
  const driver = await open(t, { home, ...SMALL, mountOptions: 'nosuchoption' });
  await driver.create('x');
  const active = await driver.activate('x');
  const error = await t.throwsAsync(driver.get('x'));
  t.is(codeOf(error), 'EINVAL');
  t.deepEqual(mountsUnder(home), []);
  t.false(existsSync(join(home, 'mnt', 'x')), 'the mount directory it made is gone');
  t.true(dmNames().includes(active.deviceName), 'the failed get did not take the held device away');
  t.is(driver.mountCount('x'), 0);
  await driver.deactivate('x');
  t.false(dmNames().includes(active.deviceName));
  await driver.cleanup();
});

test.serial('create refuses with ERR_DM_NO_SPACE below minFreeSpacePercent, creating nothing', async (t) => {
  const home = newHome('space');
  const driver = await open(t, {
    home,
    baseSize: '64M',
    loopDataSize: '64M',
    loopMetadataSize: '16M',
    minFreeSpacePercent: 50,
  });
  await driver.create('fill');
  const rootfs = await driver.get('fill');
  const fd = openSync(join(rootfs, 'blob'), 'w');
  try {
    const chunk = Buffer.alloc(1 << 20, 0xa5);
    for (let i = 0; i < 36; i++) writeSync(fd, chunk);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  await driver.put('fill');
  const status = await driver.status();
  t.true(
    status.dataSpace.used * 100n > status.dataSpace.total * 50n,
    `used ${status.dataSpace.used} of ${status.dataSpace.total}`,
  );
  const before = { meta: metadataSnapshot(home), dm: dmNames() };
  for (const parent of [undefined, 'fill']) {
    const error = await t.throwsAsync(driver.create('next', parent));
    t.is(codeOf(error), 'ERR_DM_NO_SPACE', String(error));
  }
  t.false(await driver.exists('next'));
  t.deepEqual({ meta: metadataSnapshot(home), dm: dmNames() }, before);
  t.is((await driver.status()).transactionId, status.transactionId);
  await driver.cleanup();
});

test.serial('50 concurrent creates, gets, puts and removes over one parent end consistent', async (t) => {
  const home = newHome('many');
  const driver = await open(t, { home, ...SMALL });
  await driver.create('base');
  writeFileSync(join(await driver.get('base'), 'from-base'), 'base');
  await driver.put('base');
  const children = Array.from({ length: 50 }, (_, i) => `c${String(i).padStart(2, '0')}`);
  await Promise.all(children.map((id) => driver.create(id, 'base')));
  const roots = await Promise.all(children.map((id) => driver.get(id)));
  t.deepEqual(
    roots,
    children.map((id) => join(home, 'mnt', id, 'rootfs')),
  );
  t.is(mountsUnder(home).length, 50);
  for (const [i, id] of children.entries()) writeFileSync(join(roots[i]!, `${id}.txt`), id);
  await Promise.all(children.map((id) => driver.put(id)));
  t.deepEqual(mountsUnder(home), []);
  const removed = children.filter((_, i) => i % 2 === 0);
  const kept = children.filter((_, i) => i % 2 === 1);
  await Promise.all(removed.map((id) => driver.remove(id)));

  t.deepEqual(ids(await driver.list()), ['base', ...kept]);
  const status = await driver.status();
  t.is(status.transactionId, BigInt(savedState(home).transactionId));
  t.false(openTransactionExists(home));
  const thinIds = [...savedThinIds(home).values()];
  t.is(new Set(thinIds).size, thinIds.length, 'every layer has its own thin id');
  t.is(thinIds.length, 1 + 1 + kept.length, 'the base device, base, and the kept children');
  for (const id of removed) t.false(existsSync(join(home, 'mnt', id)));
  const keptRoots = await Promise.all(kept.map((id) => driver.get(id)));
  for (const [i, id] of kept.entries()) t.deepEqual(readdirSync(keptRoots[i]!).sort(), [`${id}.txt`, 'from-base'], id);
  await Promise.all(kept.map((id) => driver.put(id)));
  t.deepEqual(driverDmNames(), [status.poolName], 'only the pool stays active');
  await driver.cleanup();
});

test.serial('bad input is a typed error that changes nothing on disk or in the kernel', async (t) => {
  const home = newHome('bad');
  const driver = await open(t, { home, ...SMALL });
  await driver.create('img');
  const picture = (): unknown => ({
    meta: metadataSnapshot(home),
    mnt: readdirSync(join(home, 'mnt')).sort(),
    dm: dmsetup('ls').split('\n').sort(),
  });
  const before = picture();

  const badIds = ['a/b', '/abs', '..', '../x', 'x/../y', 'a\0b', 'x'.repeat(81), ''];
  for (const bad of badIds) {
    const calls: [string, () => Promise<unknown>][] = [
      ['create', () => driver.create(bad)],
      // '' as the parent means none (Docker passes ''): not an error.
      ...(bad === '' ? [] : [['create parent', () => driver.create('child', bad)] as [string, () => Promise<unknown>]]),
      ['remove', () => driver.remove(bad)],
      ['get', () => driver.get(bad)],
      ['put', () => driver.put(bad)],
      ['exists', () => driver.exists(bad)],
    ];
    for (const [what, call] of calls) {
      const error = await t.throwsAsync(call(), { instanceOf: InvalidArgumentError }, `${what} ${JSON.stringify(bad)}`);
      t.is(codeOf(error), 'ERR_DM_INVALID_ARGUMENT');
      t.is((error as InvalidArgumentError | undefined)?.argument, what === 'create parent' ? 'parent' : 'id');
    }
  }
  t.is(codeOf(await t.throwsAsync(driver.create('child', 'nope'))), 'ERR_DM_UNKNOWN_PARENT');
  t.is(codeOf(await t.throwsAsync(driver.create('img'))), 'ERR_DM_LAYER_EXISTS');
  for (const label of ['system_u:object_r:x"', 'a\nb']) {
    const error = await t.throwsAsync(driver.get('img', label), { instanceOf: InvalidArgumentError });
    t.is((error as InvalidArgumentError | undefined)?.argument, 'mountLabel');
  }
  t.is(driver.mountCount('img'), 0);
  t.deepEqual(picture(), before);

  const fresh = join(home, 'never-made');
  const badOptions: [string, Record<string, unknown>][] = [
    ['bogus', { home: fresh, ...SMALL, bogus: 1 }],
    ['filesystem', { home: fresh, ...SMALL, filesystem: 'btrfs' }],
    ['blockSize', { home: fresh, ...SMALL, blockSize: '96K' }],
    ['minFreeSpacePercent', { home: fresh, ...SMALL, minFreeSpacePercent: 150 }],
    ['home', { ...SMALL, home: 'relative/home' }],
  ];
  for (const [argument, options] of badOptions) {
    const error = await t.throwsAsync(
      Driver.init(options as unknown as DriverOptions),
      { instanceOf: InvalidArgumentError },
      argument,
    );
    t.is(codeOf(error), 'ERR_DM_INVALID_ARGUMENT');
    t.is((error as InvalidArgumentError | undefined)?.argument, argument);
    t.true(error?.message.includes(argument));
  }
  t.false(existsSync(fresh));
  t.false(existsSync(resolve('relative')));
  t.deepEqual(picture(), before);

  // The longest valid id works.
  const longest = 'x'.repeat(80);
  await driver.create(longest, 'img');
  t.true(await driver.exists(longest));
  await driver.remove(longest);
  await driver.cleanup();
});

test.serial('two drivers on different homes in one process keep to their own pools', async (t) => {
  const homeA = newHome('twoA');
  const homeB = newHome('twoB');
  const a = await open(t, { home: homeA, ...SMALL });
  const b = await open(t, { home: homeB, ...SMALL });
  const [statusA, statusB] = [await a.status(), await b.status()];
  t.not(statusA.poolName, statusB.poolName);
  t.is(loopLines().length, 4);
  for (const [driver, who] of [
    [a, 'A'],
    [b, 'B'],
  ] as const) {
    await driver.create('same');
    writeFileSync(join(await driver.get('same'), 'who'), who);
    await driver.put('same');
  }
  const tidB = (await b.status()).transactionId;
  await a.create('onlyA', 'same');
  await a.remove('same');
  t.false(await a.exists('same'));
  t.false(await b.exists('onlyA'));
  t.true(await b.exists('same'));
  t.is((await b.status()).transactionId, tidB, "A's changes do not touch B's pool");
  t.is(readFileSync(join(await b.get('same'), 'who'), 'utf8'), 'B');
  t.is(readFileSync(join(await a.get('onlyA'), 'who'), 'utf8'), 'A');
  await a.put('onlyA');
  await a.cleanup();
  t.deepEqual(
    driverDmNames().filter((n) => n.endsWith('-pool')),
    [statusB.poolName],
  );
  t.is(readFileSync(join(homeB, 'mnt', 'same', 'rootfs', 'who'), 'utf8'), 'B', "B's mount survives A's cleanup");
  await b.put('same');
  await b.create('after');
  t.deepEqual(ids(await b.list()), ['after', 'same']);
  await b.cleanup();
});

test.serial(
  'a pool transaction id changed behind the driver: the next init refuses and leaves nothing active',
  async (t) => {
    const home = newHome('tid');
    const options = { home, ...SMALL };
    const driver = await open(t, options);
    await driver.create('img');
    const { poolName, transactionId } = await driver.status();
    dmsetup('message', poolName, '0', `set_transaction_id ${transactionId} ${transactionId + 1n}`);
    await driver.cleanup();
    const before = metadataSnapshot(home);
    const error = await t.throwsAsync(Driver.init(options));
    t.is(codeOf(error), 'ERR_DM_TRANSACTION_MISMATCH', String(error));
    t.deepEqual(driverDmNames(), [], 'the failed init deactivated the pool it activated');
    t.deepEqual(loopLines(), [], 'and so released its loop devices');
    t.deepEqual(mountsUnder(home), []);
    t.true(homeLockFree(home), 'and released the home');
    t.deepEqual(metadataSnapshot(home), before, 'and kept its metadata as it was');
    t.is(
      codeOf(await t.throwsAsync(Driver.init(options))),
      'ERR_DM_TRANSACTION_MISMATCH',
      'refused again, the same way',
    );
    t.deepEqual(driverDmNames(), []);
  },
);

test.serial(
  'a first init that fails half-way (mkfs refuses its arguments) leaves nothing active; the next init starts over',
  async (t) => {
    const home = newHome('mkfs');
    const error = await t.throwsAsync(Driver.init({ home, ...SMALL, mkfsArgs: ['-O', 'no_such_feature'] }));
    t.is(codeOf(error), 'ERR_DM_TOOL_FAILED', String(error));
    t.deepEqual(driverDmNames(), [], 'neither the base device nor the pool stays active');
    t.deepEqual(loopLines(), []);
    t.true(homeLockFree(home), 'and released the home');
    const driver = await open(t, { home, ...SMALL });
    await driver.create('img');
    writeFileSync(join(await driver.get('img'), 'hello'), 'works');
    await driver.put('img');
    t.is((await driver.status()).transactionId, BigInt(savedState(home).transactionId));
    await driver.cleanup();
  },
);

test.serial('nothing leaked: no dm device, no loop device, no mount under any home', assertNothingLeaked);
