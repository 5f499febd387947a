// Pool failure modes and fault injection against a real kernel. The pool's data or metadata
// device is a dm device stacked over a loop device (dmsetup, as a reference tool), so a fault
// is one table reload away: `error` (every I/O fails), `flakey … error_writes` (writes fail,
// reads work), or the pool's own `read_only` feature. While the fault holds, every Driver call
// must end within a bound, either working or with a typed error (PoolModeError naming the mode
// where the pool has left rw); status() and the PoolWatcher must show the mode. After the fault
// is lifted and the driver re-initialised, check() must find the home consistent (or repair it)
// and data written before the fault must read back intact. A small pool filled from inside a
// layer gives ENOSPC promptly, the free-space guard refuses create, and growPool() brings it all
// back. Every call is bounded by a timeout, so a hang fails a test instead of the suite.
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { DevmapperError, PoolModeError } from '../../src/errors.js';
import type { PoolEvent, PoolEventKind } from '../../src/thin/events.js';
import { CALL_MS, bounded, collect, open, writeDurably } from './fault-helpers.js';
import { dmsetup } from './reference-tools.js';
import { PREFIX, useDriverBed } from './helpers.js';
import { SMALL, assertNothingLeaked, codeOf, dmNames, eventually, newHome, sha, show } from './driver-helpers.js';
import { fault, lift, liftAtTeardown, stackedPool } from './stacked-devices.js';
import { setNeedsCheck } from './thin-superblock.js';

useDriverBed();

/** No single driver call may take longer than this, fault or not. */

/** Runs `promise` with the CALL_MS bound; `what` names it in the timeout error. */

/**
 * A driver call made while a fault holds: it must end within the bound, and if it fails, with a
 * typed error carrying a code. Returns the error (undefined when the call worked).
 */
async function settles(t: ExecutionContext, call: Promise<unknown>, what: string): Promise<DevmapperError | undefined> {
  try {
    await bounded(call, what);
    return undefined;
  } catch (error) {
    t.true(error instanceof DevmapperError, `${what}: ${String(error)}`);
    t.is(typeof codeOf(error), 'string', what);
    return error as DevmapperError;
  }
}

/** A call refused because the pool left rw: PoolModeError (ERR_DM_POOL_MODE) naming the mode. */
async function refusedForMode(
  t: ExecutionContext,
  call: Promise<unknown>,
  what: string,
  mode: string,
  needsCheck = false,
): Promise<void> {
  const error = await settles(t, call, what);
  t.true(error instanceof PoolModeError, `${what} must be refused: ${String(error)}`);
  if (!(error instanceof PoolModeError)) return;
  t.is(error.code, 'ERR_DM_POOL_MODE', what);
  t.is(error.mode, mode, what);
  t.is(error.needsCheck, needsCheck, what);
  t.true(error.message.includes(mode), `${what}: ${error.message}`);
}

/** A program (never a shell) with a hard time limit; resolves with its exit code and stderr. */
function runBounded(
  program: string,
  args: string[],
  ms: number,
): Promise<{ code: number | null; stderr: string; killed: boolean }> {
  return new Promise((resolve) => {
    execFile(program, args, { timeout: ms, killSignal: 'SIGKILL', encoding: 'utf8' }, (error, _stdout, stderr) => {
      const e = error as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean }) | null;
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, stderr, killed: e?.killed === true });
    });
  });
}

const sawEvent = (events: PoolEvent[], kind: PoolEventKind): Promise<boolean> =>
  eventually(() => events.some((e) => e.kinds.includes(kind)), 10_000);

/** Sets up `img` (a file with known content, fsynced) and `ctr` on top, both put. Returns the file's hash. */
async function seedLayers(driver: Driver): Promise<string> {
  await bounded(driver.create('img'), 'create img');
  const data = randomBytes(1 << 20);
  writeDurably(join(await bounded(driver.get('img'), 'get img'), 'blob'), data);
  await bounded(driver.put('img'), 'put img');
  await bounded(driver.create('ctr', 'img'), 'create ctr');
  return sha(data);
}

async function blobHash(driver: Driver, layer: string): Promise<string> {
  const rootfs = await bounded(driver.get(layer), `get ${layer}`);
  try {
    return sha(readFileSync(join(rootfs, 'blob')));
  } finally {
    await bounded(driver.put(layer), `put ${layer}`);
  }
}

// ---------------------------------------------------------------------------------------------

