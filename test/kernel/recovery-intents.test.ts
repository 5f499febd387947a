// An open intent in transactions.log that contradicts the records (a hand edit, a log restored
// from another time): init and check must not act on it. Acting once deleted another layer's
// thin id (a delete naming it), or dropped an existing layer's record (a create of that layer
// rolled back), after which check --repair deleted that layer's thin id as leaked; a delete
// of the base device (which the driver never writes) deleted the base's thin id.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { checksummedLine } from '../../src/driver/layer-pack.js';
import { LOG } from '../../src/driver/transaction-log.js';
import {
  SMALL,
  assertNothingLeaked,
  driverDmNames,
  newHome,
  poolThinIds,
  savedState,
  sha,
  show,
} from './driver-helpers.js';
import { useDriverBed } from './helpers.js';

useDriverBed();

test.serial(
  'an intent contradicting the records is refused by init and check with ERR_DM_METADATA naming the log; no thin id or record is lost',
  async (t) => {
    t.timeout(300_000);
    const home = newHome('intent');
    const options = { home, ...SMALL };
    const files = new Map<string, string>();
    const thin = new Map<string, number>();
    let driver = await Driver.init(options);
    for (const [id, parent] of [
      ['a', undefined],
      ['b', 'a'],
    ] as const) {
      await driver.create(id, parent);
      thin.set(id, (await driver.metadata(id)).deviceId);
      const data = randomBytes(64 << 10);
      writeFileSync(join(await driver.get(id), `${id}.bin`), data);
      files.set(id, sha(data));
      await driver.put(id);
    }
    const { poolName: pool } = await driver.status();
    await driver.close(); // the pool stays active; the log is folded away
    const log = join(home, 'metadata', LOG);
    const tid = String(BigInt(savedState(home).transactionId) + 1n); // the pool has not committed it
    const a = thin.get('a')!;
    const b = thin.get('b')!;
    const record = (id: string, deviceId: number) => ({
      id,
      parent: null,
      deviceId,
      size: '67108864',
      transactionId: tid,
    });
    const contradictions = {
      "a delete of a naming b's thin id": { transactionId: tid, op: 'delete', layerId: 'a', deviceId: b },
      'a create of a, which exists': {
        transactionId: tid,
        op: 'create',
        layerId: 'a',
        deviceId: 9,
        record: record('a', 9),
      },
      // The driver never deletes the base: acting on this deleted the thin device every new layer snapshots.
      'a delete of the base device': { transactionId: tid, op: 'delete', layerId: '.base', deviceId: 1 },
    };
    for (const [what, intent] of Object.entries(contradictions)) {
      writeFileSync(log, `${checksummedLine({ intent })}\n`);
      for (const open of [() => Driver.init(options), () => Driver.check(options)]) {
        const error = await t.throwsAsync(open(), undefined, what);
        t.is((error as { code?: string }).code, 'ERR_DM_METADATA', `${what}: ${error?.message}`);
        t.regex(error?.message ?? '', /transactions\.log.*(contradicts the records|delete of the base device)/, what);
      }
      t.deepEqual(poolThinIds(pool, 10), [1, a, b].sort(), `${what}: the pool's thin ids`);
      rmSync(log);
    }
    // A delete of a layer with no record may be an older driver's (record removed, intent left):
    // it goes ahead, but never deletes the thin id another layer has.
    appendFileSync(
      log,
      `${checksummedLine({ intent: { transactionId: tid, op: 'delete', layerId: 'zz', deviceId: b } })}\n`,
    );
    driver = await Driver.init(options);
    try {
      t.deepEqual((await driver.list()).map((l) => l.id).sort(), ['a', 'b']);
      for (const [id, hash] of files) {
        t.is(sha(readFileSync(join(await driver.get(id), `${id}.bin`))), hash, `layer ${id}'s file`);
        await driver.put(id);
      }
      const report = await driver.check();
      t.true(report.clean, show(report));
    } finally {
      await driver.cleanup();
    }
    t.deepEqual(driverDmNames(), []);
  },
);

test.serial('nothing leaked', (t) => {
  assertNothingLeaked(t);
});
