// A pool whose metadata device fills up (a 2 MiB loop metadata file, many layers each written
// a little, so each holds metadata blocks of its own). What the guest kernel (6.1) does,
// found here: at the last free metadata block (the kernel keeps a reserve: a tenth of the
// device, at most 16 MiB) it logs "No free metadata blocks", switches the pool to its
// out-of-metadata-space mode, which its status prints as `ro` with every metadata block used
// and no needs_check; the write that needed the block fails with EIO (an fsync sees it), and
// every pool message (create_snap, delete) is refused. Growing the metadata file, refreshing
// its loop device's capacity and resuming the pool (a reload of the same table, suspend,
// resume) makes pool_preresume grow the metadata space and switch the pool back to write mode
// by itself; no thin_repair is needed. The Driver: create fails with MetadataSpaceError
// (ERR_DM_METADATA_FULL) naming the metadata file and loop device, nothing half-made;
// growPool() doubles the metadata file (or grows it to metadataSize) and creates work again.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type DevmapperError, MetadataSpaceError, PoolModeError } from '../../src/errors.js';
import type { PoolEvent, PoolEventKind } from '../../src/thin/events.js';
import { SMALL_METADATA, bounded, collect, fillMetadata, open, settle, writeDurably } from './fault-helpers.js';
import { assertNothingLeaked, eventually, newHome, sha, show } from './driver-helpers.js';
import { useDriverBed } from './helpers.js';

useDriverBed();

const MiB = 1n << 20n;

const sawEvent = (events: PoolEvent[], kind: PoolEventKind): Promise<boolean> =>
  eventually(() => events.some((e) => e.kinds.includes(kind)), 5000);

test.serial(
  'metadata device full: the pool turns ro, create fails with ERR_DM_METADATA_FULL naming the metadata device, growPool() grows the metadata file and creates work again',
  async (t) => {
    const home = newHome('mdfull');
    const driver = await open(t, { home, ...SMALL_METADATA });
    const before = await driver.status();
    t.is(before.metadataSpace.total, 2n * MiB);
    const events = collect(t, driver.watch());

    // One layer whose content is checked at the end.
    await driver.create('keep', null);
    const kept = randomBytes(1 << 20);
    writeDurably(join(await driver.get('keep'), 'blob'), kept);
    await driver.put('keep');

    const started = Date.now();
    const { done, writing, error } = await fillMetadata(driver);
    t.log(
      `metadata full after ${done.length} layers (${Date.now() - started} ms); failing: ${writing ? `a write in ${writing}` : 'a create'}: ${String(error)}`,
    );
    t.true(done.length > 10);
    if (writing) t.regex(String(error), /EIO|Input\/output error|No space/);
    else t.true(error instanceof MetadataSpaceError, String(error));

    const full = await driver.status();
    t.is(full.poolMode, 'ro');
    t.false(full.needsCheck, 'running out of metadata space is not a metadata error: no needs_check');
    t.is(full.metadataSpace.used, full.metadataSpace.total);
    t.true(await sawEvent(events, 'read-only'), `events: ${show(events.map((e) => e.kinds))}`);

    // create: a typed error naming the metadata device and the way out; nothing half-made.
    const count = (await driver.list()).length;
    const createError = await settle(bounded(driver.create('more', null), 'create'));
    t.true(createError instanceof MetadataSpaceError, String(createError));
    t.true(createError instanceof PoolModeError, 'it is a PoolModeError too (mode ro)');
    const typed = createError as MetadataSpaceError;
    t.is(typed.code, 'ERR_DM_METADATA_FULL');
    t.is(typed.mode, 'ro');
    t.false(typed.needsCheck);
    t.true(typed.metadataDevice.includes(full.metadataFile!), typed.metadataDevice);
    t.true(typed.metadataDevice.includes(full.metadataLoopDevice!), typed.metadataDevice);
    t.regex(typed.message, /metadata device .* is full/);
    t.regex(typed.message, /growPool/);
    t.false(await driver.exists('more'));
    t.is((await driver.list()).length, count);

    // put works in every mode; remove needs a pool message, which the kernel refuses.
    if (writing) await t.notThrowsAsync(bounded(driver.put(writing), 'put'));
    const removeError = await settle(bounded(driver.remove(done[0]!), 'remove'));
    t.true(removeError instanceof PoolModeError, String(removeError));
    t.true(await driver.exists(done[0]!));
    const getError = await settle(bounded(driver.get(done[0]!), 'get'));
    t.true(getError instanceof PoolModeError, String(getError));
    t.is((getError as PoolModeError).mode, 'ro');
    t.log(`remove: ${String(removeError)}; get: ${String(getError)}`);

    // check: the mode is the only problem.
    const fullCheck = await bounded(driver.check(), 'check');
    t.is(fullCheck.poolMode, 'ro');
    t.false(fullCheck.clean);
    t.deepEqual(fullCheck.leakedThinIds, []);
    t.deepEqual(fullCheck.missingThinIds, []);
    t.deepEqual(fullCheck.strayDevices, []);
    t.true(fullCheck.transactionId.consistent, show(fullCheck.transactionId));

    // The way out: growPool() doubles the metadata file; the kernel switches the pool back to rw.
    const dataSize = await bounded(driver.growPool(), 'growPool');
    t.is(dataSize, before.dataSpace.total);
    t.is(BigInt(statSync(full.metadataFile!).size), 4n * MiB);
    const grown = await driver.status();
    t.is(grown.poolMode, 'rw');
    t.false(grown.needsCheck);
    t.is(grown.metadataSpace.total, 4n * MiB);
    t.true(grown.metadataSpace.used < grown.metadataSpace.total);
    t.true(await sawEvent(events, 'resumed-rw'), `events: ${show(events.map((e) => e.kinds))}`);

    await bounded(driver.create('more', null), 'create after growPool');
    const moreRoot = await driver.get('more');
    const fresh = randomBytes(1 << 20);
    writeDurably(join(moreRoot, 'fresh'), fresh);
    t.is(sha(readFileSync(join(moreRoot, 'fresh'))), sha(fresh));
    await driver.put('more');
    await bounded(driver.remove(done[0]!), 'remove after growPool');
    t.is(
      sha(readFileSync(join(await driver.get('keep'), 'blob'))),
      sha(kept),
      'data written before the metadata filled is intact',
    );
    await driver.put('keep');

    // An explicit metadataSize on a healthy pool; it survives a restart.
    await bounded(driver.growPool(undefined, { metadataSize: '8M' }), 'growPool metadataSize');
    t.is((await driver.status()).metadataSpace.total, 8n * MiB);
    const report = await bounded(driver.check({ thinCheck: true }), 'check --thin-check', 60_000);
    t.true(report.clean, show(report));
    await driver.cleanup();

    const again = await open(t, { home, ...SMALL_METADATA });
    const reopened = await again.status();
    t.like(reopened, { poolMode: 'rw', needsCheck: false });
    t.is(reopened.metadataSpace.total, 8n * MiB);
    const after = await bounded(again.check(), 'check after reopening');
    t.true(after.clean, show(after));
    await again.create('last', 'more');
    await again.cleanup();
  },
);

