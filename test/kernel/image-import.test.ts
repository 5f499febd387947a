// `devmapper image …` end to end in the test kernel, through the CLI as a user runs it: import
// of an OCI image-layout tarball (progress on stderr) and of a `docker save` archive of the same
// layers (stored once: the chain ids match), a second image sharing the base layer, the
// imported rootfs compared with `umoci unpack`, a blob whose digest is wrong, `image rm`
// freeing only unshared layers, `runc run` of the imported image printing what the image
// holds, `image rootfs` into a bundle that cannot take config.json leaving nothing, and an
// `image rm` a mounted layer stops keeping its image. Ends with check clean and nothing left.
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { CLI_BIN } from '../cli-process.js';
import { assertKernelTestBed } from './reference-tools.js';
import { assertNothingLeaked, mountsUnder } from './driver-helpers.js';
import { errorOf } from './cli-helpers.js';
import { useImageBed } from './image-bed.js';
import { ensureCgroup2, execute, RUNC } from './containerd-helpers.js';
import type { BuiltImage } from './oci-image.js';
import { bulkyImage, busyboxTestImage, TEST_IMAGE_NAME } from './oci-test-images.js';
import { rawTar } from './layer-fixtures.js';
import { tarEntries, treeView, umociUnpack, viewDifferences } from './layer-tree.js';

assertKernelTestBed();

const bed = useImageBed('image-import', { baseSize: '64M', loopDataSize: '512M', loopMetadataSize: '16M' });
const { cli, cliJson } = bed;
let image: BuiltImage;

const layerIds = async (): Promise<string[]> => (await cliJson<Array<{ id: string }>>('ls')).map((l) => l.id).sort();

/** A `docker save` archive (legacy layout: <n>/layer.tar, <config>.json, manifest.json) of the same layers. */
async function dockerSave(built: BuiltImage, repoTag: string): Promise<Buffer> {
  const config = readFileSync(join(bed.work(), 'umoci', 'layout', 'blobs', 'sha256', built.configDigest.slice(7))); // extracted by the first test's umoci unpack;
  const configName = `${createHash('sha256').update(config).digest('hex')}.json`;
  const entries: Parameters<typeof rawTar>[0] = [
    { header: { name: configName, type: 'file', mode: 0o644 }, data: config },
  ];
  const layers: string[] = [];
  for (const [i, layer] of built.layers.entries()) {
    entries.push({ header: { name: `${i}/`, type: 'directory', mode: 0o755 } });
    if (i === built.layers.length - 1 && i > 0) {
      // docker save links a repeated layer to its first copy; the last one here is a symlink to a copy of itself
      entries.push({ header: { name: `copy/`, type: 'directory', mode: 0o755 } });
      entries.push({ header: { name: `copy/layer.tar`, type: 'file', mode: 0o644 }, data: layer.tar });
      entries.push({ header: { name: `${i}/layer.tar`, type: 'symlink', linkname: '../copy/layer.tar' } });
    } else {
      entries.push({ header: { name: `${i}/layer.tar`, type: 'file', mode: 0o644 }, data: layer.tar });
    }
    layers.push(`${i}/layer.tar`);
  }
  const manifest = Buffer.from(JSON.stringify([{ Config: configName, RepoTags: [repoTag], Layers: layers }]));
  entries.push({ header: { name: 'manifest.json', type: 'file', mode: 0o644 }, data: manifest });
  return rawTar(entries);
}

test.serial.before(async () => {
  image = await busyboxTestImage();
  writeFileSync(join(bed.work(), 'image.tar'), image.tarball);
});

test.serial(
  'image import of an OCI layout: one layer per chain id, progress on stderr, the rootfs equals umoci unpack',
  async (t) => {
    const r = await cli('image', 'import', join(bed.work(), 'image.tar'));
    t.is(r.code, 0, r.stderr);
    t.regex(r.stderr, /layer 1\/4 sha256:[0-9a-f]{12}: applied \d+ bytes/);
    t.regex(r.stderr, /recorded \(4 layers\)/);
    t.is(r.stdout, `${TEST_IMAGE_NAME} (4 layers)\n`);
    const images = await cliJson<Array<{ ref: string; layers: Array<{ layerId: string; chainId: string }> }>>(
      'image',
      'ls',
    );
    t.deepEqual(
      images.map((i) => i.ref),
      [TEST_IMAGE_NAME],
    );
    t.is(images[0]!.layers[0]!.chainId, image.layers[0]!.diffId, 'the first chain id is the first diff_id');
    t.deepEqual(await layerIds(), images[0]!.layers.map((l) => l.layerId).sort());

    const rootfs = (await cli('image', 'rootfs', TEST_IMAGE_NAME, 'view1')).stdout.trim();
    t.true(rootfs.endsWith('/mnt/view1/rootfs'), rootfs);
    const reference = treeView(umociUnpack(join(bed.work(), 'image.tar'), '1', join(bed.work(), 'umoci')));
    t.deepEqual(viewDifferences(treeView(rootfs), reference), []);
    t.is((await cli('umount', 'view1')).code, 0);
    t.is((await cli('rm', 'view1')).code, 0);
  },
);

