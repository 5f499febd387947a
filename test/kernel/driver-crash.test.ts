// The Driver's crash protocol against a real kernel. For each crash point a child node process
// opens a prepared home, mounts a layer (a leftover SIGKILL does not undo), and starts a create
// or a remove with DEVMAPPER_TEST_CRASH_AT naming the point, where it SIGKILLs itself. Then this
// process opens the same home (taking over the dead child's lock) and checks that recovery left
// it consistent: the pool's transaction id is the metadata's, no open transaction remains, the
// layer exists exactly when the crash came at or after the commit (a remove always finishes),
// the thin ids in the pool are exactly those the metadata owns (probed with temporary dm
// devices), the child's mount is adopted (one reference, released by put) while an active
// leftover device that no mount uses is removed, and the next create works. A few points are
// repeated with a simulated reboot in between (mount, devices and pool gone).
import test from 'ava';
import { Kernel } from '../../src/ioctl/kernel.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { findThinTool, thinCheckOffline } from '../../src/driver/thin-check.js';
import { assertKernelTestBed, dmsetup, run } from './reference-tools.js';
import {
  type NodeChildResult,
  runNodeChild,
  SMALL,
  assertNothingLeaked,
  driverDmNames,
  loopLines,
  mountsUnder,
  newHome,
  openTransactionExists,
  poolThinIds,
  removeHomes,
  savedState,
  savedThinIds,
} from './driver-helpers.js';

const INDEX_URL = new URL('../../src/index.js', import.meta.url).href;
let scriptDir = '';
let script = '';

test.before(() => {
  assertKernelTestBed();
  scriptDir = mkdtempSync(join(tmpdir(), 'drv-crash-script-'));
  script = join(scriptDir, 'child.mjs');
  writeFileSync(
    script,
    `
import { Driver } from ${JSON.stringify(INDEX_URL)};
const [home, op] = process.argv.slice(2);
const driver = await Driver.init({ home, ...${JSON.stringify(SMALL)} });
await driver.get('img'); // a mount and an active thin device that the crash leaves behind
if (op === 'create') await driver.create('ctr', 'img');
else await driver.remove('victim');
console.log('survived the crash point');
process.exit(3);
`,
  );
});

test.after.always(() => {
  if (scriptDir) rmSync(scriptDir, { recursive: true, force: true });
  removeHomes();
});

function runChild(home: string, op: 'create' | 'remove', crashAt: string): Promise<NodeChildResult> {
  return runNodeChild(script, [home, op], { DEVMAPPER_TEST_CRASH_AT: crashAt });
}

const CASES = [
  { point: 'create:intent', op: 'create', layer: 'ctr', existsAfter: false },
  { point: 'create:snapshot', op: 'create', layer: 'ctr', existsAfter: false },
  { point: 'create:commit', op: 'create', layer: 'ctr', existsAfter: true },
  { point: 'create:done', op: 'create', layer: 'ctr', existsAfter: true },
  { point: 'remove:intent', op: 'remove', layer: 'victim', existsAfter: false },
  { point: 'remove:delete', op: 'remove', layer: 'victim', existsAfter: false },
  { point: 'remove:commit', op: 'remove', layer: 'victim', existsAfter: false },
] as const;

// The same with a "reboot" between the crash and the next init: the mount, the devices and the
// pool are gone (the loops detach with it), so recovery reads what the pool committed.
const REBOOT_CASES = new Set<string>(['create:snapshot', 'create:commit', 'remove:delete']);

