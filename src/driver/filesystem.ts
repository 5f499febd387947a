// Filesystems on thin devices: mkfs and grow run as programs (execFile, never a shell); the
// filesystem UUID is read straight from the superblock.
import { execFile } from 'node:child_process';
import { closeSync, openSync, readSync } from 'node:fs';
import { promisify } from 'node:util';
import { DevmapperError } from '../errors.js';
import type { Filesystem } from './options.js';

const run = promisify(execFile);

async function runTool(program: string, args: string[]): Promise<void> {
  try {
    await run(program, args, { maxBuffer: 4 * 1024 * 1024 });
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT')
      throw new DevmapperError('ERR_DM_TOOL_MISSING', `${program} is not installed (needed for this filesystem)`, {
        cause: error,
      });
    throw new DevmapperError(
      'ERR_DM_TOOL_FAILED',
      `${program} ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim()}`,
      { cause: error },
    );
  }
}

/**
 * mkfs without discard (a fresh thin device is already empty) and with inode tables and journal
 * written now, on the base device, as Docker does: with lazy init the kernel's ext4lazyinit
 * thread would zero the inode tables later in every snapshot that gets mounted, giving each
 * layer its own copy of them (about 6% of the layer's size) in the pool.
 */
export async function makeFilesystem(
  device: string,
  filesystem: Filesystem,
  extraArgs: readonly string[],
): Promise<void> {
  if (filesystem === 'ext4')
    await runTool('mkfs.ext4', [
      '-q',
      '-F',
      '-E',
      'nodiscard,lazy_itable_init=0,lazy_journal_init=0',
      ...extraArgs,
      device,
    ]);
  else await runTool('mkfs.xfs', ['-q', '-f', '-K', ...extraArgs, device]);
}

/** Grows a mounted filesystem to its device's size. */
export async function growFilesystem(device: string, mountPoint: string, filesystem: Filesystem): Promise<void> {
  if (filesystem === 'ext4') await runTool('resize2fs', [device]);
  else await runTool('xfs_growfs', [mountPoint]);
}

/** The filesystem UUID from the superblock (ext4: offset 1024 + 0x68; xfs: offset 32). */
export function filesystemUuid(device: string, filesystem: Filesystem): string {
  const offset = filesystem === 'ext4' ? 1024 + 0x68 : 32;
  const raw = Buffer.alloc(16);
  const fd = openSync(device, 'r');
  try {
    readSync(fd, raw, 0, 16, offset);
  } finally {
    closeSync(fd);
  }
  const hex = raw.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
