// dmsetup, losetup, mkfs and mount run as independent reference tools in kernel tests: they
// cross-check what the library does. Nothing under src/ ever runs them.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Runs a program (never a shell) and returns its stdout; throws with its stderr on failure. */
export function run(program: string, args: string[], input?: string): string {
  return execFileSync(program, args, {
    encoding: 'utf8',
    input,
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
}

/** dmsetup without udev: no cookie to wait for, nodes made by libdm itself. */
export function dmsetup(...args: string[]): string {
  return run('dmsetup', ['--noudevsync', '--verifyudev', ...args]);
}

/** Fails loudly when a kernel test is run somewhere without device-mapper (never a silent skip). */
export function assertKernelTestBed(): void {
  if (!existsSync('/dev/mapper/control')) {
    throw new Error(
      'kernel tests need device-mapper (/dev/mapper/control): run them with `npm test`, which boots the test kernel',
    );
  }
}
