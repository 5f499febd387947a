// The Driver (Docker's devicemapper graph driver operations) against a real kernel: the seed's
// semantics end to end, busy and deferred removal, reference-counted mounts, undo of a failed
// get, the free-space guard and concurrency over one parent. Every test has its own home under
// the guest's private /tmp and ends with cleanup(); dmsetup, losetup and /proc/self/mounts
// check from outside. Bad input and failed inits are in driver-failures.test.ts, the crash
// protocol in driver-crash.test.ts.
import test from 'ava';
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
import { join } from 'node:path';
import { DmSystemError } from '../../src/errors.js';
import {
  SMALL,
  codeOf,
  openDriver,
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

useDriverBed();

const ids = (layers: { id: string }[]): string[] => layers.map((l) => l.id).sort();

test.serial('the seed end to end: create, get, put, snapshots isolated, remove, cleanup and reopen', async (t) => {
  const home = newHome('seed');
  const options = { home, ...SMALL };
  let driver = await openDriver(t, options);

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

  driver = await openDriver(t, options);
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
    let driver = await openDriver(t, { home, ...SMALL });
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

    driver = await openDriver(t, { home, ...SMALL, deferredDeletion: true, deferredDeletionIntervalMs: 200 });
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
    driver = await openDriver(t, { home, ...SMALL, deferredDeletion: true, deferredDeletionIntervalMs: 0 });
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
    const driver = await openDriver(t, { home, ...SMALL });
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
  const driver = await openDriver(t, { home, ...SMALL, mountOptions: 'nosuchoption' });
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
  const driver = await openDriver(t, { home, ...SMALL });
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
  const driver = await openDriver(t, { home, ...SMALL, mountOptions: 'nosuchoption' });
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
  const driver = await openDriver(t, {
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
  const driver = await openDriver(t, { home, ...SMALL });
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

test.serial('nothing leaked: no dm device, no loop device, no mount under any home', assertNothingLeaked);
