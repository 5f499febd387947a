// End to end with the real containerd (Debian's 1.6) in the test kernel: this project's
// snapshotter served by `devmapper serve containerd` as a child process, registered as the
// proxy plugin `dmthin`, driven only through `ctr` (images import, run, snapshots ...) and
// checked from outside: what a container sees of a multi-layer image (compared entry by entry
// with the view the image builder predicts), what the devmapper CLI lists and checks once the
// server is stopped, and the kernel's dm devices, loop devices and mounts.
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertKernelTestBed, run } from './reference-tools.js';
import { dmNames, eventually, loopLines, mountsUnder, newHome, removeHomes, sleep } from './driver-helpers.js';
import {
  assertContainerdTools,
  cliJson,
  initHome,
  killAllServers,
  NAMESPACE,
  plugins,
  runCli,
  shimPids,
  startContainerd,
  startServer,
  stopAllContainerd,
  stopServer,
  type Containerd,
  type Server,
} from './containerd-helpers.js';
import {
  bulkyImage,
  busyboxTestImage,
  RUNTIME_MOUNT_POINTS,
  type BuiltImage,
  type MergedView,
  type ViewEntry,
} from './oci-image.js';

assertKernelTestBed();
assertContainerdTools();

const SNAPSHOTTER = 'dmthin';

interface World {
  home: string;
  socket: string;
  server: Server;
  containerd: Containerd;
  image: BuiltImage;
  imageTar: string;
  work: string;
  dmBefore: string[];
  loopsBefore: string[];
}

let world: World | undefined;
let setupError: Error | undefined;

function w(): World {
  if (!world) throw new Error(`the containerd test bed did not come up: ${setupError?.message ?? 'unknown reason'}`);
  return world;
}

const seconds = (since: number): string => `${((Date.now() - since) / 1000).toFixed(1)} s`;

test.before(async () => {
  try {
    const dmBefore = dmNames();
    const loopsBefore = loopLines();
    const home = newHome('engine');
    const work = mkdtempSync(join(tmpdir(), 'engine-work-'));
    const socket = join(work, 'dmthin.sock');
    const image = await busyboxTestImage();
    const imageTar = join(work, 'image.tar');
    writeFileSync(imageTar, image.tarball);
    await initHome(home);
    const server = await startServer(home, socket, ['--log-level', 'debug']);
    const containerd = await startContainerd({ proxies: { [SNAPSHOTTER]: socket } });
    world = { home, socket, server, containerd, image, imageTar, work, dmBefore, loopsBefore };
  } catch (error) {
    setupError = error as Error;
  }
});

test.after.always(async () => {
  if (world) {
    await stopAllContainerd();
    await killAllServers();
    await runCli(['--home', world.home, 'cleanup']);
    rmSync(world.work, { recursive: true, force: true });
  } else {
    await stopAllContainerd();
    await killAllServers();
  }
  removeHomes();
});

/** ctr with the snapshotter's flag where ctr wants it. */
const snapshots = (args: string[]): Promise<string> =>
  w().containerd.ctr(['snapshots', '--snapshotter', SNAPSHOTTER, ...args]);

interface SnapshotRow {
  key: string;
  parent: string;
  kind: string;
}

async function snapshotRows(): Promise<SnapshotRow[]> {
  const out = await snapshots(['ls']);
  return out
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length >= 2 && cols[0] !== '')
    .map((cols) =>
      cols.length >= 3
        ? { key: cols[0]!, parent: cols[1]!, kind: cols[2]! }
        : { key: cols[0]!, parent: '', kind: cols[1]! },
    );
}

/** The image's chain ids (containerd names a layer's committed snapshot by its chain id). */
function chainIds(image: BuiltImage): string[] {
  const ids: string[] = [];
  for (const layer of image.layers) {
    const previous = ids[ids.length - 1];
    ids.push(
      previous === undefined
        ? layer.diffId
        : `sha256:${createHash('sha256').update(`${previous} ${layer.diffId}`).digest('hex')}`,
    );
  }
  return ids;
}

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

let runCounter = 0;

/** `ctr run --rm --snapshotter dmthin REF ID sh -c SCRIPT`, its stdout. */
async function runIn(image: string, script: string, timeoutMs = 180_000): Promise<string> {
  const id = `engine-${process.pid}-${++runCounter}`;
  return w().containerd.ctr(['run', '--rm', '--snapshotter', SNAPSHOTTER, image, id, 'sh', '-c', script], timeoutMs);
}

