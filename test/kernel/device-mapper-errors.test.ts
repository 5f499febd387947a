// The ioctl core against a real device-mapper, refusals and handles: the kernel's errnos
// (ENXIO, EBUSY, EINVAL, ENODEV) and the codec's InvalidArgumentError before any ioctl, names
// and uuids at and past their limits, no fd leak over open/close cycles, a closed handle's
// ERR_DM_CLOSED; on both FFI backends. Every test undoes what it made in its teardown
// (helpers.ts Cleanup); an after.always hook checks that nothing is left.
import test from 'ava';
import { DevmapperError, DmSystemError, InvalidArgumentError } from '../../src/errors.js';
import { DeviceMapper, type Target } from '../../src/ioctl/device-mapper.js';
import {
  BACKENDS,
  Cleanup,
  DMSETUP_INFO_ARGS,
  PREFIX,
  devText,
  dmsetupInfoRow,
  fdCount,
  makeDevice,
  openDm,
  ownLines,
  uniqueName,
  useDeviceMapperBed,
  zero,
} from './helpers.js';
import { dmsetup } from './reference-tools.js';

useDeviceMapperBed({ leakCheckHook: true });

for (const ffi of BACKENDS) {
  test.serial(
    `${ffi}: kernel errors: ENXIO for a missing device, EBUSY for a taken name or uuid, EINVAL for a table the target refuses`,
    (t) => {
      const c = new Cleanup(t);
      const dm = openDm(c, ffi);
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
    const dm = openDm(c, ffi);
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
