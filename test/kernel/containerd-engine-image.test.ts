// End to end with the real containerd (Debian's 1.6) in the test kernel, the image's life: this
// project's snapshotter served by `devmapper serve containerd` as the proxy plugin `dmthin`,
// driven only through `ctr` — images import, run, snapshots prepare/commit/view/... and images
// rm — and checked from outside: what a container sees of a multi-layer image (compared entry by
// entry with the view the image builder predicts), what the devmapper CLI lists and checks once
// the server is stopped after containerd's GC. The test bed is containerd-engine-helpers.ts.
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './reference-tools.js';
import { plugins } from './containerd-helpers.js';
import {
  assertHomeEmpty,
  chainIds,
  importImage,
  parsePrintedMount,
  removeImageAndCollect,
  runIn,
  seconds,
  snapshotRows,
  snapshots,
  SNAPSHOTTER,
  useEngineBed,
  w,
  withServerStopped,
  type PrintedMount,
} from './containerd-engine-helpers.js';
import type { MergedView, ViewEntry } from './oci-merged-view.js';
import { RUNTIME_MOUNT_POINTS } from './oci-test-images.js';

useEngineBed({ leakCheckHook: true });

/** The shell script a container runs to print its whole root filesystem (busybox only). */
const LIST_ROOT = [
  "find / -xdev -exec stat -c '%n|%F|%a|%u|%g|%i|%h|%s' {} +",
  'echo ==hashes',
  'find / -xdev -type f -exec sha256sum {} +',
  'echo ==links',
  "find / -xdev -type l -exec stat -c '%N' {} +",
  'echo ==mounts',
  'cat /proc/self/mounts',
].join('; ');

interface Listing {
  view: MergedView;
  mounts: string[];
}

function parseListing(out: string): Listing {
  const [statPart = '', rest1 = ''] = out.split('==hashes\n');
  const [hashPart = '', rest2 = ''] = rest1.split('==links\n');
  const [linkPart = '', mountPart = ''] = rest2.split('==mounts\n');
  const view: MergedView = new Map();
  const inodes = new Map<string, string>();
  for (const line of statPart.split('\n').filter(Boolean)) {
    const cols = line.split('|');
    if (cols.length !== 8) throw new Error(`unparsable stat line ${JSON.stringify(line)}`);
    const [path, kind, mode, uid, gid, inode, , size] = cols as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    if (path === '/') continue;
    const type = /^regular/.test(kind)
      ? 'file'
      : kind === 'directory'
        ? 'dir'
        : kind === 'symbolic link'
          ? 'symlink'
          : `other: ${kind}`;
    const entry: ViewEntry = {
      type: type as ViewEntry['type'],
      mode: parseInt(mode, 8),
      uid: Number(uid),
      gid: Number(gid),
    };
    if (type === 'file') {
      entry.size = Number(size);
      inodes.set(path, inode);
    }
    view.set(path, entry);
  }
  for (const line of hashPart.split('\n').filter(Boolean)) {
    const match = /^([0-9a-f]{64})\s+(.*)$/.exec(line);
    if (!match) throw new Error(`unparsable sha256sum line ${JSON.stringify(line)}`);
    const entry = view.get(match[2]!);
    if (entry) entry.sha256 = match[1];
  }
  for (const line of linkPart.split('\n').filter(Boolean)) {
    const match = /^'(.*)' -> '(.*)'$/.exec(line);
    if (!match) throw new Error(`unparsable symlink line ${JSON.stringify(line)}`);
    const entry = view.get(match[1]!);
    if (entry) entry.target = match[2];
  }
  for (const [path, inode] of inodes) {
    view.get(path)!.links = [...inodes]
      .filter(([, other]) => other === inode)
      .map(([p]) => p)
      .sort();
  }
  return { view, mounts: mountPart.split('\n').filter(Boolean) };
}

/** Entry by entry: every path of the expected view with the same metadata, nothing extra (runtime mount points aside). */
function compareViews(t: ExecutionContext, actual: MergedView, expected: MergedView, what: string): void {
  const runtime = new Set<string>(RUNTIME_MOUNT_POINTS);
  for (const point of runtime)
    t.true(actual.has(point), `${what}: ${point} (a mount point the image provides) is there`);
  const paths = [...new Set([...expected.keys(), ...actual.keys()])].filter((p) => !runtime.has(p)).sort();
  let differences = 0;
  for (const path of paths) {
    const ok = t.deepEqual(actual.get(path), expected.get(path), `${what}: ${path}`);
    if (!ok) differences++;
  }
  t.log(`${what}: ${paths.length} paths compared, ${differences} differ`);
  t.true(expected.size > 40, 'the expected view is not trivially small');
}

test.serial('containerd lists the proxy snapshotter as ok', async (t) => {
  const rows = await plugins(w().containerd);
  const row = rows.find((r) => r.type === 'io.containerd.snapshotter.v1' && r.id === SNAPSHOTTER);
  t.truthy(
    row,
    `ctr plugins ls has io.containerd.snapshotter.v1 ${SNAPSHOTTER}: ${JSON.stringify(rows.filter((r) => r.type.includes('snapshotter')))}`,
  );
  t.is(row?.status, 'ok');
});

