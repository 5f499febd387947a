// Repair that never destroys: damaged metadata as a disk error or a hand edit leaves it, each
// case of issue 15 reproduced through the CLI (its own process, as a user runs it) and the
// library. Records with wrong types, `null`, two records naming one thin id, garbage in
// cli-options.json, a thin id deleted behind the driver's back, a read-only pool. In each: the
// error names the file (and field), `check --repair` deletes no thin id that a record (valid,
// damaged or quarantined) may own, moves what it cannot use to <home>/quarantine, is
// idempotent, and every layer that was intact keeps its data. Also `check --thin-check`
// (thin_check through a metadata snapshot of the live pool) and thin_check on the inactive pool.
import test, { type ExecutionContext } from 'ava';
import { Kernel } from '../../src/ioctl/kernel.js';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { HomeLayout } from '../../src/driver/home-layout.js';
import { MetadataError } from '../../src/errors.js';
import { findThinTool, thinCheckOffline } from '../../src/driver/thin-check.js';
import { dmsetup } from './reference-tools.js';
import {
  assertNothingLeaked,
  driverDmNames,
  mountsUnder,
  newHome,
  poolThinIds,
  savedThinIds,
  sha,
  show,
} from './driver-helpers.js';
import { useDriverBed } from './helpers.js';
import { setNeedsCheck } from './thin-superblock.js';
import { runCli, type CliRun } from '../cli-process.js';
import { initArgs, recorded } from './cli-helpers.js';

useDriverBed();

const cli = (home: string, ...args: string[]): Promise<CliRun> => runCli(['--home', home, ...args]);
const recordPath = (home: string, id: string): string => join(home, 'metadata', `${id}.layer.json`);

/** A CLI-initialised home with layers a, b (a's child) and c, each holding a file of its own. */
async function prepare(t: ExecutionContext, tag: string): Promise<{ home: string; files: Map<string, string> }> {
  const home = newHome(tag);
  const init = await cli(home, ...initArgs);
  t.is(init.code, 0, init.stderr);
  const driver = await Driver.init(recorded(home));
  const files = new Map<string, string>();
  try {
    for (const [id, parent] of [
      ['a', undefined],
      ['b', 'a'],
      ['c', undefined],
    ] as const) {
      await driver.create(id, parent);
      const rootfs = await driver.get(id);
      const data = randomBytes(256 << 10);
      writeFileSync(join(rootfs, `${id}.bin`), data);
      files.set(id, sha(data));
      await driver.put(id);
    }
  } finally {
    await driver.cleanup();
  }
  return { home, files };
}

/** Every listed layer's own file still has its content (each through get/put). */
async function assertFiles(t: ExecutionContext, home: string, files: Map<string, string>, what: string): Promise<void> {
  const driver = await Driver.init(recorded(home));
  try {
    for (const [id, hash] of files) {
      const rootfs = await driver.get(id);
      t.is(sha(readFileSync(join(rootfs, `${id}.bin`))), hash, `${what}: layer ${id}'s file`);
      await driver.put(id);
    }
  } finally {
    await driver.cleanup();
  }
}

/** The home's pool's thin ids, probed with dmsetup on the pool activated by an inspecting check. */
async function poolIds(home: string): Promise<number[]> {
  await Driver.check(recorded(home)); // activates the pool (even with damaged records), changes nothing
  // This home's pool, by its name: another home's (a test that left its pool up) may sort first.
  const name = HomeLayout.create(home).poolName;
  const ids = poolThinIds(name, 20);
  await cli(home, 'cleanup').catch(() => undefined);
  if (dmsetup('ls').includes(name)) dmsetup('remove', name);
  return ids;
}

const checkJson = async (
  t: ExecutionContext,
  home: string,
  ...args: string[]
): Promise<{ code: number | null; report: any }> => {
  const run = await cli(home, '--json', 'check', ...args);
  t.not(run.stdout, '', `check ${args.join(' ')}: stderr ${run.stderr}`);
  return { code: run.code, report: JSON.parse(run.stdout) };
};

