// check --repair of a needs_check pool killed while it puts the repaired metadata in place
// (DEVMAPPER_TEST_CRASH_AT=repair:swap, after the old file is kept and before the new one is
// in): <home>/devicemapper/metadata must hold the old or the new metadata at every instant.
// A missing one reads to the next init as a home never made: a fresh, empty metadata file,
// every layer's thin id gone, and check --repair setting every record aside.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { findThinTool } from '../../src/driver/thin-check.js';
import { runCli, type CliRun } from '../cli-process.js';
import { initArgs, recorded } from './cli-helpers.js';
import { assertNothingLeaked, driverDmNames, newHome, sha, show } from './driver-helpers.js';
import { useDriverBed } from './helpers.js';
import { setNeedsCheck } from './thin-superblock.js';

useDriverBed();

const cli = (home: string, ...args: string[]): Promise<CliRun> => runCli(['--home', home, ...args]);

/** `devmapper check --repair` killed at `step` (a crash point). */
async function repairKilledAt(home: string, step: string): Promise<CliRun> {
  process.env.DEVMAPPER_TEST_CRASH_AT = step;
  try {
    return await cli(home, '--json', 'check', '--repair');
  } finally {
    delete process.env.DEVMAPPER_TEST_CRASH_AT;
  }
}

test.serial(
  'check --repair killed while swapping in the repaired metadata: the metadata file is never missing, the next repair finishes, no layer lost',
  async (t) => {
    t.timeout(600_000);
    if (!findThinTool('thin_repair')) {
      t.pass('thin_repair is not installed: nothing to repair with');
      return;
    }
    const home = newHome('repair-swap');
    const init = await cli(home, ...initArgs);
    t.is(init.code, 0, init.stderr);
    const data = randomBytes(256 << 10);
    let driver = await Driver.init(recorded(home));
    await driver.create('a');
    writeFileSync(join(await driver.get('a'), 'a.bin'), data);
    await driver.put('a');
    await driver.cleanup();
    const metadata = join(home, 'devicemapper', 'metadata');
    setNeedsCheck(metadata, true);

    const killed = await repairKilledAt(home, 'repair:swap');
    t.is(killed.code, null, `killed at the crash point: ${killed.stderr}`);
    t.true(existsSync(metadata), 'the metadata file holds the old or the new metadata');
    t.deepEqual(driverDmNames(), [], 'the pool was down for the repair and stays down');

    const again = await cli(home, '--json', 'check', '--repair');
    const report = JSON.parse(again.stdout || '{}');
    t.is(again.code, 0, show(report));
    t.false(report.needsCheck, show(report));
    t.deepEqual(report.missingThinIds, [], show(report));
    t.is(
      readdirSync(join(home, 'quarantine')).filter((n) => n.endsWith('.layer.json') || n.includes('.layer.json.'))
        .length,
      0,
    );
    driver = await Driver.init(recorded(home));
    try {
      t.is(sha(readFileSync(join(await driver.get('a'), 'a.bin'))), sha(data), "layer a's file");
      await driver.put('a');
      t.true((await driver.check()).clean);
    } finally {
      await driver.cleanup();
    }
  },
);

test.serial('nothing leaked', (t) => {
  assertNothingLeaked(t);
});
