// The devmapper CLI against a real kernel, one home through its life: init and create, mount, ls,
// umount, status and rm, then check (a stray device found, exit 3, and repaired) and cleanup.
// Each command is run as its own process (cli-helpers.ts) and its --json output is compared with
// what the library reports, opened in this process on the same home after the CLI process has
// exited; failures exit 1 with the library's code. The tests run in order on the shared home;
// the last test checks that nothing is leaked.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { HomeLock } from '../../src/driver/home-lock.js';
import { DeviceMapper } from '../../src/ioctl/device-mapper.js';
import { Kernel } from '../../src/ioctl/kernel.js';
import { parseThinStatus } from '../../src/thin/status.js';
import type { CliRun } from '../cli-process.js';
import {
  LONG,
  assertNothingLeftByCli,
  cli,
  codeOf,
  initArgs,
  json,
  jsonError,
  library,
  plain,
  recorded,
  useCliBed,
} from './cli-helpers.js';
import { SMALL, dmNames, loopLines, mountsUnder, newHome } from './driver-helpers.js';
import { Cleanup } from './helpers.js';

useCliBed({ leakCheckHook: false });

/** Status minus what depends on the free space of the filesystem under the loop files. */
function withoutAvailable(status: any): any {
  const copy = structuredClone(status);
  delete copy.dataSpace.available;
  delete copy.metadataSpace.available;
  return copy;
}

/** Mapped bytes of each active thin device, read straight from the kernel. */
function mappedBytes(names: readonly string[]): Map<string, bigint> {
  const dm = DeviceMapper.open();
  try {
    const map = new Map<string, bigint>();
    for (const name of names) {
      if (!dm.exists(name)) continue;
      const status = parseThinStatus(dm.status(name, { noFlush: true })[0]!.params);
      if (status.kind === 'ok') map.set(name, status.mappedSectors * 512n);
    }
    return map;
  } finally {
    dm.close();
  }
}

/** The CLI let go of the home: its flock on <home>/lock is gone (the file itself stays). */
const lockGone = (t: ExecutionContext, home: string, what: string): boolean => {
  const lock = HomeLock.tryAcquire(home, { kernel: Kernel.for() });
  lock?.release();
  return t.truthy(lock, `${what}: the CLI let go of the home`);
};

/** The home the layer tests share, in order (init, layers, check and cleanup). */
let home = '';
const h = (): string[] => ['--home', home];

test.serial("init and create: --json matches the library; failures exit 1 with the library's code", async (t) => {
  t.timeout(LONG);
  home = newHome('cli');

  // init: a progress line on stderr, the options recorded, the status the library sees.
  const init = await cli(...h(), '--json', ...initArgs);
  const initStatus = json(t, init, 'init');
  t.regex(init.stderr, /initialising/, 'a progress line while the base device is formatted');
  lockGone(t, home, 'init');
  t.deepEqual(JSON.parse(readFileSync(join(home, 'cli-options.json'), 'utf8')), {
    baseSize: SMALL.baseSize,
    loopDataSize: SMALL.loopDataSize,
    loopMetadataSize: SMALL.loopMetadataSize,
  });
  await library(home, async (driver) => {
    t.deepEqual(withoutAvailable(initStatus), withoutAvailable(plain(await driver.status())));
    t.is(initStatus.layerCount, 0);
  });

  // create: the layer's metadata as the library has it; readable output names the id.
  const img = json(t, await cli(...h(), '--json', 'create', 'img'), 'create img');
  const ctrText = await cli(...h(), 'create', 'ctr', '--parent', 'img', '--size', '96M');
  t.is(ctrText.code, 0, ctrText.stderr);
  lockGone(t, home, 'create');

  // Failures: exit status 1 and the code the library gives for the same operation.
  const dup = jsonError(t, await cli(...h(), '--json', 'create', 'img'), 1, 'create of an existing id');
  const nope = await cli(...h(), 'mount', 'nope');
  let waiting: Promise<CliRun> | undefined;
  await library(home, async (driver) => {
    t.deepEqual(img, plain(await driver.metadata('img')));
    const ctr = await driver.metadata('ctr');
    t.is(ctr.parent, 'img');
    t.is(ctr.size, 96n * 1024n * 1024n);
    t.is(ctrText.stdout, `created ctr (thin id ${ctr.deviceId}, 96.0 MiB)\n`);

    const libDup = codeOf(await t.throwsAsync(driver.create('img')));
    t.not(libDup, '(no code)');
    t.is(dup.code, libDup);
    t.is(nope.code, 1);
    const libNope = codeOf(await t.throwsAsync(driver.get('nope')));
    t.true(
      nope.stderr.startsWith('devmapper: ') && nope.stderr.includes(`[${libNope}]`),
      `readable error with the code ${libNope}: ${nope.stderr}`,
    );
    t.deepEqual((await driver.list()).map((l) => l.id).sort(), ['ctr', 'img'], 'the failed commands changed nothing');

    // While the library holds the home the CLI is refused, with the library's own code.
    const locked = jsonError(t, await cli(...h(), '--json', 'ls'), 1, 'ls while the home is held');
    t.is(locked.code, codeOf(await t.throwsAsync(Driver.init(recorded(home)))));
    t.true(locked.message.includes(String(process.pid)), 'names the holder');
    // --wait=SECONDS reaches the Driver: it waits that long, then fails saying so.
    const timedOut = jsonError(
      t,
      await cli(...h(), '--json', '--wait=1', 'ls'),
      1,
      'ls --wait=1 while the home is held',
    );
    t.is(timedOut.code, 'ERR_DM_HOME_LOCKED');
    t.regex(timedOut.message, /waited 1000 ms/);
    // A --wait started while the home is held gets it once the library lets go.
    waiting = cli(...h(), '--json', '--wait=120', 'ls');
    await new Promise((resolve) => setTimeout(resolve, 3000));
  });
  const waited = await waiting!;
  t.is(waited.code, 0, `ls --wait=120 got the home once the library let go: ${waited.stderr}`);
  t.deepEqual((JSON.parse(waited.stdout) as Array<{ id: string }>).map((l) => l.id).sort(), ['ctr', 'img']);
});