test.serial(
  'a record with wrong types: errors name the file and field; check --repair quarantines it alone, deletes no thin id, and is idempotent',
  async (t) => {
    const { home, files } = await prepare(t, 'types');
    const thinIds = savedThinIds(home);
    const idsBefore = await poolIds(home);
    const original = readFileSync(recordPath(home, 'b'), 'utf8');
    writeFileSync(recordPath(home, 'b'), JSON.stringify({ id: 'b', deviceId: 'x', size: -5 }));

    const error = await t.throwsAsync(Driver.init(recorded(home)));
    t.true(error instanceof MetadataError, show(error));
    t.is((error as MetadataError).code, 'ERR_DM_METADATA');
    t.is((error as MetadataError).file, recordPath(home, 'b'));
    t.truthy((error as MetadataError).field);
    const ls = await cli(home, 'ls');
    t.is(ls.code, 1);
    t.regex(ls.stderr, /b\.layer\.json/);
    t.regex(ls.stderr, /ERR_DM_METADATA/);

    const found = await checkJson(t, home);
    t.is(found.code, 3, 'problems found: exit status 3');
    t.is(found.report.damagedRecords.length, 1);
    t.deepEqual(
      found.report.missingThinIds,
      [],
      'no valid layer (the base included) is reported as missing its thin id',
    );

    const first = await checkJson(t, home, '--repair');
    t.is(first.report.quarantined.length, 1, show(first.report));
    t.regex(first.report.quarantined[0], /\/quarantine\/b\.layer\.json\./);
    t.deepEqual(first.report.leakedThinIds, [thinIds.get('b')], "b's thin id shows as leaked ...");
    t.true(
      first.report.skipped.some((s: string) => s.startsWith(`leaked thin id ${thinIds.get('b')}:`)),
      '... and is left in place: the damaged record may own it',
    );
    t.deepEqual(await poolIds(home), idsBefore, 'every thin id is still in the pool');
    t.true(
      existsSync(recordPath(home, '.base')) && existsSync(recordPath(home, 'a')) && existsSync(recordPath(home, 'c')),
    );

    const second = await checkJson(t, home, '--repair');
    t.deepEqual(second.report.repairs, [], 'a second repair changes nothing');
    t.deepEqual(second.report.leakedThinIds, [thinIds.get('b')]);
    t.true(
      second.report.skipped.some((s: string) => s.startsWith(`leaked thin id ${thinIds.get('b')}:`)),
      'still left in place while the quarantine holds a record that may own it',
    );
    t.is(second.code, 3, 'not clean: someone has to look at the quarantine');
    t.deepEqual(await poolIds(home), idsBefore);

    const intact = new Map([...files].filter(([id]) => id !== 'b'));
    await assertFiles(t, home, intact, 'after the repair');
    const mount = await cli(home, 'mount', 'a');
    t.is(mount.code, 0, `the home works again: ${mount.stderr}`);
    t.is((await cli(home, 'umount', 'a')).code, 0);

    // Restored by hand (the quarantine looked at and emptied): b and its data are back, check clean.
    writeFileSync(recordPath(home, 'b'), original);
    rmSync(join(home, 'quarantine'), { recursive: true });
    await assertFiles(t, home, files, 'after the restore');
    const clean = await checkJson(t, home);
    t.is(clean.code, 0, show(clean.report));
    t.is((await cli(home, 'cleanup')).code, 0, 'the home goes down: no pool left for the next test');
  },
);

test.serial(
  "two records naming one thin id: init refuses naming both, repair deletes nothing, and both layers' data survive until the record is fixed",
  async (t) => {
    const { home, files } = await prepare(t, 'dup');
    const thinIds = savedThinIds(home);
    const idsBefore = await poolIds(home);
    const original = readFileSync(recordPath(home, 'c'), 'utf8');
    writeFileSync(recordPath(home, 'c'), JSON.stringify({ ...JSON.parse(original), deviceId: thinIds.get('a') }));

    const error = await t.throwsAsync(Driver.init(recorded(home)), { instanceOf: MetadataError });
    t.regex(error!.message, /claimed by layers a and c/);
    const rm = await cli(home, 'rm', 'a');
    t.is(rm.code, 1, "rm cannot run on the conflicting home (it would delete c's claimed thin id too)");
    t.regex(rm.stderr, /a\.layer\.json/);

    const found = await checkJson(t, home, '--repair');
    t.deepEqual(found.report.thinIdConflicts, [{ deviceId: thinIds.get('a'), layers: ['a', 'c'] }]);
    t.deepEqual(found.report.leakedThinIds, [thinIds.get('c')], "c's real thin id looks leaked ...");
    t.true(
      found.report.skipped.some((s: string) => s.startsWith(`leaked thin id ${thinIds.get('c')}:`)),
      '... and is not deleted',
    );
    t.deepEqual(found.report.repairs, []);
    t.is(found.code, 3);
    t.deepEqual(await poolIds(home), idsBefore, 'no thin id deleted');
    t.deepEqual((await checkJson(t, home, '--repair')).report.repairs, [], 'idempotent');

    writeFileSync(recordPath(home, 'c'), original);
    await assertFiles(t, home, files, 'after the record is fixed');
  },
);