test.serial('a docker save archive of the same layers and an image sharing the base store nothing twice', async (t) => {
  const before = await layerIds();
  writeFileSync(join(bed.work(), 'docker.tar'), await dockerSave(image, 'example.com/docker-save:1'));
  const r = await cli('image', 'import', join(bed.work(), 'docker.tar'));
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr.match(/already present/g)?.length, 4, r.stderr);
  t.deepEqual(await layerIds(), before, 'no new layer');

  const bulky = await bulkyImage('example.com/bulky:1', 2, 256 << 10);
  writeFileSync(join(bed.work(), 'bulky.tar'), bulky.tarball);
  const b = await cli('image', 'import', join(bed.work(), 'bulky.tar'), '--name', 'bulky');
  t.is(b.code, 0, b.stderr);
  t.regex(b.stderr, /layer 1\/3 [^:]+:[0-9a-f]+: already present/, 'the busybox base is shared');
  t.is((await layerIds()).length, before.length + 2);
  t.deepEqual(
    (await cliJson<Array<{ ref: string }>>('image', 'ls')).map((i) => i.ref),
    ['bulky', 'example.com/docker-save:1', TEST_IMAGE_NAME].sort((a, b2) => a.localeCompare(b2)),
  );
});

test.serial('a layer blob whose digest is wrong is refused and leaves no layer', async (t) => {
  const bad = await bulkyImage('example.com/bad:1', 1, 64 << 10);
  const blob = bad.layers[1]!;
  const at = bad.tarball.indexOf(blob.blob);
  const tampered = Buffer.from(bad.tarball);
  tampered[at + 4] ^= 0xff; // the gzip header's MTIME: gunzip ignores it, the tar still reads, the digest does not match
  writeFileSync(join(bed.work(), 'bad.tar'), tampered);
  const before = await layerIds();
  const r = await cli('image', 'import', join(bed.work(), 'bad.tar'));
  t.is(r.code, 1);
  t.regex(r.stderr, /\[ERR_DM_IMAGE_DIGEST\]/);
  t.deepEqual(await layerIds(), before);
});

test.serial('runc run of the imported image prints what the image holds', async (t) => {
  ensureCgroup2();
  const bundle = join(bed.work(), 'bundle');
  mkdirSync(bundle, { recursive: true });
  const r = await cli('image', 'rootfs', TEST_IMAGE_NAME, 'ctr1', '--bundle', bundle);
  t.is(r.code, 0, r.stderr);
  const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
    process: { args: string[] };
    root: { path: string };
  };
  t.is(spec.root.path, r.stdout.trim());
  t.deepEqual(spec.process.args, ['/bin/sh'], 'the image config Cmd');
  spec.process.args = [
    '/bin/sh',
    '-c',
    'cat /data/keep.txt /opaque/new1; ls /opaque; id -u; stat -c %a /modes/setuid; echo written > /tmp/from-container',
  ];
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
  const run = await execute(
    RUNC,
    ['--root', join(bed.work(), 'runc-state'), 'run', '--bundle', bundle, 'devmapper-ctr1'],
    120_000,
  );
  await execute(RUNC, ['--root', join(bed.work(), 'runc-state'), 'delete', '--force', 'devmapper-ctr1']);
  t.is(run.code, 0, run.stderr);
  t.is(run.stdout, 'layer 2 version, longer than the first\nthe only file left in opaque\nnew1\nsub\n0\n4755\n');
  t.is(
    readFileSync(join(spec.root.path, 'tmp', 'from-container'), 'utf8'),
    'written\n',
    'the write went to the container layer',
  );
  // devmapper diff: the container's changes as a layer tar on stdout.
  const diff = execFileSync(process.execPath, [CLI_BIN, '--home', bed.home(), 'diff', 'ctr1'], { maxBuffer: 64 << 20 });
  const written = (await tarEntries(diff)).find((e) => e.name === 'tmp/from-container');
  t.is(
    written?.sha256,
    createHash('sha256').update('written\n').digest('hex'),
    "devmapper diff carries the container's write",
  );
  t.is((await cli('umount', 'ctr1')).code, 0);
});