test.serial('mount, ls, umount, status, rm: --json matches the library; readable ls names the ids', async (t) => {
  t.timeout(LONG);
  if (!existsSync(join(home, 'cli-options.json'))) return t.fail('needs the home the previous test made');

  // mount: the rootfs path the library gives; the mount outlives the CLI process.
  const mounted = json(t, await cli(...h(), '--json', 'mount', 'ctr'), 'mount ctr');
  lockGone(t, home, 'mount');
  t.is(mounted.id, 'ctr');
  t.deepEqual(mountsUnder(home), [dirname(mounted.rootfs)]);
  const names = await library(home, async (driver) => {
    t.is(driver.mountCount('ctr'), 1, 'adopted with one reference');
    t.is(mounted.rootfs, await driver.get('ctr'));
    await driver.put('ctr');
    return (await driver.list()).map((l) => l.deviceName);
  });

  // Write into the container layer so it maps more than the base device.
  const fd = openSync(join(mounted.rootfs, 'data.bin'), 'w');
  try {
    writeSync(fd, randomBytes(4 << 20));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  execFileSync('sync');

  // ls: every layer with its mapped bytes, read from the kernel right before and after.
  const before = mappedBytes(names);
  const ls = json(t, await cli(...h(), '--json', 'ls'), 'ls') as any[];
  const after = mappedBytes(names);
  const lsText = await cli(...h(), 'ls');
  await library(home, async (driver) => {
    t.deepEqual(
      ls.map(({ mappedBytes: _m, parentRemoved: _p, ...rest }) => rest),
      plain(await driver.list()),
    );
    t.true(
      ls.every((r) => r.parentRemoved === false),
      'every parent is there',
    );
  });
  for (const row of ls) {
    const lo = before.get(row.deviceName);
    const hi = after.get(row.deviceName);
    if (lo === undefined || hi === undefined) t.is(row.mappedBytes, null, `${row.id} inactive: no mapped bytes`);
    else
      t.true(
        lo <= BigInt(row.mappedBytes) && BigInt(row.mappedBytes) <= hi,
        `${row.id}: ${row.mappedBytes} within [${lo}, ${hi}]`,
      );
  }
  const ctrRow = ls.find((r) => r.id === 'ctr');
  t.true(BigInt(ctrRow.mappedBytes) >= 4n << 20n, 'the 4 MiB written are mapped');
  t.deepEqual(
    ls.filter((r) => r.mounted).map((r) => r.id),
    ['ctr'],
  );
  t.is(lsText.code, 0);
  t.regex(lsText.stdout, /^ID\s+PARENT\s+THIN ID\s+SIZE\s+MAPPED\s+MOUNTED$/m);
  t.regex(lsText.stdout, new RegExp(`^ctr\\s+img\\s+${ctrRow.deviceId}\\s+96\\.0 MiB\\s.*\\byes$`, 'm'), lsText.stdout);
  t.regex(lsText.stdout, /^img\s+-\s+\d+\s+64\.0 MiB\s+-\s+no$/m, lsText.stdout);

  // umount: the last reference goes, and with it the mount.
  t.deepEqual(json(t, await cli(...h(), '--json', 'umount', 'ctr'), 'umount ctr'), {
    id: 'ctr',
    mounted: false,
    wasMounted: true,
  });
  t.deepEqual(mountsUnder(home), []);

  // status, nothing mounted so nothing moves: the library's but for the backing free space.
  const status = json(t, await cli(...h(), '--json', 'status'), 'status');
  await library(home, async (driver) => {
    t.deepEqual(withoutAvailable(status), withoutAvailable(plain(await driver.status())));
    t.deepEqual(
      (await driver.list()).filter((l) => l.mounted),
      [],
    );
  });
  t.is(status.layerCount, 2);
  for (const space of ['dataSpace', 'metadataSpace']) {
    t.true(
      BigInt(status[space].available) <= BigInt(status[space].total) - BigInt(status[space].used),
      `${space}.available`,
    );
  }

  // rm: gone for the library too.
  t.deepEqual(json(t, await cli(...h(), '--json', 'rm', 'ctr'), 'rm ctr'), { id: 'ctr', removed: true });
  await library(home, async (driver) => {
    t.false(await driver.exists('ctr'));
    t.deepEqual(
      (await driver.list()).map((l) => l.id),
      ['img'],
    );
  });
});

test.serial(
  "check --json is the library's report: a stray device found (exit 3) and repaired; cleanup keeps the data",
  async (t) => {
    t.timeout(LONG);
    if (!existsSync(join(home, 'cli-options.json'))) return t.fail('needs the home the first test made');
    const { poolName } = await library(home, (driver) => driver.status());
    const prefix = poolName.replace(/-pool$/, '');

    const clean = await cli(...h(), '--json', 'check');
    const cleanReport = json(t, clean, 'check');
    t.regex(clean.stderr, /probing/, 'a progress line');
    t.deepEqual(cleanReport, plain(await Driver.check(recorded(home))));
    t.true(cleanReport.clean);

    // A dm device named for this home that no layer knows.
    const cleanup = new Cleanup(t);
    const dm = cleanup.handle(DeviceMapper.open());
    const stray = cleanup.device(`${prefix}-stray`);
    dm.create(stray);
    dm.load(stray, [{ start: 0n, length: 8n, type: 'zero', params: '' }]);
    dm.resume(stray);
    const dirty = await cli(...h(), '--json', 'check');
    t.is(dirty.code, 3, 'problems found: exit status 3');
    const dirtyReport = JSON.parse(dirty.stdout);
    t.deepEqual(dirtyReport, plain(await Driver.check(recorded(home))));
    t.false(dirtyReport.clean);
    t.deepEqual(dirtyReport.strayDevices, [stray]);

    const repaired = json(t, await cli(...h(), '--json', 'check', '--repair'), 'check --repair');
    t.true(repaired.clean);
    t.true(
      repaired.repairs.some((line: string) => line.includes(stray)),
      repaired.repairs.join('; '),
    );
    t.false(dm.exists(stray), 'the stray device is gone');
    t.true((await Driver.check(recorded(home))).clean, 'the library finds nothing left');

    // cleanup: everything deactivated and detached, the layers kept.
    t.true(dmNames().includes(poolName));
    t.deepEqual(json(t, await cli(...h(), '--json', 'cleanup'), 'cleanup'), { home, cleanedUp: true });
    lockGone(t, home, 'cleanup');
    t.deepEqual(
      dmNames().filter((n) => n.startsWith(prefix)),
      [],
      'no dm device of this home',
    );
    t.deepEqual(
      loopLines().filter((l) => l.includes(home)),
      [],
      'no loop device on its files',
    );
    const reopened = await Driver.init(recorded(home));
    t.deepEqual(
      (await reopened.list()).map((l) => l.id),
      ['img'],
      'the layers survive cleanup',
    );
    await reopened.cleanup();
  },
);

test.serial('nothing leaked: no driver dm device, no loop device, no mount under any home', (t) =>
  assertNothingLeftByCli(t),
);