test.serial(
  'a null record and garbage in cli-options.json: each error names its file; repair quarantines the null record',
  async (t) => {
    const { home, files } = await prepare(t, 'null');
    t.is((await cli(home, 'mount', 'a')).code, 0);
    writeFileSync(recordPath(home, 'c'), 'null');
    const cleanup = await cli(home, 'cleanup');
    t.is(cleanup.code, 0, `cleanup brings a damaged home down all the same: ${cleanup.stderr}`);
    t.regex(cleanup.stderr, /c\.layer\.json/);
    t.deepEqual(mountsUnder(home), []);
    t.deepEqual(driverDmNames(), []);
    const ls = await cli(home, 'ls');
    t.is(ls.code, 1);
    t.regex(ls.stderr, new RegExp(`${recordPath(home, 'c').replace(/[.]/g, '\\.')}.*null`));
    t.notRegex(ls.stderr, /Cannot read properties|ERR_UNKNOWN/);

    const optionsText = readFileSync(join(home, 'cli-options.json'), 'utf8');
    writeFileSync(join(home, 'cli-options.json'), '{"baseSize": "64M", garbage');
    for (const command of [['ls'], ['check'], ['mount', 'a']]) {
      const run = await cli(home, ...command);
      t.is(run.code, 1, command.join(' '));
      t.regex(run.stderr, /cli-options\.json/, `${command.join(' ')}: ${run.stderr}`);
      t.regex(run.stderr, /ERR_DM_METADATA/);
    }
    writeFileSync(join(home, 'cli-options.json'), 'null');
    t.regex((await cli(home, 'status')).stderr, /cli-options\.json.*null/);
    writeFileSync(join(home, 'cli-options.json'), optionsText);

    const repaired = await checkJson(t, home, '--repair');
    t.is(repaired.report.quarantined.length, 1);
    t.deepEqual(JSON.parse(readFileSync(repaired.report.quarantined[0], 'utf8')), null, 'the file is kept as it was');
    t.deepEqual(repaired.report.missingThinIds, []);
    files.delete('c');
    await assertFiles(t, home, files, 'after the repair');
  },
);

test.serial(
  "a thin id deleted behind the driver's back: mount says so; check reports it; repair quarantines that record only, then is clean and idempotent",
  async (t) => {
    const { home, files } = await prepare(t, 'gone');
    const thinIds = savedThinIds(home);
    const driver = await Driver.init(recorded(home));
    const { poolName } = await driver.status();
    await driver.close();
    dmsetup('message', poolName, '0', `delete ${thinIds.get('c')}`);

    const mount = await cli(home, 'mount', 'c');
    t.is(mount.code, 1);
    t.regex(mount.stderr, /thin id \d+ is not in pool/);
    t.regex(mount.stderr, /ERR_DM_THIN_ID_MISSING/);
    const found = await checkJson(t, home);
    t.deepEqual(found.report.missingThinIds, [{ layer: 'c', deviceId: thinIds.get('c') }]);
    const repaired = await checkJson(t, home, '--repair');
    t.is(repaired.code, 0, show(repaired.report));
    t.is(repaired.report.quarantined.length, 1);
    if (findThinTool('thin_ls'))
      t.true(
        repaired.report.repairs.some((r: string) => r.includes('thin_ls')),
        'thin_ls on a metadata snapshot confirmed it first',
      );
    const again = await checkJson(t, home, '--repair');
    t.is(again.code, 0);
    t.deepEqual(again.report.repairs, []);
    files.delete('c');
    await assertFiles(t, home, files, 'after the repair');
  },
);

test.serial('a base record lost: rebuilt from deviceset.json, not replaced by a second base', async (t) => {
  const { home, files } = await prepare(t, 'base');
  rmSync(recordPath(home, '.base'));
  const report = await Driver.check(recorded(home));
  t.true(report.clean, show(report));
  t.true(existsSync(recordPath(home, '.base')));
  await assertFiles(t, home, files, 'after the rebuild');
});