test.serial(
  'read-only pool (its read_only feature): writes refused with the mode, status and event show it, rw again after the reload',
  async (t) => {
    const home = newHome('ro');
    const driver = await open(t, { home, ...SMALL });
    const hash = await seedLayers(driver);
    const rootfs = await driver.get('ctr'); // mounted across the switch
    const events = collect(t, driver.watch());
    const { poolName } = await driver.status();
    const table = dmsetup('table', poolName).trim().split(/\s+/).slice(3); // <meta> <data> <bs> <lwm> <n> <features…>
    const setReadOnly = (on: boolean): void => {
      const features = table.slice(5).filter((f) => f !== 'read_only');
      if (on) features.push('read_only');
      const line = `0 ${dmsetup('table', poolName).trim().split(/\s+/)[1]} thin-pool ${[...table.slice(0, 4), features.length, ...features].join(' ')}`;
      dmsetup('load', poolName, '--table', line);
      dmsetup('suspend', '--noflush', poolName);
      dmsetup('resume', poolName);
    };
    t.teardown(() => {
      if (dmNames().includes(poolName)) setReadOnly(false);
    });

    setReadOnly(true);
    t.true(await sawEvent(events, 'read-only'), `events: ${JSON.stringify(events.map((e) => e.kinds))}`);
    const status = await driver.status();
    t.is(status.poolMode, 'ro');
    t.false(status.needsCheck);
    await refusedForMode(t, driver.create('new'), 'create', 'ro');
    await refusedForMode(t, driver.create('new2', 'img'), 'create with parent', 'ro');
    await refusedForMode(t, driver.get('img'), 'get', 'ro');
    await refusedForMode(t, driver.remove('img'), 'remove', 'ro');
    await refusedForMode(t, driver.growPool(), 'growPool', 'ro');
    t.false(await driver.exists('new'));
    t.is(readFileSync(join(rootfs, 'blob')).length, 1 << 20, 'reads still work');
    await t.notThrowsAsync(bounded(driver.put('ctr'), 'put'), 'put (an unmount) works on a read-only pool');
    const report = await bounded(driver.check(), 'check');
    t.is(report.poolMode, 'ro');
    t.false(report.clean, 'a read-only pool is a problem check reports');
    t.deepEqual([report.leakedThinIds, report.missingThinIds, report.strayDevices], [[], [], []], show(report));

    setReadOnly(false);
    t.true(await sawEvent(events, 'resumed-rw'));
    t.is((await driver.status()).poolMode, 'rw');
    await driver.create('new', 'img');
    t.is(await blobHash(driver, 'new'), hash);
    await driver.remove('new');
    await driver.cleanup();
  },
);

test.serial(
  'data device fails every I/O (dm-error): writers get EIO, calls end bounded and typed; after the fault, check is clean and old data intact',
  async (t) => {
    const { data, options } = stackedPool(t, 'derr');
    const driver = await open(t, options);
    liftAtTeardown(t, data);
    const hash = await seedLayers(driver);
    const ctrRoot = await driver.get('ctr');
    const events = collect(t, driver.watch());

    fault(data, 'error');
    const dd = await runBounded(
      'dd',
      ['if=/dev/zero', `of=${join(ctrRoot, 'during')}`, 'bs=64k', 'count=16', 'oflag=direct', 'conv=fsync'],
      CALL_MS,
    );
    t.false(dd.killed, 'the writer did not hang');
    t.not(dd.code, 0, 'the writer sees the failure');
    t.regex(dd.stderr, /Input\/output error/);
    // The pool itself is unaffected (dm-error takes no flushes, so its commits still succeed):
    // metadata-only calls work, calls that read the data device fail with the device's EIO.
    t.is(
      await settles(t, driver.create('during-fault', 'img'), 'create'),
      undefined,
      'create needs only the metadata device',
    );
    const getError = await settles(t, driver.get('img'), 'get');
    t.is(codeOf(getError), 'EIO', 'mounting needs the data device');
    t.is((getError as { syscall?: string } | undefined)?.syscall, 'mount');
    t.is(await settles(t, driver.remove('during-fault'), 'remove'), undefined);
    await t.notThrowsAsync(bounded(driver.put('ctr'), 'put'));
    const status = await bounded(driver.status(), 'status');
    t.is(status.poolMode, 'rw');
    t.false(status.needsCheck);
    t.deepEqual(
      events.filter((e) => !e.kinds.includes('changed')).map((e) => e.kinds),
      [],
      'no mode change to report',
    );

    lift(data);
    await bounded(driver.cleanup(), 'cleanup');
    const again = await open(t, options);
    const report = await bounded(again.check(), 'check');
    t.true(report.clean, show(report));
    t.is(await blobHash(again, 'img'), hash, 'data written before the fault is intact');
    t.is(await blobHash(again, 'ctr'), hash);
    await again.remove('ctr');
    await again.cleanup();
  },
);

