// Image records under <home>/images: one JSON file per image, named by the sha256 of its ref
// (a ref may hold '/' and ':'), written atomically like the driver's own metadata (temp file,
// fsync, rename, fsync of the directory; 0600 files in a 0700 directory).
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { DevmapperError } from '../errors.js';
import type { ImageConfigJson } from './archive.js';

export interface ImageLayerRecord {
  /** The driver layer that holds it: `img-<hex of the chain id>`. */
  layerId: string;
  chainId: string;
  diffId: string;
  /** The blob digest in the archive it came from (OCI layouts only). */
  digest?: string;
}

export interface ImageRecord {
  ref: string;
  manifestDigest?: string;
  configDigest: string;
  config: ImageConfigJson;
  /** Bottom first. */
  layers: ImageLayerRecord[];
  importedAt: string;
}

const SUFFIX = '.image.json';

export class ImageStore {
  readonly dir: string;

  constructor(home: string) {
    this.dir = join(home, 'images');
  }

  #file(ref: string): string {
    return join(this.dir, createHash('sha256').update(ref).digest('hex') + SUFFIX);
  }

  read(ref: string): ImageRecord | undefined {
    const file = this.#file(ref);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new DevmapperError('ERR_DM_METADATA', `image record of ${ref}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return parseRecord(text, file);
  }

  list(): ImageRecord[] {
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((n) => n.endsWith(SUFFIX));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    return names
      .sort()
      .map((name) => {
        const file = join(this.dir, name);
        try {
          return parseRecord(readFileSync(file, 'utf8'), file);
        } catch (error) {
          if (error instanceof DevmapperError) throw error;
          throw new DevmapperError('ERR_DM_METADATA', `image record ${file}: ${(error as Error).message}`, {
            cause: error,
          });
        }
      })
      .sort((a, b) => a.ref.localeCompare(b.ref));
  }

  write(record: ImageRecord): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    chmodSync(this.dir, 0o700);
    const path = this.#file(record.ref);
    const temp = `${path}.${process.pid}.tmp`;
    const fd = openSync(temp, 'w', 0o600);
    try {
      writeSync(fd, `${JSON.stringify(record, null, 2)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, path);
    this.#syncDir();
  }

  remove(ref: string): boolean {
    const path = this.#file(ref);
    const existed = this.read(ref) !== undefined;
    rmSync(path, { force: true });
    if (existed) this.#syncDir();
    return existed;
  }

  #syncDir(): void {
    const fd = openSync(this.dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/** An image record file's JSON, with the fields the commands read checked: ERR_DM_METADATA naming the file otherwise. */
function parseRecord(text: string, file: string): ImageRecord {
  const bad = (reason: string, cause?: unknown): DevmapperError =>
    new DevmapperError(
      'ERR_DM_METADATA',
      `image record ${file}: ${reason}`,
      cause === undefined ? undefined : { cause },
    );
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw bad(`not JSON: ${(error as Error).message}`, error);
  }
  const r = value as Partial<ImageRecord> | null;
  if (r === null || typeof r !== 'object' || Array.isArray(r)) throw bad('not an object');
  if (typeof r.ref !== 'string' || r.ref === '') throw bad('bad ref');
  if (typeof r.configDigest !== 'string') throw bad('bad configDigest');
  if (r.config === null || typeof r.config !== 'object') throw bad('bad config');
  if (
    !Array.isArray(r.layers) ||
    r.layers.some((l) => l === null || typeof l !== 'object' || typeof l.layerId !== 'string')
  )
    throw bad('bad layers');
  return r as ImageRecord;
}
