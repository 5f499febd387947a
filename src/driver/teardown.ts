// cleanup of a home whose metadata cannot be read at all (a damaged transactions.log,
// deviceset.json or transaction.json stops every open of the home, check's inspect mode
// included): bringing it down needs none of it, only the names home-layout.ts gives the home.
// Under the home's lock: mounts under <home>/mnt unmounted (deepest first), this home's layer
// devices removed, then its pool when the driver made it (autoclear detaches the loop files).
// The metadata is left exactly as it was, for the user to mend.
import { DeviceMapper } from '../ioctl/device-mapper.js';
import { Kernel } from '../ioctl/kernel.js';
import { removeWithRetry } from '../thin/remove.js';
import { HomeLayout } from './home-layout.js';
import { HomeLock } from './home-lock.js';
import { mountPointsUnder, unmountOrDetach } from './mounts.js';
import { type DriverOptions, resolveOptions } from './options.js';

export async function teardownUnread(input: DriverOptions): Promise<void> {
  const options = resolveOptions(input);
  const layout = HomeLayout.create(options.home);
  const kernel = Kernel.for(options.ffi);
  const lock = await HomeLock.acquire(options.home, { timeoutMs: options.lockTimeoutMs, kernel });
  const dm = DeviceMapper.open({ kernel });
  try {
    for (const mountPoint of mountPointsUnder(`${layout.mountRoot}/`).reverse()) unmountOrDetach(mountPoint, kernel);
    const pool = options.thinPoolDevice ?? layout.poolName;
    for (const device of dm.list()) if (layout.isLayerDevice(device.name, pool)) removeWithRetry(dm, device.name, 5);
    if (!options.thinPoolDevice && dm.exists(pool)) removeWithRetry(dm, pool, 5);
  } finally {
    dm.close();
    lock.release();
  }
}
