// The ioctl core against a real device-mapper: every DeviceMapper method, on both FFI
// backends, checked against the kernel's own views (sysfs, block nodes) and against dmsetup
// as the independent reference, in both directions. Every test undoes what it made in its
// teardown (helpers.ts Cleanup); the last test checks that nothing is left.
import test, { type ExecutionContext } from 'ava';
import { openSync, promises as fsp, readFileSync, statSync, writeSync } from 'node:fs';
import { DevmapperError, DmSystemError, InvalidArgumentError } from '../../src/errors.js';
import { DeviceMapper, type DeviceInfo, type Target } from '../../src/ioctl/device-mapper.js';
import type { FfiBackendName } from '../../src/ioctl/ffi/binding.js';
import { LoopDevices } from '../../src/ioctl/loop.js';
import {
  BACKENDS,
  Cleanup,
  DMSETUP_INFO_ARGS,
  PREFIX,
  devText,
  dmNode,
  dmsetupInfoRow,
  fdCount,
  ownLines,
  readGeometry,
  sleep,
  sparseFile,
  sysBlock,
  track,
  uniqueName,
  waitFor,
  withTimeout,
} from './helpers.js';
import { assertKernelTestBed, dmsetup, run } from './reference-tools.js';

test.before(() => assertKernelTestBed());

const zero = (sectors: number): Target[] => [{ start: 0n, length: BigInt(sectors), type: 'zero', params: '' }];

/** A DeviceMapper handle closed by the test's teardown. */
function open(c: Cleanup, ffi: FfiBackendName): DeviceMapper {
  return c.handle(DeviceMapper.open({ ffi }));
}

/** create + load + resume: a live device, removed by the teardown. */
function makeDevice(
  dm: DeviceMapper,
  c: Cleanup,
  tag: string,
  targets: Target[] = zero(1024),
  options: { uuid?: string; readOnly?: boolean } = {},
): DeviceInfo {
  const name = c.device(uniqueName(tag));
  dm.create(name, { uuid: options.uuid });
  dm.load(name, targets, { readOnly: options.readOnly });
  return dm.resume(name);
}

/** `dmsetup table` / `dmsetup status` lines for one device as the library reports its targets. */
function tableLines(
  name: string,
  targets: readonly { start: bigint; length: bigint; type: string; params: string }[],
): string[] {
  if (targets.length === 0) return [`${name}:`];
  return targets.map((x) => `${name}: ${x.start} ${x.length} ${x.type} ${x.params}`.trimEnd());
}

/** A single device's `dmsetup table NAME` / `dmsetup status NAME` output (no name prefix), blanks dropped. */
function outputLines(output: string): string[] {
  return output
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line !== '');
}

/** The same lines as the library reports them. */
function plainLines(targets: readonly { start: bigint; length: bigint; type: string; params: string }[]): string[] {
  return targets.map((x) => `${x.start} ${x.length} ${x.type} ${x.params}`.trimEnd());
}

/** A loop device over a fresh sparse file, detached by the teardown. Returns its dev text ("7:N"). */
function loopDevice(c: Cleanup, ffi: FfiBackendName, bytes: number): { index: number; dev: string } {
  const file = sparseFile(c, 'backing', bytes);
  const status = new LoopDevices({ ffi }).attach(file);
  c.loop(status.index);
  return { index: status.index, dev: sysBlock(`loop${status.index}`, 'dev') };
}

/** Rejects with ENXIO (a device that does not exist): gets a koffi worker thread started and idle. */
async function warmAsyncPath(t: ExecutionContext, dm: DeviceMapper): Promise<void> {
  await t.throwsAsync(dm.removeAsync(uniqueName('absent')), { instanceOf: DmSystemError, code: 'ENXIO' });
}

