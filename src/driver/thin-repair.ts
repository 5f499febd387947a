// A pool in needs_check (the kernel found its metadata damaged, or a commit failed) stays
// read-only until its metadata is repaired offline. For a home on the driver's own loop files,
// `check --repair` does what the README's needs_check row describes by hand:
//
//   1. the pool is deactivated (Driver.cleanup: nothing may be mounted; refused otherwise);
//   2. thin_repair reads the old metadata and writes new metadata into a fresh sparse file of
//      the same size, `<home>/devicemapper/metadata.repaired` (both through loop devices of
//      their own: thin-provisioning-tools open with O_DIRECT, which tmpfs refuses);
//   3. thin_check must pass on the new metadata, and clears its needs_check flag (thin_repair
//      carries the superblock's flags over);
//   4. the old metadata file is kept as `<home>/quarantine/metadata.needs-check.<ms>` (a hard
//      link, never deleted), then the new one is renamed over it; both directories are fsynced
//      (the metadata file names the old or the new metadata at every instant);
//   5. the next init reopens the pool on the repaired metadata (no needs_check flag) and check
//      runs again.
//
// A pool on dataDevice/metadataDevice, or an adopted one, is left to its owner (the steps
// are printed).
import { execFile } from 'node:child_process';
import {
  closeSync,
  fsyncSync,
  ftruncateSync,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { crashPoint } from '../crash-points.js';
import type { Kernel } from '../ioctl/kernel.js';
import { LoopDevices } from '../ioctl/loop.js';
import { quarantineDirPath } from './home-layout.js';
import { newQuarantinePath } from './safe-open.js';
import { findThinTool, thinCheckOffline } from './thin-check.js';
import { resolveOptions, type DriverOptions } from './options.js';

const execFileAsync = promisify(execFile);

export interface NeedsCheckRepair {
  done: boolean;
  /** What was done (done) or why not and what to do instead (not done). */
  lines: string[];
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Mount points under <home>/mnt (the repair needs the pool inactive, so none may be in use). */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p.startsWith(`${dir}/`));
}

/**
 * Repairs the metadata of a needs_check pool on the home's own loop files (see the top of this
 * file). `deactivate` brings the pool down (the caller's Driver.init + cleanup); loop devices
 * and thin_check go through `kernel`, the handle the caller opened the home with.
 */
export async function repairNeedsCheck(
  input: DriverOptions,
  kernel: Kernel,
  deactivate: () => Promise<void>,
): Promise<NeedsCheckRepair> {
  const options = resolveOptions(input);
  const manual =
    'deactivate the pool (devmapper cleanup), run thin_repair -i <metadata device> -o <new metadata device>, thin_check the new one, put it in place of the old, then init again';
  if (options.thinPoolDevice || options.dataDevice || options.metadataDevice) {
    return { done: false, lines: [`the pool is not on the driver's own loop files: ${manual}`] };
  }
  const thinRepair = findThinTool('thin_repair');
  if (!thinRepair || !findThinTool('thin_check')) {
    return {
      done: false,
      lines: [`thin_repair / thin_check are not installed (apt-get install thin-provisioning-tools): ${manual}`],
    };
  }
  const mounted = mountsUnder(join(options.home, 'mnt'));
  if (mounted.length > 0)
    return {
      done: false,
      lines: [
        `layers are mounted (${mounted.join(', ')}): unmount them (devmapper cleanup), then check --repair again`,
      ],
    };
  const metadata = join(options.home, 'devicemapper', 'metadata');
  const repaired = `${metadata}.repaired`;
  // where the old metadata will go, checked before anything is touched
  const quarantine = quarantineDirPath(options.home);
  const kept = newQuarantinePath(quarantine, 'metadata.needs-check');
  await deactivate();
  const lines = ['deactivated the pool (needs_check: its metadata is repaired offline)'];
  rmSync(repaired, { force: true });
  const fd = openSync(repaired, 'wx', 0o600); // sparse, the old file's size
  try {
    ftruncateSync(fd, statSync(metadata).size);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const loops = new LoopDevices({ kernel });
  const source = loops.attachAndHold(metadata, { readOnly: true, autoclear: true });
  try {
    const target = loops.attachAndHold(repaired, { autoclear: true });
    try {
      await execFileAsync(thinRepair, ['-i', source.status.path, '-o', target.status.path], {
        timeout: 30 * 60_000,
        maxBuffer: 16 << 20,
      });
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string; message: string };
      rmSync(repaired, { force: true });
      return {
        done: false,
        lines: [
          ...lines,
          `thin_repair failed: ${(e.stderr || e.stdout || e.message).trim()}; the old metadata is untouched: ${manual}`,
        ],
      };
    } finally {
      loops.release(target.fd);
    }
  } finally {
    loops.release(source.fd);
  }
  lines.push(`thin_repair wrote new metadata into ${repaired}`);
  const checked = await thinCheckOffline(repaired, { kernel, clearNeedsCheck: true });
  if (!checked.ok) {
    rmSync(repaired, { force: true });
    return {
      done: false,
      lines: [
        ...lines,
        `thin_check refuses the repaired metadata (${checked.summary}); the old metadata is untouched: ${manual}`,
      ],
    };
  }
  lines.push('thin_check passed on the repaired metadata and cleared its needs_check flag');
  // The old file is kept under a second name (a hard link) and the new one renamed over it:
  // `metadata` names the old or the new metadata at every instant. (Renaming the old one away
  // first left a window with none, which the next init read as a new home: a fresh, empty
  // metadata file, every thin id gone.) Killed in between, the next repair starts over.
  linkSync(metadata, kept);
  fsyncDir(quarantine);
  crashPoint('repair:swap');
  renameSync(repaired, metadata);
  fsyncDir(dirname(metadata));
  lines.push(`the old metadata moved to ${kept}; the repaired metadata is now ${metadata}`);
  return { done: true, lines };
}
