// A pool out of data space that queues I/O (errorIfNoSpace: false, the kernel's
// queue_if_no_space). Found in the guest (6.1): the writer blocks (dd oflag=direct stays in
// its write) and the pool reports out_of_data_space; without help it waits the kernel's
// no_space_timeout (60 s) and then fails with EIO, and an unmount of a layer with unwritten
// pages blocks the caller in umount2 for those 60 s and loses the pages ("lost async page
// write"). So the Driver's calls end at once with a typed error: create ERR_DM_NO_SPACE, get
// PoolModeError, the last put ERR_DM_NO_SPACE (the layer stays mounted, its data kept); and
// growPool() releases the queued I/O: the blocked writer carries on, the put then works and
// the data reads back. cleanup() with layers mounted is refused the same way (it would unmount
// them), and close() lets go of the home at once.
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { PoolModeError } from '../../src/errors.js';
import type { PoolEvent } from '../../src/thin/events.js';
import { bounded, writeDurably } from './fault-helpers.js';
import { assertNothingLeaked, codeOf, eventually, newHome, sha, show } from './driver-helpers.js';
import { useDriverBed } from './helpers.js';

useDriverBed();

/** The call fails within `ms` (it must not wait for the kernel's no_space_timeout). */
async function failsFast(t: ExecutionContext, call: Promise<unknown>, what: string, ms = 2000): Promise<unknown> {
  const started = Date.now();
  const error = await bounded(call, what).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.true(error !== undefined, `${what} must fail`);
  t.true(Date.now() - started < ms, `${what} took ${Date.now() - started} ms`);
  return error;
}

test.serial(
  'queue_if_no_space: writers block, the Driver refuses at once with typed errors, growPool() releases the queued I/O',
  async (t) => {
    const home = newHome('queue');
    const options = { home, baseSize: '64M', loopDataSize: '40M', loopMetadataSize: '16M', errorIfNoSpace: false };
    let driver = await bounded(Driver.init(options), 'init');
    t.teardown(() => bounded(driver.cleanup(), 'cleanup at teardown', 90_000));
    const watcher = driver.watch();
    const events: PoolEvent[] = [];
    watcher.on('event', (event: PoolEvent) => events.push(event));
    t.teardown(() => watcher.stop());

    await driver.create('img');
    const blob = randomBytes(1 << 20);
    writeDurably(join(await driver.get('img'), 'blob'), blob);
    await driver.put('img');
    await driver.create('spare', 'img');
    const buffered = randomBytes(2 << 20);
    writeFileSync(join(await driver.get('spare'), 'buffered'), buffered); // in the page cache, not yet on the pool
    await driver.create('fill', 'img');
    const fillRoot = await driver.get('fill');

    let ddExit: { code: number | null; at: number } | undefined;
    const dd = spawn('dd', ['if=/dev/zero', `of=${join(fillRoot, 'filler')}`, 'bs=1M', 'count=60', 'oflag=direct'], {
      stdio: 'ignore',
    });
    dd.on('close', (code) => {
      ddExit = { code, at: Date.now() };
    });
    t.teardown(() => {
      if (!ddExit) dd.kill('SIGKILL');
    });
    t.true(
      await eventually(async () => (await driver.status()).poolMode === 'out_of_data_space', 15_000),
      'the pool runs out of data space',
    );
    t.true(
      await eventually(() => events.some((e) => e.kinds.includes('out-of-data-space')), 5000),
      show(events.map((e) => e.kinds)),
    );
    t.is(ddExit, undefined, 'the writer is blocked, queued by the pool');

    t.is(codeOf(await failsFast(t, driver.create('more', 'img'), 'create')), 'ERR_DM_NO_SPACE');
    const getError = await failsFast(t, driver.get('img'), 'get');
    t.true(getError instanceof PoolModeError, String(getError));
    const putError = await failsFast(t, driver.put('spare'), 'put');
    t.is(codeOf(putError), 'ERR_DM_NO_SPACE', String(putError));
    t.regex(String(putError), /queues I\/O.*growPool/);
    t.is(driver.mountCount('spare'), 1, 'the refused put left the layer mounted');
    // cleanup would unmount every layer, each blocking for the no_space_timeout: refused too.
    const cleanupError = await failsFast(t, driver.cleanup(), 'cleanup');
    t.is(codeOf(cleanupError), 'ERR_DM_NO_SPACE', String(cleanupError));
    t.regex(String(cleanupError), /cleanup: .*queues I\/O.*spare.*growPool\(\) first, or close\(\)/);
    t.is(driver.mountCount('spare'), 1, 'the refused cleanup left the layers mounted');
    t.is((await driver.status()).poolMode, 'out_of_data_space', 'the driver is still open');
    // close() lets go without unmounting; a new init adopts the mounts, on the queueing pool.
    const closedAt = Date.now();
    await bounded(driver.close(), 'close', 2000);
    t.true(Date.now() - closedAt < 2000, `close took ${Date.now() - closedAt} ms`);
    const reopenedAt = Date.now();
    driver = await bounded(Driver.init(options), 'init on the queueing pool', 20_000);
    t.log(`init on the queueing pool took ${Date.now() - reopenedAt} ms`);
    t.is(driver.mountCount('spare'), 1, 'init adopted the mount');
    t.is(ddExit, undefined, 'still blocked');

    const grownAt = Date.now();
    t.is(await bounded(driver.growPool('160M'), 'growPool'), 160n << 20n);
    t.is((await driver.status()).poolMode, 'rw');
    t.true(await eventually(() => ddExit !== undefined, 15_000), 'growing the pool released the blocked writer');
    t.log(
      `the writer ended ${ddExit!.at - grownAt} ms after growPool (exit ${ddExit!.code}: its filesystem, 64M, may fill)`,
    );

    await bounded(driver.put('spare'), 'put after growPool');
    t.is(driver.mountCount('spare'), 0);
    const spareRoot = await driver.get('spare');
    t.is(sha(readFileSync(join(spareRoot, 'buffered'))), sha(buffered), 'the refused put lost nothing');
    t.is(sha(readFileSync(join(spareRoot, 'blob'))), sha(blob));
    await driver.put('spare');
    await bounded(driver.put('fill'), 'put fill');
    await driver.create('more', 'img');
    const report = await bounded(driver.check(), 'check');
    t.true(report.clean, show(report));
    await driver.cleanup();
  },
);

test.serial('nothing leaked: no dm device, no loop device, no mount under any home', (t) => {
  assertNothingLeaked(t);
});
