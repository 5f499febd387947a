// The ioctl core against a real device-mapper, cross-checked with dmsetup at scale and in both
// directions: list over hundreds of long-named devices (BUFFER_FULL retries), what the library
// makes as dmsetup reports it, what dmsetup makes as the library reads it; on both FFI
// backends. Every test undoes what it made in its teardown (helpers.ts Cleanup); an
// after.always hook checks that nothing is left.
import test from 'ava';
import { openSync } from 'node:fs';
import { DeviceMapper } from '../../src/ioctl/device-mapper.js';
import {
  BACKENDS,
  Cleanup,
  DMSETUP_INFO_ARGS,
  PREFIX,
  devText,
  dmNode,
  dmsetupInfoRow,
  makeDevice,
  openDm,
  ownLines,
  uniqueName,
  useDeviceMapperBed,
  zero,
} from './helpers.js';
import { dmsetup, run } from './reference-tools.js';

useDeviceMapperBed({ leakCheckHook: true });

/** `dmsetup table` / `dmsetup status` lines for one device as the library reports its targets. */
function tableLines(
  name: string,
  targets: readonly { start: bigint; length: bigint; type: string; params: string }[],
): string[] {
  if (targets.length === 0) return [`${name}:`];
  return targets.map((x) => `${name}: ${x.start} ${x.length} ${x.type} ${x.params}`.trimEnd());
}

for (const ffi of BACKENDS) {
  test.serial(`${ffi}: list answers hundreds of long-named devices (several BUFFER_FULL retries) like dmsetup`, (t) => {
    const c = new Cleanup(t);
    const dm = openDm(c, ffi);
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
    const dm = openDm(c, ffi);
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
    const dm = openDm(c, ffi);
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
}