async function importImage(tarFile: string): Promise<string> {
  return w().containerd.ctr(['images', 'import', '--snapshotter', SNAPSHOTTER, tarFile], 300_000);
}

let probeCounter = 0;

/**
 * Whether containerd's proxy connection reaches the server: a Prepare, which only the server can
 * answer (`ctr snapshots ls` of an empty store never leaves containerd). After a restart
 * containerd redials with backoff, and calls fail with Unavailable until it has.
 */
async function reachesServer(): Promise<boolean> {
  const key = `ready-probe-${++probeCounter}`;
  const prepared = await w().containerd.ctrResult(['snapshots', '--snapshotter', SNAPSHOTTER, 'prepare', key]);
  if (prepared.code !== 0) return false;
  await snapshots(['rm', key]);
  return true;
}

/** Stops the server (SIGTERM), runs `body` with the home free for the CLI, starts the server again. */
async function withServerStopped<T>(t: ExecutionContext, body: () => Promise<T>): Promise<T> {
  const world = w();
  const code = await stopServer(world.server);
  t.is(code, 0, `devmapper serve exits 0 on SIGTERM\n${world.server.output().slice(-2000)}`);
  try {
    return await body();
  } finally {
    world.server = await startServer(world.home, world.socket, ['--log-level', 'debug']);
    t.true(await eventually(reachesServer, 30_000, 500), 'containerd reaches the restarted server');
  }
}

interface LayerRow {
  id: string;
  parent: string | null;
  meta?: Record<string, unknown>;
}

interface CheckReport {
  clean: boolean;
  [key: string]: unknown;
}

async function checkReport(home: string): Promise<CheckReport> {
  const result = await runCli(['--home', home, 'check', '--json']);
  if (result.code !== 0 && result.code !== 3)
    throw new Error(`devmapper check --json failed (${result.code}): ${result.stderr}`);
  return JSON.parse(result.stdout) as CheckReport;
}

/** The dm devices of this home: devmapper-<dev>-<inode>-…, with the pool's name. */
function homeDmNames(home: string): { pool: string; others: string[] } {
  const inode = run('stat', ['-c', '%i', home]).trim();
  const mine = dmNames().filter((name) => new RegExp(`^devmapper-[0-9]+:[0-9]+-${inode}-`).test(name));
  return {
    pool: mine.find((name) => name.endsWith('-pool')) ?? '',
    others: mine.filter((name) => !name.endsWith('-pool')),
  };
}

const ctrdLayers = (rows: LayerRow[]): LayerRow[] => rows.filter((row) => /^ctrd-[0-9]+$/.test(row.id));

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

interface PrintedMount {
  type: string;
  source: string;
  options: string[];
}

