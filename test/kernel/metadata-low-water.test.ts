// The pool's metadata low water: dm-thin registers a threshold on its metadata space map
// (min(1024 blocks, a quarter of the metadata device); the pool status prints it last) and
// raises a dm event when the free metadata blocks fall to it ("reached low water mark for
// metadata device: sending event"), well before the device is full. PoolWatcher reports that
// event as 'metadata-low-water', once per crossing. Here: a 2 MiB metadata file (512 blocks,
// threshold 128) and many snapshots of the base, each written a little, until the event.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { metadataLow, type PoolEvent } from '../../src/thin/events.js';
import { assertNothingLeaked, eventually, newHome } from './driver-helpers.js';
import { useDriverBed } from './helpers.js';
import { SMALL_METADATA, bounded, collect, open, writeDurably } from './fault-helpers.js';
import { run } from './reference-tools.js';

useDriverBed();

const kindsOf = (events: PoolEvent[]): string => JSON.stringify(events.map((e) => e.kinds));

test.serial(
  "metadata low water: the watcher emits 'metadata-low-water' while the pool is still rw, once, before the metadata device fills",
  async (t) => {
    t.timeout(600_000); // some 450 snapshots, each written: minutes in the UML guest
    const home = newHome('mdlow');
    const driver = await open(t, { home, ...SMALL_METADATA });
    const start = await driver.status();
    t.is(start.metadataSpace.total, 2n << 20n);
    const events = collect(t, driver.watch());
    const low = (): PoolEvent | undefined => events.find((e) => e.kinds.includes('metadata-low-water'));

    let layers = 0;
    let failure: unknown;
    const trail: string[] = [];
    for (; layers < 1000 && !low(); layers++) {
      const id = `s${layers}`;
      try {
        await bounded(driver.create(id, null), `create ${id}`);
        const root = await bounded(driver.get(id), `get ${id}`);
        for (let k = 0; k < 4; k++) writeDurably(join(root, `f${k}`), randomBytes(100 << 10));
        await bounded(driver.put(id), `put ${id}`);
      } catch (error) {
        failure = error; // the device filled without the event: reported below
        break;
      }
      // The event arrives through poll(2) on the watcher's own control fd: give it a moment.
      const { metadataSpace } = await driver.status();
      trail.push(`${layers}:${(metadataSpace.total - metadataSpace.used) / 4096n}`);
      // Past the threshold as the kernel counts it (free + its reserve of a tenth of the device):
      // the kernel has sent the event by now.
      const blocks = metadataSpace.total / 4096n;
      if ((metadataSpace.total - metadataSpace.used) / 4096n + blocks / 10n <= blocks / 4n)
        await eventually(() => low() !== undefined, 3000);
    }
    const event = low();
    if (!event) {
      t.log(`free metadata blocks (status) after each snapshot: ${trail.slice(-40).join(' ')}`);
      t.log(
        `kernel: ${run('dmesg', [])
          .split('\n')
          .filter((l) => /metadata|thin/i.test(l))
          .slice(-10)
          .join(' | ')}`,
      );
      t.log(
        `events: ${events.map((e) => `${e.kinds.join('+')}@${e.status.kind === 'ok' ? `${e.status.metadata.freeBlocks}/${e.status.metadataLowWatermark}` : e.status.kind}`).join(' ')}`,
      );
    }
    t.truthy(
      event,
      `no metadata-low-water event after ${layers} snapshots (${String(failure)}); events: ${kindsOf(events)}`,
    );
    if (!event) return;
    const status = event.status;
    if (status.kind !== 'ok') throw new Error(`the pool status is ${status.kind}`);
    t.log(
      `metadata-low-water after ${layers} snapshots: ${status.metadata.freeBlocks} of ${status.metadata.totalBlocks} metadata blocks free (status), threshold ${status.metadataLowWatermark}`,
    );
    t.is(Number(status.metadataLowWatermark), 128, 'min(1024, a quarter of 512 blocks)');
    t.true(metadataLow(status));
    t.true(status.metadata.freeBlocks > 0n, 'the device is not full yet');
    t.is(status.mode, 'rw');
    t.is((await driver.status()).poolMode, 'rw', 'creates still work');
    t.false(
      events.some((e) => e.kinds.includes('read-only')),
      `no read-only event before it: ${kindsOf(events)}`,
    );
    const previous = event.previous;
    t.true(previous.kind === 'ok' && !metadataLow(previous), 'the previous status was above the threshold');

    // A few more snapshots below the threshold: no second event for the same crossing.
    for (let i = 0; i < 3; i++) await bounded(driver.create(`more${i}`, null), `create more${i}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    t.is(events.filter((e) => e.kinds.includes('metadata-low-water')).length, 1, kindsOf(events));

    // The way out is the same as for a full device: grow the metadata file.
    await bounded(driver.growPool(undefined, { metadataSize: '8M' }), 'growPool');
    const grown = await driver.status();
    t.is(grown.metadataSpace.total, 8n << 20n);
    t.is(grown.poolMode, 'rw');
    await driver.cleanup();
  },
);

test.serial('nothing leaked: no dm device, no loop device, no mount under any home', (t) => {
  assertNothingLeaked(t);
});
