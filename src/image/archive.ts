// Reads an image archive without unpacking it: an OCI image-layout tarball (`oci-layout`,
// `index.json`, `blobs/sha256/…`) or a `docker save` archive (`manifest.json`, a config and a
// tar per layer). One pass over the tar records where each member's bytes start; manifests and
// configs are then read by offset, and each layer is streamed from its offset when it is
// applied — nothing is extracted or held whole in memory. The archive itself must be a plain
// tar (both formats are).
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, openSync, readSync } from 'node:fs';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { DevmapperError, systemErrorOf } from '../errors.js';
import { compressionOf, firstEvent } from '../driver/diff/tar-format.js';

/** One layer of an image, as the archive holds it. */
export interface ArchiveLayer {
  /** sha256:… of the uncompressed tar, from the config's rootfs.diff_ids. */
  diffId: string;
  /** sha256:… of the blob as stored (OCI layouts), to verify while reading; undefined for docker save. */
  digest: string | undefined;
  /** Bytes of the blob in the archive. */
  size: number;
  open(): Readable;
}

export interface ArchiveImage {
  /** The image's name in the archive (a ref annotation or a RepoTag); undefined when it has none. */
  ref: string | undefined;
  manifestDigest: string | undefined;
  configDigest: string;
  /** The image config (OCI image-spec config JSON). */
  config: ImageConfigJson;
  layers: ArchiveLayer[];
}

/** The parts of an image config this project reads. */
export interface ImageConfigJson {
  architecture?: string;
  os?: string;
  config?: { Env?: string[]; Cmd?: string[]; Entrypoint?: string[]; WorkingDir?: string; User?: string };
  rootfs: { type: string; diff_ids: string[] };
  [key: string]: unknown;
}

interface Member {
  offset: number;
  size: number;
  linkTo?: string;
}

const invalid = (message: string): DevmapperError => new DevmapperError('ERR_DM_IMAGE_INVALID', message);
const MAX_JSON = 16 << 20;

/** Every member of the tar: normalized name → where its bytes are. */
async function scan(file: string): Promise<Map<string, Member>> {
  const members = new Map<string, Member>();
  const extract = tar.extract();
  const reading: Promise<void> = (async () => {
    for await (const entry of extract) {
      const header = entry.header;
      const name = posix.normalize(header.name).replace(/^(\.\/)+|\/$/g, '');
      const offset = (header as unknown as { byteOffset: number }).byteOffset;
      if (header.type === 'symlink' && header.linkname)
        members.set(name, { offset: 0, size: 0, linkTo: posix.join(posix.dirname(name), header.linkname) });
      else if (header.type === 'link' && header.linkname)
        members.set(name, { offset: 0, size: 0, linkTo: posix.normalize(header.linkname) });
      else if (header.type === 'file' || header.type === 'contiguous-file')
        members.set(name, { offset, size: header.size });
      entry.resume();
      await new Promise<void>((resolve) => entry.once('end', resolve));
    }
  })();
  reading.catch(() => undefined); // awaited below, after the last write
  const input = createReadStream(file);
  let first = true;
  try {
    for await (const chunk of input) {
      if (first && compressionOf(chunk as Buffer) !== 'none') {
        extract.destroy();
        throw invalid(`${file} is compressed: decompress it first (image archives are plain tars)`);
      }
      first = false;
      if (!extract.write(chunk as Buffer))
        await firstEvent([
          [extract, 'drain'],
          [extract, 'close'],
        ]);
    }
  } catch (error) {
    extract.destroy();
    throw systemErrorOf(error, { syscall: 'read', device: file }); // a missing file, a directory
  }
  extract.end(() => undefined);
  try {
    await reading;
  } catch (error) {
    throw invalid(`${file} is not a readable tar: ${(error as Error).message}`);
  }
  return members;
}

class Archive {
  readonly #file: string;
  readonly #members: Map<string, Member>;

  constructor(file: string, members: Map<string, Member>) {
    this.#file = file;
    this.#members = members;
  }

  has(name: string): boolean {
    return this.#resolve(name) !== undefined;
  }