test.serial(
  'check: a read-only pool is a problem, not clean; --thin-check runs thin_check on a metadata snapshot of the live pool; thin_check passes on the inactive pool',
  async (t) => {
    const { home } = await prepare(t, 'thincheck');
    let driver = await Driver.init(recorded(home));
    try {
      const live = await driver.check({ thinCheck: true });
      if (!findThinTool('thin_check')) {
        t.false(live.thinCheck!.ran);
        t.regex(live.thinCheck!.summary, /not installed/);
        return;
      }
      t.true(live.thinCheck!.ran && live.thinCheck!.ok, show(live.thinCheck));
      t.is(live.thinCheck!.through, 'metadata-snapshot');
      t.true(live.clean, show(live));
      t.is(
        dmsetup('status', (await driver.status()).poolName)
          .trim()
          .split(/\s+/)[6],
        '-',
        'the metadata snapshot was released (no held root)',
      );
      // Someone else holds the pool's one metadata snapshot: check says so instead of failing.
      dmsetup('message', (await driver.status()).poolName, '0', 'reserve_metadata_snap');
      const held = await driver.check({ thinCheck: true });
      t.false(held.thinCheck!.ran);
      t.regex(held.thinCheck!.summary, /reserve_metadata_snap/);
      dmsetup('message', (await driver.status()).poolName, '0', 'release_metadata_snap');

      const { poolName } = await driver.status();
      const table = dmsetup('table', poolName).trim().split(/\s+/);
      const features = table.slice(8);
      dmsetup(
        'load',
        poolName,
        '--table',
        `${table.slice(0, 7).join(' ')} ${features.length + 1} ${[...features, 'read_only'].join(' ')}`,
      );
      dmsetup('suspend', '--noflush', poolName);
      dmsetup('resume', poolName);
      const ro = await driver.check({ thinCheck: true });
      t.is(ro.poolMode, 'ro');
      t.false(ro.clean, 'read-only is reported as a problem');
      t.is(ro.thinCheck!.through, 'read-only-pool');
      t.true(ro.thinCheck!.ok, show(ro.thinCheck));
      await driver.close(); // the CLI's own process takes the home
      const cliRun = await cli(home, 'check', '--thin-check');
      driver = await Driver.init(recorded(home));
      t.is(cliRun.code, 3, cliRun.stderr);
      t.regex(cliRun.stdout, /Pool mode\s+ro/);
      t.regex(cliRun.stdout, /thin_check\s+thin_check passed/);
      dmsetup(
        'load',
        poolName,
        '--table',
        `${table.slice(0, 7).join(' ')} ${features.length} ${features.join(' ')}`.trim(),
      );
      dmsetup('suspend', '--noflush', poolName);
      dmsetup('resume', poolName);
    } finally {
      await driver.cleanup();
    }
    const offline = await thinCheckOffline(join(home, 'devicemapper', 'metadata'), { kernel: Kernel.for() });
    t.true(offline.ok, show(offline));
  },
);

test.serial(
  'a pool in needs_check: check --repair deactivates it, thin_repairs its metadata into a new file, swaps it in (the old one kept), and the home is rw and intact',
  async (t) => {
    if (!findThinTool('thin_repair')) {
      t.pass('thin_repair is not installed: nothing to repair with');
      return;
    }
    const { home, files } = await prepare(t, 'needscheck');
    const metadata = join(home, 'devicemapper', 'metadata');
    setNeedsCheck(metadata, true);
    const status = await cli(home, '--json', 'status');
    t.is(status.code, 0, status.stderr);
    t.like(JSON.parse(status.stdout), { poolMode: 'ro', needsCheck: true });
    const mounted = await cli(home, 'mount', 'a');
    t.is(mounted.code, 1);
    t.regex(mounted.stderr, /needs_check/);
    t.is((await cli(home, 'cleanup')).code, 0);

    const repaired = await checkJson(t, home, '--repair', '--thin-check');
    t.is(repaired.code, 0, show(repaired.report));
    t.false(repaired.report.needsCheck);
    t.is(repaired.report.poolMode, 'rw');
    t.true(
      repaired.report.repairs.some((r: string) => r.startsWith('thin_repair wrote new metadata')),
      show(repaired.report.repairs),
    );
    t.true(repaired.report.thinCheck.ok);
    const kept = readdirSync(join(home, 'quarantine')).filter((n) => n.startsWith('metadata.needs-check.'));
    t.is(kept.length, 1, 'the old metadata is kept');
    t.deepEqual((await checkJson(t, home, '--repair')).report.repairs, [], 'a second repair changes nothing');
    await assertFiles(t, home, files, 'after the metadata repair');
    const driver = await Driver.init(recorded(home));
    await driver.create('new-after-repair', 'a');
    await driver.cleanup();
  },
);

test.serial('nothing leaked', (t) => {
  assertNothingLeaked(t);
});