test.serial(
  'data device fails writes (dm-flakey): the pool turns read-only with needs_check; refused calls name it; recovery after thin_check',
  async (t) => {
    const { data, meta, options } = stackedPool(t, 'dflk');
    const driver = await open(t, options);
    liftAtTeardown(t, data);
    const hash = await seedLayers(driver);
    const ctrRoot = await driver.get('ctr');
    const events = collect(t, driver.watch());

    fault(data, 'error-writes');
    // The write's fsync makes the pool commit; the data-device flush before the commit fails, the
    // kernel aborts the transaction and drops the pool to read-only with needs_check.
    const dd = await runBounded(
      'dd',
      ['if=/dev/zero', `of=${join(ctrRoot, 'during')}`, 'bs=64k', 'count=16', 'oflag=direct', 'conv=fsync'],
      CALL_MS,
    );
    t.false(dd.killed, 'the writer did not hang');
    t.not(dd.code, 0);
    t.true(await eventually(async () => (await driver.status()).poolMode === 'ro', 10_000), 'the pool left rw');
    t.true(await sawEvent(events, 'read-only'), `events: ${JSON.stringify(events.map((e) => e.kinds))}`);
    t.true(await sawEvent(events, 'needs-check'));
    t.true((await driver.status()).needsCheck);
    await refusedForMode(t, driver.create('x'), 'create', 'ro', true);
    await refusedForMode(t, driver.get('img'), 'get', 'ro', true);
    await refusedForMode(t, driver.remove('img'), 'remove', 'ro', true);
    await refusedForMode(t, driver.growPool(), 'growPool', 'ro', true);
    await t.notThrowsAsync(bounded(driver.put('ctr'), 'put'));

    // Lifting the fault is not enough: needs_check is on disk, the pool comes back read-only.
    lift(data);
    await bounded(driver.cleanup(), 'cleanup');
    const readOnly = await open(t, options);
    t.like(await readOnly.status(), { poolMode: 'ro', needsCheck: true });
    await refusedForMode(t, readOnly.create('x'), 'create after reopen', 'ro', true);
    let report = await bounded(readOnly.check({ repair: true }), 'check --repair');
    t.true(report.needsCheck);
    t.false(report.clean, 'repair cannot clear needs_check');
    t.true(
      report.skipped.some((s) => s.includes('thin_check')),
      report.skipped.join('; '),
    );
    await bounded(readOnly.cleanup(), 'cleanup');

    setNeedsCheck(meta.path, false);
    const recovered = await open(t, options);
    t.like(await recovered.status(), { poolMode: 'rw', needsCheck: false });
    report = await bounded(recovered.check({ repair: true }), 'check --repair');
    t.true(report.clean, show(report));
    t.is(await blobHash(recovered, 'img'), hash, 'data committed before the fault is intact');
    await recovered.create('x', 'img');
    t.is(await blobHash(recovered, 'x'), hash);
    await recovered.remove('x');
    await recovered.cleanup();
  },
);

test.serial(
  'metadata device fails (dm-error): the pool fails; calls are refused with mode fail; reopened after the fault, the pool is consistent',
  async (t) => {
    const { meta, options } = stackedPool(t, 'merr');
    const driver = await open(t, options);
    liftAtTeardown(t, meta);
    const hash = await seedLayers(driver);
    const ctrRoot = await driver.get('ctr');
    const events = collect(t, driver.watch());

    fault(meta, 'error');
    const dd = await runBounded(
      'dd',
      ['if=/dev/zero', `of=${join(ctrRoot, 'during')}`, 'bs=64k', 'count=16', 'oflag=direct', 'conv=fsync'],
      CALL_MS,
    );
    t.false(dd.killed, 'the writer did not hang');
    t.true(await eventually(async () => (await driver.status()).poolMode === 'fail', 10_000), 'the pool failed');
    t.true(await sawEvent(events, 'failed'), `events: ${JSON.stringify(events.map((e) => e.kinds))}`);
    const status = await driver.status();
    t.like(status, { poolMode: 'fail', transactionId: -1n });
    t.is(status.dataSpace.total, 0n, 'a failed pool reports no usage');
    await refusedForMode(t, driver.create('x'), 'create', 'fail');
    await refusedForMode(t, driver.get('img'), 'get', 'fail');
    await refusedForMode(t, driver.remove('img'), 'remove', 'fail');
    await refusedForMode(t, driver.growPool(), 'growPool', 'fail');
    await refusedForMode(t, driver.check(), 'check', 'fail');
    await t.notThrowsAsync(bounded(driver.put('ctr'), 'put'));
    t.is(codeOf(await t.throwsAsync(bounded(Driver.init(options), 'a second init'))), 'ERR_DM_HOME_LOCKED');

    // A failed pool is deactivated and activated again once its metadata device works: the
    // kernel reloads the last committed metadata (the aborted transaction is gone).
    lift(meta);
    await bounded(driver.cleanup(), 'cleanup');
    const again = await open(t, options);
    t.like(await again.status(), { poolMode: 'rw', needsCheck: false });
    const report = await bounded(again.check({ repair: true }), 'check --repair');
    t.true(report.clean, show(report));
    t.deepEqual((await again.list()).map((l) => l.id).sort(), ['ctr', 'img']);
    t.is(await blobHash(again, 'img'), hash);
    t.is(await blobHash(again, 'ctr'), hash);
    await again.create('x', 'ctr');
    await again.remove('x');
    await again.cleanup();
  },
);

