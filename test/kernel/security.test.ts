// Security properties of the Driver against a real kernel (the ones that need no kernel are in
// test/host/security.test.ts):
// - a layer id that could name a path outside <home> (../x, /abs, a/b, ., .., NUL, overlong,
//   newline ...) is refused by every Driver method with a typed error before anything is
//   touched: the metadata files, the home's tree, the directory around it, the dm devices and
//   the mounts are the same before and after;
// - the metadata files and directories, the loop files and the lock are not readable by group or
//   others, even under umask 0, and a metadata directory made earlier with a looser mode is
//   tightened;
// - mkfs runs with execFile semantics: a mkfs argument holding shell syntax reaches mkfs as one
//   literal argument (it becomes the filesystem label) and runs nothing;
// - a mount label or mount option with a comma or newline cannot add mount options: a typed
//   error, nothing mounted, no device left active;
// - a symlink planted inside a layer's filesystem (rootfs, id) is not followed out of <home>.
import test from 'ava';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { InvalidArgumentError } from '../../src/errors.js';
import {
  SMALL,
  allHomes,
  dmNames,
  driverDmNames,
  loopLines,
  metadataSnapshot,
  mountsUnder,
  newHome,
} from './driver-helpers.js';
import { useDriverBed } from './helpers.js';

useDriverBed();

/** Paths and modes under `dir`, not descending into mounted filesystems (mount points listed, not entered). */
function tree(dir: string, mounts: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (path: string): void => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      const st = statSync(full, { throwIfNoEntry: false });
      out[full.slice(dir.length)] = st
        ? `${(st.mode & 0o7777).toString(8)} ${st.isDirectory() ? 'dir' : st.size}`
        : 'dangling';
      if (entry.isDirectory() && !mounts.includes(full)) walk(full);
    }
  };
  walk(dir);
  return out;
}

/** Everything a refused call must leave as it was. */
function picture(home: string): unknown {
  const mounts = mountsUnder(home);
  return {
    metadata: metadataSnapshot(home),
    tree: tree(home, mounts),
    around: readdirSync(dirname(home)).sort(),
    devices: dmNames(),
    mounts,
  };
}

const BAD_IDS: unknown[] = [
  '../x',
  '../../etc',
  '..',
  '.',
  '/abs',
  '/tmp',
  'a/b',
  'mnt/../../x',
  'a\0b',
  'x\0',
  'x'.repeat(81),
  'x'.repeat(4096),
  'a\nb',
  'x\n',
  '',
  ' ',
  '.base',
  '-rf',
  'a\\b',
  'pool',
  'a;b',
  '$(reboot)',
  42,
  null,
  {},
];

test.serial('bad layer ids are refused by every Driver method before anything is touched', async (t) => {
  const home = newHome('ids');
  const driver = await Driver.init({ home, ...SMALL });
  t.teardown(() => driver.cleanup());
  await driver.create('img');
  await driver.get('img'); // a mount and an active device in the picture
  const before = picture(home);
  const pointedAt = () => [join(home, 'x'), join(dirname(home), 'x'), '/x', '/abs'];
  const existingBefore = pointedAt().filter((path) => existsSync(path));
  const calls: Array<[string, (id: unknown) => Promise<unknown>]> = [
    ['create', (id) => driver.create(id as string)],
    ['create (parent)', (id) => driver.create('child', id as string)],
    ['remove', (id) => driver.remove(id as string)],
    ['get', (id) => driver.get(id as string)],
    ['put', (id) => driver.put(id as string)],
    ['exists', (id) => driver.exists(id as string)],
    ['metadata', (id) => driver.metadata(id as string)],
  ];
  let refused = 0;
  for (const id of BAD_IDS) {
    for (const [name, call] of calls) {
      if (name === 'create (parent)' && (id === '' || id === null)) continue; // no parent: Docker's "" (and null) mean the base device
      const error = await t.throwsAsync(
        call(id),
        { instanceOf: InvalidArgumentError },
        `${name}(${JSON.stringify(id)})`,
      );
      t.is(error?.code, 'ERR_DM_INVALID_ARGUMENT');
      refused++;
    }
  }
  t.deepEqual(picture(home), before, "metadata, the home's tree, its surroundings, devices and mounts are unchanged");
  // compared with what was there before: the guest's / is the host's (hostfs), where a checkout
  // may itself be /tmp/x (a clone for CI), which these paths would otherwise find
  t.deepEqual(
    pointedAt().filter((path) => existsSync(path)),
    existingBefore,
    'no file where a bad id would point',
  );
  t.is(driver.mountCount('img'), 1);
  t.deepEqual(
    (await driver.list()).map((l) => l.id),
    ['img'],
  );
  t.log(`${refused} calls refused`);
  await driver.put('img');
});