test.serial(
  'ctr images import unpacks the four-layer image as a chain of committed snapshots named by chain id',
  async (t) => {
    t.timeout(360_000);
    const { image, imageTar } = w();
    const started = Date.now();
    const out = await importImage(imageTar);
    t.log(`import: ${seconds(started)}`);
    t.regex(out, /unpacking .*done/);
    const images = await w().containerd.ctr(['images', 'ls', '-q']);
    t.true(images.split('\n').includes(image.name), `ctr images ls -q lists ${image.name}: ${images}`);
    const rows = await snapshotRows();
    const chain = chainIds(image);
    t.deepEqual(
      rows.map((r) => r.key).sort(),
      [...chain].sort(),
      'one committed snapshot per layer, named by chain id',
    );
    for (const [i, id] of chain.entries()) {
      const row = rows.find((r) => r.key === id);
      t.is(row?.kind, 'Committed', id);
      t.is(row?.parent ?? '', i === 0 ? '' : chain[i - 1]!, `parent of ${id}`);
    }
  },
);

test.serial('a container of the image sees the merged view of its layers, entry by entry', async (t) => {
  t.timeout(240_000);
  const started = Date.now();
  const out = await runIn(w().image.name, LIST_ROOT);
  t.log(`ctr run: ${seconds(started)}`);
  const listing = parseListing(out);
  compareViews(t, listing.view, w().image.view, 'container rootfs');
  const root = listing.mounts.find((line) => line.split(' ')[1] === '/');
  t.regex(
    root ?? '',
    /^\/dev\/(mapper\/devmapper-|dm-)\S* \/ ext4 /,
    `the container's / is a thin device with ext4: ${root}`,
  );
});

test.serial(
  'what a container writes does not reach the image: a second container sees the image as it was',
  async (t) => {
    t.timeout(300_000);
    const name = w().image.name;
    const first = await runIn(
      name,
      'echo container-1 > /data/new.txt && echo changed > /data/keep.txt && rm /etc/group && mkdir /made && cat /data/new.txt /data/keep.txt && ls /',
    );
    t.regex(first, /container-1\nchanged\n/, 'the first container sees its own writes');
    t.regex(first, /\bmade\b/);
    const second = await runIn(name, 'ls /data; echo ==; cat /data/keep.txt; echo ==; ls /etc; echo ==; ls /');
    const [data = '', keep = '', etc = '', root = ''] = second.split('==\n');
    t.deepEqual(data.split('\n').filter(Boolean).sort(), ['keep.txt', 'removed.txt', 'with space.txt']);
    t.is(keep, readExpected('/data/keep.txt'), 'keep.txt as the image has it');
    t.deepEqual(etc.split('\n').filter(Boolean).sort(), ['group', 'passwd']);
    t.false(root.split('\n').includes('made'), 'no /made');
    t.deepEqual(
      (await snapshotRows()).filter((r) => r.kind !== 'Committed'),
      [],
      "ctr run --rm removed the containers' active snapshots",
    );
  },
);

/** The content of a file of the image, as the image builder says the layers leave it. */
function readExpected(path: string): string {
  const content = w().image.contents.get(path);
  if (content === undefined) throw new Error(`${path} is no file of the image`);
  return content.toString('utf8');
}

function mountPrinted(m: PrintedMount, target: string): void {
  run('mount', ['-t', m.type, ...(m.options.length ? ['-o', m.options.join(',')] : []), m.source, target]);
}

test.serial('ctr snapshots: prepare, mounts, commit, view, usage, label, info, tree, ls, rm', async (t) => {
  t.timeout(300_000);
  try {
    await snapshotCommands(t);
  } finally {
    // A failure above must not leave snapshots that keep the image's alive for the next tests.
    for (const key of ['work-view', 'work-active', 'work-committed']) {
      await w().containerd.ctrResult(['snapshots', '--snapshotter', SNAPSHOTTER, 'rm', key]);
    }
  }
});

