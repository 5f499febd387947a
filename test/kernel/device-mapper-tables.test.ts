// The ioctl core against a real device-mapper, targets and tables: the target types and
// versions, load and clear, table/status/deps of the live and the inactive table, target
// messages (thin-pool, dm core @stats), setGeometry; on both FFI backends, against dmsetup and
// HDIO_GETGEO. Every test undoes what it made in its teardown (helpers.ts Cleanup); an
// after.always hook checks that nothing is left.
import test from 'ava';
import { DmSystemError, InvalidArgumentError } from '../../src/errors.js';
import type { Target } from '../../src/ioctl/device-mapper.js';
import type { FfiBackendName } from '../../src/ioctl/ffi/binding.js';
import { LoopDevices } from '../../src/ioctl/loop.js';
import {
  BACKENDS,
  Cleanup,
  devText,
  dmNode,
  makeDevice,
  openDm,
  readGeometry,
  sparseFile,
  sysBlock,
  uniqueName,
  useDeviceMapperBed,
  zero,
} from './helpers.js';
import { dmsetup } from './reference-tools.js';

useDeviceMapperBed({ leakCheckHook: true });

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

for (const ffi of BACKENDS) {
  test.serial(`${ffi}: version, targets and targetVersion match dmsetup`, (t) => {
    const c = new Cleanup(t);
    const dm = openDm(c, ffi);
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

  test.serial(
    `${ffi}: load and clear, table/status/deps of the inactive table, deps of a linear device on a loop device`,
    (t) => {
      const c = new Cleanup(t);
      const dm = openDm(c, ffi);
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

  test.serial(
    `${ffi}: message: thin-pool create_thin answers nothing; refusals carry the kernel errno and the message; @stats answers text`,
    (t) => {
      const c = new Cleanup(t);
      const dm = openDm(c, ffi);
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
      const dm = openDm(c, ffi);
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
}
