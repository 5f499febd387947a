// A full metadata device that is not the driver's own loop file: the pool on `dataDevice` /
// `metadataDevice` (loop devices this test makes over sparse files, as a user's partitions or
// LVs would be). Filled by many snapshots of the base, each written a little. Then: create
// fails with MetadataSpaceError naming that device and saying to grow it; nothing is half-made
// (no record, no dm device, the pool holds exactly the recorded thin ids once it takes messages
// again); growPool() while the device is still full throws MetadataSpaceError and changes
// nothing (it once resumed the pool and reported success); growPool with a metadataSize is
// refused (the driver grows only its own files); once the device is grown, growPool() puts the
// pool back to rw and creates work again.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { type DevmapperError, MetadataSpaceError } from '../../src/errors.js';
import { assertNothingLeaked, dmNames, newHome, poolThinIds, savedThinIds, sha, show } from './driver-helpers.js';
import { bounded, fillMetadata, open, settle, writeDurably } from './fault-helpers.js';
import { Cleanup, sparseFile, useDriverBed } from './helpers.js';
import { run } from './reference-tools.js';

useDriverBed();

const MiB = 1n << 20n;

test.serial(
  'metadataDevice full: MetadataSpaceError names the device, nothing half-made; growPool() on the still-full device throws it too; grown, the pool is rw again',
  async (t) => {
    t.timeout(600_000); // some 450 snapshots, each written: minutes in the UML guest
    const cleanup = new Cleanup(t);
    const loop = (name: string, bytes: number): { file: string; device: string } => {
      const file = sparseFile(cleanup, name, bytes);
      const device = run('losetup', ['--find', '--show', file]).trim();
      cleanup.loop(Number(/loop(\d+)$/.exec(device)![1]));
      return { file, device };
    };
    const data = loop('data', 4 * 2 ** 30);
    const meta = loop('meta', 2 << 20);
    const home = newHome('mddev');
    const options = {
      home,
      baseSize: '64M',
      dataDevice: data.device,
      metadataDevice: meta.device,
      minFreeSpacePercent: 0,
    };
    const driver = await open(t, options);
    const before = await driver.status();
    t.is(before.metadataSpace.total, 2n * MiB);
    t.is(before.metadataFile, undefined, 'no loop files of its own');

    await driver.create('keep', null);
    const kept = randomBytes(1 << 20);
    writeDurably(join(await driver.get('keep'), 'blob'), kept);
    await driver.put('keep');

    const { done, writing, error } = await fillMetadata(driver);
    t.log(
      `metadata device full after ${done.length} layers; failing: ${writing ? `a write in ${writing}` : 'a create'}: ${String(error)}`,
    );
    if (writing) await bounded(driver.put(writing), 'put');
    const full = await driver.status();
    t.is(full.poolMode, 'ro');
    t.is(full.metadataSpace.used, full.metadataSpace.total);

    // create: typed, naming the device and what to do; nothing half-made.
    const layers = (await driver.list()).map((l) => l.id).sort();
    const createError = await settle(bounded(driver.create('more', null), 'create'));
    t.true(createError instanceof MetadataSpaceError, String(createError));
    const typed = createError as MetadataSpaceError;
    t.is(typed.code, 'ERR_DM_METADATA_FULL');
    t.is(typed.metadataDevice, meta.device);
    t.regex(typed.message, new RegExp(`metadata device ${meta.device} is full`));
    t.regex(typed.message, /grow the metadata device, then call growPool\(\)/);
    t.false(await driver.exists('more'));
    t.deepEqual((await driver.list()).map((l) => l.id).sort(), layers);
    t.false(
      dmNames().some((n) => n.endsWith('-more')),
      'no dm device for the refused layer',
    );

    // growPool() with the device not grown: still full, so MetadataSpaceError, pool unchanged.
    const notGrown = await settle(bounded(driver.growPool(), 'growPool (device not grown)'));
    t.true(notGrown instanceof MetadataSpaceError, `growPool on a still-full metadata device: ${String(notGrown)}`);
    t.is((notGrown as MetadataSpaceError | undefined)?.metadataDevice, meta.device);
    const still = await driver.status();
    t.is(still.poolMode, 'ro');
    t.is(still.dataSpace.total, full.dataSpace.total);
    t.is(still.metadataSpace.total, 2n * MiB);

    // A size is for the driver's own loop files only: refused, nothing changed.
    const bySize = await settle(bounded(driver.growPool(undefined, { metadataSize: '4M' }), 'growPool metadataSize'));
    t.is((bySize as DevmapperError | undefined)?.code, 'ERR_DM_INVALID_ARGUMENT', String(bySize));
    t.regex(String(bySize), /metadataSize: .*grow dataDevice or metadataDevice yourself/);
    t.is((await driver.status()).metadataSpace.total, 2n * MiB);

    // The user grows the device (here: its backing file and the loop device's capacity).
    truncateSync(meta.file, 4 << 20);
    run('losetup', ['--set-capacity', meta.device]);
    const size = await bounded(driver.growPool(), 'growPool (device grown)');
    t.is(size, before.dataSpace.total, 'the data device is left as it is');
    const grown = await driver.status();
    t.is(grown.poolMode, 'rw');
    t.false(grown.needsCheck);
    t.is(grown.metadataSpace.total, 4n * MiB);

    const saved = [...savedThinIds(home).values()].sort((a, b) => a - b);
    t.deepEqual(
      poolThinIds(grown.poolName, Math.max(...saved) + 4),
      saved,
      'the pool holds exactly the recorded thin ids',
    );
    await bounded(driver.create('more', 'keep'), 'create after growPool');
    t.is(sha(readFileSync(join(await driver.get('more'), 'blob'))), sha(kept), 'data written before is intact');
    await driver.put('more');
    await bounded(driver.remove(done[0]!), 'remove after growPool');
    const report = await bounded(driver.check({ thinCheck: true }), 'check --thin-check', 60_000);
    t.true(report.clean, show(report));
    await driver.cleanup();
  },
);

test.serial('nothing leaked: no dm device, no loop device, no mount under any home', (t) => {
  assertNothingLeaked(t);
});
