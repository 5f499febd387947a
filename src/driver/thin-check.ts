// thin_check (thin-provisioning-tools) on a pool's metadata: an independent reading of the
// kernel's own on-disk structures (superblock, device and mapping trees, space maps).
//
// A live pool keeps writing its metadata, so the check reads a frozen copy: the pool message
// `reserve_metadata_snap` commits and takes a snapshot of the metadata (dm-thin-metadata.c
// keeps its blocks until `release_metadata_snap`), and `thin_check --metadata-snap` checks that
// snapshot. A pool that takes no messages (read-only, needs_check) writes nothing, so its
// metadata is read as it is. An inactive pool's metadata device or file is checked directly
// (thinCheckOffline). thin_check reads with O_DIRECT (which tmpfs refuses) and, except with
// --metadata-snap, O_EXCL (which fails on a device the pool holds), so a metadata file (a
// loop's backing file) is read through a temporary read-only loop device of its own, held with
// autoclear (it goes when the check ends, or when this process dies); it shares the file's page
// cache with the pool's loop, so it sees what the pool wrote. A block device is read directly.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { LoopDevices } from '../ioctl/loop.js';
import type { Kernel } from '../ioctl/kernel.js';
import { promisify } from 'node:util';
import type { ThinPool } from '../thin/pool.js';
import { poolModeOf, poolTakesMessages } from '../thin/status.js';

const execFileAsync = promisify(execFile);

export interface ThinCheckResult {
  /** False when thin_check is not installed (or could not be started): `summary` says why. */
  ran: boolean;
  /** thin_check exited 0. */
  ok: boolean;
  /** One line for people. */
  summary: string;
  /** thin_check's stdout and stderr. */
  output: string;
  /** The command that ran. */
  command: string[];
  /** What was read: a metadata snapshot of the live pool, the live metadata of a pool that writes none, or an inactive pool's. */
  through: 'metadata-snapshot' | 'read-only-pool' | 'inactive-pool' | 'none';
}

const TOOL_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin', '/usr/local/sbin', '/usr/local/bin'];

/** The path of a thin-provisioning-tools program (thin_check, thin_ls, thin_dump, thin_repair), or undefined. */
export function findThinTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), ...TOOL_DIRS];
  for (const dir of dirs) if (existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  return undefined;
}

function notInstalled(): ThinCheckResult {
  return {
    ran: false,
    ok: false,
    output: '',
    command: [],
    through: 'none',
    summary:
      "thin_check is not installed (Debian/Ubuntu: apt-get install thin-provisioning-tools): the pool's metadata was not checked",
  };
}

async function runThinCheck(
  tool: string,
  args: string[],
  through: ThinCheckResult['through'],
): Promise<ThinCheckResult> {
  const command = [tool, ...args];
  try {
    const { stdout, stderr } = await execFileAsync(tool, args, { timeout: 10 * 60_000, maxBuffer: 16 << 20 });
    return {
      ran: true,
      ok: true,
      summary: `thin_check passed (${through})`,
      output: stdout + stderr,
      command,
      through,
    };
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stdout?: string; stderr?: string; code?: number | string };
    if (typeof e.code === 'string') {
      return {
        ran: false,
        ok: false,
        summary: `thin_check could not be run: ${e.message}`,
        output: '',
        command,
        through,
      };
    }
    const output = `${e.stdout ?? ''}${e.stderr ?? ''}`;
    const first = output.split('\n').find((line) => line.trim() !== '') ?? `exit status ${String(e.code)}`;
    return {
      ran: true,
      ok: false,
      summary: `thin_check failed (${through}): ${first.trim()}`,
      output,
      command,
      through,
    };
  }
}

/** Runs `body` with a block device that reads `source`: itself, or a read-only loop over a regular file. */
async function withBlockDevice<T>(
  source: string,
  kernel: Kernel,
  body: (device: string) => Promise<T>,
  writable = false,
): Promise<T> {
  if (!statSync(source).isFile()) return body(source);
  const loops = new LoopDevices({ kernel });
  const { status, fd } = loops.attachAndHold(source, { readOnly: !writable, autoclear: true });
  try {
    return await body(status.path);
  } finally {
    loops.release(fd);
  }
}