for (const { point, op, layer, existsAfter, reboot } of [
  ...CASES.map((c) => ({ ...c, reboot: false })),
  ...CASES.filter((c) => REBOOT_CASES.has(c.point)).map((c) => ({ ...c, reboot: true })),
]) {
  const title = `crash at ${point}${reboot ? ', then a reboot' : ''}: the next init recovers a consistent home (${layer} ${existsAfter ? 'exists' : 'does not exist'})`;
  test.serial(title, async (t) => {
    const home = newHome(point.replace(':', '-'));
    const options = { home, ...SMALL };

    // Prepare: an image with a file and a layer on it to remove; then stop cleanly.
    let driver = await Driver.init(options);
    t.teardown(() => driver.cleanup());
    await driver.create('img');
    writeFileSync(join(await driver.get('img'), 'hello'), 'image');
    await driver.put('img');
    await driver.create('victim', 'img');
    const { poolName } = await driver.status();
    const imgDevice = (await driver.metadata('img')).deviceName;
    const victimThinId = (await driver.metadata('victim')).deviceId;
    await driver.cleanup();

    const child = await runChild(home, op, point);
    t.is(child.signal, 'SIGKILL', `the child died by SIGKILL at ${point} (status ${child.code}):\n${child.output}`);
    t.is(readFileSync(join(home, 'lock'), 'utf8').trim(), String(child.pid), "the dead child's lock is still there");
    t.is(
      openTransactionExists(home),
      point !== 'create:done',
      'the crash left the transaction open (closed only after create:done)',
    );
    t.deepEqual(mountsUnder(home), [join(home, 'mnt', 'img')], "the child's mount outlives it");
    t.true(driverDmNames().includes(imgDevice), 'and so does its thin device');
    // A leftover active device that no mount uses (as a crash between activate and mount leaves).
    const staleDevice = imgDevice.replace(/-img$/, '-victim');
    if (op === 'create' && !reboot) {
      const poolDev = dmsetup('info', '-c', '--noheadings', '-o', 'major,minor', poolName).trim();
      dmsetup('create', staleDevice, '--table', `0 8 thin ${poolDev} ${victimThinId}`);
    }
    if (reboot) {
      run('umount', [join(home, 'mnt', 'img')]);
      dmsetup('remove', imgDevice);
      dmsetup('remove', poolName);
      t.deepEqual(driverDmNames(), []);
      t.deepEqual(loopLines(), [], 'the loops detached with the pool');
    }

    driver = await Driver.init(options);
    t.is(readFileSync(join(home, 'lock'), 'utf8').trim(), String(process.pid), 'init took the stale lock over');
    const status = await driver.status();
    t.is(status.transactionId, BigInt(savedState(home).transactionId), "the pool's transaction id is the metadata's");
    t.false(openTransactionExists(home), 'no open transaction remains');
    t.is(await driver.exists(layer), existsAfter);
    const expected = op === 'remove' ? ['img'] : existsAfter ? ['ctr', 'img', 'victim'] : ['img', 'victim'];
    t.deepEqual((await driver.list()).map((l) => l.id).sort(), expected);

    // The thin ids in the pool are exactly the metadata's (the base device's included).
    const owned = [...savedThinIds(home).values()].sort((x, y) => x - y);
    const maxId = savedState(home).nextDeviceId + 2;
    t.deepEqual(poolThinIds(poolName, maxId), owned, 'no orphan thin id in the pool, none missing');

    // The child's mount is adopted with one reference (put() releases it); the unused leftover
    // device is gone; nothing else but our pool and its two loops is active.
    t.deepEqual(mountsUnder(home), reboot ? [] : [join(home, 'mnt', 'img')]);
    t.is(driver.mountCount('img'), reboot ? 0 : 1, "init adopted the child's mount");
    t.deepEqual(
      driverDmNames(),
      reboot ? [poolName] : [imgDevice, poolName].sort(),
      'init removed the leftover device no mount uses',
    );
    t.deepEqual(
      loopLines()
        .map((line) => line.split(' ')[1])
        .sort(),
      [join(home, 'devicemapper', 'data'), join(home, 'devicemapper', 'metadata')],
    );
    t.is(readFileSync(join(await driver.get('img'), 'hello'), 'utf8'), 'image');
    t.is(driver.mountCount('img'), reboot ? 1 : 2);
    if (!reboot) await driver.put('img');
    await driver.put('img');
    t.deepEqual(mountsUnder(home), [], 'the last put unmounts the adopted mount');
    t.deepEqual(driverDmNames(), [poolName]);

    if (existsAfter) t.is(readFileSync(join(await driver.get('ctr'), 'hello'), 'utf8'), 'image');
    if (existsAfter) await driver.put('ctr');
    await driver.create('after', 'img');
    t.is(readFileSync(join(await driver.get('after'), 'hello'), 'utf8'), 'image', 'the next create works');
    await driver.put('after');
    t.is((await driver.status()).transactionId, BigInt(savedState(home).transactionId));
    await driver.cleanup();
    // The pool's own metadata, read by thin-provisioning-tools with the pool inactive.
    if (findThinTool('thin_check')) {
      const checked = await thinCheckOffline(join(home, 'devicemapper', 'metadata'), { kernel: Kernel.for() });
      t.true(checked.ok, `thin_check after the recovery: ${checked.summary}\n${checked.output}`);
    }
  });
}

test.serial('nothing leaked: no dm device, no loop device, no mount under any home', assertNothingLeaked);
