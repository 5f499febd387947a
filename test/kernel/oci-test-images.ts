// The images the containerd and image-import tests use, built with oci-image.ts:
// `busyboxTestImage()`, a busybox base and layers that cover whiteouts, an opaque directory,
// hard links, symlinks, special modes, owners, and a file replaced by a directory and a
// directory by a file; and `bulkyImage()`, layers of incompressible bytes (imports that take a
// while). Nothing here needs root or a kernel.
import { readFileSync } from 'node:fs';
import { buildOciImage, type BuiltImage } from './oci-image.js';
import type { LayerEntry } from './oci-merged-view.js';

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
