// What the CLI needs from the host before it touches the kernel. Checked after the command's
// arguments are parsed, so a usage error is still a usage error (exit status 2) on a host
// without device-mapper.
import { existsSync } from 'node:fs';
import { DevmapperError } from '../errors.js';
import { DM_CONTROL_PATH } from '../ioctl/device-mapper.js';

export function requireDeviceMapper(): void {
  if (existsSync(DM_CONTROL_PATH)) return;
  throw new DevmapperError(
    'ERR_DM_UNAVAILABLE',
    `this kernel has no device-mapper (${DM_CONTROL_PATH} is missing): load dm-mod and dm-thin-pool (modprobe dm_thin_pool), `
      + 'or run this through the test kernel: npm run vm -- node dist/src/cli/bin.js ...',
  );
}
