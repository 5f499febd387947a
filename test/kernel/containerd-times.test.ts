// The times a containerd snapshot carries, as containerd's snapshotter suite checks them (its
// Update case): created and updated fall between two reads of the wall clock that the caller
// made around the call, at nanosecond precision, never before the first. A time truncated to
// the millisecond can fall before it whenever the call takes less than a millisecond, and then
// the suite fails the case. The caller's clock here is clock_gettime(CLOCK_REALTIME), the clock
// Go's time.Now() reads.
import test from 'ava';
import { wallClockMs } from '../../src/ioctl/clock.js';
import { Kernel } from '../../src/ioctl/kernel.js';
import { assertKernelTestBed } from './reference-tools.js';
import { assertNothingLeaked } from './driver-helpers.js';
import { serve, served, tearDownAll, teardown, wireNs } from './containerd-service-bed.js';

assertKernelTestBed();
test.after.always(tearDownAll);

const kernel = Kernel.for();
const nowNs = (): bigint => {
  const ms = wallClockMs(kernel);
  const whole = Math.floor(ms);
  return BigInt(whole) * 1_000_000n + BigInt(Math.floor((ms - whole) * 1e6));
};

test.serial(
  "created and updated fall between the caller's clock reads around each call, to the nanosecond",
  async (t) => {
    const s = await serve();
    const { client } = s;
    const stamps: bigint[] = [];
    const between = (what: string, stamp: bigint, before: bigint, after: bigint): void => {
      // The caller's reads are truncated to 1 µs below; the service's stamp is a double (≤ 0.25 µs off).
      t.true(stamp + 1_000n >= before && stamp <= after + 1_000n, `${what}: ${stamp} not within [${before}, ${after}]`);
      stamps.push(stamp);
    };
    for (let i = 0; i < 10; i++) {
      const beforePrepare = nowNs();
      await client.prepare(`a${i}`, i === 0 ? '' : `c${i - 1}`);
      const afterPrepare = nowNs();
      const active = await client.stat(`a${i}`);
      between(`Prepare a${i}: created`, wireNs(active.created_at), beforePrepare, afterPrepare);
      t.is(wireNs(active.updated_at), wireNs(active.created_at), `a${i}: updated is created`);

      const beforeCommit = nowNs();
      await client.commit(`c${i}`, `a${i}`);
      const afterCommit = nowNs();
      const committed = await client.stat(`c${i}`);
      between(`Commit c${i}: created`, wireNs(committed.created_at), beforeCommit, afterCommit);

      const beforeUpdate = nowNs();
      const updated = await client.update({ name: `c${i}`, labels: { round: String(i) } }, ['labels.round']);
      const afterUpdate = nowNs();
      between(`Update c${i}: updated`, wireNs(updated.updated_at), beforeUpdate, afterUpdate);
      t.is(wireNs(updated.created_at), wireNs(committed.created_at), `Update c${i} keeps created`);
      t.is(
        wireNs((await client.stat(`c${i}`)).updated_at),
        wireNs(updated.updated_at),
        `c${i}: the updated time persists`,
      );
    }
    // A clock with sub-millisecond precision shows it: 30 stamps all on a millisecond are 1 in 10^100.
    t.true(
      stamps.some((stamp) => stamp % 1_000_000n !== 0n),
      `the stamps carry more than milliseconds: ${stamps.slice(0, 5).join(', ')} …`,
    );
    await teardown(s);
  },
);

test.serial('nothing leaked', (t) => {
  assertNothingLeaked(t);
  t.is(served.length, 0, 'every test tore its server down');
});
