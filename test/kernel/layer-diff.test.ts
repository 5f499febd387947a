// The Driver's naive diff in the test kernel: the busybox test image (whiteouts across three
// layers, an opaque directory, file↔directory replacement, hard links to lower files, symlinks,
// modes, owners) plus a layer of devices, a fifo, xattrs and odd names, applied layer by layer
// with applyDiff; the top layer's merged view compared entry by entry with `umoci unpack` of
// the same tarball; diff() of every layer against the tar it came from; changes() and
// diffSize() against what each tar says; zstd and plain tars; and nothing left behind.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Driver } from '../../src/driver/driver.js';
import { assertKernelTestBed } from './reference-tools.js';
import { assertNothingLeaked, eventually, newHome, removeHomes, SMALL, show } from './driver-helpers.js';
import { buildOciImage, type BuiltImage } from './oci-image.js';
import { busyboxBaseLayer, featureLayers } from './oci-test-images.js';
import { specialLayer } from './layer-fixtures.js';
import { tarEntries, treeView, umociUnpack, viewDifferences, type TarEntry, type TreeEntry } from './layer-tree.js';

assertKernelTestBed();

const NAME = 'example.com/devmapper/layers:1';
let driver: Driver;
let image: BuiltImage;
let work: string;
const ids: string[] = [];

const collect = async (stream: AsyncIterable<unknown>): Promise<Buffer> => {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
};

async function viewOf(id: string): Promise<Map<string, TreeEntry>> {
  const rootfs = await driver.get(id);
  try {
    return treeView(rootfs);
  } finally {
    await driver.put(id);
  }
}

test.before(async () => {
  work = mkdtempSync(join(tmpdir(), 'layer-diff-'));
  driver = await Driver.init({ home: newHome('layers'), ...SMALL });
  image = await buildOciImage({
    name: NAME,
    layers: [busyboxBaseLayer(), ...featureLayers()],
    rawLayers: [await specialLayer()],
  });
  writeFileSync(join(work, 'image.tar'), image.tarball);
  for (let i = 0; i < image.layers.length; i++) ids.push(`layer${i}`);
});

test.after.always(async () => {
  await driver?.cleanup().catch(() => undefined); // the last test already cleaned up
  rmSync(work, { recursive: true, force: true });
  removeHomes();
});

test.serial(
  'applyDiff of each layer; the top layer matches umoci unpack of the same image entry by entry',
  async (t) => {
    for (const [i, layer] of image.layers.entries()) {
      const bytes = await driver.applyDiff(ids[i]!, i === 0 ? null : ids[i - 1]!, Readable.from([layer.blob]));
      const files = (await tarEntries(layer.tar)).filter((e) => e.type === 'file').reduce((sum, e) => sum + e.size, 0);
      t.is(bytes, BigInt(files), `layer ${i}: bytes written are the tar's file contents`);
    }
    const actual = await viewOf(ids.at(-1)!);
    const reference = treeView(umociUnpack(join(work, 'image.tar'), '1', join(work, 'umoci')));
    // umoci 0.4.7 drops user.* xattrs when it unpacks: those are checked against the tar instead.
    const userXattrs = new Map<string, Record<string, string>>();
    for (const [path, entry] of actual) {
      const user = Object.entries(entry.xattrs ?? {}).filter(([name]) => name.startsWith('user.'));
      if (user.length === 0) continue;
      userXattrs.set(path, Object.fromEntries(user));
      const rest = Object.entries(entry.xattrs!).filter(([name]) => !name.startsWith('user.'));
      if (rest.length > 0) entry.xattrs = Object.fromEntries(rest);
      else delete entry.xattrs;
    }
    t.deepEqual(viewDifferences(actual, reference), []);
    t.deepEqual(
      [...userXattrs],
      [
        ['/special', { 'user.dir': Buffer.from('a directory attribute').toString('hex') }],
        ['/special/capable', { 'user.comment': Buffer.from('hello').toString('hex') }],
      ],
    );
    t.true(reference.size > 60, `${reference.size} entries compared`);
    // The entries the reference must have, so agreement is not agreement on nothing.
    t.is(reference.get('/special/null')?.type, 'char');
    t.is(reference.get('/special/fifo')?.type, 'fifo');
    t.deepEqual(reference.get('/special/capable')?.xattrs, {
      'security.capability': '0100000280200000000000000000000000000000',
    });
    t.is(reference.get('/modes/setuid')?.mode, 0o4755);
    t.is(reference.get('/special/mode0')?.mode, 0);
    t.deepEqual(reference.get('/links/target')?.links, ['/links/hard-to-lower']);
    t.false(reference.has('/data/removed.txt') && reference.get('/data/removed.txt')?.mode !== 0o664);
    t.false(reference.has('/wholedir'));
    t.false(reference.has('/opaque/old1'));
  },
);