/**
 * thin_check on the metadata device or file of a pool that is not active. With
 * `clearNeedsCheck`, thin_check also clears the superblock's needs_check flag when the metadata
 * passes (it then writes: the file is opened read-write).
 */
export async function thinCheckOffline(
  metadata: string,
  options: { kernel: Kernel; clearNeedsCheck?: boolean },
): Promise<ThinCheckResult> {
  const tool = findThinTool('thin_check');
  if (!tool) return notInstalled();
  const args = options.clearNeedsCheck ? ['--clear-needs-check-flag'] : [];
  return withBlockDevice(
    metadata,
    options.kernel,
    (device) => runThinCheck(tool, [...args, device], 'inactive-pool'),
    options.clearNeedsCheck === true,
  );
}

/** Where the pool's metadata can be read: the loop's backing file, or the block device node. */
export function metadataSourceOf(pool: ThinPool): string {
  const dev = pool.table.metadataDev;
  let majorMinor = dev;
  if (!/^\d+:\d+$/.test(dev)) {
    const rdev = statSync(dev).rdev;
    majorMinor = `${Math.floor(rdev / 256) & 0xfff}:${(rdev & 0xff) | ((rdev >> 12) & 0xfff00)}`;
  }
  const sys = `/sys/dev/block/${majorMinor}`;
  const backing = `${sys}/loop/backing_file`;
  if (existsSync(backing)) {
    const file = readFileSync(backing, 'utf8').trim();
    if (file && !file.endsWith('(deleted)')) return file;
  }
  const uevent = existsSync(`${sys}/uevent`) ? readFileSync(`${sys}/uevent`, 'utf8') : '';
  const name = /^DEVNAME=(.*)$/m.exec(uevent)?.[1];
  if (name) return `/dev/${name}`;
  return dev;
}

/**
 * The thin ids in an active pool's metadata, as thin_ls reads them from a reserved metadata
 * snapshot: a view of the pool independent of the kernel's answers to table loads. Undefined
 * when thin_ls is not installed or the pool takes no messages (no snapshot can be reserved).
 */
export async function thinLsLive(pool: ThinPool, options: { kernel: Kernel }): Promise<Set<number> | undefined> {
  const tool = findThinTool('thin_ls');
  if (!tool || !poolTakesMessages(poolModeOf(pool.status()))) return undefined;
  return withBlockDevice(metadataSourceOf(pool), options.kernel, async (device) => {
    try {
      pool.reserveMetadataSnap();
    } catch {
      return undefined; // one is already reserved (by someone else): no second view this time
    }
    try {
      const { stdout } = await execFileAsync(tool, ['--metadata-snap', '--no-headers', '-o', 'DEV', device], {
        timeout: 10 * 60_000,
        maxBuffer: 64 << 20,
      });
      return new Set(
        stdout
          .split('\n')
          .map((line) => line.trim())
          .filter((line) => /^\d+$/.test(line))
          .map(Number),
      );
    } catch {
      return undefined;
    } finally {
      pool.releaseMetadataSnap();
    }
  });
}

/**
 * thin_check on an active pool's metadata: through a reserved metadata snapshot when the pool
 * takes messages, directly when it is read-only (it writes nothing then). The snapshot is
 * released whatever happens.
 */
export async function thinCheckLive(pool: ThinPool, options: { kernel: Kernel }): Promise<ThinCheckResult> {
  const tool = findThinTool('thin_check');
  if (!tool) return notInstalled();
  const source = metadataSourceOf(pool);
  return withBlockDevice(source, options.kernel, async (device) => {
    if (!poolTakesMessages(poolModeOf(pool.status()))) return runThinCheck(tool, [device], 'read-only-pool');
    try {
      pool.reserveMetadataSnap(); // commits first, then freezes a copy of the metadata
    } catch (error) {
      // The kernel keeps one metadata snapshot: another tool may hold it (EINVAL then).
      return {
        ran: false,
        ok: false,
        output: '',
        command: [],
        through: 'none',
        summary: `thin_check not run: the pool refused reserve_metadata_snap (${(error as Error).message}); release the other snapshot (message release_metadata_snap) or check with the pool inactive`,
      };
    }
    try {
      return await runThinCheck(tool, ['--metadata-snap', device], 'metadata-snapshot');
    } finally {
      pool.releaseMetadataSnap();
    }
  });
}
