// Builds OCI image-layout tarballs offline, the kind `ctr images import` (and later this
// project's own image import) reads: `oci-layout`, `index.json` (the manifest's descriptor with
// an `io.containerd.image.name` annotation), `blobs/sha256/<digest>` for the manifest, the
// config (with the layers' diff_ids) and the gzip'd layer tars. Layers are described as lists
// of entries (files, directories, symlinks, hard links, whiteouts, opaque markers) and written
// with tar-stream; `mergedView` applies them in order, as an image's layers stack, and tells
// what a container made from the image must see, path by path.
//
// `busyboxTestImage()` is the image the containerd tests use: a busybox base and layers that
// cover whiteouts, an opaque directory, hard links, symlinks, special modes, owners, and a file
// replaced by a directory and a directory by a file. Nothing here needs root or a kernel.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';

type TarHeader = Partial<tar.Header> & { name: string };

export type LayerEntry =
  | { kind: 'dir'; path: string; mode?: number; uid?: number; gid?: number }
  | { kind: 'file'; path: string; content: Buffer | string; mode?: number; uid?: number; gid?: number }
  | { kind: 'symlink'; path: string; target: string; uid?: number; gid?: number }
  /** A hard link to `target` (a path in this layer, written earlier, or in a lower layer). */
  | { kind: 'hardlink'; path: string; target: string }
  /** `.wh.<name>` next to `path`: hides `path` (and all under it) of the lower layers. */
  | { kind: 'whiteout'; path: string }
  /** `<path>/.wh..wh..opq`: hides everything the lower layers have under the directory `path`. */
  | { kind: 'opaque'; path: string };

export interface ViewEntry {
  type: 'dir' | 'file' | 'symlink';
  /** Permission bits with setuid, setgid and sticky (st_mode & 07777). */
  mode: number;
  uid: number;
  gid: number;
  /** Regular files: size in bytes and sha256 (hex) of the content. */
  size?: number;
  sha256?: string;
  /** Symlinks: the link's target as written. */
  target?: string;
  /** Regular files: every path of the view that is the same inode (itself included), sorted. */
  links?: string[];
}

/** Absolute path ('/bin/sh') → what is there. The root directory itself is not listed. */
export type MergedView = Map<string, ViewEntry>;

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

export const sha256Hex = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
const digestOf = (data: Buffer): string => `sha256:${sha256Hex(data)}`;

/** 'a/b/' or '/a/b' → 'a/b' (the form tar entries use, relative, no trailing slash). */
function relative(path: string): string {
  const normal = posix.normalize(`/${path}`);
  if (normal === '/') throw new Error(`layer entry path ${JSON.stringify(path)} names the root`);
  return normal.slice(1);
}

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

// ---- the merged view ---------------------------------------------------------------------

interface Inode {
  type: 'dir' | 'file' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  data?: Buffer;
  target?: string;
}

type Tree = Map<string, Inode>;

function removeSubtree(tree: Tree, path: string): void {
  tree.delete(path);
  for (const key of [...tree.keys()]) if (key.startsWith(`${path}/`)) tree.delete(key);
}

/** Applies one layer to `tree` the way an OCI applier does (whiteouts hide only lower layers). */
function applyLayer(tree: Tree, entries: readonly LayerEntry[]): void {
  const lower = new Set(tree.keys());
  for (const entry of entries) {
    const path = `/${relative(entry.path)}`;
    if (entry.kind === 'whiteout') {
      if (!lower.has(path)) throw new Error(`whiteout ${path}: nothing below to hide`);
      removeSubtree(tree, path);
    } else if (entry.kind === 'opaque') {
      if (tree.get(path)?.type !== 'dir') throw new Error(`opaque marker in ${path}: not a directory of the image`);
      for (const key of [...tree.keys()]) if (key.startsWith(`${path}/`) && lower.has(key)) tree.delete(key);
    }
  }
  for (const entry of entries) {
    const path = `/${relative(entry.path)}`;
    if (entry.kind === 'whiteout' || entry.kind === 'opaque') continue;
    const parent = posix.dirname(path);
    if (parent !== '/' && tree.get(parent)?.type !== 'dir')
      throw new Error(`${path}: parent ${parent} is not a directory in the image`);
    const existing = tree.get(path);
    if (entry.kind === 'dir') {
      const inode = { type: 'dir' as const, mode: entry.mode ?? 0o755, uid: entry.uid ?? 0, gid: entry.gid ?? 0 };
      if (existing?.type === 'dir')
        Object.assign(existing, inode); // a directory over a directory: merged
      else {
        if (existing) removeSubtree(tree, path);
        tree.set(path, inode);
      }
      continue;
    }
    if (existing) removeSubtree(tree, path); // anything else replaces what was there, a directory with all under it
    if (entry.kind === 'file') {
      tree.set(path, {
        type: 'file',
        mode: entry.mode ?? 0o644,
        uid: entry.uid ?? 0,
        gid: entry.gid ?? 0,
        data: Buffer.from(entry.content),
      });
    } else if (entry.kind === 'symlink') {
      tree.set(path, { type: 'symlink', mode: 0o777, uid: entry.uid ?? 0, gid: entry.gid ?? 0, target: entry.target });
    } else {
      const target = tree.get(`/${relative(entry.target)}`);
      if (target?.type !== 'file') throw new Error(`hard link ${path}: target ${entry.target} is not a regular file`);
      tree.set(path, target); // the same inode object
    }
  }
}

