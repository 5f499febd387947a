// mount(2) and umount2(2) through the libc binding: no mount binary, no shell.
import type { Kernel } from './kernel.js';
import { DmSystemError, InvalidArgumentError } from '../errors.js';

/** sys/mount.h flags the project uses. */
export const MNT_DETACH = 2;

export function mountFilesystem(
  source: string,
  target: string,
  fstype: string,
  options: { kernel: Kernel; flags?: bigint; data?: string | null },
): void {
  for (const [argument, value] of [
    ['source', source],
    ['target', target],
    ['fstype', fstype],
    ['data', options.data ?? ''],
  ] as const) {
    if (value.includes('\0')) throw new InvalidArgumentError(argument, 'must not contain NUL');
  }
  const rc = options.kernel.libc.mount(source, target, fstype, options.flags ?? 0n, options.data ?? null);
  if (rc < 0) throw new DmSystemError({ errno: -rc, syscall: 'mount', device: source, detail: `on ${target}` });
}

export function unmountFilesystem(target: string, options: { kernel: Kernel; flags?: number }): void {
  const rc = options.kernel.libc.umount2(target, options.flags ?? 0);
  if (rc < 0) throw new DmSystemError({ errno: -rc, syscall: 'umount2', device: target });
}
