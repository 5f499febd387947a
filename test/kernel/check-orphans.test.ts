// Thin ids in the pool past the allocator's next id (made behind the driver's back, or a
// deviceset.json restored from earlier) are beyond check's probe, which asks only for the ids
// the allocator handed out: check said "clean" on such a pool. With thinCheck, thin_ls's
// listing of the metadata finds them; repair then deletes them like any leaked thin id.
import test from 'ava';
import { Driver } from '../../src/driver/driver.js';
import { findThinTool } from '../../src/driver/thin-check.js';
import { SMALL, assertNothingLeaked, newHome, poolThinIds, show } from './driver-helpers.js';
import { useDriverBed } from './helpers.js';
import { dmsetup } from './reference-tools.js';

useDriverBed();

test.serial('check --thin-check reports thin ids past the allocator as leaked; repair deletes them', async (t) => {
  if (!findThinTool('thin_ls')) {
    t.log('skipped: thin_ls (thin-provisioning-tools) is not installed');
    t.pass();
    return;
  }
  t.timeout(300_000);
  const driver = await Driver.init({ home: newHome('orphans'), ...SMALL });
  try {
    await driver.create('a');
    const { poolName } = await driver.status();
    dmsetup('message', poolName, '0', 'create_thin 40');
    const report = await driver.check({ thinCheck: true });
    t.deepEqual(report.leakedThinIds, [40], show(report));
    t.false(report.clean);
    const repaired = await driver.check({ repair: true, thinCheck: true });
    t.true(repaired.repairs.includes('deleted leaked thin id 40'), show(repaired));
    t.false(poolThinIds(poolName, 41).includes(40));
    const after = await driver.check({ thinCheck: true });
    t.true(after.clean, show(after));
  } finally {
    await driver.cleanup();
  }
});

test.serial('nothing leaked', (t) => {
  assertNothingLeaked(t);
});
