// The wall clock at the kernel's precision, through the libc binding. Date.now() truncates to
// the millisecond, so a time it stamps can lie before a caller's own earlier read of the same
// clock (Go's time.Now() has nanoseconds; containerd's snapshotter suite checks that a
// snapshot's updated time falls between two such reads around the call). performance.timeOrigin
// plus performance.now() has the precision but follows the monotonic clock: it drifts from the
// wall clock after every clock step or NTP slew since the process started.
import { DmSystemError } from '../errors.js';
import { CLOCK_REALTIME } from './ffi/binding.js';
import type { Kernel } from './kernel.js';

/** One struct timespec (two 64-bit words on the 64-bit targets the project supports). */
const timespec = Buffer.alloc(16);

/** Milliseconds since the epoch, with the clock's sub-millisecond part as the fraction. */
export function wallClockMs(kernel: Kernel): number {
  const rc = kernel.libc.clockGettime(CLOCK_REALTIME, timespec);
  if (rc < 0) throw new DmSystemError({ errno: -rc, syscall: 'clock_gettime', detail: 'CLOCK_REALTIME' });
  return Number(timespec.readBigInt64LE(0)) * 1000 + Number(timespec.readBigInt64LE(8)) / 1e6;
}
