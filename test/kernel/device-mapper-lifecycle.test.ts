// The ioctl core against a real device-mapper, a device's life: create, info and list, a
// read-only table, remove (sync, async, deferred, removeAll), rename, suspend and resume, on
// both FFI backends, checked against sysfs, the block nodes and dmsetup. Every test undoes
// what it made in its teardown (helpers.ts Cleanup); the last test checks that nothing is left.
import test from 'ava';
import { openSync, promises as fsp, statSync, writeSync } from 'node:fs';
import { DmSystemError, InvalidArgumentError } from '../../src/errors.js';
import {
  BACKENDS,
  Cleanup,
  DMSETUP_INFO_ARGS,
  PREFIX,
  assertNothingLeftBehind,
  devText,
  dmNode,
  dmsetupInfoRow,
  makeDevice,
  openDm,
  ownLines,
  sleep,
  sysBlock,
  track,
  uniqueName,
  useDeviceMapperBed,
  waitFor,
  withTimeout,
  zero,
} from './helpers.js';
import { dmsetup } from './reference-tools.js';

useDeviceMapperBed({ leakCheckHook: false });

for (const ffi of BACKENDS) {
  test.serial(`${ffi}: create, info and list agree with sysfs and dmsetup (names, dev, uuid, eventNr)`, (t) => {
    const c = new Cleanup(t);
    const dm = openDm(c, ffi);
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
    const dm = openDm(c, ffi);
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
    const dm = openDm(c, ffi);
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
      const dm = openDm(c, ffi);
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
    const dm = openDm(c, ffi);
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
    const dm = openDm(c, ffi);
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
    const dm = openDm(c, ffi);
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
    const dm = openDm(c, ffi);
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
}

test.serial('nothing is left behind: no dm device and no loop device from this file', (t) =>
  assertNothingLeftBehind(t),
);