function mergedTree(layers: ReadonlyArray<readonly LayerEntry[]>): Tree {
  const tree: Tree = new Map();
  for (const layer of layers) applyLayer(tree, layer);
  return tree;
}

/** The content of every regular file the stacked layers leave. */
export function mergedContents(layers: ReadonlyArray<readonly LayerEntry[]>): Map<string, Buffer> {
  const contents = new Map<string, Buffer>();
  for (const [path, inode] of mergedTree(layers)) if (inode.type === 'file') contents.set(path, inode.data!);
  return contents;
}

/** What the layers, stacked in order (first = bottom), look like to a container. */
export function mergedView(layers: ReadonlyArray<readonly LayerEntry[]>): MergedView {
  const tree = mergedTree(layers);
  const pathsOf = new Map<Inode, string[]>();
  for (const [path, inode] of tree) pathsOf.set(inode, [...(pathsOf.get(inode) ?? []), path]);
  const view: MergedView = new Map();
  for (const path of [...tree.keys()].sort()) {
    const inode = tree.get(path)!;
    const entry: ViewEntry = { type: inode.type, mode: inode.mode, uid: inode.uid, gid: inode.gid };
    if (inode.type === 'file') {
      entry.size = inode.data!.length;
      entry.sha256 = sha256Hex(inode.data!);
      entry.links = [...pathsOf.get(inode)!].sort();
    }
    if (inode.type === 'symlink') entry.target = inode.target;
    view.set(path, entry);
  }
  return view;
}

// ---- the image layout ----------------------------------------------------------------------

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

// ---- the test image ------------------------------------------------------------------------

/** The busybox applets the base layer links into /bin. */
export const BUSYBOX_APPLETS = [
  'sh',
  'ls',
  'cat',
  'echo',
  'find',
  'stat',
  'sha256sum',
  'sort',
  'sleep',
  'readlink',
  'mkdir',
  'rm',
  'touch',
  'test',
  'wc',
  'head',
  'grep',
  'sed',
  'true',
  'false',
  'id',
  'env',
  'printf',
  'cp',
  'mv',
  'ln',
  'chmod',
] as const;

/** The base layer: busybox (from `busybox`, default /bin/busybox) with its applet links, /etc, /tmp and the mount-point directories. */
export function busyboxBaseLayer(busybox = '/bin/busybox'): LayerEntry[] {
  let binary: Buffer;
  try {
    binary = readFileSync(busybox);
  } catch (error) {
    throw new Error(
      `the test image needs a static busybox at ${busybox} (Debian's busybox-static): ${(error as Error).message}`,
    );
  }
  return [
    { kind: 'dir', path: 'bin' },
    { kind: 'file', path: 'bin/busybox', content: binary, mode: 0o755 },
    ...BUSYBOX_APPLETS.map((applet): LayerEntry => ({ kind: 'symlink', path: `bin/${applet}`, target: 'busybox' })),
    { kind: 'dir', path: 'etc' },
    {
      kind: 'file',
      path: 'etc/passwd',
      content: 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n',
    },
    { kind: 'file', path: 'etc/group', content: 'root:x:0:\nuser:x:1000:\n' },
    { kind: 'dir', path: 'root', mode: 0o700 },
    { kind: 'dir', path: 'tmp', mode: 0o1777 },
    { kind: 'dir', path: 'proc', mode: 0o555 },
    { kind: 'dir', path: 'sys', mode: 0o555 },
    { kind: 'dir', path: 'dev' },
    { kind: 'dir', path: 'run' },
  ];
}

/** Directories a runtime mounts over (their content is the runtime's, not the image's). */
export const RUNTIME_MOUNT_POINTS = ['/proc', '/sys', '/dev', '/run'] as const;

/**
 * The three layers on top of the base. Layer 2 hides, replaces and links what layer 1 made;
 * layer 3 brings back a whited-out name, hides a whole directory, replaces a symlink by a
 * file and changes a directory's mode and owner.
 */