/** A tar's entries, comparable across writers: a hard link to a file of the same tar becomes a copy of that file's entry. */
function normalized(entries: TarEntry[]): TarEntry[] {
  const files = new Map(entries.filter((e) => e.type === 'file').map((e) => [e.name, e]));
  return entries
    .map((e) => (e.type === 'link' && files.has(e.linkname!) ? { ...files.get(e.linkname!)!, name: e.name } : e))
    .map((e) => (e.type === 'link' ? { ...e, size: 0 } : e))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

test.serial('diff of every layer reproduces the entries of the tar it was applied from', async (t) => {
  for (const [i, layer] of image.layers.entries()) {
    const tarball = await collect(await driver.diff(ids[i]!, i === 0 ? null : ids[i - 1]!));
    const got = normalized(await tarEntries(tarball));
    const want = normalized(await tarEntries(layer.tar));
    t.deepEqual(got, want, `layer ${i}`);
  }
  // The mounts go when each stream has closed, just after its last byte was read.
  t.true(await eventually(async () => (await driver.list()).every((l) => !l.mounted)), 'diff released its mounts');
});

/** What changes() must report for a layer, from its tar and the parent's tree. */
function expectedChanges(entries: TarEntry[], lower: Map<string, TreeEntry>): Map<string, string> {
  const out = new Map<string, string>();
  const present = (p: string): boolean => lower.has(p);
  const mark = (p: string): void => {
    if (!out.has(p)) out.set(p, present(p) ? 'modify' : 'add');
  };
  for (const e of entries) {
    const path = `/${e.name}`;
    const parts = path.split('/').slice(1);
    for (let k = 1; k < parts.length; k++) mark(`/${parts.slice(0, k).join('/')}`);
    const base = parts.at(-1)!;
    const dir = path.slice(0, path.length - base.length - 1);
    if (base === '.wh..wh..opq') {
      out.set(dir, 'modify');
      for (const p of lower.keys())
        if (p.startsWith(`${dir}/`) && !p.slice(dir.length + 1).includes('/')) out.set(p, 'delete');
    } else if (base.startsWith('.wh.')) {
      out.set(`${dir}/${base.slice(4)}`, 'delete');
    } else {
      out.set(path, present(path) ? 'modify' : 'add');
    }
  }
  // A path re-added after an opaque marker removed it is a modify; nothing under a deleted or replaced path is listed.
  for (const [p, kind] of [...out]) {
    if ([...out.keys()].some((q) => q !== p && p.startsWith(`${q}/`) && out.get(q) === 'delete')) out.delete(p);
    else if (kind === 'delete' && entries.some((e) => `/${e.name}` === p)) out.set(p, 'modify');
  }
  return out;
}

test.serial('changes and diffSize of every layer agree with its tar', async (t) => {
  let lower = new Map<string, TreeEntry>();
  for (const [i, layer] of image.layers.entries()) {
    const parent = i === 0 ? null : ids[i - 1]!;
    const entries = await tarEntries(layer.tar);
    const got = new Map((await driver.changes(ids[i]!, parent)).map((c) => [c.path, c.kind]));
    t.deepEqual([...got].sort(), [...expectedChanges(entries, lower)].sort(), `layer ${i}`);
    // diffSize: each regular file's inode once (a hard link to a lower file counts that file).
    const upper = await viewOf(ids[i]!);
    const counted = new Set<string>();
    let size = 0;
    for (const e of entries) {
      if ((e.type !== 'file' && e.type !== 'link') || e.name.split('/').at(-1)!.startsWith('.wh.')) continue;
      const entry = upper.get(`/${e.name}`)!;
      const inode = [`/${e.name}`, ...(entry.links ?? [])].sort()[0]!;
      if (counted.has(inode)) continue;
      counted.add(inode);
      size += entry.size ?? 0;
    }
    t.is(await driver.diffSize(ids[i]!, parent), BigInt(size), `layer ${i}`);
    lower = upper;
  }
});

test.serial('zstd and plain layer tars apply like gzip ones', async (t) => {
  const layer = image.layers[1]!;
  const zstd = execFileSync('zstd', ['-q', '-c'], { input: layer.tar });
  await driver.applyDiff('zstd1', ids[0]!, Readable.from([zstd]));
  await driver.applyDiff('plain1', ids[0]!, Readable.from([layer.tar]));
  const reference = await viewOf(ids[1]!);
  t.deepEqual(viewDifferences(await viewOf('zstd1'), reference), []);
  t.deepEqual(viewDifferences(await viewOf('plain1'), reference), []);
  await driver.remove('zstd1');
  await driver.remove('plain1');
});

test.serial('everything removed: check is clean and nothing is left', async (t) => {
  for (const id of [...ids].reverse()) await driver.remove(id);
  const report = await driver.check();
  t.true(report.clean, show(report));
  await driver.cleanup();
  assertNothingLeaked(t);
});
