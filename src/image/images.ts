// Images without an engine: an image archive becomes a chain of thin layers, one per image
// layer, each keyed by its chain id (so a layer two images share is stored once), and a record
// of the image (ref, config, layers) in <home>/images. A container root filesystem is a
// writable layer on top of an image's last layer.
import { createHash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { constants as osConstants } from 'node:os';
import type { Driver } from '../driver/driver.js';
import type { LayerMetadata } from '../driver/layer-records.js';
import { applyDiffDetailed, type DiffHost } from '../driver/diff/layer-diff.js';
import { DevmapperError, DmSystemError, InvalidArgumentError } from '../errors.js';
import { readImageArchive, type ArchiveImage } from './archive.js';
import { ImageStore, type ImageLayerRecord, type ImageRecord } from './image-store.js';

export type { ImageRecord, ImageLayerRecord } from './image-store.js';

/** The layer meta field that marks a layer as a verified image layer. */
export const IMAGE_LAYER_META = 'devmapper.imageLayer';

export interface ImportOptions {
  /** The ref to record the image under (an archive with one image only); default: the archive's own name. */
  name?: string;
  /** Called with one line per step (layer applied, layer already present, image recorded). */
  onProgress?: (line: string) => void;
}

/** The chain ids of a list of diff_ids: chain(0) = diff(0); chain(n) = sha256(chain(n-1) + ' ' + diff(n)). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const diffId of diffIds) {
    const previous = out.at(-1);
    out.push(
      previous === undefined ? diffId : `sha256:${createHash('sha256').update(`${previous} ${diffId}`).digest('hex')}`,
    );
  }
  return out;
}

/** The driver layer id of a chain id: `img-<hex>` (68 characters, within the layer id rules). */
export function layerIdOf(chainId: string): string {
  const m = /^sha256:([0-9a-f]{64})$/.exec(chainId);
  if (!m)
    throw new DevmapperError('ERR_DM_IMAGE_INVALID', `unsupported digest ${JSON.stringify(chainId)} (sha256 only)`);
  return `img-${m[1]}`;
}

function hostOf(driver: Driver): DiffHost {
  return {
    create: (id, parent) => driver.create(id, parent),
    remove: (id) => driver.remove(id),
    exists: (id) => driver.exists(id),
    get: (id) => driver.get(id),
    put: (id) => driver.put(id),
    metadata: (id) => driver.metadata(id),
    setMeta: (id, meta) => driver.setMeta(id, meta),
    kernel: driver.kernel,
  };
}

/** The blob's bytes, passed through and checked against `digest` when the stream ends. */
function verified(stream: Readable, digest: string | undefined): Readable {
  if (digest === undefined) return stream;
  const hash = createHash(digest.startsWith('sha512:') ? 'sha512' : 'sha256');
  const check = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback) {
      const actual = `${digest.split(':')[0]}:${hash.digest('hex')}`;
      callback(
        actual === digest
          ? null
          : new DevmapperError('ERR_DM_IMAGE_DIGEST', `layer blob is ${actual}, the manifest says ${digest}`),
      );
    },
  });
  stream.on('error', (error) => check.destroy(error));
  return stream.pipe(check);
}

async function isCompleteImageLayer(driver: Driver, layerId: string, chainId: string): Promise<boolean> {
  if (!(await driver.exists(layerId))) return false;
  const mark = (await driver.metadata(layerId)).meta?.[IMAGE_LAYER_META] as { chainId?: string } | undefined;
  return mark?.chainId === chainId;
}