test.serial('image rootfs whose --bundle cannot take config.json leaves no layer and no mount', async (t) => {
  const layers = await layerIds();
  const mounts = mountsUnder(join(bed.home(), 'mnt'));
  const missing = await cli('image', 'rootfs', TEST_IMAGE_NAME, 'ctr-nobundle', '--bundle', join(bed.work(), 'nope'));
  t.is(missing.code, 2, `a usage error before the home is opened: ${missing.stderr}`);
  t.regex(missing.stderr, /--bundle .*nope: not a directory/);
  const blocked = join(bed.work(), 'blocked');
  mkdirSync(join(blocked, 'config.json'), { recursive: true }); // a directory where the file goes
  const r = await cli('--json', 'image', 'rootfs', TEST_IMAGE_NAME, 'ctr-blocked', '--bundle', blocked);
  t.is(r.code, 1, r.stderr);
  t.is(errorOf(r).code, 'EISDIR', r.stderr);
  t.deepEqual(await layerIds(), layers, 'no container layer left behind');
  t.deepEqual(mountsUnder(join(bed.home(), 'mnt')), mounts, 'and nothing left mounted');
});

test.serial('image rm of an image whose top layer is mounted fails and keeps the image', async (t) => {
  const bulky = (await cliJson<Array<{ ref: string; layers: Array<{ layerId: string }> }>>('image', 'ls')).find(
    (i) => i.ref === 'bulky',
  )!;
  const top = bulky.layers.at(-1)!.layerId;
  t.is((await cli('mount', top)).code, 0);
  const r = await cli('--json', 'image', 'rm', 'bulky');
  t.is(r.code, 1, r.stderr);
  t.is(errorOf(r).code, 'EBUSY', r.stderr);
  const after = (await cliJson<Array<{ ref: string }>>('image', 'ls')).map((i) => i.ref);
  t.true(after.includes('bulky'), `the image is still recorded: ${after.join(', ')}`);
  t.is((await cli('umount', top)).code, 0);
  // A layer below the top mounted: nothing goes, not even the layers above it.
  const below = bulky.layers.at(-2)!.layerId;
  const layersBefore = await layerIds();
  t.is((await cli('mount', below)).code, 0);
  const lower = await cli('--json', 'image', 'rm', 'bulky');
  t.is(lower.code, 1, lower.stderr);
  t.is(errorOf(lower).code, 'EBUSY', lower.stderr);
  t.regex(lower.stderr, new RegExp(`layer ${below}.*mounted: nothing was removed`));
  t.true(
    (await cliJson<Array<{ ref: string }>>('image', 'ls')).some((i) => i.ref === 'bulky'),
    'still recorded',
  );
  t.deepEqual(await layerIds(), layersBefore, 'every layer is still there');
  t.is((await cli('umount', below)).code, 0);
});

test.serial('image rm frees only what nothing else uses; check is clean; nothing is left', async (t) => {
  const images = await cliJson<Array<{ ref: string; layers: Array<{ layerId: string }> }>>('image', 'ls');
  const top = images.find((i) => i.ref === TEST_IMAGE_NAME)!.layers;
  let r = await cliJson<{ removedLayers: string[] }>('image', 'rm', TEST_IMAGE_NAME);
  t.deepEqual(r.removedLayers, [], 'the docker-save image uses the same layers');
  r = await cliJson<{ removedLayers: string[] }>('image', 'rm', 'example.com/docker-save:1');
  t.deepEqual(r.removedLayers, [], 'ctr1 still stands on the top layer');
  t.is((await cli('rm', 'ctr1')).code, 0);
  // Nothing references the top layers now but no image record either: removing bulky frees its own two.
  r = await cliJson<{ removedLayers: string[] }>('image', 'rm', 'bulky');
  t.is(r.removedLayers.length, 2, 'bulky frees its own two layers; the base stays under the orphaned chain');
  for (const { layerId } of [...top].reverse()) t.is((await cli('rm', layerId)).code, 0);
  t.deepEqual(await layerIds(), []);
  t.is((await cli('image', 'rm', 'bulky')).code, 1, 'an unknown image is an error');
  const check = await cli('check');
  t.is(check.code, 0, check.stdout + check.stderr);
  t.is((await cli('cleanup')).code, 0);
  assertNothingLeaked(t);
});