  #resolve(name: string): Member | undefined {
    let member = this.#members.get(posix.normalize(name).replace(/^(\.\/)+/, ''));
    for (let hops = 0; member?.linkTo !== undefined && hops < 8; hops++) member = this.#members.get(member.linkTo);
    return member?.linkTo === undefined ? member : undefined;
  }

  member(name: string): Member {
    const member = this.#resolve(name);
    if (!member) throw invalid(`${this.#file} has no ${name}`);
    return member;
  }

  bytes(name: string): Buffer {
    const { offset, size } = this.member(name);
    if (size > MAX_JSON) throw invalid(`${name} in ${this.#file} is ${size} bytes: too large for JSON metadata`);
    const buffer = Buffer.alloc(size);
    const fd = openSync(this.#file, 'r');
    try {
      for (let at = 0; at < size; ) {
        const n = readSync(fd, buffer, at, size - at, offset + at);
        if (n === 0) throw invalid(`${this.#file} ends inside ${name}`);
        at += n;
      }
    } finally {
      closeSync(fd);
    }
    return buffer;
  }

  json<T>(name: string, bytes = this.bytes(name)): T {
    try {
      return JSON.parse(bytes.toString('utf8')) as T;
    } catch (error) {
      throw invalid(`${name} in ${this.#file} is not JSON: ${(error as Error).message}`);
    }
  }

  /** The JSON blob a descriptor names, its bytes checked against the descriptor's digest and size. */
  blobJson<T>(descriptor: Descriptor, what: string): T {
    const name = blobPath(descriptor.digest);
    const bytes = this.bytes(name);
    const [algorithm] = descriptor.digest.split(':');
    const actual = `${algorithm}:${createHash(algorithm!).update(bytes).digest('hex')}`;
    if (actual !== descriptor.digest)
      throw new DevmapperError(
        'ERR_DM_IMAGE_DIGEST',
        `${what} blob is ${actual}, its descriptor says ${descriptor.digest}`,
      );
    if (descriptor.size !== undefined && descriptor.size !== bytes.length)
      throw invalid(`${what} ${descriptor.digest} is ${bytes.length} bytes, its descriptor says ${descriptor.size}`);
    return this.json<T>(name, bytes);
  }

  stream(name: string): { size: number; open(): Readable } {
    const { offset, size } = this.member(name);
    return {
      size,
      open: () =>
        createReadStream(
          this.#file,
          size === 0 ? { start: offset, end: offset - 1 } : { start: offset, end: offset + size - 1 },
        ),
    };
  }
}

const blobPath = (digest: string): string => {
  const m = /^(sha256|sha512):([0-9a-f]{64,128})$/.exec(digest);
  if (!m) throw invalid(`bad digest ${JSON.stringify(digest)}`);
  return `blobs/${m[1]}/${m[2]}`;
};

interface Descriptor {
  mediaType?: string;
  digest: string;
  size?: number;
  platform?: { architecture?: string; os?: string };
  annotations?: Record<string, string>;
}

const GOARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
};

function diffIdsOf(config: ImageConfigJson, where: string): string[] {
  const ids = config.rootfs?.diff_ids;
  if (!Array.isArray(ids) || ids.some((id) => typeof id !== 'string'))
    throw invalid(`${where}: the config has no rootfs.diff_ids`);
  return ids;
}

