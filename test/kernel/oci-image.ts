// Builds OCI image-layout tarballs offline, the kind `ctr images import` (and later this
// project's own image import) reads: `oci-layout`, `index.json` (the manifest's descriptor with
// an `io.containerd.image.name` annotation), `blobs/sha256/<digest>` for the manifest, the
// config (with the layers' diff_ids) and the gzip'd layer tars. Layers are lists of entries
// (oci-merged-view.ts, which also tells what they merge to), written with tar-stream. The
// images the tests use are oci-test-images.ts. Nothing here needs root or a kernel.
import { posix } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import {
  mergedContents,
  mergedView,
  relative,
  sha256Hex,
  type LayerEntry,
  type MergedView,
  type ViewEntry,
} from './oci-merged-view.js';

type TarHeader = Partial<tar.Header> & { name: string };

export interface ImageConfig {
  cmd?: string[];
  env?: string[];
  workingDir?: string;
}

export interface LayerBlob {
  /** sha256:… of the gzip'd tar (the blob). */
  digest: string;
  /** sha256:… of the uncompressed tar (the config's diff_id). */
  diffId: string;
  size: number;
  blob: Buffer;
  tar: Buffer;
}

export interface BuiltImage {
  /** The name containerd gives the image (`io.containerd.image.name`). */
  name: string;
  /** The OCI image-layout tarball, for `ctr images import`. */
  tarball: Buffer;
  manifestDigest: string;
  configDigest: string;
  layers: LayerBlob[];
  /** What the layers merge to. */
  view: MergedView;
  /** The content of each regular file of the merged view. */
  contents: Map<string, Buffer>;
}

/** Fixed, so the same description always gives the same digests. */
const MTIME = new Date('2024-01-01T00:00:00Z');

const digestOf = (data: Buffer): string => `sha256:${sha256Hex(data)}`;

/** The tar headers (and contents) one entry becomes. */
function tarHeaders(
  entry: LayerEntry,
  lowerOrSame: (path: string) => ViewEntry | undefined,
): Array<{ header: TarHeader; data?: Buffer }> {
  const name = relative(entry.path);
  const owner = (e: { uid?: number; gid?: number }) => ({ uid: e.uid ?? 0, gid: e.gid ?? 0 });
  switch (entry.kind) {
    case 'dir':
      return [
        { header: { name: `${name}/`, type: 'directory', mode: entry.mode ?? 0o755, mtime: MTIME, ...owner(entry) } },
      ];
    case 'file': {
      const data = Buffer.from(entry.content);
      return [
        {
          header: { name, type: 'file', mode: entry.mode ?? 0o644, size: data.length, mtime: MTIME, ...owner(entry) },
          data,
        },
      ];
    }
    case 'symlink':
      return [
        { header: { name, type: 'symlink', linkname: entry.target, mode: 0o777, mtime: MTIME, ...owner(entry) } },
      ];
    case 'hardlink': {
      // A link shares its target's inode; its header carries the target's metadata so no
      // extractor's chmod/chown of the link path changes what the target looks like.
      const target = lowerOrSame(`/${relative(entry.target)}`);
      if (target?.type !== 'file')
        throw new Error(`hard link ${entry.path}: target ${entry.target} is not a regular file of the image`);
      return [
        {
          header: {
            name,
            type: 'link',
            linkname: relative(entry.target),
            mode: target.mode,
            uid: target.uid,
            gid: target.gid,
            mtime: MTIME,
          },
        },
      ];
    }
    case 'whiteout':
      return [
        {
          header: {
            name: posix.join(posix.dirname(name), `.wh.${posix.basename(name)}`),
            type: 'file',
            mode: 0o644,
            size: 0,
            mtime: MTIME,
          },
          data: Buffer.alloc(0),
        },
      ];
    case 'opaque':
      return [
        {
          header: { name: `${name}/.wh..wh..opq`, type: 'file', mode: 0o644, size: 0, mtime: MTIME },
          data: Buffer.alloc(0),
        },
      ];
  }
}

function packTar(items: Array<{ header: TarHeader; data?: Buffer }>): Promise<Buffer> {
  // tar-stream writes its default mode (0644/0755) for a mode of 0: refuse it rather than lie.
  const zero = items.find(({ header }) => header.mode === 0);
  if (zero) throw new Error(`${zero.header.name}: mode 0 cannot be written (tar-stream replaces it with its default)`);
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    pack.on('data', (chunk) => chunks.push(chunk as Buffer));
    pack.on('end', () => resolve(Buffer.concat(chunks)));
    pack.on('error', reject);
  });
  for (const { header, data } of items) {
    pack.entry({ uname: '', gname: '', ...header }, data ?? Buffer.alloc(0));
  }
  pack.finalize();
  return done;
}

