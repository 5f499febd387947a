// The Driver against a real kernel when things go wrong: bad input, two drivers side by side
// in one process, a pool transaction id changed behind the driver, and a first init that fails
// half-way. Each must leave nothing changed, active or held. The happy paths are in
// driver.test.ts, the crash protocol in driver-crash.test.ts.
import test from 'ava';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import type { DriverOptions } from '../../src/driver/options.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { dmsetup } from './reference-tools.js';
import {
  SMALL,
  codeOf,
  homeLockFree,
  openDriver,
  assertNothingLeaked,
  driverDmNames,
  loopLines,
  metadataSnapshot,
  mountsUnder,
  newHome,
  savedState,
} from './driver-helpers.js';
import { useDriverBed } from './helpers.js';

useDriverBed();

const ids = (layers: { id: string }[]): string[] => layers.map((l) => l.id).sort();

test.serial('bad input is a typed error that changes nothing on disk or in the kernel', async (t) => {
  const home = newHome('bad');
  const driver = await openDriver(t, { home, ...SMALL });
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
  const a = await openDriver(t, { home: homeA, ...SMALL });
  const b = await openDriver(t, { home: homeB, ...SMALL });
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
    const driver = await openDriver(t, options);
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
    const driver = await openDriver(t, { home, ...SMALL });
    await driver.create('img');
    writeFileSync(join(await driver.get('img'), 'hello'), 'works');
    await driver.put('img');
    t.is((await driver.status()).transactionId, BigInt(savedState(home).transactionId));
    await driver.cleanup();
  },
);

test.serial('nothing leaked: no dm device, no loop device, no mount under any home', assertNothingLeaked);