for (const ffi of BACKENDS) {
  test.serial(`${ffi}: version, targets and targetVersion match dmsetup`, (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    t.is(dm.ffi, ffi);
    const version = dm.version();
    t.is(version[0], 4);
    const driver = /Driver version:\s+(\S+)/.exec(dmsetup('version'));
    t.is(version.join('.'), driver?.[1] ?? '(dmsetup printed no driver version)');

    const targets = dm.targets();
    const reference = dmsetup('targets')
      .trim()
      .split('\n')
      .map((line) => {
        const [name, v] = line.trim().split(/\s+/);
        return `${name} ${v}`;
      })
      .sort();
    t.deepEqual(targets.map((x) => `${x.name} v${x.version.join('.')}`).sort(), reference);
    for (const needed of ['zero', 'error', 'linear', 'striped', 'thin-pool', 'thin'])
      t.true(
        targets.some((x) => x.name === needed),
        needed,
      );

    t.deepEqual(dm.targetVersion('zero'), targets.find((x) => x.name === 'zero')!.version);
    t.throws(() => dm.targetVersion('no-such-target'), { instanceOf: DmSystemError, code: 'EINVAL' });
    t.throws(() => dm.targetVersion('x'.repeat(16)), { instanceOf: InvalidArgumentError, message: /^type:/ });
  });

  test.serial(`${ffi}: create, info and list agree with sysfs and dmsetup (names, dev, uuid, eventNr)`, (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    const a = c.device(uniqueName('a'));
    const uuid = `${PREFIX}-uuid-${a}`;
    const created = dm.create(a, { uuid });
    t.like(created, {
      name: a,
      uuid,
      openCount: 0,
      eventNr: 0,
      targetCount: 0,
      active: false,
      inactiveTable: false,
      suspended: false,
      deferredRemove: false,
    });
    const b = c.device(uniqueName('b'));
    const createdB = dm.create(b);
    t.is(createdB.uuid, '');
    t.notDeepEqual(createdB.dev, created.dev);

    const live = dm.load(a, zero(2048));
    t.true(live.inactiveTable);
    const resumed = dm.resume(a);
    t.like(resumed, { active: true, inactiveTable: false, targetCount: 1 });
    t.deepEqual(resumed.dev, created.dev);
    // The kernel's own view of the device: sysfs.
    const disk = `dm-${created.dev.minor}`;
    t.is(sysBlock(disk, 'dev'), devText(created.dev));
    t.is(sysBlock(disk, 'dm/name'), a);
    t.is(sysBlock(disk, 'dm/uuid'), uuid);
    t.is(sysBlock(disk, 'size'), '2048');

    // A persistent minor (DM_PERSISTENT_DEV_FLAG).
    const minor = 3000 + BACKENDS.indexOf(ffi);
    const p = c.device(uniqueName('minor'));
    t.is(dm.create(p, { minor }).dev.minor, minor);
    // A taken minor: alloc_dev() fails and dm_create() answers ENXIO (not EBUSY).
    t.throws(() => dm.create(uniqueName('minor-again'), { minor }), {
      instanceOf: DmSystemError,
      code: 'ENXIO',
      message: /DM_DEV_CREATE/,
    });

    const listed = dm.list();
    for (const name of [a, b, p]) {
      const info = dm.info(name);
      const entry = listed.find((x) => x.name === name);
      t.deepEqual(entry, { name, dev: info.dev, eventNr: info.eventNr, uuid: info.uuid }, name);
    }
    t.deepEqual(ownLines(dmsetup('ls'), [a, b, p]), [a, b, p].map((n) => `${n}\t(${devText(dm.info(n).dev)})`).sort());
    t.deepEqual(
      ownLines(dmsetup(...DMSETUP_INFO_ARGS), [a, b, p]),
      [a, b, p].map((n) => dmsetupInfoRow(dm.info(n))).sort(),
    );
    t.true(dm.exists(a));
    t.true(dm.exists({ uuid }));
    t.is(dm.info({ uuid }).name, a);
    t.is(dm.info({ name: b }).name, b);
  });

  test.serial(`${ffi}: a read-only table makes a read-only device (create's readOnly alone does not)`, (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    const name = c.device(uniqueName('ro'));
    dm.create(name, { readOnly: true });
    dm.load(name, zero(64), { readOnly: true });
    const info = dm.resume(name);
    t.true(info.readOnly);
    t.is(sysBlock(`dm-${info.dev.minor}`, 'ro'), '1');
    t.deepEqual(ownLines(dmsetup(...DMSETUP_INFO_ARGS), [name]), [dmsetupInfoRow(info)]);
    t.regex(dmsetupInfoRow(info), /:L--r$/);
    // Writing is refused, at open or at write.
    const error = t.throws(() => {
      const fd = c.fd(openSync(dmNode(info.dev), 'r+'));
      writeSync(fd, Buffer.alloc(512), 0, 512, 0);
    });
    t.true(['EPERM', 'EROFS', 'EACCES'].includes((error as NodeJS.ErrnoException).code ?? ''), String(error));

    // dev_create ignores DM_READONLY_FLAG: read-only-ness belongs to the table that is loaded.
    const other = c.device(uniqueName('ro-create-only'));
    dm.create(other, { readOnly: true });
    dm.load(other, zero(64));
    t.false(dm.resume(other).readOnly);
  });

  test.serial(`${ffi}: remove and removeAsync, by name and by uuid; errno on the async path`, async (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    const a = makeDevice(dm, c, 'rm-sync');
    dm.remove(a.name);
    t.false(dm.exists(a.name));
    t.throws(() => dm.info(a.name), { instanceOf: DmSystemError, code: 'ENXIO' });

    const b = makeDevice(dm, c, 'rm-async');
    await dm.removeAsync(b.name);
    t.false(dm.exists(b.name));

    const uuid = `${PREFIX}-rm-uuid-${ffi}`;
    const u = makeDevice(dm, c, 'rm-uuid', zero(8), { uuid });
    dm.remove({ uuid });
    t.false(dm.exists(u.name));
    const v = makeDevice(dm, c, 'rm-uuid-async', zero(8), { uuid });
    await dm.removeAsync({ uuid });
    t.false(dm.exists(v.name));

    const missing = uniqueName('missing');
    const error = await t.throwsAsync(dm.removeAsync(missing), { instanceOf: DmSystemError, code: 'ENXIO' });
    t.like(error, { errno: 6, syscall: 'ioctl', operation: 'DM_DEV_REMOVE', device: missing });
    t.deepEqual(ownLines(dmsetup('ls'), [a.name, b.name, u.name, v.name]), []);
  });

  test.serial(
    `${ffi}: an open device: EBUSY on remove (sync and async), deferred remove waits for the last close`,
    async (t) => {
      const c = new Cleanup(t);
      const dm = open(c, ffi);
      const { name, dev } = makeDevice(dm, c, 'busy');
      const fd = c.fd(openSync(dmNode(dev), 'r'));
      const second = openSync(dmNode(dev), 'r');
      t.is(dm.info(name).openCount, 2);
      c.closeFd(second);
      t.is(dm.info(name).openCount, 1);

      const sync = t.throws(() => dm.remove(name), { instanceOf: DmSystemError, code: 'EBUSY' });
      t.like(sync, { errno: 16, syscall: 'ioctl', operation: 'DM_DEV_REMOVE', device: name });
      t.true((sync?.message ?? '').includes(name));
      const async = await t.throwsAsync(dm.removeAsync(name), { instanceOf: DmSystemError, code: 'EBUSY' });
      t.like(async, { errno: 16, syscall: 'ioctl', operation: 'DM_DEV_REMOVE', device: name });
      t.true(dm.exists(name));

      dm.remove(name, { deferred: true });
      t.like(dm.info(name), { deferredRemove: true, openCount: 1 });
      t.true(dm.list().some((x) => x.name === name));
      // The dm core's own message cancels it.
      t.is(dm.message(name, 0, '@cancel_deferred_remove'), undefined);
      t.false(dm.info(name).deferredRemove);
      await dm.removeAsync(name, { deferred: true });
      t.true(dm.info(name).deferredRemove);

      c.closeFd(fd);
      // The kernel removes it from a work queue after the last close.
      t.true(await waitFor(() => !dm.exists(name)), 'the device goes once its last opener closes');
      t.deepEqual(ownLines(dmsetup('ls'), [name]), []);
    },
  );

  test.serial(`${ffi}: removeAll removes the unopened devices; with deferred it marks the open ones`, async (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    const live = makeDevice(dm, c, 'all-live');
    const bare = c.device(uniqueName('all-bare'));
    dm.create(bare);
    const held = makeDevice(dm, c, 'all-held');
    const fd = c.fd(openSync(dmNode(held.dev), 'r'));

    // removeAll takes every unopened device on the machine: refuse to run it next to devices
    // this file did not make (a real dm host rather than the throwaway test kernel).
    const foreign = dm
      .list()
      .filter((x) => !x.name.startsWith(PREFIX))
      .map((x) => x.name);
    t.deepEqual(foreign, [], 'removeAll would remove devices this test did not make');
    if (foreign.length > 0) return;
    dm.removeAll();
    t.false(dm.exists(live.name));
    t.false(dm.exists(bare));
    t.like(dm.info(held.name), { openCount: 1, deferredRemove: false });

    dm.removeAll({ deferred: true });
    t.true(dm.info(held.name).deferredRemove);
    c.closeFd(fd);
    t.true(await waitFor(() => !dm.exists(held.name)));
  });

  test.serial(`${ffi}: rename gives a new name, and a uuid to a device that has none`, (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    const before = makeDevice(dm, c, 'old');
    const renamed = c.device(uniqueName('new'));
    dm.rename(before.name, renamed);
    const after = dm.info(renamed);
    t.deepEqual(after.dev, before.dev);
    t.is(after.eventNr, before.eventNr + 1, 'a rename raises a dm event');
    t.throws(() => dm.info(before.name), { instanceOf: DmSystemError, code: 'ENXIO' });
    t.is(sysBlock(`dm-${after.dev.minor}`, 'dm/name'), renamed);
    t.deepEqual(ownLines(dmsetup('ls'), [before.name, renamed]), [`${renamed}\t(${devText(after.dev)})`]);

    const uuid = `${PREFIX}-set-later-${ffi}`;
    dm.rename(renamed, { uuid });
    t.is(dm.info(renamed).uuid, uuid);
    t.is(dm.info({ uuid }).name, renamed);
    t.is(sysBlock(`dm-${after.dev.minor}`, 'dm/uuid'), uuid);
    t.deepEqual(ownLines(dmsetup(...DMSETUP_INFO_ARGS), [renamed]), [dmsetupInfoRow(dm.info(renamed))]);
    // A uuid is set once.
    t.throws(() => dm.rename(renamed, { uuid: `${uuid}-again` }), { instanceOf: DmSystemError, code: 'EINVAL' });

    const other = makeDevice(dm, c, 'taken');
    t.throws(() => dm.rename(renamed, other.name), { instanceOf: DmSystemError, code: 'EBUSY' });
    t.throws(() => dm.rename(uniqueName('missing'), uniqueName('x')), { instanceOf: DmSystemError, code: 'ENXIO' });
    t.throws(() => dm.rename(renamed, 'a/b'), { instanceOf: InvalidArgumentError, message: /^newName:/ });
  });

  test.serial(`${ffi}: suspend and resume (noFlush, skipLockfs; sync and async) hold and release I/O`, async (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    const { name, dev } = makeDevice(dm, c, 'suspend');
    for (const options of [{}, { noFlush: true }, { skipLockfs: true }, { noFlush: true, skipLockfs: true }]) {
      const label = JSON.stringify(options);
      t.true(dm.suspend(name, options).suspended, label);
      t.true(dm.info(name).suspended, label);
      t.deepEqual(ownLines(dmsetup(...DMSETUP_INFO_ARGS), [name]), [dmsetupInfoRow(dm.info(name))], label);
      t.false(dm.resume(name).suspended, label);
    }
    t.true((await dm.suspendAsync(name, { noFlush: true })).suspended);
    t.regex(ownLines(dmsetup(...DMSETUP_INFO_ARGS), [name])[0] ?? '', /:L-sw$/);
    t.false((await dm.resumeAsync(name)).suspended);
    t.true((await dm.suspendAsync(name)).suspended);
    t.false((await dm.resumeAsync(name)).suspended);
    t.false(dm.info(name).suspended);

    // A read from the suspended device waits for resume.
    const file = await fsp.open(dmNode(dev), 'r');
    try {
      dm.suspend(name);
      const read = track(file.read(Buffer.alloc(4096), 0, 4096, 0));
      await sleep(300);
      t.false(read.settled(), 'I/O is held while the device is suspended');
      dm.resume(name);
      const { bytesRead, buffer } = await withTimeout(read.promise, 10_000, 'read after resume');
      t.is(bytesRead, 4096);
      t.true(buffer.every((byte) => byte === 0));
    } finally {
      if (dm.info(name).suspended) dm.resume(name);
      await file.close();
    }
  });

  test.serial(`${ffi}: info follows the device: tables, open count, suspension, dev`, (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    const name = c.device(uniqueName('info'));
    const created = dm.create(name);
    t.like(dm.info(name), { active: false, inactiveTable: false, targetCount: 0, suspended: false, openCount: 0 });
    dm.load(name, [...zero(100), { start: 100n, length: 28n, type: 'error', params: '' }]);
    t.like(dm.info(name), { active: false, inactiveTable: true, targetCount: 0 });
    dm.resume(name);
    t.like(dm.info(name), { active: true, inactiveTable: false, targetCount: 2 });
    // dev is the block node's device number.
    const rdev = BigInt(statSync(dmNode(created.dev), { bigint: true }).rdev);
    const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
    const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
    t.deepEqual(dm.info(name).dev, { major, minor });
    const fd = c.fd(openSync(dmNode(created.dev), 'r'));
    t.is(dm.info(name).openCount, 1);
    c.closeFd(fd);
    t.is(dm.info(name).openCount, 0);
    dm.suspend(name);
    dm.load(name, zero(256));
    t.like(dm.info(name), { active: true, inactiveTable: true, suspended: true, targetCount: 2 });
    t.deepEqual(ownLines(dmsetup(...DMSETUP_INFO_ARGS), [name]), [dmsetupInfoRow(dm.info(name))]);
    dm.resume(name);
    t.like(dm.info(name), { active: true, inactiveTable: false, suspended: false, targetCount: 1 });
    t.is(sysBlock(`dm-${created.dev.minor}`, 'size'), '256');
  });

  test.serial(
    `${ffi}: load and clear, table/status/deps of the inactive table, deps of a linear device on a loop device`,
    (t) => {
      const c = new Cleanup(t);
      const dm = open(c, ffi);
      const loop = loopDevice(c, ffi, 1 << 20);
      const name = c.device(uniqueName('tables'));
      dm.create(name);
      const linear: Target[] = [{ start: 0n, length: 2048n, type: 'linear', params: `${loop.dev} 0` }];
      t.true(dm.load(name, linear).inactiveTable);
      t.deepEqual(
        dm.table(name, { inactive: true }),
        linear.map((x) => ({ ...x, status: 0 })),
      );
      t.deepEqual(dm.table(name), [], 'no live table yet');
      t.deepEqual(dm.deps(name, { inactive: true }).map(devText), [loop.dev]);
      t.deepEqual(dm.deps(name), []);
      t.false(dm.clear(name).inactiveTable);
      t.false(dm.info(name).inactiveTable);
      t.deepEqual(dm.table(name, { inactive: true }), []);

      dm.load(name, linear);
      dm.resume(name);
      t.deepEqual(
        dm.table(name),
        linear.map((x) => ({ ...x, status: 0 })),
      );
      t.deepEqual(dm.deps(name).map(devText), [loop.dev]);
      t.is(sysBlock(`loop${loop.index}`, 'dev'), loop.dev);
      const [lmaj, lmin] = loop.dev.split(':');
      t.regex(dmsetup('deps', '-o', 'devno', name), new RegExp(`1 dependencies\\s*:\\s*\\(${lmaj}, ${lmin}\\)`));

      // A second table waits in the inactive slot while the first stays live.
      const next: Target[] = [
        { start: 0n, length: 1024n, type: 'zero', params: '' },
        { start: 1024n, length: 1024n, type: 'striped', params: `1 8 ${loop.dev} 0` },
      ];
      dm.load(name, next);
      t.like(dm.info(name), { active: true, inactiveTable: true });
      t.deepEqual(
        dm.table(name).map((x) => x.type),
        ['linear'],
      );
      t.deepEqual(
        dm.table(name, { inactive: true }).map((x) => `${x.type} ${x.params}`),
        ['zero ', `striped 1 8 ${loop.dev} 0`],
      );
      t.deepEqual(
        dm.status(name, { inactive: true }).map((x) => `${x.type} ${x.params}`),
        ['zero ', `striped 1 ${loop.dev} 1 A`],
      );
      t.deepEqual(outputLines(dmsetup('table', '--inactive', name)), plainLines(dm.table(name, { inactive: true })));
      t.deepEqual(outputLines(dmsetup('status', '--inactive', name)), plainLines(dm.status(name, { inactive: true })));
      t.deepEqual(outputLines(dmsetup('table', name)), plainLines(dm.table(name)));
      t.deepEqual(dm.deps(name, { inactive: true }).map(devText), [loop.dev]);
      dm.clear(name);
      t.like(dm.info(name), { active: true, inactiveTable: false });
      dm.resume(name); // nothing to swap in: the live table stays
      t.deepEqual(
        dm.table(name).map((x) => x.type),
        ['linear'],
      );
    },
  );

  test.serial(`${ffi}: wait resolves on the device's next event (a rename, a removal), not before`, async (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    await warmAsyncPath(t, dm);
    const uuid = `${PREFIX}-wait-${ffi}`;
    const { name, eventNr: e0 } = makeDevice(dm, c, 'wait', zero(8), { uuid });
    // By uuid: a rename does not change it, so the wait finds the device whenever it starts.
    const pending = track(dm.wait({ uuid }));
    await sleep(300);
    t.false(pending.settled(), 'no event yet');
    const renamed = c.device(uniqueName('waited'));
    dm.rename(name, renamed);
    const woke = await withTimeout(pending.promise, 10_000, 'wait after rename');
    t.is(woke.eventNr, e0 + 1);
    t.is(woke.uuid, uuid);
    // An event number already passed answers at once.
    const stale = await withTimeout(dm.wait({ uuid }, e0), 5000, 'wait with a passed event number');
    t.is(stale.eventNr, e0 + 1);
    t.regex(ownLines(dmsetup(...DMSETUP_INFO_ARGS), [renamed])[0] ?? '', new RegExp(`:${e0 + 1}:L--w$`));

    // Removing a device with a live table raises its last event: a waiter is not left hanging.
    const last = track(dm.wait(renamed));
    await sleep(300);
    t.false(last.settled());
    dm.remove(renamed);
    t.is((await withTimeout(last.promise, 10_000, 'wait across remove')).eventNr, e0 + 2);
  });

  test.serial(`${ffi}: armPoll and pollEvent: a timeout is false; an event after arming wakes the poll`, async (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    const other = open(c, ffi);
    dm.armPoll();
    t.false(await dm.pollEvent(100), 'nothing happened: the poll times out');

    dm.armPoll();
    const polled = track(dm.pollEvent(10_000));
    await sleep(300);
    t.false(polled.settled());
    const started = Date.now();
    const name = c.device(uniqueName('poll'));
    other.create(name); // on another handle: the event is global
    t.true(await withTimeout(polled.promise, 10_000, 'poll after create'));
    t.true(Date.now() - started < 5000);
    // Until re-armed the control fd stays readable; re-arming clears it.
    t.true(await dm.pollEvent(0));
    dm.armPoll();
    t.false(await dm.pollEvent(0));

    // Other actions that raise the global event: resuming with a new table, removing.
    other.load(name, zero(8));
    dm.armPoll();
    other.resume(name);
    t.true(await dm.pollEvent(0), 'resume with a new table');
    dm.armPoll();
    other.remove(name);
    t.true(await dm.pollEvent(0), 'remove');
  });

  test.serial(
    `${ffi}: message: thin-pool create_thin answers nothing; refusals carry the kernel errno and the message; @stats answers text`,
    (t) => {
      const c = new Cleanup(t);
      const dm = open(c, ffi);
      const meta = loopDevice(c, ffi, 4 << 20);
      const data = loopDevice(c, ffi, 64 << 20);
      const pool = makeDevice(dm, c, 'pool', [
        {
          start: 0n,
          length: BigInt((64 << 20) / 512),
          type: 'thin-pool',
          params: `${meta.dev} ${data.dev} 128 32768 1 skip_block_zeroing`,
        },
      ]);
      t.deepEqual(dm.deps(pool.name).map(devText).sort(), [meta.dev, data.dev].sort());
      t.is(dm.message(pool.name, 0, 'create_thin 0'), undefined);
      const thin = makeDevice(dm, c, 'thin', [
        { start: 0n, length: 2048n, type: 'thin', params: `${devText(pool.dev)} 0` },
      ]);
      t.true(thin.active);
      t.deepEqual(outputLines(dmsetup('status', pool.name)), plainLines(dm.status(pool.name)));
      t.deepEqual(
        dm.status(pool.name, { noFlush: true }).map((x) => x.type),
        ['thin-pool'],
      );
      t.regex(dm.status(pool.name)[0]!.params, /^\d+ \d+\/\d+ \d+\/\d+ /);
      t.deepEqual(outputLines(dmsetup('status', thin.name)), plainLines(dm.status(thin.name)));

      const exists = t.throws(() => dm.message(pool.name, 0, 'create_thin 0'), {
        instanceOf: DmSystemError,
        code: 'EEXIST',
      });
      t.like(exists, { operation: 'DM_TARGET_MSG', device: pool.name, detail: 'message "create_thin 0"' });
      const bad = t.throws(() => dm.message(pool.name, 0, 'frobnicate 1'), {
        instanceOf: DmSystemError,
        code: 'EINVAL',
      });
      t.like(bad, { errno: 22, syscall: 'ioctl', operation: 'DM_TARGET_MSG', device: pool.name });
      t.true(bad!.message.includes('frobnicate 1'), bad!.message);
      t.throws(
        () => dm.message(pool.name, 1n << 40n, 'create_thin 1'),
        { instanceOf: DmSystemError, code: 'EINVAL' },
        'no target at that sector',
      );
      t.throws(() => dm.message(pool.name, 0, ''), { instanceOf: InvalidArgumentError, message: /^message:/ });

      // dm core messages with an answer (DM_DATA_OUT_FLAG).
      const z = makeDevice(dm, c, 'stats', zero(1024));
      t.is(dm.message(z.name, 0, '@stats_create - /1'), '0');
      t.regex(dm.message(z.name, 0, '@stats_list') ?? '', /^0: 0\+1024 1024 /);
      t.is(dm.message(z.name, 0, '@stats_delete 0'), undefined);
      t.is(dm.message(z.name, 0, '@stats_list'), '');
    },
  );

  test.serial(
    `${ffi}: setGeometry: HDIO_GETGEO reads back what was set; the kernel refuses impossible geometry`,
    (t) => {
      const c = new Cleanup(t);
      const dm = open(c, ffi);
      const { name, dev } = makeDevice(dm, c, 'geo', zero(1000));
      t.is(dm.setGeometry(name, { cylinders: 10, heads: 4, sectors: 25, start: 0 }).name, name);
      t.deepEqual(readGeometry(dmNode(dev)), { heads: 4, sectors: 25, cylinders: 10 });
      // dm_set_geometry: start beyond cylinders*heads*sectors; dev_set_geometry: heads > 255.
      t.throws(() => dm.setGeometry(name, { cylinders: 10, heads: 4, sectors: 25, start: 1001 }), {
        instanceOf: DmSystemError,
        code: 'EINVAL',
        message: /DM_DEV_SET_GEOMETRY/,
      });
      t.throws(() => dm.setGeometry(name, { cylinders: 10, heads: 256, sectors: 25, start: 0 }), {
        instanceOf: DmSystemError,
        code: 'EINVAL',
      });
      t.throws(() => dm.setGeometry(name, { cylinders: 10, heads: -1, sectors: 25, start: 0 }), {
        instanceOf: InvalidArgumentError,
        message: /^geometry\.heads:/,
      });
      t.throws(() => dm.setGeometry(name, { cylinders: 1.5, heads: 4, sectors: 25, start: 0 }), {
        instanceOf: InvalidArgumentError,
        message: /^geometry\.cylinders:/,
      });
      t.deepEqual(readGeometry(dmNode(dev)), { heads: 4, sectors: 25, cylinders: 10 }, 'the refusals changed nothing');
    },
  );

  test.serial(
    `${ffi}: kernel errors: ENXIO for a missing device, EBUSY for a taken name or uuid, EINVAL for a table the target refuses`,
    (t) => {
      const c = new Cleanup(t);
      const dm = open(c, ffi);
      const missing = uniqueName('missing');
      const enxio = t.throws(() => dm.info(missing), { instanceOf: DmSystemError, code: 'ENXIO' });
      t.like(enxio, { errno: 6, syscall: 'ioctl', operation: 'DM_DEV_STATUS', device: missing });
      t.true(enxio!.message.includes(missing) && enxio!.message.includes('ENXIO'), enxio!.message);
      t.false(dm.exists(missing));
      t.throws(() => dm.info({ uuid: `${PREFIX}-no-such-uuid` }), { instanceOf: DmSystemError, code: 'ENXIO' });
      t.throws(() => dm.load(missing, zero(8)), { instanceOf: DmSystemError, code: 'ENXIO', message: /DM_TABLE_LOAD/ });

      const uuid = `${PREFIX}-taken-${ffi}`;
      const name = c.device(uniqueName('taken'));
      dm.create(name, { uuid });
      const dup = t.throws(() => dm.create(name), { instanceOf: DmSystemError, code: 'EBUSY' });
      t.like(dup, { errno: 16, operation: 'DM_DEV_CREATE', device: name });
      const dupUuidName = uniqueName('dup-uuid');
      t.throws(() => dm.create(dupUuidName, { uuid }), { instanceOf: DmSystemError, code: 'EBUSY' });
      t.false(dm.exists(dupUuidName));

      // The target's constructor refuses: EINVAL from the kernel, nothing loaded.
      const refusedByKernel: [Target, string][] = [
        [{ start: 0n, length: 8n, type: 'linear', params: '' }, 'EINVAL'], // argument count
        [{ start: 0n, length: 8n, type: 'linear', params: 'bogus' }, 'EINVAL'],
        [{ start: 0n, length: 8n, type: 'no-such-target', params: '' }, 'EINVAL'],
        [{ start: 0n, length: 8n, type: 'striped', params: '2 8 nothing' }, 'EINVAL'],
        [{ start: 0n, length: 8n, type: 'linear', params: 'not-a-device 0' }, 'ENODEV'], // dm_get_device()
      ];
      for (const [target, code] of refusedByKernel) {
        const e = t.throws(
          () => dm.load(name, [target]),
          { instanceOf: DmSystemError, code },
          `${target.type} ${target.params}`,
        );
        t.like(e, { operation: 'DM_TABLE_LOAD', device: name, syscall: 'ioctl' });
      }
      t.false(dm.info(name).inactiveTable);

      // The codec refuses before any ioctl: same answer on a closed handle.
      const closed = DeviceMapper.open({ ffi });
      closed.close();
      const refused: [Target[], RegExp][] = [
        [[], /^targets:/],
        [[{ start: 0n, length: 0n, type: 'zero', params: '' }], /^targets\[0\]\.length:/],
        [[...zero(8), { start: 9n, length: 8n, type: 'zero', params: '' }], /^targets\[1\]\.start:/],
        [[{ start: 0n, length: 8n, type: 'x'.repeat(16), params: '' }], /^targetType:/],
        [[{ start: 0n, length: 8n, type: 'zero', params: 'a\0b' }], /^params:/],
      ];
      for (const [targets, message] of refused) {
        t.throws(() => dm.load(name, targets), { instanceOf: InvalidArgumentError, message });
        t.throws(() => closed.load(name, targets), { instanceOf: InvalidArgumentError, message });
      }
      t.false(dm.info(name).inactiveTable);
    },
  );

  test.serial(`${ffi}: invalid names and uuids are refused with InvalidArgumentError before any ioctl`, (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    const closed = DeviceMapper.open({ ffi });
    closed.close();
    const before = dm.list();
    const valid = makeDevice(dm, c, 'valid-name').name;
    const listed = dm.list();
    const bad = ['a/b', '', 'x'.repeat(128), 'x'.repeat(129), 'a\0b', '.', '..', 'control', 'é'.repeat(64)];
    for (const name of bad) {
      const label = JSON.stringify(name);
      for (const handle of [dm, closed]) {
        for (const call of [
          () => handle.create(name),
          () => handle.create(name, { uuid: 'u' }),
          () => handle.info(name),
          () => handle.remove(name),
          () => handle.suspend({ name }),
          () => handle.resume(name),
          () => handle.load(name, zero(8)),
          () => handle.table(name),
          () => handle.message(name, 0, 'x'),
          () => handle.rename(name, valid),
        ]) {
          const e = t.throws(call, { instanceOf: InvalidArgumentError, code: 'ERR_DM_INVALID_ARGUMENT' }, label);
          t.is(e?.argument, 'name', label);
        }
        t.is(
          t.throws(() => handle.rename(valid, name), { instanceOf: InvalidArgumentError }, label)?.argument,
          'newName',
        );
      }
    }
    t.is(
      t.throws(() => dm.create(uniqueName('u'), { uuid: 'u'.repeat(129) }), { instanceOf: InvalidArgumentError })
        ?.argument,
      'uuid',
    );
    t.is(t.throws(() => dm.rename(valid, { uuid: 'a\0b' }), { instanceOf: InvalidArgumentError })?.argument, 'uuid');
    t.deepEqual(dm.list(), listed, 'no device was made, renamed or removed');
    t.true(listed.length === before.length + 1);

    // The limits themselves are accepted: 127 bytes of name (DM_NAME_LEN less its NUL), 128 of uuid.
    const long = c.device(`${PREFIX}-${'n'.repeat(127 - PREFIX.length - 3)}-${BACKENDS.indexOf(ffi)}`);
    const utf8Head = `${PREFIX}-${BACKENDS.indexOf(ffi)}-`;
    const utf8 = c.device(utf8Head + 'é'.repeat(Math.floor((127 - utf8Head.length) / 2)));
    t.is(Buffer.byteLength(long), 127);
    t.true(Buffer.byteLength(utf8) >= 126 && Buffer.byteLength(utf8) <= 127, String(Buffer.byteLength(utf8)));
    const uuid = `${PREFIX}-${ffi}-`.padEnd(128, 'u');
    dm.create(long, { uuid });
    dm.create(utf8);
    t.is(dm.info({ uuid }).name, long);
    t.is(dm.info(utf8).name, utf8);
    t.true(dm.list().some((x) => x.name === utf8));
    // dmsetup mangles (by default: refuses to show) names outside its whitelist unless told not to.
    const raw = (...args: string[]): string => dmsetup('--manglename', 'none', ...args);
    t.deepEqual(
      ownLines(raw('ls'), [long, utf8]),
      [long, utf8].map((n) => `${n}\t(${devText(dm.info(n).dev)})`).sort(),
    );
    t.deepEqual(
      ownLines(raw(...DMSETUP_INFO_ARGS), [long, utf8]),
      [long, utf8].map((n) => dmsetupInfoRow(dm.info(n))).sort(),
    );
  });

  test.serial(`${ffi}: list answers hundreds of long-named devices (several BUFFER_FULL retries) like dmsetup`, (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    const count = 320;
    const made = new Map<string, { uuid: string; dev: string }>();
    const started = Date.now();
    for (let i = 0; i < count; i++) {
      const name = `${PREFIX}-many-${i}-`.padEnd(120, 'n');
      const uuid = `${PREFIX}-many-uuid-${i}-`.padEnd(64, 'u');
      c.device(name);
      made.set(name, { uuid, dev: devText(dm.create(name, { uuid }).dev) });
    }
    // Each dm_name_list record takes 8 (dev) + 4 (next) + name + NUL, 8-aligned, then
    // event_nr, flags, uuid + NUL: far past the 16 KiB first buffer, so the engine doubles
    // it at least twice (16 -> 32 -> 64 -> 128 KiB).
    const bytes = [...made].reduce((sum, [name, { uuid }]) => sum + 12 + name.length + 1 + 8 + uuid.length + 1, 0);
    t.true(bytes > 64 * 1024, `${bytes} bytes of list`);

    const fresh = c.handle(DeviceMapper.open({ ffi })); // no size hint from earlier calls
    const listed = fresh.list().filter((x) => made.has(x.name));
    t.is(listed.length, count);
    for (const entry of listed) {
      const expected = made.get(entry.name)!;
      t.is(devText(entry.dev), expected.dev, entry.name);
      t.is(entry.uuid, expected.uuid, entry.name);
      t.is(entry.eventNr, 0);
    }
    t.deepEqual(
      fresh.list().filter((x) => made.has(x.name)),
      listed,
      'a second list (sized from the first) answers the same',
    );
    const names = [...made.keys()];
    t.deepEqual(ownLines(dmsetup('ls'), names), [...made].map(([n, { dev }]) => `${n}\t(${dev})`).sort());
    t.deepEqual(
      ownLines(dmsetup('info', '-c', '--noheadings', '-o', 'name,uuid,major,minor'), names),
      [...made].map(([n, { uuid, dev }]) => `${n}:${uuid}:${dev}`).sort(),
    );

    for (const name of names) dm.remove(name);
    t.false(dm.list().some((x) => made.has(x.name)));
    t.log(`${count} devices created, listed, cross-checked and removed in ${Date.now() - started} ms`);
  });

  test.serial(`${ffi}: cross-check: what the library makes, dmsetup reports identically`, (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    const a = makeDevice(dm, c, 'x-multi', [...zero(1000), { start: 1000n, length: 500n, type: 'error', params: '' }], {
      uuid: `${PREFIX}-x-multi-${ffi}`,
    });
    const b = makeDevice(dm, c, 'x-stack', [
      { start: 0n, length: 500n, type: 'linear', params: `${devText(a.dev)} 0` },
      { start: 500n, length: 512n, type: 'striped', params: `1 8 ${devText(a.dev)} 500` },
    ]);
    const bare = c.device(uniqueName('x-bare'));
    dm.create(bare, { uuid: `${PREFIX}-x-bare-${ffi}` });
    const s = makeDevice(dm, c, 'x-suspended');
    dm.suspend(s.name, { noFlush: true });
    dm.load(s.name, zero(2048));
    const ro = makeDevice(dm, c, 'x-ro', zero(64), { readOnly: true });
    c.fd(openSync(dmNode(ro.dev), 'r'));
    const names = [a.name, b.name, bare, s.name, ro.name];

    const infos = names.map((n) => dm.info(n));
    t.like(infos[1], { openCount: 0 });
    t.like(dm.info(a.name), { openCount: 1 }, 'the stacked device holds it');
    t.like(infos[4], { readOnly: true, openCount: 1 });
    t.deepEqual(ownLines(dmsetup(...DMSETUP_INFO_ARGS), names), infos.map(dmsetupInfoRow).sort());
    t.deepEqual(ownLines(dmsetup('table'), names), names.flatMap((n) => tableLines(n, dm.table(n))).sort());
    t.deepEqual(ownLines(dmsetup('status'), names), names.flatMap((n) => tableLines(n, dm.status(n))).sort());
    t.deepEqual(
      ownLines(dmsetup('table', '--inactive'), [s.name]),
      tableLines(s.name, dm.table(s.name, { inactive: true })),
    );
    t.deepEqual(ownLines(dmsetup('ls'), names), infos.map((i) => `${i.name}\t(${devText(i.dev)})`).sort());
    t.regex(
      dmsetup('deps', '-o', 'devno', b.name),
      new RegExp(`1 dependencies\\s*:\\s*\\(${a.dev.major}, ${a.dev.minor}\\)`),
    );
    t.deepEqual(dm.deps(b.name), [a.dev]);
  });

  test.serial(`${ffi}: cross-check: what dmsetup makes, the library reads identically`, (t) => {
    const c = new Cleanup(t);
    const dm = open(c, ffi);
    const x = c.device(uniqueName('d-multi'));
    const xUuid = `${PREFIX}-d-multi-${ffi}`;
    // A two-line table, read from stdin as `dmsetup create` does without --table.
    run('dmsetup', ['--noudevsync', '--verifyudev', 'create', x, '--uuid', xUuid], '0 1000 zero\n1000 24 error\n');
    const y = c.device(uniqueName('d-ro'));
    dmsetup('create', y, '--readonly', '--table', `0 500 linear /dev/mapper/${x} 10`);
    const z = c.device(uniqueName('d-bare'));
    const zUuid = `${PREFIX}-d-bare-${ffi}`;
    dmsetup('create', z, '--notable', '--uuid', zUuid);
    const w = c.device(uniqueName('d-suspended'));
    dmsetup('create', w, '--table', '0 64 zero');
    dmsetup('load', w, '--table', '0 128 zero');
    dmsetup('suspend', w);
    const names = [x, y, z, w];

    const reference = new Map(ownLines(dmsetup(...DMSETUP_INFO_ARGS), names).map((row) => [row.split(':')[0]!, row]));
    for (const name of names) t.is(dmsetupInfoRow(dm.info(name)), reference.get(name) ?? '(not in dmsetup info)', name);
    t.like(dm.info(x), { uuid: xUuid, targetCount: 2, active: true, openCount: 1 });
    t.like(dm.info(y), { readOnly: true, active: true });
    t.like(dm.info(z), { uuid: zUuid, active: false, targetCount: 0 });
    t.like(dm.info(w), { suspended: true, active: true, inactiveTable: true });

    t.deepEqual(
      dm.table(x).map((s) => `${s.start} ${s.length} ${s.type} ${s.params}`.trimEnd()),
      ['0 1000 zero', '1000 24 error'],
    );
    t.deepEqual(
      dm.table(y).map((s) => s.params),
      [`${devText(dm.info(x).dev)} 10`],
      'the kernel keeps the device as major:minor',
    );
    t.deepEqual(names.flatMap((n) => tableLines(n, dm.table(n))).sort(), ownLines(dmsetup('table'), names));
    t.deepEqual(names.flatMap((n) => tableLines(n, dm.status(n))).sort(), ownLines(dmsetup('status'), names));
    t.deepEqual(tableLines(w, dm.table(w, { inactive: true })), ownLines(dmsetup('table', '--inactive'), [w]));
    t.deepEqual(dm.deps(y), [dm.info(x).dev]);

    const listed = dm.list().filter((e) => names.includes(e.name));
    t.deepEqual(
      listed.map((e) => `${e.name}:${e.uuid}:${devText(e.dev)}`).sort(),
      names.map((n) => reference.get(n)!.split(':').slice(0, 4).join(':')).sort(),
    );
    t.deepEqual(ownLines(dmsetup('ls'), names), listed.map((e) => `${e.name}\t(${devText(e.dev)})`).sort());
  });

  test.serial(`${ffi}: no fd leak over 200 open/close cycles`, async (t) => {
    const cycle = async (withAsync: boolean): Promise<void> => {
      const dm = DeviceMapper.open({ ffi });
      try {
        dm.version();
        dm.list();
        t.throws(() => dm.info(`${PREFIX}-never`), { code: 'ENXIO' });
        if (withAsync) await t.throwsAsync(dm.removeAsync(`${PREFIX}-never`), { code: 'ENXIO' });
      } finally {
        dm.close();
      }
    };
    await cycle(true); // loads the backend, starts its threads
    const before = fdCount();
    for (let i = 0; i < 200; i++) await cycle(i % 20 === 0);
    t.throws(() => DeviceMapper.open({ ffi, controlPath: `/dev/mapper/${PREFIX}-no-control` }), {
      instanceOf: DmSystemError,
      code: 'ENOENT',
      message: /open/,
    });
    t.is(fdCount(), before);
  });

  test.serial(`${ffi}: a closed handle refuses every call with ERR_DM_CLOSED`, async (t) => {
    const dm = DeviceMapper.open({ ffi });
    t.false(dm.closed);
    dm.close();
    t.true(dm.closed);
    t.notThrows(() => dm.close());
    const name = uniqueName('closed');
    const closed = { instanceOf: DevmapperError, code: 'ERR_DM_CLOSED' };
    for (const call of [
      () => dm.version(),
      () => dm.list(),
      () => dm.create(name),
      () => dm.remove(name),
      () => dm.removeAll(),
      () => dm.rename(name, `${name}-2`),
      () => dm.suspend(name),
      () => dm.resume(name),
      () => dm.info(name),
      () => dm.exists(name),
      () => dm.load(name, zero(8)),
      () => dm.clear(name),
      () => dm.deps(name),
      () => dm.status(name),
      () => dm.table(name),
      () => dm.targets(),
      () => dm.targetVersion('zero'),
      () => dm.message(name, 0, 'x'),
      () => dm.setGeometry(name, { cylinders: 1, heads: 1, sectors: 1, start: 0 }),
      () => dm.armPoll(),
    ]) {
      t.throws(call, closed, call.toString());
    }
    for (const call of [
      () => dm.removeAsync(name),
      () => dm.suspendAsync(name),
      () => dm.resumeAsync(name),
      () => dm.wait(name),
      () => dm.pollEvent(0),
    ]) {
      await t.throwsAsync(call, closed, call.toString());
    }
  });
}

test.serial('nothing is left behind: no dm device and no loop device from this file', (t) => {
  const dm = DeviceMapper.open();
  try {
    t.deepEqual(
      dm
        .list()
        .filter((x) => x.name.startsWith(PREFIX))
        .map((x) => x.name),
      [],
    );
  } finally {
    dm.close();
  }
  t.deepEqual(
    dmsetup('ls')
      .split('\n')
      .filter((line) => line.startsWith(PREFIX)),
    [],
  );
  t.deepEqual(
    run('losetup', ['--list', '--noheadings', '-O', 'NAME,BACK-FILE'])
      .split('\n')
      .filter((line) => line.includes(PREFIX)),
    [],
  );
  t.deepEqual(
    new LoopDevices().list().filter((l) => l.backingFile.includes(PREFIX)),
    [],
  );
  t.false(readFileSync('/proc/self/mounts', 'utf8').includes(PREFIX));
});
