// What the CLI needs from the host before it touches the kernel. Checked after the command's
// arguments are parsed, so a usage error is still a usage error (exit status 2) on a host
// without device-mapper.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DevmapperError } from '../errors.js';
import { DM_CONTROL_PATH } from '../ioctl/device-mapper.js';

/** The package's root: the directory holding package.json and dist/ (a checkout or node_modules/devmapper). */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * What to do on a host without device-mapper. In a source checkout (which has the test kernel,
 * dist/test/vm/) the command can also run in the test kernel; an installed package has no test
 * kernel, so it is not suggested there.
 */
export function deviceMapperHint(root = PACKAGE_ROOT): string {
  const load =
    'load dm-mod and dm-thin-pool as root (modprobe dm_thin_pool; in a container: the host must load them, and the container needs /dev/mapper and CAP_SYS_ADMIN, e.g. --privileged)';
  if (existsSync(`${root}/dist/test/vm/cli.js`))
    return `${load}, or run this through the test kernel: npm run vm -- node dist/src/cli/bin.js ...`;
  return load;
}

export function requireDeviceMapper(): void {
  if (existsSync(DM_CONTROL_PATH)) return;
  throw new DevmapperError(
    'ERR_DM_UNAVAILABLE',
    `this kernel has no device-mapper (${DM_CONTROL_PATH} is missing): ${deviceMapperHint()}`,
  );
}