async function snapshotCommands(t: ExecutionContext): Promise<void> {
  const { work, image } = w();
  const top = chainIds(image).at(-1)!;
  const target = mkdtempSync(join(work, 'mnt-'));
  const prepared = parsePrintedMount(await snapshots(['prepare', '--mounts', '--target', target, 'work-active', top]));
  t.is(prepared.type, 'ext4');
  t.false(prepared.options.includes('ro'));
  const again = parsePrintedMount(await snapshots(['mounts', target, 'work-active']));
  t.deepEqual(again, prepared, 'ctr snapshots mounts prints the same mount');
  mountPrinted(prepared, target);
  try {
    t.is(
      readFileSync(join(target, 'opaque/new1'), 'utf8'),
      'the only file left in opaque\n',
      "the prepared snapshot has its parent's files",
    );
    writeFileSync(join(target, 'added.bin'), Buffer.alloc(3 << 20, 0x5a));
    writeFileSync(join(target, 'note.txt'), 'written through ctr snapshots prepare\n');
  } finally {
    run('umount', [target]);
  }
  const active = (await snapshotRows()).find((r) => r.key === 'work-active');
  t.deepEqual(active, { key: 'work-active', parent: top, kind: 'Active' });

  await snapshots(['commit', 'work-committed', 'work-active']);
  let rows = await snapshotRows();
  t.false(
    rows.some((r) => r.key === 'work-active'),
    'commit consumed the active key',
  );
  t.deepEqual(
    rows.find((r) => r.key === 'work-committed'),
    { key: 'work-committed', parent: top, kind: 'Committed' },
  );

  const viewed = parsePrintedMount(
    await snapshots(['view', '--mounts', '--target', target, 'work-view', 'work-committed']),
  );
  t.true(viewed.options.includes('ro'), `a view mounts read-only: ${viewed.options.join(',')}`);
  mountPrinted(viewed, target);
  try {
    t.is(
      readFileSync(join(target, 'note.txt'), 'utf8'),
      'written through ctr snapshots prepare\n',
      'the view has the committed data',
    );
    t.is(readFileSync(join(target, 'added.bin')).length, 3 << 20);
    const writeError = t.throws(() => writeFileSync(join(target, 'nope'), 'x'));
    t.regex(String((writeError as NodeJS.ErrnoException | undefined)?.code), /EROFS/, 'the view is read-only');
  } finally {
    run('umount', [target]);
  }
  t.deepEqual(
    (await snapshotRows()).find((r) => r.key === 'work-view'),
    { key: 'work-view', parent: 'work-committed', kind: 'View' },
  );

  const usageOut = await snapshots(['usage', 'work-committed']);
  const usageLine = usageOut.split('\n').find((line) => line.startsWith('work-committed'));
  const usageMatch = /^work-committed\s+([0-9.]+)\s*([KMGT]?i?B)\s+([0-9]+)/.exec(usageLine ?? '');
  t.truthy(usageMatch, `ctr snapshots usage: ${usageOut}`);
  if (usageMatch) {
    const factor = { B: 1, KiB: 1024, MiB: 1 << 20, GiB: 1 << 30, TiB: 2 ** 40 }[usageMatch[2]!] ?? NaN;
    const bytes = Number(usageMatch[1]) * factor;
    t.true(bytes >= 3 << 20, `usage of work-committed counts the 3 MiB written (${usageMatch[1]} ${usageMatch[2]})`);
    t.true(
      bytes < 200 << 20,
      `usage of work-committed is its own data, not the whole device (${usageMatch[1]} ${usageMatch[2]})`,
    );
    // The server does not count inodes (a block device's usage is its mapped bytes; containerd's own devmapper snapshotter does the same).
    t.regex(usageMatch[3]!, /^[0-9]+$/, 'an inode count is reported');
    t.log(`usage of work-committed: ${usageMatch[1]} ${usageMatch[2]}, ${usageMatch[3]} inodes`);
  }

  await snapshots(['label', 'work-committed', 'devmapper.test/colour=blue', 'devmapper.test/size=large']);
  await snapshots(['label', 'work-committed', 'devmapper.test/size=']); // an empty value removes the label
  const info = JSON.parse(await snapshots(['info', 'work-committed'])) as {
    Kind: string;
    Name: string;
    Parent: string;
    Labels?: Record<string, string>;
  };
  t.is(info.Name, 'work-committed');
  t.is(info.Parent, top);
  t.is(info.Kind.toLowerCase(), 'committed', `info's kind: ${info.Kind}`);
  t.is(info.Labels?.['devmapper.test/colour'], 'blue');
  t.false('devmapper.test/size' in (info.Labels ?? {}), `the emptied label is gone: ${JSON.stringify(info.Labels)}`);

  const tree = (await snapshots(['tree'])).split('\n');
  const indent = (name: string) => {
    const line = tree.find((l) => l.replace(/^[\s\\_]+/, '') === name);
    return line === undefined ? -1 : line.length - line.replace(/^[\s\\_]+/, '').length;
  };
  t.true(
    indent(top) >= 0 && indent('work-committed') > indent(top) && indent('work-view') > indent('work-committed'),
    `ctr snapshots tree nests top > work-committed > work-view:\n${tree.join('\n')}`,
  );

  const busy = await w().containerd.ctrResult(['snapshots', '--snapshotter', SNAPSHOTTER, 'rm', 'work-committed']);
  t.not(busy.code, 0, 'a snapshot with a child cannot be removed');
  await snapshots(['rm', 'work-view']);
  await snapshots(['rm', 'work-committed']);
  rows = await snapshotRows();
  t.false(
    rows.some((r) => r.key.startsWith('work-')),
    `every work- snapshot is gone: ${JSON.stringify(rows)}`,
  );
  t.deepEqual(rows.map((r) => r.key).sort(), [...chainIds(image)].sort(), "the image's snapshots are untouched");
}

test.serial(
  "removing the image lets containerd's GC remove every snapshot: no layer, device or record remains, check is clean",
  async (t) => {
    t.timeout(300_000);
    await removeImageAndCollect(t, w().image.name);
    await withServerStopped(t, () => assertHomeEmpty(t, 'after GC'));
  },
);
