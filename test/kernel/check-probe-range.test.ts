// check probes the pool for every thin id the allocator handed out (0 .. nextDeviceId - 1, and
// up to the highest a valid record names, for a wrapped allocator). A damaged or quarantined
// record may name any thin id, up to 2^24 - 1: that id is asked alone, not by probing every id
// below it (16.7 million table loads: in UML check had not finished after the test's 2
// minutes, for one damaged record).
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { SMALL, assertNothingLeaked, newHome, show } from './driver-helpers.js';
import { useDriverBed } from './helpers.js';

useDriverBed();

test.serial(
  'a damaged record naming thin id 2^24 - 1: check and check --repair answer at once, deleting nothing',
  async (t) => {
    t.timeout(120_000);
    const home = newHome('probe-range');
    const options = { home, ...SMALL };
    const driver = await Driver.init(options);
    await driver.create('a');
    await driver.close();
    // A record with a usable thin id and a missing size: damaged, its thin id an unsure claim.
    const damaged = { id: 'big', parent: null, deviceId: 0xffffff, transactionId: '1' };
    writeFileSync(join(home, 'metadata', 'big.layer.json'), JSON.stringify(damaged));
    const started = Date.now();
    const report = await Driver.check(options);
    t.true(Date.now() - started < 60_000, `check took ${Date.now() - started} ms`);
    t.deepEqual(
      report.damagedRecords.map((d) => d.field),
      ['size'],
      show(report),
    );
    t.deepEqual(report.leakedThinIds, [], show(report));
    const repaired = await Driver.check(options, { repair: true });
    t.false(
      repaired.repairs.some((r) => r.includes('deleted')),
      show(repaired),
    );
    const after = await Driver.init(options);
    try {
      t.true((await after.check()).clean);
      t.deepEqual(
        (await after.list()).map((l) => l.id),
        ['a'],
      );
    } finally {
      await after.cleanup();
    }
  },
);

test.serial('nothing leaked', (t) => {
  assertNothingLeaked(t);
});
