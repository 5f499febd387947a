// The one place that knows how a driver's home is laid out and how its dm devices are named.
//
//   <home>/devicemapper/{data,metadata}   loop files (when the driver makes its own pool)
//   <home>/metadata/                      the MetadataStore's JSON files
//   <home>/mnt/<id>                       a layer's mount point (rootfs/ and id inside its filesystem)
//   <home>/mnt/.resize-<thin id>          a private, temporary mount point (growing, withMounted)
//   <home>/lock                           the HomeLock's file
//   <home>/quarantine/                    what check --repair sets aside (never deleted)
//
// dm names: `<prefix>-pool` for the pool, `<prefix>-<layer id>` for layers and
// `<prefix>-.check-probe` for check()'s probe, where the prefix is
// `devmapper-<major>:<minor>-<inode of home>` (Docker's naming), so two homes never collide.
import { lstatSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { decodeDev } from '../ioctl/abi.js';
import { assertDirectory } from './safe-open.js';

/** `<home>/lock`: usable before the home's layout is known (HomeLock, the CLI's lock checks). */
export function lockFilePath(home: string): string {
  return join(home, 'lock');
}

/** `<home>/quarantine`: needs no layout either (thin-repair works on a home it has not opened). */
export function quarantineDirPath(home: string): string {
  return join(home, 'quarantine');
}

/** Linux's PATH_MAX (with its NUL) and NAME_MAX. */
const PATH_MAX = 4096;
const NAME_MAX = 255;
/**
 * Room the layout needs past the home: `/quarantine/<80-char id>.layer.json.<ms>.<n>` and
 * `/metadata/<id>.layer.json.<pid>.tmp` are the longest (~125 bytes).
 */
const LAYOUT_ROOM = 160;

/** Why `home` is too long to hold the layout (undefined: it is not). */
function homePathTooLong(home: string): string | undefined {
  const bytes = Buffer.byteLength(home);
  if (bytes > PATH_MAX - 1 - LAYOUT_ROOM)
    return `its path is ${bytes} bytes, and the paths under it must stay below ${PATH_MAX} (at most ${PATH_MAX - 1 - LAYOUT_ROOM})`;
  const name = home.split('/').find((n) => Buffer.byteLength(n) > NAME_MAX);
  return name === undefined
    ? undefined
    : `a name in its path is ${Buffer.byteLength(name)} bytes (at most ${NAME_MAX})`;
}

export class HomeLayout {
  readonly home: string;
  /** dm name prefix for this home's devices: devmapper-<major>:<minor>-<inode>. */
  readonly prefix: string;

  private constructor(home: string, prefix: string) {
    this.home = home;
    this.prefix = prefix;
  }

  /** Makes `<home>` and `<home>/mnt` (0700) when missing and derives the dm name prefix. */
  static create(home: string): HomeLayout {
    // Checked before anything is made: mkdir -p of a path past PATH_MAX makes its first
    // directories, then fails, and the layout's own paths (mnt/<id>/rootfs, the records' temp
    // files, the quarantine's names) need room past the home.
    const long = homePathTooLong(home);
    if (long) throw new InvalidArgumentError('home', `${home} cannot be a driver home: ${long}`);
    try {
      mkdirSync(home, { recursive: true, mode: 0o700 });
      mkdirSync(join(home, 'mnt'), { recursive: true, mode: 0o700 });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // a file where the home (or one of its parents, or <home>/mnt) should be
      // a symlink loop, a name too long for the filesystem
      if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'ELOOP' || code === 'ENAMETOOLONG') {
        throw new InvalidArgumentError('home', `${home} cannot be a driver home: ${(error as Error).message}`);
      }
      throw error;
    }
    // Every layer is mounted at mnt/<id>: through a symlink planted as mnt, a layer named
    // like a directory there (etc, usr) would be mounted over it, outside the home.
    const mnt = join(home, 'mnt');
    assertDirectory(mnt, lstatSync(mnt), "the home's mount directory");
    const st = statSync(home, { bigint: true });
    // decodeDev keeps minors above 255 (0:300 must not read as 0:44).
    const dev = decodeDev(st.dev);
    return new HomeLayout(home, `devmapper-${dev.major}:${dev.minor}-${st.ino}`);
  }

  // ---- paths

  get lockFile(): string {
    return lockFilePath(this.home);
  }

  get metadataDir(): string {
    return join(this.home, 'metadata');
  }

  /** Where the driver's own loop files live. */
  get loopDir(): string {
    return join(this.home, 'devicemapper');
  }

  get mountRoot(): string {
    return join(this.home, 'mnt');
  }

  /** `<home>/mnt/<id>`: the layer's mount point. */
  mountPoint(layerId: string): string {
    return join(this.home, 'mnt', layerId);
  }

  /** `<home>/mnt/<id>/rootfs`: what get() returns. */
  rootfs(layerId: string): string {
    return join(this.mountPoint(layerId), 'rootfs');
  }

  /** `<home>/mnt/<id>/id`: the file naming the layer inside its own filesystem. */
  idFile(layerId: string): string {
    return join(this.mountPoint(layerId), 'id');
  }

  /** A private mount point for a short-lived mount of one thin device. */
  privateMountPoint(thinId: number): string {
    return join(this.home, 'mnt', `.resize-${thinId}`);
  }

  /** The layer a mount point under `<home>/mnt/` belongs to (undefined: none, or nested deeper). */
  layerOfMountPoint(mountPoint: string): string | undefined {
    const root = `${this.mountRoot}/`;
    if (!mountPoint.startsWith(root)) return undefined;
    const rest = mountPoint.slice(root.length);
    return rest.includes('/') ? undefined : rest;
  }

  // ---- dm names

  get poolName(): string {
    return `${this.prefix}-pool`;
  }

  thinName(layerId: string): string {
    return `${this.prefix}-${layerId}`;
  }

  /** check()'s temporary device: a dot after the prefix, which no layer id can start with. */
  get probeName(): string {
    return `${this.prefix}-.check-probe`;
  }

  /** Whether a dm device is one of this home's, other than `poolName` (the pool in use, possibly adopted). */
  isLayerDevice(name: string, poolName: string): boolean {
    return name.startsWith(`${this.prefix}-`) && name !== poolName;
  }

  /** The layer id a dm name of this home stands for. */
  layerIdOf(deviceName: string): string {
    return deviceName.slice(this.prefix.length + 1);
  }
}
