// The ioctl core against a real device-mapper, events: wait on a device's event number,
// armPoll/pollEvent on the control fd's global event; on both FFI backends. Every test undoes
// what it made in its teardown (helpers.ts Cleanup); an after.always hook checks that nothing
// is left.
import test, { type ExecutionContext } from 'ava';
import { DmSystemError } from '../../src/errors.js';
import type { DeviceMapper } from '../../src/ioctl/device-mapper.js';
import {
  BACKENDS,
  Cleanup,
  DMSETUP_INFO_ARGS,
  PREFIX,
  makeDevice,
  openDm,
  ownLines,
  sleep,
  track,
  uniqueName,
  useDeviceMapperBed,
  withTimeout,
  zero,
} from './helpers.js';
import { dmsetup } from './reference-tools.js';

useDeviceMapperBed({ leakCheckHook: true });

/** Rejects with ENXIO (a device that does not exist): gets a koffi worker thread started and idle. */
async function warmAsyncPath(t: ExecutionContext, dm: DeviceMapper): Promise<void> {
  await t.throwsAsync(dm.removeAsync(uniqueName('absent')), { instanceOf: DmSystemError, code: 'ENXIO' });
}

for (const ffi of BACKENDS) {
  test.serial(`${ffi}: wait resolves on the device's next event (a rename, a removal), not before`, async (t) => {
    const c = new Cleanup(t);
    const dm = openDm(c, ffi);
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
    const dm = openDm(c, ffi);
    const other = openDm(c, ffi);
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
}
