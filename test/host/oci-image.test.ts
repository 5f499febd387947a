// The OCI image-layout builder of the containerd tests (test/kernel/oci-image.ts, with
// oci-merged-view.ts and oci-test-images.ts), on the host: the tarball read back with tar-stream
// and every digest recomputed, the layer tars' whiteout, opaque, hard-link, mode and owner
// headers, and the merged-view rules on small hand-made layers whose outcome is written out here
// by hand.
import test from 'ava';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { buildLayer, buildOciImage } from '../kernel/oci-image.js';
import { mergedView, type LayerEntry } from '../kernel/oci-merged-view.js';
import { busyboxTestImage } from '../kernel/oci-test-images.js';

interface TarItem {
  header: tar.Header;
  data: Buffer;
}

async function readTar(buffer: Buffer): Promise<TarItem[]> {
  const extract = tar.extract();
  const items: TarItem[] = [];
  const done = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      items.push({ header: entry.header, data: Buffer.concat(chunks) });
    }
  })();
  extract.end(buffer);
  await done;
  return items;
}

const sha = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

test('the image layout: oci-layout, index.json with the name annotation, and blobs whose names are their digests', async (t) => {
  const image = await busyboxTestImage('example.com/test/image:tag');
  const items = await readTar(image.tarball);
  const byName = new Map(items.map((i) => [i.header.name, i]));
  t.deepEqual(JSON.parse(byName.get('oci-layout')!.data.toString()), { imageLayoutVersion: '1.0.0' });
  const index = JSON.parse(byName.get('index.json')!.data.toString());
  t.is(index.manifests.length, 1);
  t.is(index.manifests[0].annotations['io.containerd.image.name'], 'example.com/test/image:tag');
  t.is(index.manifests[0].digest, image.manifestDigest);
  t.deepEqual(index.manifests[0].platform, { architecture: 'amd64', os: 'linux' });
  for (const item of items.filter((i) => i.header.name.startsWith('blobs/sha256/') && i.header.type === 'file')) {
    t.is(sha(item.data), `sha256:${item.header.name.slice('blobs/sha256/'.length)}`, item.header.name);
  }
  const blob = (digest: string): Buffer => {
    const item = byName.get(`blobs/sha256/${digest.slice('sha256:'.length)}`);
    if (!item) throw new Error(`no blob ${digest}`);
    return item.data;
  };
  const manifestBlob = blob(image.manifestDigest);
  t.is(index.manifests[0].size, manifestBlob.length);
  const manifest = JSON.parse(manifestBlob.toString());
  t.is(manifest.config.digest, image.configDigest);
  const config = JSON.parse(blob(manifest.config.digest).toString());
  t.is(manifest.config.size, blob(manifest.config.digest).length);
  t.is(manifest.layers.length, 4);
  t.deepEqual(
    config.rootfs.diff_ids,
    manifest.layers.map((l: { digest: string }) => sha(gunzipSync(blob(l.digest)))),
    'diff_ids are the digests of the uncompressed layers',
  );
  for (const layer of manifest.layers) {
    t.is(layer.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    t.is(layer.size, blob(layer.digest).length);
  }
  t.is(config.os, 'linux');
  t.is(config.architecture, 'amd64');
});

test('the same description gives the same digests (fixed mtimes, deterministic gzip)', async (t) => {
  const [a, b] = [await busyboxTestImage(), await busyboxTestImage()];
  t.is(a.manifestDigest, b.manifestDigest);
  t.true(a.tarball.equals(b.tarball));
});

test('layer tars: whiteout and opaque markers, hard links, setuid and sticky modes, owners', async (t) => {
  const below: LayerEntry[][] = [
    [
      { kind: 'dir', path: 'd' },
      { kind: 'file', path: 'd/gone', content: 'x' },
      { kind: 'file', path: 'target', content: 'shared', mode: 0o640, uid: 3, gid: 4 },
    ],
  ];
  const layer = await buildLayer(
    [
      { kind: 'dir', path: 'd', mode: 0o1777, uid: 10, gid: 20 },
      { kind: 'whiteout', path: 'd/gone' },
      { kind: 'opaque', path: 'd' },
      { kind: 'hardlink', path: 'link', target: 'target' },
      { kind: 'file', path: 'suid', content: '#!', mode: 0o4755, uid: 1000, gid: 1001 },
      { kind: 'symlink', path: 'sym', target: '/target' },
    ],
    below,
  );
  const items = await readTar(gunzipSync(layer.blob));
  t.is(layer.diffId, sha(layer.tar));
  t.is(layer.digest, sha(layer.blob));
  const h = (name: string) => items.find((i) => i.header.name === name)?.header;
  t.like(h('d/'), { type: 'directory', mode: 0o1777, uid: 10, gid: 20 });
  t.like(h('d/.wh.gone'), { type: 'file', size: 0 });
  t.like(h('d/.wh..wh..opq'), { type: 'file', size: 0 });
  t.like(h('link'), { type: 'link', linkname: 'target', mode: 0o640, uid: 3, gid: 4 });
  t.like(h('suid'), { type: 'file', mode: 0o4755, uid: 1000, gid: 1001 });
  t.like(h('sym'), { type: 'symlink', linkname: '/target' });
  t.deepEqual(
    items.map((i) => i.header.name),
    ['d/', 'd/.wh.gone', 'd/.wh..wh..opq', 'link', 'suid', 'sym'],
  );
});

test('mergedView: whiteouts, opaque directories, replacements and hard links, as written out by hand', (t) => {
  const view = mergedView([
    [
      { kind: 'dir', path: 'a' },
      { kind: 'file', path: 'a/x', content: 'ax' },
      { kind: 'dir', path: 'a/sub' },
      { kind: 'file', path: 'a/sub/y', content: 'y' },
      { kind: 'dir', path: 'o' },
      { kind: 'file', path: 'o/old', content: 'old' },
      { kind: 'file', path: 'f', content: 'file' },
      { kind: 'dir', path: 'g' },
      { kind: 'file', path: 'g/child', content: 'c' },
      { kind: 'file', path: 't', content: 'target', mode: 0o600, uid: 5, gid: 6 },
    ],
    [
      { kind: 'whiteout', path: 'a/sub' },
      { kind: 'opaque', path: 'o' },
      { kind: 'file', path: 'o/new', content: 'new' },
      { kind: 'dir', path: 'f', mode: 0o700 },
      { kind: 'file', path: 'g', content: 'now a file' },
      { kind: 'hardlink', path: 'h', target: 't' },
      { kind: 'dir', path: 'a', mode: 0o711, uid: 1, gid: 2 },
    ],
  ]);
  t.deepEqual([...view.keys()], ['/a', '/a/x', '/f', '/g', '/h', '/o', '/o/new', '/t']);
  t.like(
    view.get('/a'),
    { type: 'dir', mode: 0o711, uid: 1, gid: 2 },
    'a directory over a directory takes the new metadata, keeps its children',
  );
  t.like(view.get('/f'), { type: 'dir', mode: 0o700 });
  t.like(view.get('/g'), { type: 'file', size: 10 });
  t.deepEqual(view.get('/h'), view.get('/t'), 'a hard link is its target');
  t.deepEqual(view.get('/t')!.links, ['/h', '/t']);
  t.like(view.get('/t'), { mode: 0o600, uid: 5, gid: 6, sha256: createHash('sha256').update('target').digest('hex') });
});

test('descriptions that cannot be right are refused', async (t) => {
  t.throws(() => mergedView([[{ kind: 'whiteout', path: 'nothing' }]]), { message: /nothing below/ });
  t.throws(() => mergedView([[{ kind: 'file', path: 'no/parent', content: '' }]]), { message: /parent/ });
  await t.throwsAsync(buildLayer([{ kind: 'hardlink', path: 'l', target: 'missing' }]), {
    message: /not a regular file/,
  });
  await t.throwsAsync(buildLayer([{ kind: 'file', path: 'zero', content: '', mode: 0 }]), { message: /mode 0/ });
  await t.throwsAsync(buildOciImage({ name: 'x:y', layers: [[{ kind: 'dir', path: '/' }]] }), {
    message: /names the root/,
  });
});