const INDEX_TYPES = new Set([
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);
const MANIFEST_TYPES = new Set([
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
]);
const CONFIG_TYPES = new Set([
  'application/vnd.oci.image.config.v1+json',
  'application/vnd.docker.container.image.v1+json',
]);

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** A descriptor as the image spec has it: an object with a string digest (and, if any, a string mediaType, a size). */
function descriptorOf(value: unknown, where: string): Descriptor {
  if (!isObject(value) || typeof value.digest !== 'string')
    throw invalid(`${where}: not a descriptor (an object with a digest): ${JSON.stringify(value)?.slice(0, 200)}`);
  if (value.mediaType !== undefined && typeof value.mediaType !== 'string')
    throw invalid(`${where}: mediaType is not a string`);
  if (value.size !== undefined && !(Number.isSafeInteger(value.size) && (value.size as number) >= 0))
    throw invalid(`${where}: size ${JSON.stringify(value.size)} is not a byte count`);
  if (value.annotations !== undefined && !isObject(value.annotations))
    throw invalid(`${where}: annotations is not an object`);
  return value as unknown as Descriptor;
}

/** The descriptors of an index (index.json or an image index blob). */
function manifestsOf(index: unknown, where: string): Descriptor[] {
  if (!isObject(index) || (index.manifests !== undefined && !Array.isArray(index.manifests)))
    throw invalid(`${where}: not an image index (an object with a list of manifests)`);
  return ((index.manifests ?? []) as unknown[]).map((m, i) => descriptorOf(m, `${where}: manifests[${i}]`));
}

function ociImages(archive: Archive): ArchiveImage[] {
  const images: ArchiveImage[] = [];
  const visit = (descriptor: Descriptor, ref: string | undefined, depth: number): void => {
    const type = descriptor.mediaType;
    if (type !== undefined && INDEX_TYPES.has(type)) {
      if (depth > 4) throw invalid('image indexes nested too deeply');
      const index = archive.blobJson<unknown>(descriptor, 'index');
      const arch = GOARCH[process.arch] ?? process.arch;
      const manifests = manifestsOf(index, `index ${descriptor.digest}`).filter(
        (m) => !m.platform || (m.platform.os === 'linux' && m.platform.architecture === arch),
      );
      if (manifests.length === 0) throw invalid(`index ${descriptor.digest} has no manifest for linux/${arch}`);
      visit(manifests[0]!, ref, depth + 1);
      return;
    }
    if (type !== undefined && !MANIFEST_TYPES.has(type))
      throw invalid(`${descriptor.digest} is a ${type}, not an image manifest or index`);
    const where = `manifest ${descriptor.digest}`;
    const manifest = archive.blobJson<unknown>(descriptor, 'manifest');
    if (!isObject(manifest) || !Array.isArray(manifest.layers))
      throw invalid(`${where}: not an image manifest (an object with a config and a list of layers)`);
    if (manifest.mediaType !== undefined && !MANIFEST_TYPES.has(manifest.mediaType as string))
      throw invalid(`${where}: its mediaType ${JSON.stringify(manifest.mediaType)} is not an image manifest's`);
    const configDescriptor = descriptorOf(manifest.config, `${where}: config`);
    if (configDescriptor.mediaType !== undefined && !CONFIG_TYPES.has(configDescriptor.mediaType))
      throw invalid(`${where}: its config is a ${configDescriptor.mediaType}, not an image config`);
    const layerDescriptors = manifest.layers.map((l, i) => descriptorOf(l, `${where}: layers[${i}]`));
    const config = archive.blobJson<ImageConfigJson>(configDescriptor, 'config');
    const diffIds = diffIdsOf(config, descriptor.digest);
    if (diffIds.length !== layerDescriptors.length)
      throw invalid(`${where}: ${layerDescriptors.length} layers but ${diffIds.length} diff_ids`);
    images.push({
      ref,
      manifestDigest: descriptor.digest,
      configDigest: configDescriptor.digest,
      config,
      layers: layerDescriptors.map((layer, i) => ({
        diffId: diffIds[i]!,
        digest: layer.digest,
        ...archive.stream(blobPath(layer.digest)),
      })),
    });
  };
  for (const descriptor of manifestsOf(archive.json<unknown>('index.json'), 'index.json')) {
    const a = descriptor.annotations ?? {};
    visit(descriptor, a['io.containerd.image.name'] ?? a['org.opencontainers.image.ref.name'], 0);
  }
  return images;
}

function dockerImages(archive: Archive): ArchiveImage[] {
  const manifest =
    archive.json<Array<{ Config: string; RepoTags?: string[] | null; Layers: string[] }>>('manifest.json');
  if (!Array.isArray(manifest)) throw invalid('manifest.json is not a list');
  return manifest.map((entry, i) => {
    if (
      !isObject(entry) ||
      typeof entry.Config !== 'string' ||
      !Array.isArray(entry.Layers) ||
      entry.Layers.some((l) => typeof l !== 'string') ||
      !(entry.RepoTags == null || (Array.isArray(entry.RepoTags) && entry.RepoTags.every((r) => typeof r === 'string')))
    )
      throw invalid(`manifest.json[${i}] is not an image entry (a Config path, a list of Layers paths, RepoTags)`);
    const config = archive.json<ImageConfigJson>(entry.Config);
    const diffIds = diffIdsOf(config, entry.Config);
    if (diffIds.length !== entry.Layers.length)
      throw invalid(`manifest.json: ${entry.Layers.length} layers but ${diffIds.length} diff_ids`);
    const configDigest = /^(?:blobs\/sha256\/)?([0-9a-f]{64})(?:\.json)?$/.exec(entry.Config)?.[1];
    return {
      ref: entry.RepoTags?.[0],
      manifestDigest: undefined,
      configDigest: configDigest ? `sha256:${configDigest}` : entry.Config,
      config,
      layers: entry.Layers.map((path, i) => ({ diffId: diffIds[i]!, digest: undefined, ...archive.stream(path) })),
    };
  });
}

/** The images in an OCI image-layout tarball or a `docker save` archive. */
export async function readImageArchive(file: string): Promise<ArchiveImage[]> {
  const archive = new Archive(file, await scan(file));
  // docker save of Docker 25+ is also an OCI layout; its manifest.json names the tags, so it wins.
  if (archive.has('manifest.json')) return dockerImages(archive);
  if (archive.has('index.json')) return ociImages(archive);
  throw invalid(`${file} is neither an OCI image layout (index.json) nor a docker save archive (manifest.json)`);
}