/** One layer's tar and gzip'd blob. `below` is what the lower layers merge to (for hard links). */
export async function buildLayer(
  entries: readonly LayerEntry[],
  below: ReadonlyArray<readonly LayerEntry[]> = [],
): Promise<LayerBlob> {
  const items: Array<{ header: TarHeader; data?: Buffer }> = [];
  for (const [i, entry] of entries.entries()) {
    const soFar = () => mergedView([...below, entries.slice(0, i)]);
    items.push(...tarHeaders(entry, (path) => (entry.kind === 'hardlink' ? soFar().get(path) : undefined)));
  }
  const tarball = await packTar(items);
  const blob = gzipSync(tarball, { level: 6 });
  return { digest: digestOf(blob), diffId: digestOf(tarball), size: blob.length, blob, tar: tarball };
}

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

/**
 * An OCI image-layout tarball of `layers` (bottom first) named `name` (e.g.
 * 'example.com/devmapper/busybox:test'), for linux/amd64 unless `architecture` says otherwise.
 */
export async function buildOciImage(options: {
  name: string;
  layers: ReadonlyArray<readonly LayerEntry[]>;
  config?: ImageConfig;
  architecture?: string;
  rawLayers?: readonly Buffer[];
}): Promise<BuiltImage> {
  const { name, layers } = options;
  const architecture = options.architecture ?? 'amd64';
  const blobs: LayerBlob[] = [];
  for (const [i, layer] of layers.entries()) blobs.push(await buildLayer(layer, layers.slice(0, i)));
  // Tars written by the caller go on top as they are (entry kinds the view model has no place
  // for: devices, fifos, xattrs); `view` and `contents` then describe only the modelled layers.
  for (const tarball of options.rawLayers ?? []) {
    const blob = gzipSync(tarball, { level: 6 });
    blobs.push({ digest: digestOf(blob), diffId: digestOf(tarball), size: blob.length, blob, tar: tarball });
  }
  const config = json({
    created: MTIME.toISOString(),
    architecture,
    os: 'linux',
    config: {
      Env: options.config?.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: options.config?.cmd ?? ['/bin/sh'],
      ...(options.config?.workingDir ? { WorkingDir: options.config.workingDir } : {}),
    },
    rootfs: { type: 'layers', diff_ids: blobs.map((b) => b.diffId) },
    history: blobs.map((_, i) => ({ created: MTIME.toISOString(), created_by: `devmapper test layer ${i + 1}` })),
  });
  const configDigest = digestOf(config);
  const manifest = json({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: blobs.map((b) => ({
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
      digest: b.digest,
      size: b.size,
    })),
  });
  const manifestDigest = digestOf(manifest);
  const index = json({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: manifestDigest,
        size: manifest.length,
        platform: { architecture, os: 'linux' },
        annotations: {
          'io.containerd.image.name': name,
          'org.opencontainers.image.ref.name': name.replace(/^.*:/, ''),
        },
      },
    ],
  });
  const items: Array<{ header: TarHeader; data?: Buffer }> = [];
  const dir = (path: string) => items.push({ header: { name: path, type: 'directory', mode: 0o755, mtime: MTIME } });
  const file = (path: string, data: Buffer) =>
    items.push({ header: { name: path, type: 'file', mode: 0o644, size: data.length, mtime: MTIME }, data });
  file('oci-layout', json({ imageLayoutVersion: '1.0.0' }));
  file('index.json', index);
  dir('blobs/');
  dir('blobs/sha256/');
  const written = new Set<string>();
  for (const [digest, data] of [
    [manifestDigest, manifest],
    [configDigest, config],
    ...blobs.map((b) => [b.digest, b.blob] as const),
  ] as const) {
    if (written.has(digest)) continue; // two identical layers are one blob
    written.add(digest);
    file(`blobs/sha256/${digest.slice('sha256:'.length)}`, data);
  }
  return {
    name,
    tarball: await packTar(items),
    manifestDigest,
    configDigest,
    layers: blobs,
    view: mergedView(layers),
    contents: mergedContents(layers),
  };
}
