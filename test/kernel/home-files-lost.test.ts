// A home that lost one of the files its pool stands on: deviceset.json (whose absence made init
// take the home for new and zero the pool's metadata), or the pool's loop metadata or data file
// (which init re-created empty: a new pool over the old data, or the old mappings over zeros).
// Init must refuse with ERR_DM_METADATA naming the file, create nothing, and the home must come
// back whole once the file is restored.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { HomeLayout } from '../../src/driver/home-layout.js';
import {
  SMALL,
  assertNothingLeaked,
  codeOf,
  driverDmNames,
  newHome,
  savedThinIds,
  sha,
  show,
} from './driver-helpers.js';
import { useDriverBed } from './helpers.js';

useDriverBed();

/** A home with layer a holding a file, taken down (pool inactive, as after a reboot). */
async function downedHome(tag: string): Promise<{ home: string; hash: string; ids: Map<string, number> }> {
  const home = newHome(tag);
  const driver = await Driver.init({ home, ...SMALL });
  await driver.create('a');
  const data = randomBytes(64 << 10);
  writeFileSync(join(await driver.get('a'), 'a.bin'), data);
  await driver.put('a');
  await driver.cleanup();
  return { home, hash: sha(data), ids: savedThinIds(home) };
}

const poolOf = (home: string): string => HomeLayout.create(home).poolName;

async function assertIntact(
  t: import('ava').ExecutionContext,
  home: string,
  hash: string,
  ids: Map<string, number>,
): Promise<void> {
  const driver = await Driver.init({ home, ...SMALL });
  try {
    t.deepEqual(savedThinIds(home), ids, 'the records are as they were');
    t.is(sha(readFileSync(join(await driver.get('a'), 'a.bin'))), hash, "a's file reads back");
    await driver.put('a');
    const report = await driver.check();
    t.true(report.clean, show(report));
  } finally {
    await driver.cleanup();
  }
}

test.serial(
  'deviceset.json lost: init refuses naming it and formats nothing; restored, the home is intact',
  async (t) => {
    const { home, hash, ids } = await downedHome('lost-state');
    const state = join(home, 'metadata', 'deviceset.json');
    const metadataFile = join(home, 'devicemapper', 'metadata');
    const before = readFileSync(metadataFile);
    renameSync(state, `${state}.away`);
    const error = await t.throwsAsync(Driver.init({ home, ...SMALL }));
    t.is(codeOf(error), 'ERR_DM_METADATA', error?.message);
    t.true(error?.message.includes(state), error?.message);
    t.false(driverDmNames().includes(poolOf(home)), 'no pool was activated');
    t.true(readFileSync(metadataFile).equals(before), "the pool's metadata file is untouched");
    t.false(existsSync(state), 'no new deviceset.json');
    renameSync(`${state}.away`, state);
    await assertIntact(t, home, hash, ids);
  },
);

for (const name of ['metadata', 'data'] as const) {
  test.serial(
    `the pool's ${name} file lost: init refuses naming it and makes none; restored, the home is intact`,
    async (t) => {
      const { home, hash, ids } = await downedHome(`lost-${name}`);
      const file = join(home, 'devicemapper', name);
      renameSync(file, `${file}.away`);
      const error = await t.throwsAsync(Driver.init({ home, ...SMALL }));
      t.is(codeOf(error), 'ERR_DM_METADATA', error?.message);
      t.true(error?.message.includes(file), error?.message);
      t.false(existsSync(file), `no new ${name} file`);
      t.false(driverDmNames().includes(poolOf(home)), 'no pool was activated');
      renameSync(`${file}.away`, file);
      await assertIntact(t, home, hash, ids);
    },
  );
}

test.serial('nothing leaked', (t) => {
  assertNothingLeaked(t);
});