/** `ctr snapshots prepare|view|mounts ... --mounts` prints `mount -t TYPE SOURCE TARGET -o OPTIONS`. */
function parsePrintedMount(out: string): PrintedMount {
  const match = /^mount -t (\S+) (\S+) (\S+) -o ?(.*)$/m.exec(out);
  if (!match) throw new Error(`no mount command in ${JSON.stringify(out)}`);
  return { type: match[1]!, source: match[2]!, options: match[4]!.split(',').filter(Boolean) };
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

/** Removes the image (GC runs with --sync) and waits for the snapshotter to be empty. */
async function removeImageAndCollect(t: ExecutionContext, name: string): Promise<void> {
  await w().containerd.ctr(['images', 'rm', '--sync', name]);
  const empty = await eventually(async () => (await snapshotRows()).length === 0, 60_000, 500);
  t.true(
    empty,
    `containerd's GC removed every snapshot: ${JSON.stringify(await snapshotRows())}\n${w().containerd.logTail(2000)}`,
  );
}

/** With the server stopped: no containerd layer is left, only the pool is active, check is clean. */
async function assertHomeEmpty(t: ExecutionContext, what: string): Promise<void> {
  const { home } = w();
  const rows = await cliJson<LayerRow[]>(home, ['ls']);
  t.deepEqual(
    ctrdLayers(rows).map((r) => r.id),
    [],
    `${what}: devmapper ls --json has no snapshot layer left: ${JSON.stringify(rows.map((r) => r.id))}`,
  );
  t.deepEqual(rows.map((r) => r.id).sort(), ['ctrd-base'], `${what}: only the snapshotter's base layer remains`);
  const devices = homeDmNames(home);
  t.not(devices.pool, '', `${what}: the pool is active`);
  t.deepEqual(devices.others, [], `${what}: no dm device of the home besides the pool`);
  const report = await checkReport(home);
  t.true(report.clean, `${what}: devmapper check --json is clean: ${JSON.stringify(report)}`);
  t.deepEqual(mountsUnder(home), [], `${what}: nothing mounted under the home`);
}

test.serial(
  "removing the image lets containerd's GC remove every snapshot: no layer, device or record remains, check is clean",
  async (t) => {
    t.timeout(300_000);
    await removeImageAndCollect(t, w().image.name);
    await withServerStopped(t, () => assertHomeEmpty(t, 'after GC'));
  },
);

test.serial('stopping the server while a container runs keeps its rootfs; a restarted server adopts it', async (t) => {
  t.timeout(400_000);
  const c = w().containerd;
  const { image, imageTar } = w();
  await importImage(imageTar);
  const id = `sleeper-${process.pid}`;
  await c.ctr(['run', '-d', '--snapshotter', SNAPSHOTTER, image.name, id, 'sleep', '3600']);
  try {
    t.true(
      await eventually(async () => /RUNNING/.test((await c.ctrResult(['tasks', 'ls'])).stdout), 30_000, 200),
      'the sleeper runs',
    );
    const rootfs = join(c.state, 'io.containerd.runtime.v2.task', NAMESPACE, id, 'rootfs');
    t.deepEqual(mountsUnder(rootfs), [rootfs], 'containerd mounted the container rootfs');
    await c.ctr(['tasks', 'exec', '--exec-id', 'w1', id, 'sh', '-c', 'echo before-stop > /tmp/state']);

    const code = await stopServer(w().server);
    t.is(code, 0, `devmapper serve exits 0 on SIGTERM\n${w().server.output().slice(-2000)}`);
    t.deepEqual(mountsUnder(rootfs), [rootfs], 'the rootfs is still mounted after the server stopped');
    const read = await c.ctr([
      'tasks',
      'exec',
      '--exec-id',
      'r1',
      id,
      'sh',
      '-c',
      'cat /tmp/state /opaque/new1 && echo after-stop >> /tmp/state && cat /tmp/state',
    ]);
    t.is(
      read,
      'before-stop\nthe only file left in opaque\nbefore-stop\nafter-stop\n',
      'the container reads and writes its rootfs with no server',
    );
    const rows = await cliJson<LayerRow[]>(w().home, ['ls']);
    const activeLayers = ctrdLayers(rows).filter(
      (row) => (row.meta?.containerd as { kind?: string } | undefined)?.kind === 'active',
    );
    t.is(
      activeLayers.length,
      1,
      `devmapper ls: one active snapshot layer (the sleeper's): ${JSON.stringify(rows.map((r) => [r.id, r.meta]))}`,
    );

    w().server = await startServer(w().home, w().socket, ['--log-level', 'debug']);
    t.true(await eventually(reachesServer, 30_000, 500), 'containerd reaches the restarted server');
    const snaps = await snapshotRows();
    t.deepEqual(
      snaps.find((r) => r.key === id),
      { key: id, parent: chainIds(image).at(-1)!, kind: 'Active' },
      "the restarted server serves the container's snapshot",
    );
    const usage = await snapshots(['usage', id]);
    t.regex(usage, new RegExp(`^${id}\\s+\\S+`, 'm'), 'usage of the adopted active snapshot answers');
    const mounted = parsePrintedMount(await snapshots(['mounts', '/x', id]));
    t.is(mounted.type, 'ext4', 'mounts of the adopted snapshot answers');
    const after = await c.ctr(['tasks', 'exec', '--exec-id', 'r2', id, 'cat', '/tmp/state']);
    t.is(after, 'before-stop\nafter-stop\n');
  } finally {
    await c.ctrResult(['tasks', 'kill', '-s', 'SIGKILL', id]);
    await eventually(async () => (await c.ctrResult(['tasks', 'delete', id])).code === 0, 30_000, 200);
    await c.ctrResult(['containers', 'delete', id]);
  }
  t.false(
    (await snapshotRows()).some((r) => r.key === id),
    'deleting the container removed its snapshot through the restarted server',
  );
  t.true(await eventually(() => shimPids(c).length === 0, 15_000, 200), 'no shim left for the sleeper');
  await removeImageAndCollect(t, image.name);
  await withServerStopped(t, () => assertHomeEmpty(t, 'after the sleeper'));
});

test.serial(
  'kill -9 of the server in the middle of an import: a restarted server takes the import again, check is clean',
  async (t) => {
    t.timeout(600_000);
    const c = w().containerd;
    const bulky = await bulkyImage('example.com/devmapper/bulky:1', 6, 3 << 20);
    const tarFile = join(w().work, 'bulky.tar');
    writeFileSync(tarFile, bulky.tarball);
    const server = w().server;
    const mark = server.output().length;
    const importing = c.ctrResult(['images', 'import', '--snapshotter', SNAPSHOTTER, tarFile], 300_000);
    // In the middle: two layers committed and the third one prepared (being extracted).
    const inMiddle = await eventually(
      () => {
        const log = server.output().slice(mark);
        const commits = log.split('\n').filter((line) => /Commit .* ok/.test(line)).length;
        const prepares = log.split('\n').filter((line) => /Prepare .* ok/.test(line)).length;
        return commits >= 2 && prepares > commits;
      },
      240_000,
      20,
    );
    t.true(inMiddle, `the server logged two commits and a third prepare:\n${server.output().slice(mark).slice(-3000)}`);
    server.process.kill('SIGKILL');
    t.is(await server.exited, 'SIGKILL');
    const interrupted = await importing;
    t.log(`the interrupted import ended with ${interrupted.code}: ${interrupted.stderr.trim().slice(-300)}`);
    t.not(interrupted.code, 0, 'the import failed with its snapshotter killed');

    w().server = await startServer(w().home, w().socket, ['--log-level', 'debug']);
    t.true(await eventually(reachesServer, 30_000, 500), 'containerd reaches the restarted server');
    const started = Date.now();
    const out = await importImage(tarFile);
    t.log(`second import: ${seconds(started)}`);
    t.regex(out, /unpacking .*done/);
    const committed = (await snapshotRows()).filter((r) => r.kind === 'Committed').map((r) => r.key);
    for (const id of chainIds(bulky)) t.true(committed.includes(id), `layer snapshot ${id} committed`);
    const sums = await runIn(bulky.name, 'sha256sum /bulk/*');
    for (const [path, entry] of bulky.view) {
      if (!path.startsWith('/bulk/')) continue;
      t.true(sums.includes(`${entry.sha256}  ${path}`), `${path} has the image's content`);
    }
    await withServerStopped(t, async () => {
      const report = await checkReport(w().home);
      t.true(report.clean, `devmapper check --json after the crash and the second import: ${JSON.stringify(report)}`);
    });
    // Whatever the killed import left (an active extraction snapshot, its lease) goes with the image.
    await c.ctrResult(['images', 'rm', '--sync', bulky.name]);
    for (const lease of (await c.ctrResult(['leases', 'ls', '-q'])).stdout.split('\n').filter(Boolean))
      await c.ctrResult(['leases', 'rm', '--sync', lease]);
    const leftovers = await snapshotRows();
    for (const row of leftovers.filter((r) => r.kind !== 'Committed'))
      await snapshots(['rm', row.key]).catch(() => undefined);
    t.true(
      await eventually(async () => (await snapshotRows()).length === 0, 60_000, 500),
      `every snapshot is collected: ${JSON.stringify(await snapshotRows())}`,
    );
    await withServerStopped(t, () => assertHomeEmpty(t, 'after the crashed import'));
  },
);

test.serial(
  'teardown: containerd, its shims, the server and the home leave no dm device, loop device or mount',
  async (t) => {
    t.timeout(180_000);
    const world = w();
    const c = world.containerd;
    const containerdDir = c.dir;
    await c.stop();
    t.deepEqual(mountsUnder(containerdDir), [], "nothing mounted under containerd's root and state");
    t.deepEqual(shimPids(c), [], 'no shim left');
    t.is(await stopServer(world.server), 0, 'the server exits 0 on SIGTERM');
    const cleanup = await runCli(['--home', world.home, 'cleanup']);
    t.is(cleanup.code, 0, `devmapper cleanup: ${cleanup.stderr}`);
    await sleep(100);
    t.deepEqual(dmNames(), world.dmBefore, 'the dm devices are the ones there were before the test');
    t.deepEqual(loopLines(), world.loopsBefore, 'the loop devices are the ones there were before the test');
    t.deepEqual(mountsUnder(world.home), []);
    t.deepEqual(mountsUnder(world.work), []);
  },
);
