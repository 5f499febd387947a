// The base device's record (.base.layer.json) lost, while deviceset.json still names its thin
// id: init rebuilds the record from deviceset.json. That thin id is the base's claim even with
// no record naming it: a layer record naming it too is a thin-id conflict (not a second owner
// whose removal deletes the base), and a rolled-back create naming it never deletes it.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { checksummedLine } from '../../src/driver/layer-pack.js';
import { LOG } from '../../src/driver/transaction-log.js';
import {
  SMALL,
  assertNothingLeaked,
  codeOf,
  driverDmNames,
  newHome,
  poolThinIds,
  savedState,
  savedThinIds,
  sha,
  show,
} from './driver-helpers.js';
import { useDriverBed } from './helpers.js';

useDriverBed();

/** A home with the base (thin id 1) and layer a holding a file; closed, the pool left active. */
async function homeWithLayer(tag: string): Promise<{ home: string; pool: string; a: number; hash: string }> {
  const home = newHome(tag);
  const driver = await Driver.init({ home, ...SMALL });
  await driver.create('a');
  const a = (await driver.metadata('a')).deviceId;
  const data = randomBytes(64 << 10);
  writeFileSync(join(await driver.get('a'), 'a.bin'), data);
  await driver.put('a');
  const { poolName: pool } = await driver.status();
  await driver.close();
  return { home, pool, a, hash: sha(data) };
}

test.serial(
  "a lost base record and a layer record naming the base's thin id: init refuses, check reports the conflict, repair deletes nothing",
  async (t) => {
    t.timeout(300_000);
    const { home, pool, a } = await homeWithLayer('base-shared');
    const options = { home, ...SMALL };
    const base = savedThinIds(home).get('.base')!;
    t.is(JSON.parse(readFileSync(join(home, 'metadata', 'deviceset.json'), 'utf8')).base.deviceId, base);
    const metadata = join(home, 'metadata');
    rmSync(join(metadata, '.base.layer.json'));
    const recordFile = join(metadata, 'a.layer.json');
    const record = JSON.parse(readFileSync(recordFile, 'utf8'));
    writeFileSync(recordFile, JSON.stringify({ ...record, deviceId: base })); // a hand edit gone wrong
    const error = await t.throwsAsync(Driver.init(options));
    t.is(codeOf(error), 'ERR_DM_METADATA', error?.message);
    t.regex(error?.message ?? '', /deviceset\.json.*base\.deviceId.*thin id 1.*a/s);
    for (const repair of [false, true]) {
      const report = await Driver.check(options, { repair });
      t.false(report.clean, show(report));
      t.deepEqual(report.thinIdConflicts, [{ deviceId: base, layers: ['.base', 'a'] }], show(report));
      t.false(
        report.repairs.some((r) => r.includes('deleted')),
        show(report),
      );
    }
    t.deepEqual(poolThinIds(pool, 10), [base, a].sort(), "the base's and a's thin ids are both still there");
    writeFileSync(recordFile, JSON.stringify(record)); // mended: the base record is rebuilt
    const driver = await Driver.init(options);
    try {
      t.true((await driver.check()).clean);
    } finally {
      await driver.cleanup();
    }
  },
);

test.serial(
  "a lost base record and an uncommitted create naming the base's thin id: rolled back without deleting the base",
  async (t) => {
    t.timeout(300_000);
    const { home, pool, a, hash } = await homeWithLayer('base-intent');
    const options = { home, ...SMALL };
    const base = savedThinIds(home).get('.base')!;
    rmSync(join(home, 'metadata', '.base.layer.json'));
    const tid = String(BigInt(savedState(home).transactionId) + 1n); // the pool has not committed it
    const record = { id: 'z', parent: null, deviceId: base, size: '67108864', transactionId: tid };
    const intent = { transactionId: tid, op: 'create', layerId: 'z', deviceId: base, record };
    writeFileSync(join(home, 'metadata', LOG), `${checksummedLine({ intent })}\n`);
    const driver = await Driver.init(options);
    try {
      t.deepEqual(poolThinIds(pool, 10), [base, a].sort(), "the base's thin id is kept");
      t.deepEqual(
        (await driver.list()).map((l) => l.id),
        ['a'],
      );
      await driver.create('b'); // snapshots the base: it must still be there
      t.is(sha(readFileSync(join(await driver.get('a'), 'a.bin'))), hash);
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
