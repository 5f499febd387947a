// The layers' mounts under <home>/mnt: get()'s reference-counted mounts (with the rootfs/ and id
// checks), the private short-lived mounts used to grow a filesystem or run a body, and the
// reading of /proc/self/mountinfo. Devices are activated and deactivated through the
// DeviceActivator the DeviceSet hands in; callers hold the layer's lock.
import { lstatSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { DevmapperError } from '../errors.js';
import type { Kernel } from '../ioctl/kernel.js';
import { mountFilesystem, unmountFilesystem, MNT_DETACH } from '../ioctl/mount.js';
import { logger } from '../log.js';
import type { ThinDevice } from '../thin/thin-device.js';
import type { HomeLayout } from './home-layout.js';
import type { LayerRecord } from './metadata-store.js';
import type { Filesystem } from './options.js';
import { assertDirectory } from './safe-open.js';

/** How the DeviceSet turns a layer record into an active device and back. */
export interface DeviceActivator {
  activate(record: LayerRecord): ThinDevice;
  deactivate(device: ThinDevice): void;
}

export interface MountSettings {
  filesystem: Filesystem;
  mountOptions: readonly string[];
  kernel: Kernel;
}

interface Mounted {
  count: number;
  mountPoint: string;
  device: ThinDevice;
}

export class Mounts {
  readonly #layout: HomeLayout;
  readonly #settings: MountSettings;
  readonly #devices: DeviceActivator;
  /** Whether activate() holds a layer's device: Mounts adopts it and never deactivates it. */
  readonly #isHeld: (layerId: string) => boolean;
  readonly #mounted = new Map<string, Mounted>();

  constructor(
    layout: HomeLayout,
    settings: MountSettings,
    devices: DeviceActivator,
    isHeld: (layerId: string) => boolean,
  ) {
    this.#layout = layout;
    this.#settings = settings;
    this.#devices = devices;
    this.#isHeld = isHeld;
  }

  has(id: string): boolean {
    return this.#mounted.has(id);
  }

  /** How many get()s the layer has outstanding. */
  count(id: string): number {
    return this.#mounted.get(id)?.count ?? 0;
  }

  /** The layers mounted now. */
  ids(): Set<string> {
    return new Set(this.#mounted.keys());
  }

  /** A mount a previous process left, taken over with one reference (put() unmounts it). */
  adopt(id: string, mountPoint: string, device: ThinDevice): void {
    this.#mounted.set(id, { count: 1, mountPoint, device });
  }

  /** get() of a mounted layer: one more reference; undefined when it is not mounted. */
  addReference(id: string): string | undefined {
    const mounted = this.#mounted.get(id);
    if (!mounted) return undefined;
    mounted.count++;
    return this.#layout.rootfs(id);
  }

  /**
   * get()'s first mount: activate, mount, set up rootfs and the id file; undone on any failure.
   * A device activate() holds is adopted, and stays active if this fails.
   */
  mount(record: LayerRecord, mountLabel: string | undefined): string {
    const id = record.id;
    const mountPoint = this.#layout.mountPoint(id);
    const createdDir = makeDirectory(mountPoint, 0o755);
    // Made here in the common case (put removes it); what was there already must be a directory:
    // mount(2) follows a symlink, so one planted here would put the layer over what it names.
    if (!createdDir) assertDirectory(mountPoint, lstatSync(mountPoint), `the mount point of layer ${id}`);
    let device: ThinDevice | undefined;
    let mountedHere = false;
    try {
      device = this.#devices.activate(record);
      mountFilesystem(device.path, mountPoint, this.#settings.filesystem, {
        data: this.#mountData(mountLabel),
        kernel: this.#settings.kernel,
      });
      mountedHere = true;
      // rootfs and id live in the layer's own filesystem: a symlink found there is never
      // followed (it could point out of <home>), and the id file is only ever created.
      const rootfs = this.#layout.rootfs(id);
      if (!isOrMakeDirectory(rootfs, 0o755)) {
        throw new DevmapperError(
          'ERR_DM_UNSAFE_PATH',
          `${rootfs} in layer ${id} is not a directory (a symlink?): not using it`,
        );
      }
      const idFile = this.#layout.idFile(id);
      if (!lexists(idFile)) writeFileSync(idFile, id, { mode: 0o600, flag: 'wx' });
      this.#mounted.set(id, { count: 1, mountPoint, device });
      return rootfs;
    } catch (error) {
      if (mountedHere) unmountFilesystem(mountPoint, { flags: MNT_DETACH, kernel: this.#settings.kernel });
      if (device) this.#letGo(id, device);
      if (createdDir) removeMountPoint(mountPoint);
      throw error;
    }
  }

  /**
   * put: the last user unmounts and deactivates, but leaves active a device activate() holds.
   * Not mounted: a warning, as in Docker.
   */
  release(id: string): void {
    const mounted = this.#mounted.get(id);
    if (!mounted) {
      logger.warn(`put(${id}): not mounted`);
      return;
    }
    if (mounted.count > 1) {
      mounted.count--;
      return;
    }
    unmountFilesystem(mounted.mountPoint, { kernel: this.#settings.kernel }); // on EBUSY the layer stays mounted, count intact
    this.#mounted.delete(id);
    this.#letGo(id, mounted.device);
  }

  /** Unmounts and deactivates one layer whatever its count (cleanup). */
  unmountNow(id: string): void {
    const mounted = this.#mounted.get(id);
    if (!mounted) return;
    unmountFilesystem(mounted.mountPoint, { kernel: this.#settings.kernel });
    this.#devices.deactivate(mounted.device);
  }

  /** Forgets every mount (after unmountNow of each). */
  clear(): void {
    this.#mounted.clear();
  }

  /**
   * Runs `body` with the record's device mounted at a private mount point, then unmounts and
   * deactivates it (unless activate() holds it).
   */
  async withPrivateMount<T>(
    record: LayerRecord,
    body: (device: ThinDevice, mountPoint: string) => Promise<T>,
  ): Promise<T> {
    const device = this.#devices.activate(record);
    const mountPoint = this.#layout.privateMountPoint(record.deviceId);
    mkdirSync(mountPoint, { recursive: true, mode: 0o700 });
    try {
      mountFilesystem(device.path, mountPoint, this.#settings.filesystem, {
        data: this.#mountData(undefined),
        kernel: this.#settings.kernel,
      });
      try {
        return await body(device, mountPoint);
      } finally {
        unmountFilesystem(mountPoint, { kernel: this.#settings.kernel });
      }
    } finally {
      removeMountPoint(mountPoint);
      this.#letGo(record.id, device);
    }
  }

  /** Deactivates a device this mounted, unless activate() holds it. */
  #letGo(layerId: string, device: ThinDevice): void {
    if (!this.#isHeld(layerId)) this.#devices.deactivate(device);
  }

  /** Unmounts a mount no layer holds (init's clean-up), lazily if it is busy. */
  unmountStale(mountPoint: string): void {
    logger.warn(`unmounting stale mount ${mountPoint}`);
    unmountOrDetach(mountPoint, this.#settings.kernel);
  }

  /** MNT_DETACH: the mount goes from the tree now, for good once its last user lets go. */
  unmountDetached(mountPoint: string): void {
    unmountFilesystem(mountPoint, { flags: MNT_DETACH, kernel: this.#settings.kernel });
  }

  /** Mount points under <home>/mnt/ now, shallowest first, with the layer each belongs to. */
  found(): Array<{ mountPoint: string; layer: string | undefined }> {
    return mountPointsUnder(`${this.#layout.mountRoot}/`).map((mountPoint) => ({
      mountPoint,
      layer: this.#layout.layerOfMountPoint(mountPoint),
    }));
  }

  #mountData(mountLabel: string | undefined): string | null {
    const words = [...this.#settings.mountOptions];
    if (this.#settings.filesystem === 'xfs') words.push('nouuid'); // snapshots share the base's UUID
    if (mountLabel) words.push(`context="${mountLabel}"`);
    return words.length > 0 ? words.join(',') : null;
  }
}

/**
 * mkdir(path) with one syscall where the parent exists: true when this made it, false when
 * something is there already (the caller checks what, where it matters).
 */
export function makeDirectory(path: string, mode: number): boolean {
  try {
    mkdirSync(path, { mode });
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'ENOENT') throw error;
  }
  mkdirSync(path, { recursive: true, mode }); // a parent is missing
  return true;
}

/**
 * Whether `path` is a directory, made when nothing is there; false for anything else, a
 * symlink included (never followed). One lstat where it exists, as rootfs/ does in every
 * snapshot (it comes from the parent layer).
 */
function isOrMakeDirectory(path: string, mode: number): boolean {
  const found = lstatSync(path, { throwIfNoEntry: false });
  if (found) return found.isDirectory();
  return makeDirectory(path, mode) || lstatSync(path).isDirectory(); // made, or raced by someone
}

/**
 * Removes a layer's mount point: one rmdir when it is empty, as it is after a clean unmount;
 * what is left in it otherwise (files written while it was not mounted) goes too.
 */
export function removeMountPoint(path: string): void {
  try {
    rmdirSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
    rmSync(path, { recursive: true, force: true });
  }
}

/** Whether anything, a dangling symlink included, is at `path`. */
function lexists(path: string): boolean {
  return lstatSync(path, { throwIfNoEntry: false }) !== undefined;
}

/** Unmounts `mountPoint`; when it is busy, detaches it (MNT_DETACH: gone from the tree now). */
export function unmountOrDetach(mountPoint: string, kernel: Kernel): void {
  try {
    unmountFilesystem(mountPoint, { kernel });
  } catch {
    unmountFilesystem(mountPoint, { flags: MNT_DETACH, kernel });
  }
}

/** Mount points under `prefix`, from /proc/self/mountinfo (octal escapes decoded), shallowest first. */
export function mountPointsUnder(prefix: string): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p.startsWith(prefix))
    .sort((a, b) => a.length - b.length);
}
