// Removing a dm device the thin layer made: with bounded retries on EBUSY (an opener that just
// closed may linger for a moment), or quietly during a rollback (the caller's error is the one
// worth reporting).
import type { DeviceMapper } from '../ioctl/device-mapper.js';
import { DmSystemError } from '../errors.js';

/** dm remove, retrying EBUSY a bounded number of times (a just-closed opener may linger briefly). */
export function removeWithRetry(dm: DeviceMapper, name: string, retries: number): void {
  for (let attempt = 0; ; attempt++) {
    try {
      dm.remove(name);
      return;
    } catch (error) {
      if (!(error instanceof DmSystemError) || error.code !== 'EBUSY' || attempt >= retries) throw error;
      sleepSync(20 * (attempt + 1));
    }
  }
}

/** Best-effort removal during rollback: the original error is the one worth reporting. */
export function removeQuietly(dm: DeviceMapper, name: string): void {
  try {
    dm.remove(name);
  } catch {
    /* reported by the caller's own error */
  }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}
