// Files planted in a home where the driver keeps its own (a hand edit, a restored backup, or
// someone with write access to the home): a symlink, a FIFO, a directory or a device node in
// place of the lock, a layer record, the pack or cli-options.json. None is followed, none
// blocks, nothing outside the home is read or written, and each is a typed error naming the path
// (the lock: ERR_DM_UNSAFE_PATH; a record: a MetadataError that repair can quarantine); a home
// that is itself a file is refused as an argument.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { recordedOptions } from '../../src/cli/command-context.js';
import { HomeLayout } from '../../src/driver/home-layout.js';
import { HomeLock } from '../../src/driver/home-lock.js';
import { PACK } from '../../src/driver/layer-pack.js';
import { writeDurably } from '../../src/driver/metadata-files.js';
import { MetadataStore } from '../../src/driver/metadata-store.js';
import { InvalidArgumentError, MetadataError } from '../../src/errors.js';
import { Kernel } from '../../src/ioctl/kernel.js';

const isRoot = process.getuid?.() === 0;

function scratch(t: { teardown(f: () => void): void }): { root: string; home: string; outside: string } {
  const root = mkdtempSync(join(tmpdir(), 'dm-planted-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const home = join(root, 'home');
  mkdirSync(join(home, 'metadata'), { recursive: true });
  const outside = join(root, 'outside.txt');
  writeFileSync(outside, 'a file outside the home\n');
  return { root, home, outside };
}

type Plant = (path: string, outside: string) => void;
const PLANTS: ReadonlyArray<readonly [string, RegExp, Plant]> = [
  ['a symlink to a file outside the home', /is a symlink/, (path, outside) => symlinkSync(outside, path)],
  ['a dangling symlink', /is a symlink/, (path, outside) => symlinkSync(`${outside}.missing`, path)],
  ['a FIFO', /is a FIFO/, (path) => execFileSync('mkfifo', [path])],
  ['a directory', /is a directory/, (path) => mkdirSync(path)],
  ['a character device', /is a character device/, (path) => execFileSync('mknod', [path, 'c', '1', '3'])],
];

for (const [what, kind, plant] of PLANTS) {
  const needsRoot = what === 'a character device' && !isRoot;
  (needsRoot ? test.skip : test)(
    `the lock as ${what}${needsRoot ? ' (mknod needs root)' : ''}: ERR_DM_UNSAFE_PATH naming it, nothing outside touched`,
    async (t) => {
      const { home, outside } = scratch(t);
      const lock = join(home, 'lock');
      plant(lock, outside);
      const error = await t.throwsAsync(HomeLock.acquire(home, { kernel: Kernel.for('koffi'), timeoutMs: 0 }));
      t.is((error as { code?: string }).code, 'ERR_DM_UNSAFE_PATH');
      t.regex(error!.message, kind);
      t.true(error!.message.includes(lock), error!.message);
      t.is(readFileSync(outside, 'utf8'), 'a file outside the home\n', 'the file a symlink names is not truncated');
      t.false(existsSync(`${outside}.missing`), 'a dangling symlink makes no file');
    },
  );

  (needsRoot ? test.skip : test)(
    `a layer record as ${what}: a MetadataError naming it, at once; quarantined as one that may claim any thin id`,
    (t) => {
      const { home, outside } = scratch(t);
      const dir = join(home, 'metadata');
      const store = new MetadataStore(dir);
      store.writeLayer({ id: 'a', parent: null, deviceId: 1, size: '1048576', transactionId: '1' });
      writeFileSync(outside, '{"id":"b","parent":null,"deviceId":2,"size":"1048576","transactionId":"2"}\n');
      plant(join(dir, 'b.layer.json'), outside);
      const scan = store.scanLayers();
      t.deepEqual(
        scan.records.map((r) => r.id),
        ['a'],
      );
      t.deepEqual(
        scan.damaged.map((d) => [d.name, d.claimedDeviceId]),
        [['b.layer.json', undefined]],
      );
      t.true(scan.damaged[0]!.error instanceof MetadataError);
      t.regex(scan.damaged[0]!.error.message, kind);
      if (what !== 'a directory') {
        store.quarantine('b.layer.json');
        t.false(existsSync(join(dir, 'b.layer.json')) || lstatExists(join(dir, 'b.layer.json')));
        t.deepEqual(store.quarantinedThinIds(), [undefined], 'what it names is not trusted');
        t.deepEqual(new MetadataStore(dir).scanLayers().damaged, [], 'a second scan finds nothing');
      }
      t.true(readFileSync(outside, 'utf8').includes('"id":"b"'), 'the file outside is untouched');
      store.close();
    },
  );
}

const lstatExists = (path: string): boolean => {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
};

test('layers.pack as a symlink: the pack is one damaged record naming no thin id; the file outside is not read', (t) => {
  const { home, outside } = scratch(t);
  const dir = join(home, 'metadata');
  symlinkSync(outside, join(dir, PACK));
  const scan = new MetadataStore(dir).scanLayers();
  t.deepEqual(
    scan.damaged.map((d) => [d.name, d.claimedDeviceId]),
    [[PACK, undefined]],
  );
  t.regex(scan.damaged[0]!.error.message, /is a symlink/);
});

test('cli-options.json as a symlink or a FIFO: a MetadataError naming it, at once', (t) => {
  const { home, outside } = scratch(t);
  const file = join(home, 'cli-options.json');
  writeFileSync(outside, '{"baseSize":"64M"}\n');
  symlinkSync(outside, file);
  const linked = t.throws(() => recordedOptions(home), { instanceOf: MetadataError });
  t.regex(linked!.message, /cli-options\.json.*is a symlink/);
  rmSync(file);
  execFileSync('mkfifo', [file]);
  const fifo = t.throws(() => recordedOptions(home), { instanceOf: MetadataError });
  t.regex(fifo!.message, /is a FIFO/);
});

test('a durable write never goes through a symlink or into a FIFO at its temp path', (t) => {
  const { home, outside } = scratch(t);
  const temp = join(home, 'metadata', 'deviceset.json.1.tmp');
  symlinkSync(outside, temp);
  const linked = t.throws(() => writeDurably(temp, '{}\n'));
  t.regex(linked!.message, /is a symlink/);
  t.is(readFileSync(outside, 'utf8'), 'a file outside the home\n');
  rmSync(temp);
  execFileSync('mkfifo', [temp]);
  const fifo = t.throws(() => writeDurably(temp, '{}\n'));
  t.regex(fifo!.message, /FIFO/, 'no reader: refused at open instead of blocking');
});

for (const [what, plant] of [
  ['a file', (path: string) => writeFileSync(path, 'x')],
  ['a symlink to a directory outside the home', (path: string, outside: string) => symlinkSync(outside, path)],
] as const) {
  test(`the quarantine as ${what}: repair is ERR_DM_UNSAFE_PATH naming it, and the record stays where it was`, (t) => {
    const { root, home } = scratch(t);
    const dir = join(home, 'metadata');
    const elsewhere = join(root, 'elsewhere');
    mkdirSync(elsewhere);
    const store = new MetadataStore(dir);
    writeFileSync(join(dir, 'b.layer.json'), 'not json');
    plant(store.quarantineDir, elsewhere);
    const error = t.throws(() => store.quarantine('b.layer.json'));
    t.is((error as { code?: string }).code, 'ERR_DM_UNSAFE_PATH');
    t.true(error!.message.includes(store.quarantineDir), error!.message);
    t.is(readFileSync(join(dir, 'b.layer.json'), 'utf8'), 'not json', 'the damaged record is not moved or lost');
    t.deepEqual(readdirSync(elsewhere), [], 'nothing moved out of the home');
    store.close();
  });
}

for (const [what, plant] of [
  ['a file', (path: string) => writeFileSync(path, 'x')],
  ['a symlink to a directory outside the home', (path: string, outside: string) => symlinkSync(outside, path)],
] as const) {
  test(`the quarantine as ${what}: listing it (check, init's recovery) is ERR_DM_UNSAFE_PATH naming it, nothing read outside`, (t) => {
    const { root, home } = scratch(t);
    const elsewhere = join(root, 'elsewhere');
    mkdirSync(elsewhere);
    // Outside the home, in the shape of a quarantined record: following the link would read it.
    writeFileSync(join(elsewhere, 'x.layer.json.1'), JSON.stringify({ id: 'x', deviceId: 7 }));
    const store = new MetadataStore(join(home, 'metadata'));
    plant(store.quarantineDir, elsewhere);
    for (const list of [() => store.quarantined(), () => store.quarantinedThinIds()]) {
      const error = t.throws(list);
      t.is((error as { code?: string }).code, 'ERR_DM_UNSAFE_PATH', error!.message);
      t.true(error!.message.includes(store.quarantineDir), error!.message);
    }
    store.close();
  });
}

for (const [what, kind, plant] of [
  ['a file', /is a file,/, (path: string) => writeFileSync(path, 'x')],
  ['a dangling symlink', /is a symlink/, (path: string, outside: string) => symlinkSync(`${outside}.missing`, path)],
  [
    'a symlink to a directory outside the home',
    /is a symlink/,
    (path: string, outside: string) => symlinkSync(outside, path),
  ],
] as const) {
  test(`<home>/metadata as ${what}: ERR_DM_UNSAFE_PATH naming it, the target's mode untouched`, (t) => {
    const { root } = scratch(t);
    const home = join(root, 'home2');
    mkdirSync(home);
    const elsewhere = join(root, 'elsewhere');
    mkdirSync(elsewhere, { mode: 0o755 });
    chmodSync(elsewhere, 0o755);
    const dir = join(home, 'metadata');
    plant(dir, elsewhere);
    const error = t.throws(() => new MetadataStore(dir));
    t.is((error as { code?: string }).code, 'ERR_DM_UNSAFE_PATH', error!.message);
    t.true(error!.message.includes(dir), error!.message);
    t.regex(error!.message, kind);
    t.is(statSync(elsewhere).mode & 0o777, 0o755, 'a directory outside the home is not chmod-ed through the link');
    t.deepEqual(readdirSync(elsewhere), []);
  });
}

test('a home that is a file, or lies under one: InvalidArgumentError naming it, before any lock or device', (t) => {
  const { root } = scratch(t);
  const file = join(root, 'a-file');
  writeFileSync(file, 'x');
  for (const home of [file, join(file, 'home')]) {
    const error = t.throws(() => HomeLayout.create(home), { instanceOf: InvalidArgumentError });
    t.true(error!.message.includes(home), error!.message);
  }
  t.is(readFileSync(file, 'utf8'), 'x');
});

test('a home whose path is too long, has a too-long name or loops through symlinks: InvalidArgumentError naming it, nothing made', (t) => {
  const { root } = scratch(t);
  const loop = join(root, 'loop');
  symlinkSync(loop, loop);
  const deep = join(root, 'deep', ...Array.from({ length: 2100 }, () => 'd')); // over PATH_MAX in short names
  for (const home of [deep, join(root, 'n'.repeat(300)), loop, join(loop, 'home')]) {
    const error = t.throws(() => HomeLayout.create(home), { instanceOf: InvalidArgumentError });
    t.is(error!.argument, 'home');
    t.true(error!.message.includes(home.slice(0, 60)), error!.message);
  }
  t.false(existsSync(join(root, 'deep')), 'no directory of the too-long path was made');
});

test('<home>/mnt as a symlink to a directory outside the home: ERR_DM_UNSAFE_PATH naming it, before any lock or mount', (t) => {
  const { root } = scratch(t);
  const home = join(root, 'home3');
  mkdirSync(home);
  const elsewhere = join(root, 'elsewhere');
  mkdirSync(elsewhere);
  symlinkSync(elsewhere, join(home, 'mnt'));
  const error = t.throws(() => HomeLayout.create(home));
  t.is((error as { code?: string }).code, 'ERR_DM_UNSAFE_PATH', error!.message);
  t.true(error!.message.includes(join(home, 'mnt')), error!.message);
  t.false(existsSync(join(home, 'lock')));
});
