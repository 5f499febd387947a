// A layer record whose id is 'pool' (a hand edit, a restored file): no layer can have that id,
// since `<prefix>-pool` is the pool's own dm name. Loaded as a record, it made init and
// cleanup treat the pool as that layer's device (a pending deferred deletion deactivates it).
// It is damage like any other: init names the file and field, repair quarantines it alone.
import test from 'ava';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { SMALL, assertNothingLeaked, codeOf, driverDmNames, newHome, show } from './driver-helpers.js';
import { useDriverBed } from './helpers.js';

useDriverBed();

test.serial(
  "a record of layer 'pool' pending deletion: init refuses naming it, repair quarantines it, the pool and layer a stay",
  async (t) => {
    t.timeout(300_000);
    const home = newHome('reserved');
    const options = { home, ...SMALL };
    let driver = await Driver.init(options);
    await driver.create('a');
    const thin = (await driver.metadata('a')).deviceId;
    await driver.close(); // the pool stays active
    const file = join(home, 'metadata', 'pool.layer.json');
    const record = { id: 'pool', parent: null, deviceId: thin, size: '67108864', transactionId: '1' };
    writeFileSync(file, JSON.stringify({ ...record, deferredDelete: true }));
    const error = await t.throwsAsync(Driver.init(options));
    t.is(codeOf(error), 'ERR_DM_METADATA', error?.message);
    t.regex(error?.message ?? '', /pool\.layer\.json/);
    const report = await Driver.check(options, { repair: true });
    t.deepEqual(
      report.damagedRecords.map((d) => [d.file, d.field]),
      [[file, 'id']],
      show(report),
    );
    t.false(
      report.repairs.some((r) => r.includes('deleted')),
      show(report),
    );
    t.is(readdirSync(join(home, 'quarantine')).filter((n) => n.startsWith('pool.layer.json.')).length, 1);
    driver = await Driver.init(options);
    try {
      t.deepEqual(
        (await driver.list()).map((l) => l.id),
        ['a'],
      );
      await driver.get('a');
      await driver.put('a');
      t.true((await driver.check()).clean);
    } finally {
      await driver.cleanup();
    }
    t.deepEqual(driverDmNames(), []);
  },
);

test.serial('nothing leaked', (t) => {
  assertNothingLeaked(t);
});
