// `devmapper grow-pool` as a user runs it: the real CLI process (bin.js through execFile) on a
// small pool that a writer fills, then grown until writes succeed again; and on a pool whose
// metadata device is full (filled through the library in this process, which then lets go of
// the home), where grow-pool without sizes doubles the metadata file. Exit statuses: 0 done,
// 1 a failure with its code, 2 a size the home cannot take (nothing changed).
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Driver } from '../../src/driver/driver.js';
import { type CliRun, runCli } from '../cli-process.js';
import { errorOf, json, LONG, recorded, useCliBed } from './cli-helpers.js';
import { assertNothingLeaked, newHome, sha } from './driver-helpers.js';
import { fillMetadata, writeDurably } from './fault-helpers.js';

const MiB = 1n << 20n;

// The leak check is this file's last test.
useCliBed({ leakCheckHook: false });

/** The --json error of a run that exited with `status`. */
function failed(t: ExecutionContext, run: CliRun, status: number, what: string): { code: string; message: string } {
  t.is(run.code, status, `${what}: exit status (stdout: ${run.stdout}, stderr: ${run.stderr})`);
  return errorOf(run);
}

/** dd of zeros with O_DIRECT (each write reaches the pool at once); never hangs the test. */
function dd(file: string, mib: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'dd',
      ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${mib}`, 'oflag=direct', 'conv=fsync'],
      { timeout: 30_000, killSignal: 'SIGKILL', encoding: 'utf8' },
      (error, _stdout, stderr) => {
        const e = error as { code?: number | string } | null;
        resolve({ code: e ? (typeof e.code === 'number' ? e.code : null) : 0, stderr });
      },
    );
  });
}

test.serial(
  'grow-pool: a pool a writer filled goes back to rw and writes succeed again; a smaller --data-size exits 2 with nothing changed',
  async (t) => {
    t.timeout(LONG);
    const home = newHome('cligrow');
    const h = ['--home', home, '--json'];
    const cli = (...args: string[]): Promise<CliRun> => runCli([...h, ...args]);
    json(t, await cli('init', '--base-size', '64M', '--loop-data-size', '40M', '--loop-metadata-size', '16M'), 'init');
    json(t, await cli('create', 'img'), 'create img');
    const imgRoot = json(t, await cli('mount', 'img'), 'mount img').rootfs as string;
    const kept = randomBytes(2 << 20);
    writeDurably(join(imgRoot, 'kept'), kept);
    json(t, await cli('create', 'fill', '--parent', 'img'), 'create fill');
    const fillRoot = json(t, await cli('mount', 'fill'), 'mount fill').rootfs as string;

    // The writer fills the pool: it fails (ENOSPC/EIO at once, errorIfNoSpace is the default).
    const filled = await dd(join(fillRoot, 'filler'), 60);
    t.not(filled.code, 0, 'the writer hit the end of the pool');
    t.regex(filled.stderr, /No space left on device|Input\/output error/);
    const full = json(t, await cli('status'), 'status');
    t.is(full.poolMode, 'out_of_data_space');
    t.is(full.dataSpace.used, full.dataSpace.total);
    const refused = failed(t, await cli('create', 'more', '--parent', 'img'), 1, 'create on a full pool');
    t.is(refused.code, 'ERR_DM_NO_SPACE');
    t.regex(refused.message, /devmapper grow-pool --data-size/, 'the message names the command to run');

    // A size the home cannot take: a usage error naming the flag, and nothing changed.
    const smaller = failed(t, await cli('grow-pool', '--data-size', '32M'), 2, 'grow-pool smaller');
    t.is(smaller.code, 'ERR_DM_USAGE');
    t.regex(smaller.message, /^--data-size: .*smaller than/);
    t.is(BigInt(statSync(full.dataFile).size), 40n * MiB);
    const badSize = failed(t, await cli('grow-pool', '--metadata-size', '3 apples'), 2, 'grow-pool bad size');
    t.regex(badSize.message, /^--metadata-size: /);

    // Grown: rw again, and writes succeed (in a layer that was mounted all along, and in a new
    // one; the filling layer's ext4 turned itself read-only when its journal write failed).
    const grown = json(t, await cli('grow-pool', '--data-size', '160M'), 'grow-pool');
    t.is(grown.before.poolMode, 'out_of_data_space');
    t.is(grown.after.poolMode, 'rw');
    t.is(grown.after.dataSpace.total, String(160n * MiB));
    t.is(grown.after.metadataSpace.total, String(16n * MiB), 'the metadata file is left alone');
    t.is(BigInt(statSync(full.dataFile).size), 160n * MiB);
    const again = await dd(join(imgRoot, 'after'), 8);
    t.is(again.code, 0, `a write after grow-pool: ${again.stderr}`);
    json(t, await cli('create', 'more', '--parent', 'img'), 'create after grow-pool');
    const moreRoot = json(t, await cli('mount', 'more'), 'mount more').rootfs as string;
    const fresh = randomBytes(8 << 20);
    writeDurably(join(moreRoot, 'fresh'), fresh);
    t.is(sha(readFileSync(join(moreRoot, 'fresh'))), sha(fresh));
    t.is(sha(readFileSync(join(moreRoot, 'kept'))), sha(kept), 'data written before the pool filled is intact');

    // Readable output names both sizes.
    const text = await runCli(['--home', home, 'grow-pool', '--metadata-size', '32M']);
    t.is(text.code, 0, text.stderr);
    t.regex(text.stdout, /^grew pool \S+: data 160\.0 MiB, metadata 16\.0 MiB -> 32\.0 MiB; mode rw\n$/);
    for (const id of ['more', 'fill', 'img']) json(t, await cli('umount', id), `umount ${id}`);
    const check = await cli('check');
    t.is(check.code, 0, `check is clean: ${check.stdout}`);
    json(t, await cli('cleanup'), 'cleanup');
  },
);

test.serial(
  'grow-pool on a pool whose metadata device is full: create exits 1 with ERR_DM_METADATA_FULL naming grow-pool, grow-pool doubles the metadata file',
  async (t) => {
    t.timeout(LONG);
    const home = newHome('climeta');
    const h = ['--home', home, '--json'];
    const cli = (...args: string[]): Promise<CliRun> => runCli([...h, ...args]);
    json(
      t,
      await cli(
        'init',
        '--base-size',
        '64M',
        '--loop-data-size',
        '4G',
        '--loop-metadata-size',
        '2M',
        '--min-free-space',
        '0',
      ),
      'init',
    );
    const driver = await Driver.init(recorded(home));
    const { done } = await fillMetadata(driver);
    t.log(`metadata full after ${done.length} layers`);
    await driver.close();

    const full = json(t, await cli('status'), 'status');
    t.is(full.poolMode, 'ro');
    const refused = failed(t, await cli('create', 'more'), 1, 'create on a full metadata device');
    t.is(refused.code, 'ERR_DM_METADATA_FULL');
    t.true(refused.message.includes(full.metadataFile), refused.message);
    t.regex(refused.message, /`devmapper grow-pool` grows the metadata file/);

    const grown = json(t, await cli('grow-pool'), 'grow-pool');
    t.is(grown.before.poolMode, 'ro');
    t.is(grown.after.poolMode, 'rw');
    t.is(grown.after.metadataSpace.total, String(4n * MiB));
    t.is(BigInt(statSync(full.metadataFile).size), 4n * MiB);
    json(t, await cli('create', 'more'), 'create after grow-pool');
    const check = await cli('check');
    t.is(check.code, 0, `check is clean: ${check.stdout}`);
    json(t, await cli('cleanup'), 'cleanup');
  },
);

test.serial('nothing leaked: no dm device, no loop device, no mount under any home', (t) => {
  assertNothingLeaked(t);
});