test.serial('metadata, loop files and the lock are not group/world readable, even under umask 0', async (t) => {
  const home = join(newHome('modes'), 'home'); // made by the driver
  const oldMask = process.umask(0);
  let driver: Driver | undefined;
  try {
    driver = await Driver.init({ home, ...SMALL });
    t.teardown(() => driver?.cleanup());
    await driver.create('img');
    await driver.create('ctr', 'img');
    await driver.get('ctr');
  } finally {
    process.umask(oldMask);
  }
  const mode = (path: string): number => statSync(path).mode & 0o7777;
  t.is(mode(home), 0o700, 'home');
  t.is(mode(join(home, 'metadata')), 0o700, 'metadata dir');
  t.is(mode(join(home, 'devicemapper')), 0o700, 'loop file dir');
  t.is(mode(join(home, 'mnt')), 0o700, 'mount point dir');
  t.is(mode(join(home, 'lock')), 0o600, 'lock');
  for (const file of ['data', 'metadata']) t.is(mode(join(home, 'devicemapper', file)), 0o600, `loop file ${file}`);
  // While the driver works, img and ctr are in transactions.log; cleanup folds them into their files.
  const metadataFiles = readdirSync(join(home, 'metadata'));
  t.true(metadataFiles.includes('deviceset.json') && metadataFiles.includes('transactions.log'), metadataFiles.join());
  for (const file of metadataFiles) t.is(mode(join(home, 'metadata', file)), 0o600, file);
  // Nothing outside the mounted layers is open to group or others.
  const mounts = mountsUnder(home);
  for (const [path, info] of Object.entries(tree(home, mounts))) {
    if (mounts.includes(join(home, path))) continue; // a mount point: the layer's own root, inside the 0700 mnt
    t.is(Number.parseInt(info.split(' ')[0]!, 8) & 0o077, 0, `${path}: ${info}`);
  }
  await driver!.put('ctr');
  await driver!.cleanup();
  driver = undefined;
  const folded = readdirSync(join(home, 'metadata'));
  t.deepEqual(
    folded.sort(),
    ['.base.layer.json', 'ctr.layer.json', 'deviceset.json', 'img.layer.json'],
    'folded at cleanup',
  );
  for (const file of folded) t.is(mode(join(home, 'metadata', file)), 0o600, file);
});

test.serial('a metadata directory made earlier with a looser mode is tightened at init', async (t) => {
  const home = newHome('loose');
  mkdirSync(join(home, 'metadata'), { mode: 0o755 });
  const driver = await Driver.init({ home, ...SMALL });
  t.teardown(() => driver.cleanup());
  t.is(statSync(join(home, 'metadata')).mode & 0o777, 0o700);
});

test.serial('mkfs runs without a shell: shell syntax in a mkfs argument is one literal argument', async (t) => {
  const marker = '/tmp/shx';
  rmSync(marker, { force: true });
  const label = `;touch ${marker}`; // 15 bytes: fits ext4's 16-byte volume label
  const home = newHome('mkfs');
  const driver = await Driver.init({ home, ...SMALL, mkfsArgs: ['-L', label] });
  t.teardown(() => driver.cleanup());
  t.false(existsSync(marker), 'nothing ran the text as a command');
  await driver.create('img');
  const mountPoint = join(home, 'mnt', 'img');
  await driver.get('img');
  const source = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[1] === mountPoint)?.[0];
  t.truthy(source, 'the layer is mounted');
  // ext4's s_volume_name: 16 bytes at superblock (offset 1024) + 0x78.
  const raw = Buffer.alloc(16);
  const fd = openSync(source!, 'r');
  try {
    readSync(fd, raw, 0, 16, 1024 + 0x78);
  } finally {
    closeSync(fd);
  }
  t.is(raw.toString('latin1').replace(/\0+$/, ''), label, 'mkfs got the argument verbatim');
  await driver.put('img');
});