test.serial(
  'a full pool (errorIfNoSpace): writers get ENOSPC promptly, create is refused, growPool() brings everything back, other layers intact',
  async (t) => {
    const home = newHome('full');
    const driver = await open(t, { home, baseSize: '64M', loopDataSize: '40M', loopMetadataSize: '16M' });
    const hash = await seedLayers(driver);
    const events = collect(t, driver.watch());
    await driver.create('spare', 'img');
    writeDurably(join(await driver.get('spare'), 'spare'), randomBytes(1 << 20));
    await driver.put('spare');
    await driver.create('fill', 'img');
    const fillRoot = await driver.get('fill');

    const started = Date.now();
    const dd = await runBounded(
      'dd',
      ['if=/dev/zero', `of=${join(fillRoot, 'filler')}`, 'bs=1M', 'count=60', 'oflag=direct'],
      CALL_MS,
    );
    t.false(dd.killed, 'the writer did not hang');
    t.not(dd.code, 0);
    t.regex(dd.stderr, /No space left on device|Input\/output error/);
    t.true(Date.now() - started < 15_000, `the writer failed promptly (${Date.now() - started} ms)`);
    t.true(await sawEvent(events, 'out-of-data-space'), `events: ${JSON.stringify(events.map((e) => e.kinds))}`);
    const full = await driver.status();
    t.is(full.poolMode, 'out_of_data_space');
    t.is(full.dataSpace.used, full.dataSpace.total);

    const createError = await settles(t, driver.create('more', 'img'), 'create');
    t.is(codeOf(createError), 'ERR_DM_NO_SPACE');
    t.regex(createError?.message ?? '', /out_of_data_space/);
    await refusedForMode(t, driver.get('img'), 'get', 'out_of_data_space');
    t.false(await driver.exists('more'));
    const fullCheck = await bounded(driver.check(), 'check');
    t.is(fullCheck.poolMode, 'out_of_data_space');
    t.false(fullCheck.clean, 'a pool out of data space is a problem check reports');
    await t.notThrowsAsync(bounded(driver.put('fill'), 'put'));
    await t.notThrowsAsync(bounded(driver.remove('spare'), 'remove'), 'remove works on a full pool: it frees blocks');
    t.false(await driver.exists('spare'));

    const size = await bounded(driver.growPool('160M'), 'growPool');
    t.is(size, 160n << 20n);
    t.true(await sawEvent(events, 'resumed-rw'));
    const grown = await driver.status();
    t.is(grown.poolMode, 'rw');
    t.is(grown.dataSpace.total, 160n << 20n);
    await driver.create('more', 'img');
    const moreRoot = await driver.get('more');
    const fresh = randomBytes(8 << 20);
    writeDurably(join(moreRoot, 'fresh'), fresh);
    t.is(sha(readFileSync(join(moreRoot, 'fresh'))), sha(fresh));
    t.is(sha(readFileSync(join(moreRoot, 'blob'))), hash);
    await driver.put('more');
    t.is(await blobHash(driver, 'img'), hash, 'the layers that were not being written lost nothing');
    t.is(await blobHash(driver, 'ctr'), hash);
    await driver.remove('fill');
    const report = await bounded(driver.check(), 'check');
    t.true(report.clean, show(report));
    await driver.cleanup();
  },
);

test.serial('nothing leaked: no dm device, no loop device, no mount under any home', (t) => {
  assertNothingLeaked(t);
  t.deepEqual(
    dmNames().filter((name) => name.startsWith(PREFIX)),
    [],
    'no stacked test device',
  );
});
