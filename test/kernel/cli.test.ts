// The devmapper CLI against a real kernel: each command is run as its own process (the built
// bin.js through execFile, never a shell) and its --json output is compared with what the
// library reports, opened in this process on the same home after the CLI process has exited
// (one driver per home at a time). Also: exit status 1 with the error's code, exit status 2
// for usage errors, --help, readable output, and a demo that leaves nothing behind.
import test, { type ExecutionContext } from 'ava';
import { Kernel } from '../../src/ioctl/kernel.js';
import { execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  statSync,
  writeSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { HomeLock } from '../../src/driver/home-lock.js';
import type { DriverOptions } from '../../src/driver/options.js';
import { DeviceMapper } from '../../src/ioctl/device-mapper.js';
import { parseThinStatus } from '../../src/thin/status.js';
import { assertKernelTestBed } from './reference-tools.js';
import {
  SMALL,
  allHomes,
  dmNames,
  eventually,
  loopLines,
  mountsUnder,
  newHome,
  removeHomes,
} from './driver-helpers.js';
import { Cleanup, uniqueName } from './helpers.js';
import { CLI_BIN, runCli, type CliRun } from '../cli-process.js';

type Run = CliRun;

/** Runs the CLI (node bin.js ...), never through a shell; resolves with whatever it exited with. */
const cli = (...args: string[]): Promise<Run> => runCli(args);

/** Exit status 0, and its stdout parsed as JSON. */
function json(t: ExecutionContext, run: Run, what: string): any {
  t.is(run.code, 0, `${what}: exit status (stderr: ${run.stderr})`);
  try {
    return JSON.parse(run.stdout);
  } catch {
    t.fail(`${what}: stdout is not JSON: ${run.stdout}`);
    return undefined;
  }
}

/** The error a failed --json run printed on stderr: { code, message }. */
function jsonError(t: ExecutionContext, run: Run, status: number, what: string): { code: string; message: string } {
  t.is(run.code, status, `${what}: exit status (stderr: ${run.stderr})`);
  t.is(run.stdout, '', `${what}: nothing on stdout`);
  const line = run.stderr.trim().split('\n').at(-1) ?? '';
  const parsed = JSON.parse(line) as { error: { code: string; message: string } };
  t.is(typeof parsed.error.code, 'string');
  t.true(parsed.error.message.length > 0, `${what}: a message`);
  return parsed.error;
}

/** The library's values the way the CLI's JSON writes them (bigints as decimal strings). */
const plain = (value: unknown): any =>
  JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)));

const codeOf = (error: unknown): string => (error as { code?: string } | undefined)?.code ?? '(no code)';

/** The options `init` recorded in <home>/cli-options.json, with the home. */
function recorded(home: string): DriverOptions {
  return { ...(JSON.parse(readFileSync(join(home, 'cli-options.json'), 'utf8')) as DriverOptions), home };
}

/** Opens the home with the library (after the CLI let go of it), runs `body`, lets go again. */
async function library<T>(home: string, body: (driver: Driver) => Promise<T>): Promise<T> {
  const driver = await Driver.init(recorded(home));
  try {
    return await body(driver);
  } finally {
    await driver.close();
  }
}

/** Status minus what depends on the free space of the filesystem under the loop files. */
function withoutAvailable(status: any): any {
  const copy = structuredClone(status);
  delete copy.dataSpace.available;
  delete copy.metadataSpace.available;
  return copy;
}

/** Mapped bytes of each active thin device, read straight from the kernel. */
function mappedBytes(names: readonly string[]): Map<string, bigint> {
  const dm = DeviceMapper.open();
  try {
    const map = new Map<string, bigint>();
    for (const name of names) {
      if (!dm.exists(name)) continue;
      const status = parseThinStatus(dm.status(name, { noFlush: true })[0]!.params);
      if (status.kind === 'ok') map.set(name, status.mappedSectors * 512n);
    }
    return map;
  } finally {
    dm.close();
  }
}