export function featureLayers(): LayerEntry[][] {
  const layer1: LayerEntry[] = [
    { kind: 'dir', path: 'data' },
    { kind: 'file', path: 'data/removed.txt', content: 'removed in layer 2\n' },
    { kind: 'file', path: 'data/keep.txt', content: 'layer 1 version\n' },
    { kind: 'file', path: 'data/with space.txt', content: 'a name with a space\n' },
    { kind: 'dir', path: 'opaque' },
    { kind: 'file', path: 'opaque/old1', content: 'hidden by the opaque marker\n' },
    { kind: 'dir', path: 'opaque/sub' },
    { kind: 'file', path: 'opaque/sub/old2', content: 'hidden as well\n' },
    { kind: 'file', path: 'file-to-dir', content: 'a file, a directory in layer 2\n' },
    { kind: 'dir', path: 'dir-to-file' },
    { kind: 'file', path: 'dir-to-file/child', content: 'gone with its directory\n' },
    { kind: 'dir', path: 'links' },
    { kind: 'file', path: 'links/target', content: 'the target of links\n', mode: 0o640, uid: 7, gid: 8 },
    { kind: 'dir', path: 'wholedir' },
    { kind: 'dir', path: 'wholedir/deeper' },
    { kind: 'file', path: 'wholedir/deeper/file', content: 'hidden by a whiteout of its grandparent\n' },
    { kind: 'file', path: 'empty', content: '' },
  ];
  const layer2: LayerEntry[] = [
    { kind: 'dir', path: 'data' },
    { kind: 'whiteout', path: 'data/removed.txt' },
    { kind: 'file', path: 'data/keep.txt', content: 'layer 2 version, longer than the first\n' },
    { kind: 'dir', path: 'opaque' },
    { kind: 'opaque', path: 'opaque' },
    { kind: 'file', path: 'opaque/new1', content: 'the only file left in opaque\n' },
    { kind: 'dir', path: 'file-to-dir', mode: 0o750 },
    { kind: 'file', path: 'file-to-dir/inner', content: 'inside the new directory\n' },
    { kind: 'file', path: 'dir-to-file', content: 'a directory before\n', mode: 0o600 },
    { kind: 'dir', path: 'links' },
    { kind: 'hardlink', path: 'links/hard-to-lower', target: 'links/target' },
    { kind: 'file', path: 'links/new', content: 'a file of layer 2 with two names\n' },
    { kind: 'hardlink', path: 'links/hard-same-layer', target: 'links/new' },
    { kind: 'symlink', path: 'links/rel', target: 'target' },
    { kind: 'symlink', path: 'links/abs', target: '/links/target' },
    { kind: 'symlink', path: 'links/dangling', target: '/nowhere/at/all' },
    { kind: 'symlink', path: 'links/to-dir', target: '../data' },
    { kind: 'dir', path: 'modes' },
    { kind: 'file', path: 'modes/setuid', content: '#!/bin/sh\n', mode: 0o4755 },
    { kind: 'file', path: 'modes/setgid', content: '#!/bin/sh\n', mode: 0o2711 },
    { kind: 'dir', path: 'modes/sticky', mode: 0o1777 },
    { kind: 'file', path: 'modes/readonly', content: 'read only\n', mode: 0o444 },
    { kind: 'file', path: 'modes/others-only', content: 'only others may read\n', mode: 0o004 },
    { kind: 'dir', path: 'owned', uid: 1234, gid: 5678, mode: 0o755 },
    { kind: 'file', path: 'owned/file', content: 'owned by 1000:1000\n', uid: 1000, gid: 1000, mode: 0o600 },
    { kind: 'symlink', path: 'owned/link', target: 'file', uid: 1000, gid: 1000 },
  ];
  const layer3: LayerEntry[] = [
    { kind: 'whiteout', path: 'wholedir' },
    { kind: 'dir', path: 'data' },
    { kind: 'file', path: 'data/removed.txt', content: 'back in layer 3\n', mode: 0o664 },
    { kind: 'dir', path: 'links' },
    { kind: 'file', path: 'links/abs', content: 'a symlink before\n' },
    { kind: 'dir', path: 'owned', uid: 4321, gid: 8765, mode: 0o711 },
    { kind: 'dir', path: 'opaque' },
    { kind: 'dir', path: 'opaque/sub', mode: 0o700 },
    { kind: 'file', path: 'opaque/sub/fresh', content: 'a new sub after the opaque one\n' },
  ];
  return [layer1, layer2, layer3];
}

export const TEST_IMAGE_NAME = 'example.com/devmapper/busybox-features:1';

/** The four-layer busybox test image (base + featureLayers). */
export function busyboxTestImage(name = TEST_IMAGE_NAME, busybox = '/bin/busybox'): Promise<BuiltImage> {
  return buildOciImage({ name, layers: [busyboxBaseLayer(busybox), ...featureLayers()] });
}

/** A deterministic pseudo-random buffer (xorshift32): incompressible layer content without Math.random. */
export function noise(bytes: number, seed: number): Buffer {
  const out = Buffer.alloc(Math.ceil(bytes / 4) * 4);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < out.length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  return out.subarray(0, bytes);
}

/** A busybox image with `count` extra layers of `bytesPerLayer` incompressible bytes each (imports that take a while). */
export function bulkyImage(
  name: string,
  count: number,
  bytesPerLayer: number,
  busybox = '/bin/busybox',
): Promise<BuiltImage> {
  const layers: LayerEntry[][] = [busyboxBaseLayer(busybox)];
  for (let i = 1; i <= count; i++) {
    layers.push([
      { kind: 'dir', path: 'bulk' },
      { kind: 'file', path: `bulk/layer-${i}`, content: noise(bytesPerLayer, i) },
    ]);
  }
  return buildOciImage({ name, layers });
}