test.serial('a mount label or mount option with a comma or newline cannot inject mount options', async (t) => {
  const home = newHome('label');
  const driver = await Driver.init({ home, ...SMALL });
  t.teardown(() => driver.cleanup());
  await driver.create('img');
  const { poolName } = await driver.status();
  for (const label of ['x,ro', 'system_u:object_r:t:s0,dev,suid', 'x\nro', 'x\n', 'a"b', 'a,', 'x" ,exec,"']) {
    const error = await t.throwsAsync(
      driver.get('img', label),
      { instanceOf: InvalidArgumentError },
      JSON.stringify(label),
    );
    t.is(error?.argument, 'mountLabel');
    t.deepEqual(mountsUnder(home), [], 'nothing mounted');
    t.deepEqual(driverDmNames(), [poolName], 'no device activated');
    t.is(driver.mountCount('img'), 0);
  }
  // An MLS category list keeps its commas; without an LSM that takes context= the kernel
  // refuses the mount, and the failed get leaves nothing behind either way.
  try {
    await driver.get('img', 'system_u:object_r:container_file_t:s0:c1,c2');
    const options =
      readFileSync('/proc/self/mounts', 'utf8')
        .split('\n')
        .map((l) => l.split(' '))
        .find((f) => f[1] === join(home, 'mnt', 'img'))?.[3] ?? '';
    t.false(/(^|,)(c2|ro)(,|$)/.test(options), `no stray option: ${options}`);
    await driver.put('img');
  } catch (error) {
    t.log(`an MLS label was refused by this kernel: ${(error as Error).message}`);
  }
  t.deepEqual(mountsUnder(home), []);
  t.deepEqual(driverDmNames(), [poolName]);

  // dm.mountopt: refused at init, before the home is even made.
  const other = join(newHome('mountopt'), 'home');
  for (const mountOptions of ['noatime\nexec', 'ro\n', 'x y', 'context="a,b"']) {
    await t.throwsAsync(
      Driver.init({ home: other, ...SMALL, mountOptions }),
      { instanceOf: InvalidArgumentError },
      JSON.stringify(mountOptions),
    );
    t.false(existsSync(other), 'nothing was made');
  }
});

test.serial("symlinks planted in a layer's filesystem are not followed out of <home>", async (t) => {
  const home = newHome('symlink');
  const outside = newHome('outside');
  const driver = await Driver.init({ home, ...SMALL });
  t.teardown(() => driver.cleanup());
  await driver.create('evil');
  await driver.get('evil');
  const mountPoint = join(home, 'mnt', 'evil');
  // What a tampered filesystem could hold at its root, beside rootfs: first a dangling id symlink.
  unlinkSync(join(mountPoint, 'id'));
  symlinkSync(join(outside, 'id'), join(mountPoint, 'id'));
  await driver.put('evil');
  await driver.get('evil');
  t.deepEqual(readdirSync(outside), [], 'the id file was not written through the symlink');
  // Then rootfs as a symlink out of <home>.
  rmSync(join(mountPoint, 'rootfs'), { recursive: true });
  symlinkSync(outside, join(mountPoint, 'rootfs'));
  await driver.put('evil');
  const { poolName } = await driver.status();
  await t.throwsAsync(driver.get('evil'), { code: 'ERR_DM_UNSAFE_PATH' });
  t.deepEqual(readdirSync(outside), [], 'nothing was written outside');
  t.deepEqual(mountsUnder(home), [], 'the failed get left nothing mounted');
  t.deepEqual(driverDmNames(), [poolName], 'and no device active');
  await driver.remove('evil');
  t.false(await driver.exists('evil'));
});

test.serial("a symlink planted at a layer's mount point is not mounted through", async (t) => {
  const home = newHome('mntlink');
  const outside = newHome('mnt-outside');
  const driver = await Driver.init({ home, ...SMALL });
  t.teardown(() => driver.cleanup());
  await driver.create('evil');
  const mountPoint = join(home, 'mnt', 'evil');
  t.false(existsSync(mountPoint), 'no mount point while the layer is not mounted');
  symlinkSync(outside, mountPoint); // mount(2) follows it: the layer would cover `outside`
  const { poolName } = await driver.status();
  const error = await t.throwsAsync(driver.get('evil'), { code: 'ERR_DM_UNSAFE_PATH' });
  t.true(error?.message.includes(mountPoint), error?.message);
  t.deepEqual(mountsUnder(outside), [], 'nothing was mounted over the directory the link names');
  t.deepEqual(mountsUnder(home), [], 'nor in the home');
  t.deepEqual(driverDmNames(), [poolName], 'and no device active');
  unlinkSync(mountPoint);
  await driver.get('evil');
  await driver.put('evil');
  await driver.remove('evil');
});

test.serial('nothing leaked: no dm device, loop device or mount of any home', (t) => {
  t.deepEqual(driverDmNames(), []);
  t.deepEqual(loopLines(), []);
  for (const home of allHomes()) t.deepEqual(mountsUnder(home), [], home);
});