/** The CLI let go of the home: its flock on <home>/lock is gone (the file itself stays). */
const lockGone = (t: ExecutionContext, home: string, what: string): boolean => {
  const lock = HomeLock.tryAcquire(home, { kernel: Kernel.for() });
  lock?.release();
  return t.truthy(lock, `${what}: the CLI let go of the home`);
};

test.before(() => assertKernelTestBed());
test.after.always(async () => {
  // A test that failed half-way may have left a pool or mounts: undo them before the homes go.
  for (const home of allHomes()) {
    if (!existsSync(join(home, 'cli-options.json'))) continue;
    try {
      await (await Driver.init(recorded(home))).cleanup();
    } catch {
      // the leak test reports what is left
    }
  }
  removeHomes();
});

// Every CLI run is a fresh node process, which in the UML guest costs seconds (2-10 s on a busy
// host; about 30 runs here): the tests spend their runs where each checks something new.
const LONG = 300_000;
const initArgs = [
  'init',
  '--base-size',
  SMALL.baseSize,
  '--loop-data-size',
  SMALL.loopDataSize,
  '--loop-metadata-size',
  SMALL.loopMetadataSize,
];

/** The home the layer tests share, in order (init, layers, check and cleanup). */
let home = '';
const h = (): string[] => ['--home', home];

test.serial("init and create: --json matches the library; failures exit 1 with the library's code", async (t) => {
  t.timeout(LONG);
  home = newHome('cli');

  // init: a progress line on stderr, the options recorded, the status the library sees.
  const init = await cli(...h(), '--json', ...initArgs);
  const initStatus = json(t, init, 'init');
  t.regex(init.stderr, /initialising/, 'a progress line while the base device is formatted');
  lockGone(t, home, 'init');
  t.deepEqual(JSON.parse(readFileSync(join(home, 'cli-options.json'), 'utf8')), {
    baseSize: SMALL.baseSize,
    loopDataSize: SMALL.loopDataSize,
    loopMetadataSize: SMALL.loopMetadataSize,
  });
  await library(home, async (driver) => {
    t.deepEqual(withoutAvailable(initStatus), withoutAvailable(plain(await driver.status())));
    t.is(initStatus.layerCount, 0);
  });

  // create: the layer's metadata as the library has it; readable output names the id.
  const img = json(t, await cli(...h(), '--json', 'create', 'img'), 'create img');
  const ctrText = await cli(...h(), 'create', 'ctr', '--parent', 'img', '--size', '96M');
  t.is(ctrText.code, 0, ctrText.stderr);
  lockGone(t, home, 'create');

  // Failures: exit status 1 and the code the library gives for the same operation.
  const dup = jsonError(t, await cli(...h(), '--json', 'create', 'img'), 1, 'create of an existing id');
  const nope = await cli(...h(), 'mount', 'nope');
  let waiting: Promise<CliRun> | undefined;
  await library(home, async (driver) => {
    t.deepEqual(img, plain(await driver.metadata('img')));
    const ctr = await driver.metadata('ctr');
    t.is(ctr.parent, 'img');
    t.is(ctr.size, 96n * 1024n * 1024n);
    t.is(ctrText.stdout, `created ctr (thin id ${ctr.deviceId}, 96.0 MiB)\n`);

    const libDup = codeOf(await t.throwsAsync(driver.create('img')));
    t.not(libDup, '(no code)');
    t.is(dup.code, libDup);
    t.is(nope.code, 1);
    const libNope = codeOf(await t.throwsAsync(driver.get('nope')));
    t.true(
      nope.stderr.startsWith('devmapper: ') && nope.stderr.includes(`[${libNope}]`),
      `readable error with the code ${libNope}: ${nope.stderr}`,
    );
    t.deepEqual((await driver.list()).map((l) => l.id).sort(), ['ctr', 'img'], 'the failed commands changed nothing');

    // While the library holds the home the CLI is refused, with the library's own code.
    const locked = jsonError(t, await cli(...h(), '--json', 'ls'), 1, 'ls while the home is held');
    t.is(locked.code, codeOf(await t.throwsAsync(Driver.init(recorded(home)))));
    t.true(locked.message.includes(String(process.pid)), 'names the holder');
    // --wait=SECONDS reaches the Driver: it waits that long, then fails saying so.
    const timedOut = jsonError(
      t,
      await cli(...h(), '--json', '--wait=1', 'ls'),
      1,
      'ls --wait=1 while the home is held',
    );
    t.is(timedOut.code, 'ERR_DM_HOME_LOCKED');
    t.regex(timedOut.message, /waited 1000 ms/);
    // A --wait started while the home is held gets it once the library lets go.
    waiting = cli(...h(), '--json', '--wait=120', 'ls');
    await new Promise((resolve) => setTimeout(resolve, 3000));
  });
  const waited = await waiting!;
  t.is(waited.code, 0, `ls --wait=120 got the home once the library let go: ${waited.stderr}`);
  t.deepEqual((JSON.parse(waited.stdout) as Array<{ id: string }>).map((l) => l.id).sort(), ['ctr', 'img']);
});

