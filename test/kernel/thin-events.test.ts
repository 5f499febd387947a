// The thin layer against a real kernel, PoolWatcher events: past the low-water mark (through
// async iteration), and a full pool with error_if_no_space (writes fail promptly, the pool
// reports out_of_data_space, growing brings it back to rw). Pools live on sparse files in the
// file's private directory (thin-helpers.ts), written with raw dd. Every test cleans up in
// t.teardown; an after.always hook checks that nothing of ours is left: no dm device, loop
// device or mount.
import test from 'ava';
import { type PoolEvent, PoolWatcher } from '../../src/thin/events.js';
import { sleep } from './helpers.js';
import { MiB, activate, big, dd, makePool, ok, referencePoolStatus, useThinBed, watch } from './thin-helpers.js';

useThinBed({ leakCheckHook: true });

test.serial('events: writing past the low-water mark raises a low-water-mark event (async iteration)', async (t) => {
  // 32 MiB of 64 KiB blocks = 512 blocks; the event fires once free blocks fall to 256.
  const { pool } = makePool(t, 'lowwater', { dataSize: 32 * MiB, lowWaterMark: 256 });
  pool.createThin(1);
  const thin = activate(t, pool, 1, 32);
  const watcher = new PoolWatcher(pool, { pollIntervalMs: 50 });
  t.teardown(() => watcher.stop());
  const seen: PoolEvent[] = [];
  const iterated = (async () => {
    for await (const event of watcher) {
      seen.push(event);
      if (event.kinds.includes('low-water-mark')) return event;
    }
    return undefined;
  })();

  // 4 MiB (64 blocks): still far above the mark.
  const small = dd(['if=/dev/zero', `of=${thin.path}`, 'bs=1M', 'count=4', 'conv=fsync']);
  t.is(small.status, 0, small.stderr);
  await sleep(300);
  t.false(
    seen.some((e) => e.kinds.includes('low-water-mark')),
    'no low-water event above the mark',
  );

  // 20 MiB more (384 blocks in all): 128 free, below the mark.
  const big20 = dd(['if=/dev/zero', `of=${thin.path}`, 'bs=1M', 'count=20', 'seek=4', 'conv=fsync']);
  t.is(big20.status, 0, big20.stderr);
  const event = await Promise.race([iterated, sleep(5000).then(() => undefined)]);
  await watcher.stop();
  t.truthy(event, `a low-water-mark event (seen: ${JSON.stringify(seen.map((e) => e.kinds))})`);
  const status = ok(event!.status);
  t.true(status.data.freeBlocks <= 256n, `${status.data.freeBlocks} free blocks`);
  t.is(status.mode, 'rw');
  t.true(event!.eventNr > 0);
  t.is(await iterated, event, 'the iteration ended with the event');
  // The iterator finishes once the watcher is stopped.
  const after: PoolEvent[] = [];
  for await (const e of watcher) after.push(e);
  t.deepEqual(after, []);
});

test.serial(
  'events: a full pool with error_if_no_space fails writes promptly, reports out_of_data_space, and growing brings it back to rw',
  async (t) => {
    // 16 MiB of data (256 blocks) under a 64 MiB thin device.
    const { pool, storage } = makePool(t, 'full', { dataSize: 16 * MiB, features: { errorIfNoSpace: true } });
    pool.createThin(1);
    const thin = activate(t, pool, 1, 64);
    const { watcher, events, waitFor } = watch(t, pool);

    const full = dd(['if=/dev/zero', `of=${thin.path}`, 'bs=1M', 'count=32', 'conv=fsync'], 30_000);
    t.false(full.timedOut, `dd did not hang (${full.ms} ms)`);
    t.not(full.status, 0, 'the write failed');
    t.regex(full.stderr, /Input\/output error|No space left on device/);
    t.log(`dd on a full pool failed after ${full.ms} ms: ${full.stderr.split('\n')[0]}`);

    const status = ok(pool.status());
    t.is(status.mode, 'out_of_data_space');
    t.is(status.noSpace, 'error');
    t.is(big(status.data.freeBlocks), 0n);
    t.is(big(status.data.usedBlocks), 256n);
    const outOfSpace = await waitFor('out-of-data-space');
    t.is(ok(outOfSpace.status).mode, 'out_of_data_space');
    t.is(referencePoolStatus(pool).mode, 'out_of_data_space', 'dmsetup agrees');

    storage.growData(64 * MiB);
    t.is(big(pool.grow()), BigInt((64 * MiB) / 512));
    t.is(big(pool.length), BigInt((64 * MiB) / 512));
    const grown = ok(pool.status());
    t.is(grown.mode, 'rw');
    t.is(big(grown.data.totalBlocks), 1024n);
    const resumed = await waitFor('resumed-rw');
    t.is(ok(resumed.status).mode, 'rw');

    const retry = dd(['if=/dev/zero', `of=${thin.path}`, 'bs=1M', 'count=32', 'conv=fsync'], 30_000);
    t.is(retry.status, 0, retry.stderr);
    t.is(big(ok(pool.status()).data.usedBlocks), 512n);
    await watcher.stop();
    t.log(`events: ${JSON.stringify(events.map((e) => e.kinds))}`);
  },
);