async function importOne(
  driver: Driver,
  store: ImageStore,
  image: ArchiveImage,
  ref: string,
  progress: (line: string) => void,
): Promise<ImageRecord> {
  const chain = chainIds(image.layers.map((l) => l.diffId));
  const layers: ImageLayerRecord[] = [];
  let parent: string | null = null;
  for (const [i, layer] of image.layers.entries()) {
    const chainId = chain[i]!;
    const layerId = layerIdOf(chainId);
    const label = `${ref}: layer ${i + 1}/${image.layers.length} ${layer.diffId.slice(0, 19)}`;
    if (await isCompleteImageLayer(driver, layerId, chainId)) {
      progress(`${label}: already present`);
    } else {
      if (await driver.exists(layerId)) await driver.remove(layerId); // left half-done by a crash
      const started = Date.now();
      const result = await applyDiffDetailed(hostOf(driver), layerId, parent, verified(layer.open(), layer.digest));
      if (result.diffId !== layer.diffId) {
        await driver.remove(layerId);
        throw new DevmapperError(
          'ERR_DM_IMAGE_DIGEST',
          `${label}: the layer's tar is ${result.diffId}, the config says ${layer.diffId}`,
        );
      }
      const meta = (await driver.metadata(layerId)).meta ?? {};
      await driver.setMeta(layerId, { ...meta, [IMAGE_LAYER_META]: { chainId, diffId: layer.diffId } });
      progress(`${label}: applied ${result.bytes} bytes in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    layers.push({ layerId, chainId, diffId: layer.diffId, ...(layer.digest ? { digest: layer.digest } : {}) });
    parent = layerId;
  }
  const record: ImageRecord = {
    ref,
    ...(image.manifestDigest ? { manifestDigest: image.manifestDigest } : {}),
    configDigest: image.configDigest,
    config: image.config,
    layers,
    importedAt: new Date().toISOString(),
  };
  store.write(record);
  progress(`${ref}: recorded (${layers.length} layers)`);
  return record;
}

/**
 * Imports every image of an OCI image-layout tarball or a `docker save` archive into the
 * driver's home: one thin layer per layer (chain id keyed, shared layers stored once), digests
 * verified, and an image record (ref, config, layers). A layer that fails leaves no layer.
 */
export async function importImage(driver: Driver, file: string, options: ImportOptions = {}): Promise<ImageRecord[]> {
  const images = await readImageArchive(file);
  if (images.length === 0) throw new DevmapperError('ERR_DM_IMAGE_INVALID', `${file} holds no image`);
  if (options.name !== undefined && images.length !== 1)
    throw new InvalidArgumentError('name', `${file} holds ${images.length} images: a name fits only one`);
  const store = new ImageStore(driver.home);
  const records: ImageRecord[] = [];
  for (const image of images) {
    const ref = options.name ?? image.ref ?? image.configDigest;
    records.push(await importOne(driver, store, image, ref, options.onProgress ?? (() => undefined)));
  }
  return records;
}

/** The images recorded in the driver's home, by ref. */
export async function listImages(driver: Driver): Promise<ImageRecord[]> {
  return new ImageStore(driver.home).list();
}

export async function getImage(driver: Driver, ref: string): Promise<ImageRecord> {
  const record = new ImageStore(driver.home).read(ref);
  if (!record) throw new DevmapperError('ERR_DM_UNKNOWN_IMAGE', `no image ${ref}`);
  return record;
}

/**
 * Forgets an image and removes its layers that nothing uses any more (no other image, no
 * layer on top such as a container's). Returns the layers removed.
 */
export async function removeImage(driver: Driver, ref: string): Promise<string[]> {
  const store = new ImageStore(driver.home);
  const record = await getImage(driver, ref);
  const used = new Set(
    store
      .list()
      .filter((image) => image.ref !== ref)
      .flatMap((image) => image.layers.map((l) => l.layerId)),
  );
  // What goes, top down, decided before anything changes: a layer another image uses, or one
  // that something other than the layer above stands on (a container layer), ends the chain.
  const layers = await driver.list();
  const doomed: LayerMetadata[] = [];
  for (const { layerId } of [...record.layers].reverse()) {
    if (used.has(layerId)) break;
    const above = doomed.at(-1)?.id;
    if (layers.some((layer) => layer.parent === layerId && layer.id !== above)) break;
    const layer = layers.find((l) => l.id === layerId);
    if (layer) doomed.push(layer);
  }
  // One mounted stops it all here: removing the layers above it first would leave the rest of
  // the chain with no image to name it. (With deferred deletion, remove defers it instead.)
  const deferred = doomed.some((layer) => layer.mounted) && (await driver.status()).deferredDeletionEnabled;
  const busy = deferred ? undefined : doomed.find((layer) => layer.mounted);
  if (busy)
    throw new DmSystemError({
      errno: osConstants.errno.EBUSY,
      syscall: 'ioctl',
      operation: 'remove',
      device: busy.deviceName,
      detail: `layer ${busy.id} of image ${ref} is mounted: nothing was removed`,
    });
  store.remove(ref);
  const removed: string[] = [];
  for (const { id } of doomed) {
    try {
      await driver.remove(id);
    } catch (error) {
      // Nothing removed yet: the image is whole, and stays recorded.
      if (removed.length === 0) store.write(record);
      throw error;
    }
    removed.push(id);
  }
  return removed;
}

/**
 * A container's root filesystem: a new writable layer `id` on top of the image, mounted.
 * Returns the mounted rootfs path; `driver.put(id)` and `driver.remove(id)` end it.
 */
export async function imageRootfs(driver: Driver, ref: string, id: string): Promise<string> {
  const record = await getImage(driver, ref);
  const top = record.layers.at(-1)?.layerId ?? null;
  await driver.create(id, top);
  try {
    return await driver.get(id);
  } catch (error) {
    await driver.remove(id).catch(() => undefined);
    throw error;
  }
}