test.serial('mount, ls, umount, status, rm: --json matches the library; readable ls names the ids', async (t) => {
  t.timeout(LONG);
  if (!existsSync(join(home, 'cli-options.json'))) return t.fail('needs the home the previous test made');

  // mount: the rootfs path the library gives; the mount outlives the CLI process.
  const mounted = json(t, await cli(...h(), '--json', 'mount', 'ctr'), 'mount ctr');
  lockGone(t, home, 'mount');
  t.is(mounted.id, 'ctr');
  t.deepEqual(mountsUnder(home), [dirname(mounted.rootfs)]);
  const names = await library(home, async (driver) => {
    t.is(driver.mountCount('ctr'), 1, 'adopted with one reference');
    t.is(mounted.rootfs, await driver.get('ctr'));
    await driver.put('ctr');
    return (await driver.list()).map((l) => l.deviceName);
  });

  // Write into the container layer so it maps more than the base device.
  const fd = openSync(join(mounted.rootfs, 'data.bin'), 'w');
  try {
    writeSync(fd, randomBytes(4 << 20));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  execFileSync('sync');

  // ls: every layer with its mapped bytes, read from the kernel right before and after.
  const before = mappedBytes(names);
  const ls = json(t, await cli(...h(), '--json', 'ls'), 'ls') as any[];
  const after = mappedBytes(names);
  const lsText = await cli(...h(), 'ls');
  await library(home, async (driver) => {
    t.deepEqual(
      ls.map(({ mappedBytes: _m, parentRemoved: _p, ...rest }) => rest),
      plain(await driver.list()),
    );
    t.true(
      ls.every((r) => r.parentRemoved === false),
      'every parent is there',
    );
  });
  for (const row of ls) {
    const lo = before.get(row.deviceName);
    const hi = after.get(row.deviceName);
    if (lo === undefined || hi === undefined) t.is(row.mappedBytes, null, `${row.id} inactive: no mapped bytes`);
    else
      t.true(
        lo <= BigInt(row.mappedBytes) && BigInt(row.mappedBytes) <= hi,
        `${row.id}: ${row.mappedBytes} within [${lo}, ${hi}]`,
      );
  }
  const ctrRow = ls.find((r) => r.id === 'ctr');
  t.true(BigInt(ctrRow.mappedBytes) >= 4n << 20n, 'the 4 MiB written are mapped');
  t.deepEqual(
    ls.filter((r) => r.mounted).map((r) => r.id),
    ['ctr'],
  );
  t.is(lsText.code, 0);
  t.regex(lsText.stdout, /^ID\s+PARENT\s+THIN ID\s+SIZE\s+MAPPED\s+MOUNTED$/m);
  t.regex(lsText.stdout, new RegExp(`^ctr\\s+img\\s+${ctrRow.deviceId}\\s+96\\.0 MiB\\s.*\\byes$`, 'm'), lsText.stdout);
  t.regex(lsText.stdout, /^img\s+-\s+\d+\s+64\.0 MiB\s+-\s+no$/m, lsText.stdout);

  // umount: the last reference goes, and with it the mount.
  t.deepEqual(json(t, await cli(...h(), '--json', 'umount', 'ctr'), 'umount ctr'), {
    id: 'ctr',
    mounted: false,
    wasMounted: true,
  });
  t.deepEqual(mountsUnder(home), []);

  // status, nothing mounted so nothing moves: the library's but for the backing free space.
  const status = json(t, await cli(...h(), '--json', 'status'), 'status');
  await library(home, async (driver) => {
    t.deepEqual(withoutAvailable(status), withoutAvailable(plain(await driver.status())));
    t.deepEqual(
      (await driver.list()).filter((l) => l.mounted),
      [],
    );
  });
  t.is(status.layerCount, 2);
  for (const space of ['dataSpace', 'metadataSpace']) {
    t.true(
      BigInt(status[space].available) <= BigInt(status[space].total) - BigInt(status[space].used),
      `${space}.available`,
    );
  }

  // rm: gone for the library too.
  t.deepEqual(json(t, await cli(...h(), '--json', 'rm', 'ctr'), 'rm ctr'), { id: 'ctr', removed: true });
  await library(home, async (driver) => {
    t.false(await driver.exists('ctr'));
    t.deepEqual(
      (await driver.list()).map((l) => l.id),
      ['img'],
    );
  });
});

test.serial(
  "check --json is the library's report: a stray device found (exit 3) and repaired; cleanup keeps the data",
  async (t) => {
    t.timeout(LONG);
    if (!existsSync(join(home, 'cli-options.json'))) return t.fail('needs the home the first test made');
    const { poolName } = await library(home, (driver) => driver.status());
    const prefix = poolName.replace(/-pool$/, '');

    const clean = await cli(...h(), '--json', 'check');
    const cleanReport = json(t, clean, 'check');
    t.regex(clean.stderr, /probing/, 'a progress line');
    t.deepEqual(cleanReport, plain(await Driver.check(recorded(home))));
    t.true(cleanReport.clean);

    // A dm device named for this home that no layer knows.
    const cleanup = new Cleanup(t);
    const dm = cleanup.handle(DeviceMapper.open());
    const stray = cleanup.device(`${prefix}-stray`);
    dm.create(stray);
    dm.load(stray, [{ start: 0n, length: 8n, type: 'zero', params: '' }]);
    dm.resume(stray);
    const dirty = await cli(...h(), '--json', 'check');
    t.is(dirty.code, 3, 'problems found: exit status 3');
    const dirtyReport = JSON.parse(dirty.stdout);
    t.deepEqual(dirtyReport, plain(await Driver.check(recorded(home))));
    t.false(dirtyReport.clean);
    t.deepEqual(dirtyReport.strayDevices, [stray]);

    const repaired = json(t, await cli(...h(), '--json', 'check', '--repair'), 'check --repair');
    t.true(repaired.clean);
    t.true(
      repaired.repairs.some((line: string) => line.includes(stray)),
      repaired.repairs.join('; '),
    );
    t.false(dm.exists(stray), 'the stray device is gone');
    t.true((await Driver.check(recorded(home))).clean, 'the library finds nothing left');

    // cleanup: everything deactivated and detached, the layers kept.
    t.true(dmNames().includes(poolName));
    t.deepEqual(json(t, await cli(...h(), '--json', 'cleanup'), 'cleanup'), { home, cleanedUp: true });
    lockGone(t, home, 'cleanup');
    t.deepEqual(
      dmNames().filter((n) => n.startsWith(prefix)),
      [],
      'no dm device of this home',
    );
    t.deepEqual(
      loopLines().filter((l) => l.includes(home)),
      [],
      'no loop device on its files',
    );
    const reopened = await Driver.init(recorded(home));
    t.deepEqual(
      (await reopened.list()).map((l) => l.id),
      ['img'],
      'the layers survive cleanup',
    );
    await reopened.cleanup();
  },
);

test.serial(
  'dm commands: --json of version, ls, info, table, status, targets, message matches DeviceMapper',
  async (t) => {
    t.timeout(LONG);
    const cleanup = new Cleanup(t);
    const dm = cleanup.handle(DeviceMapper.open());
    const name = cleanup.device(uniqueName('cli'));
    dm.create(name);
    dm.load(name, [{ start: 0n, length: 2048n, type: 'zero', params: '' }]);
    dm.resume(name);
    dm.load(name, [{ start: 0n, length: 4096n, type: 'error', params: '' }]); // waits in the inactive slot

    t.deepEqual(json(t, await cli('--json', 'dm', 'version'), 'dm version'), { driverVersion: dm.version().join('.') });
    const ls = json(t, await cli('--json', 'dm', 'ls'), 'dm ls');
    t.deepEqual(ls, plain(dm.list()));
    t.true(ls.some((d: { name: string }) => d.name === name));
    t.deepEqual(json(t, await cli('--json', 'dm', 'info', name), 'dm info'), plain(dm.info(name)));
    const inactive = json(t, await cli('--json', 'dm', 'table', name, '--inactive'), 'dm table --inactive');
    t.deepEqual(inactive, plain(dm.table(name, { inactive: true })));
    t.notDeepEqual(inactive, plain(dm.table(name)), 'the inactive slot, not the live one');
    t.deepEqual(
      json(t, await cli('--json', 'dm', 'status', name), 'dm status'),
      plain(dm.status(name, { noFlush: true })),
    );
    const targets = json(t, await cli('--json', 'dm', 'targets'), 'dm targets');
    t.deepEqual(targets, plain(dm.targets()));
    t.true(targets.some((target: { name: string }) => target.name === 'thin-pool'));

    // A message with a reply (dm statistics, in dm core).
    const created = json(
      t,
      await cli('--json', 'dm', 'message', name, '0', '@stats_create', '-', '/1'),
      'dm message @stats_create',
    );
    t.regex(created.reply, /^\d+$/, 'the new region id');
    const region = new RegExp(`^${created.reply}: 0\\+2048 `, 'm');
    t.regex(dm.message(name, 0n, '@stats_list') ?? '', region, 'the library sees the region the CLI made');
    t.is(dm.message(name, 0n, `@stats_delete ${created.reply}`), undefined);

    // A failure carries the library's code.
    const missing = `${name}-missing`;
    const infoErr = await cli('dm', 'info', missing);
    t.is(infoErr.code, 1);
    const libCode = codeOf(t.throws(() => dm.info(missing)));
    t.true(infoErr.stderr.includes(`[${libCode}]`) && infoErr.stderr.includes(missing), infoErr.stderr);
  },
);

test.serial('usage errors: exit status 2 with a message, nothing touched; --help exits 0', async (t) => {
  t.timeout(LONG);
  const empty = mkdtempSync(join(tmpdir(), 'cli-usage-'));
  const cases: Array<[string[], RegExp]> = [
    // An Object.prototype name was once taken for a command.
    [['constructor'], /unknown command "constructor"[\s\S]*usage: devmapper/],
    [['create'], /usage: devmapper create <id>/],
    [['ls', '--bogus'], /unknown option --bogus/],
    [['dm', 'nope'], /unknown dm command "nope"/],
  ];
  for (const [args, message] of cases) {
    const run = await cli('--home', empty, ...args);
    t.is(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    t.is(run.stdout, '', `${args.join(' ')}: nothing on stdout`);
    t.regex(run.stderr, message, args.join(' '));
    t.regex(run.stderr, /^devmapper: /, 'a readable error starts with the program name');
  }
  const badSize = jsonError(
    t,
    await cli('--home', empty, '--json', 'create', 'x', '--size', '12Q'),
    2,
    'a bad size, with --json',
  );
  t.is(badSize.code, 'ERR_DM_USAGE');
  t.regex(badSize.message, /size: "12Q"/);
  t.deepEqual(readdirSync(empty), [], 'no usage error touched the home');

  const help = await cli('--help');
  t.is(help.code, 0);
  t.is(help.stderr, '');
  for (const command of [
    'init',
    'create <id>',
    'mount <id>',
    'umount <id>',
    'rm <id>',
    'ls',
    'status',
    'cleanup',
    'check',
    'demo',
    'dm version',
    'dm ls',
    'dm info <name>',
    'dm table <name>',
    'dm status <name>',
    'dm targets',
    'dm message <name>',
    '--json',
    '--home',
    '--help',
  ]) {
    t.true(help.stdout.includes(command), `--help lists ${command}`);
  }
  const createHelp = await cli('create', '--help');
  t.is(createHelp.code, 0);
  t.true(createHelp.stdout.startsWith('usage: devmapper create <id> [--parent <id>] [--size S]\n'), createHelp.stdout);

  // An operation error, not a usage error: a home that was never initialised.
  const notInit = jsonError(t, await cli('--home', empty, '--json', 'status'), 1, 'status of an uninitialised home');
  t.is(notInit.code, 'ERR_DM_NOT_INITIALISED');
  t.true(notInit.message.includes(`devmapper init --home ${empty}`), notInit.message);
  t.deepEqual(readdirSync(empty), []);
  execFileSync('rmdir', [empty]);
});

/** dm devices and loop devices that belong to `home` (its dm name prefix is devmapper-<maj>:<min>-<inode>). */
function homeDevices(home: string): { dm: string[]; loops: string[] } {
  const st = statSync(home);
  const major = (st.dev >>> 8) & 0xfff;
  const minor = (st.dev & 0xff) | ((st.dev >>> 12) & 0xfff00);
  const prefix = `devmapper-${major}:${minor}-${st.ino}-`;
  return { dm: dmNames().filter((n) => n.startsWith(prefix)), loops: loopLines().filter((l) => l.includes(home)) };
}

test.serial(
  'mount/umount across processes, an unknown id, ls of a removed parent, sizes, CLI words for a busy rm',
  async (t) => {
    t.timeout(LONG);
    home = newHome('cli-sem');
    t.is((await cli(...h(), ...initArgs)).code, 0);
    t.is((await cli(...h(), 'create', 'p')).code, 0);
    t.is((await cli(...h(), 'create', 'c', '--parent', 'p')).code, 0);

    // umount of an id that does not exist: an error, not a silent success.
    const unknown = jsonError(t, await cli(...h(), '--json', 'umount', 'nope'), 1, 'umount of an unknown id');
    t.is(unknown.code, 'ERR_DM_UNKNOWN_LAYER');
    t.regex(unknown.message, /layer nope does not exist/);

    // A CLI mount is idempotent: the second mount adds nothing, one umount unmounts.
    const first = json(t, await cli(...h(), '--json', 'mount', 'c'), 'mount c');
    const again = await cli(...h(), 'mount', 'c');
    t.is(again.code, 0);
    t.is(again.stdout, `${first.rootfs}\n`);
    t.regex(again.stderr, /c was already mounted/);
    t.false(first.alreadyMounted);
    // rm of a mounted layer speaks the CLI: umount it first.
    const busy = await cli(...h(), 'rm', 'c');
    t.is(busy.code, 1);
    t.is(busy.stderr, 'devmapper: layer c is mounted: run `devmapper umount c` first [EBUSY]\n');
    t.deepEqual(json(t, await cli(...h(), '--json', 'umount', 'c'), 'umount c'), {
      id: 'c',
      mounted: false,
      wasMounted: true,
    });
    t.deepEqual(mountsUnder(home), [], 'one umount after two mounts unmounts');
    const notMounted = await cli(...h(), 'umount', 'c');
    t.is(notMounted.code, 0, 'umount of a layer that is not mounted is fine');
    t.regex(notMounted.stderr, /c is not mounted: nothing to do/);

    // Sizes: smaller than the parent, more than the filesystem can grow to: usage errors naming --size, nothing made.
    const smaller = await cli(...h(), 'create', 's', '--parent', 'p', '--size', '32M');
    t.is(smaller.code, 2, smaller.stderr);
    t.regex(smaller.stderr, /^devmapper: --size: \d+ bytes is smaller than the parent's/);
    const huge = await cli(...h(), 'create', 'huge', '--size', '17T');
    t.is(huge.code, 2, huge.stderr);
    t.regex(
      huge.stderr,
      /^devmapper: --size: "17T" is more than the layer's filesystem can grow to \(nothing was created\)/,
    );

    // ls: a removed parent is shown as such, also once a new layer takes its id.
    t.is((await cli(...h(), 'rm', 'p')).code, 0);
    let text = await cli(...h(), 'ls');
    t.regex(text.stdout, /^c\s+\(removed\)\s+\d+/m, text.stdout);
    t.is((await cli(...h(), 'create', 'p')).code, 0);
    const rows = json(t, await cli(...h(), '--json', 'ls'), 'ls') as Array<{
      id: string;
      parent: string | null;
      parentRemoved: boolean;
    }>;
    t.deepEqual(rows.map((r) => [r.id, r.parent, r.parentRemoved]).sort(), [
      ['c', 'p', true],
      ['p', null, false],
    ]);
    text = await cli(...h(), 'ls');
    t.regex(text.stdout, /^c\s+\(removed\)\s+\d+/m, "the new p is not c's parent");
    await library(home, async (driver) => t.deepEqual((await driver.list()).map((l) => l.id).sort(), ['c', 'p']));
    t.is((await cli(...h(), 'cleanup')).code, 0);
  },
);

test.serial('a read-only home: ls, status and check work; what writes says the home is read-only', async (t) => {
  t.timeout(LONG);
  home = newHome('cli-ro');
  t.is((await cli(...h(), ...initArgs)).code, 0);
  t.is((await cli(...h(), 'create', 'img')).code, 0);
  execFileSync('mount', ['--bind', home, home]);
  try {
    execFileSync('mount', ['-o', 'remount,bind,ro', home]);
    const ls = json(t, await cli(...h(), '--json', 'ls'), 'ls on a read-only home');
    t.deepEqual(
      ls.map((r: { id: string }) => r.id),
      ['img'],
    );
    t.is(json(t, await cli(...h(), '--json', 'status'), 'status on a read-only home').layerCount, 1);
    t.true(json(t, await cli(...h(), '--json', 'check'), 'check on a read-only home').clean);
    for (const args of [
      ['create', 'x'],
      ['mount', 'img'],
      ['rm', 'img'],
      ['check', '--repair'],
    ]) {
      const run = await cli(...h(), ...args);
      t.is(run.code, 1, `${args.join(' ')}: ${run.stderr}`);
      t.regex(
        run.stderr,
        new RegExp(`^devmapper: ${home} is on a read-only filesystem: \`devmapper ${args[0]}`),
        args.join(' '),
      );
      t.regex(run.stderr, /\[EROFS\]\n$/);
    }
  } finally {
    execFileSync('umount', [home]);
  }
  // A home that cannot be created on a read-only filesystem says so too (not ENOENT).
  const ro = mkdtempSync(join(tmpdir(), 'cli-rofs-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro', 'tmpfs', ro]);
  try {
    const run = await cli('--home', join(ro, 'home'), 'init');
    t.is(run.code, 1);
    t.regex(run.stderr, /would be created in .*, which is on a read-only filesystem/);
    t.regex(run.stderr, /\[EROFS\]\n$/);
  } finally {
    execFileSync('umount', [ro]);
    execFileSync('rmdir', [ro]);
  }
  t.is((await cli(...h(), 'cleanup')).code, 0);
});

test.serial(
  'an init killed half-way: other commands say so and what to run; cleanup brings it down; the next init finishes it',
  async (t) => {
    t.timeout(LONG);
    home = newHome('cli-killed');
    /** Starts init and SIGKILLs it once its pool is up (deviceset.json is written right after). */
    const killedInit = async (): Promise<void> => {
      const child = spawn(process.execPath, [CLI_BIN, ...h(), ...initArgs], { stdio: 'ignore' });
      const exited = new Promise((resolve) => child.once('exit', resolve));
      const up = await eventually(() => existsSync(join(home, 'metadata', 'deviceset.json')), 120_000, 5);
      child.kill('SIGKILL');
      await exited;
      t.true(up, 'init got as far as the pool');
    };
    await killedInit();
    t.false(existsSync(join(home, 'cli-options.json')));
    t.true(
      homeDevices(home).dm.length > 0 && homeDevices(home).loops.length === 2,
      `the pool and its loops are still up: ${JSON.stringify(homeDevices(home))}`,
    );
    for (const args of [['ls'], ['create', 'x'], ['status']]) {
      const run = await cli(...h(), ...args);
      t.is(run.code, 1, args.join(' '));
      t.regex(run.stderr, /`devmapper init` on \S+ did not finish: it was interrupted/, args.join(' '));
      t.regex(run.stderr, /cli-options\.init\.json/);
      t.regex(
        run.stderr,
        new RegExp(
          `Run \`devmapper --home ${home} init\` with the same options to finish it, or \`devmapper --home ${home} cleanup\``,
        ),
      );
      t.regex(run.stderr, /\[ERR_DM_NOT_INITIALISED\]\n$/);
    }
    // cleanup: what it left goes (removing the home now leaks nothing).
    const cleanup = json(t, await cli(...h(), '--json', 'cleanup'), 'cleanup of a half-made home');
    t.true(cleanup.unfinishedInit);
    t.deepEqual(homeDevices(home), { dm: [], loops: [] });

    // Killed again; this time the next init finishes it.
    await killedInit();
    const init = await cli(...h(), ...initArgs);
    t.is(init.code, 0, init.stderr);
    t.regex(init.stderr, /did not finish: finishing it/);
    t.false(existsSync(join(home, 'cli-options.init.json')));
    t.is((await cli(...h(), 'create', 'x')).code, 0);
    t.true(json(t, await cli(...h(), '--json', 'check'), 'check after the finished init').clean);
    t.is((await cli(...h(), 'cleanup')).code, 0);
    t.deepEqual(homeDevices(home), { dm: [], loops: [] });
  },
);

test.serial('demo: exit status 0, the round trip reported, nothing left behind', async (t) => {
  t.timeout(LONG);
  const demoDirs = (): string[] =>
    readdirSync(tmpdir())
      .filter((n) => n.startsWith('devmapper-demo-'))
      .sort();
  const mounts = (): string => readFileSync('/proc/self/mounts', 'utf8');
  const before = { dm: dmNames(), loops: loopLines(), mounts: mounts(), dirs: demoDirs() };

  const run = await cli('--json', 'demo');
  const report = json(t, run, 'demo');
  t.regex(run.stderr, /demo home/, 'a progress line');
  t.true(report.cleanedUp);
  t.deepEqual(
    report.layers.map((l: { id: string; parent: string | null; mounted: boolean }) => [l.id, l.parent, l.mounted]),
    [
      ['image', null, false],
      ['container', 'image', true],
    ],
  );
  t.is(report.status.layerCount, 2);
  t.true(report.home.startsWith(`${tmpdir()}/devmapper-demo-`));

  t.false(existsSync(report.home), 'the temporary home is removed');
  t.false(dmNames().includes(report.status.poolName), 'the pool is gone');
  t.deepEqual(
    { dm: dmNames(), loops: loopLines(), mounts: mounts(), dirs: demoDirs() },
    before,
    'no dm device, loop device, mount or home left',
  );
});

test.serial('nothing leaked: no driver dm device, no loop device, no mount under any home', (t) => {
  t.deepEqual(
    dmNames().filter((n) => n.startsWith('devmapper-')),
    [],
  );
  t.deepEqual(loopLines(), []);
  for (const dir of allHomes()) t.deepEqual(mountsUnder(dir), [], dir);
});