test.serial(
  'metadata device filled by creates alone: the create that fails is typed and leaves no thin id, record or intent behind once the pool is grown',
  async (t) => {
    const home = newHome('mdcreate');
    const driver = await open(t, { home, ...SMALL_METADATA });
    // Written layers until only a few metadata blocks are left, then creates only.
    for (let i = 0; ; i++) {
      const { metadataSpace } = await driver.status();
      if (metadataSpace.total - metadataSpace.used <= 2n * 4096n) break;
      const id = `w${i}`;
      await bounded(driver.create(id, null), `create ${id}`);
      const root = await bounded(driver.get(id), `get ${id}`);
      writeDurably(join(root, 'f'), randomBytes(64 << 10));
      await bounded(driver.put(id), `put ${id}`);
    }
    let failure: unknown;
    let made = 0;
    for (let i = 0; i < 20_000; i++) {
      try {
        await bounded(driver.create(`c${i}`, null), `create c${i}`);
        made++;
      } catch (error) {
        failure = error;
        t.log(`create c${i} failed after ${made} creates: ${String(error)}; cause: ${String((error as Error).cause)}`);
        t.false(await driver.exists(`c${i}`));
        break;
      }
    }
    t.true(failure instanceof MetadataSpaceError, String(failure));
    t.is((await driver.status()).poolMode, 'ro');
    // Another process (a CLI command) opens the home on the full pool: init works (the failed
    // create's intent waits for the pool to take messages again) and so does growPool.
    await driver.close();
    const next = await open(t, { home, ...SMALL_METADATA });
    const stillFull = await settle(bounded(next.create('more', null), 'create'));
    t.is((stillFull as DevmapperError | undefined)?.code, 'ERR_DM_METADATA_FULL', String(stillFull));
    await bounded(next.growPool(), 'growPool');
    t.is((await next.status()).poolMode, 'rw');
    const report = await bounded(next.check(), 'check');
    t.true(report.clean, show(report));
    await bounded(next.create('after', null), 'create after growPool');
    t.true(await next.exists('after'));
    await next.cleanup();
    const again = await open(t, { home, ...SMALL_METADATA });
    const after = await bounded(again.check({ thinCheck: true }), 'check after reopening', 60_000);
    t.true(after.clean, show(after));
    await again.cleanup();
  },
);

test.serial('growPool metadataSize: a metadata file is never shrunk', async (t) => {
  const home = newHome('mdgrow');
  const driver = await open(t, { home, baseSize: '64M', loopDataSize: '256M', loopMetadataSize: '4M' });
  const refused = await settle(driver.growPool(undefined, { metadataSize: '2M' }));
  t.is((refused as DevmapperError | undefined)?.code, 'ERR_DM_INVALID_ARGUMENT', String(refused));
  t.is((await driver.status()).metadataSpace.total, 4n * MiB);
  await driver.cleanup();
});

test.serial('nothing leaked: no dm device, no loop device, no mount under any home', (t) => {
  assertNothingLeaked(t);
});
