// The wall clock the containerd snapshotter stamps snapshots with (src/ioctl/clock.ts), on both
// FFI backends, and the conversion of its milliseconds to a google.protobuf.Timestamp.
import test from 'ava';
import { timestamp } from '../../src/containerd/service.js';
import { wallClockMs } from '../../src/ioctl/clock.js';
import { FFI_BACKENDS, Kernel } from '../../src/ioctl/kernel.js';

for (const ffi of FFI_BACKENDS) {
  test(`${ffi}: wallClockMs reads the clock Date.now() reads, with the sub-millisecond part kept`, (t) => {
    const kernel = Kernel.for(ffi);
    const reads: number[] = [];
    for (let i = 0; i < 200; i++) {
      const before = Date.now();
      const ms = wallClockMs(kernel);
      const after = Date.now();
      t.true(Math.floor(ms) >= before && Math.floor(ms) <= after, `${ms} within [${before}, ${after}]`);
      reads.push(ms);
    }
    t.true(
      reads.every((ms, i) => i === 0 || ms >= reads[i - 1]!),
      'never runs backwards in a tight loop',
    );
    t.true(
      reads.some((ms) => !Number.isInteger(ms)),
      `reads carry a fraction of a millisecond: ${reads.slice(0, 3).join(', ')} …`,
    );
  });
}

test('timestamp(): whole milliseconds exactly, a fraction to the nanosecond, a carry into the next second', (t) => {
  t.deepEqual(timestamp(0), { seconds: '0', nanos: 0 });
  t.deepEqual(timestamp(1_765_150_834_349), { seconds: '1765150834', nanos: 349_000_000 });
  const fractional = timestamp(1_765_150_834_349 + 9 / 512);
  t.is(fractional.seconds, '1765150834');
  t.true(Math.abs(fractional.nanos - 349_017_578) <= 1, `nanos ${fractional.nanos}`);
  t.deepEqual(timestamp(1999.9999999996), { seconds: '2', nanos: 0 }, 'a fraction that rounds to 10^9 ns carries');
  for (const ms of [1.5, 999.9999, 1_765_150_834_000 + 2 ** -12, 2 ** 41 + 0.5]) {
    const { seconds, nanos } = timestamp(ms);
    t.true(Number.isInteger(nanos) && nanos >= 0 && nanos < 1e9, `${ms}: nanos ${nanos} in [0, 1e9)`);
    t.true(Math.abs(Number(seconds) * 1000 + nanos / 1e6 - ms) < 1e-3, `${ms}: ${seconds}s ${nanos}ns`);
  }
});
