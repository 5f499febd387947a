// The devmapper CLI against a real kernel, homes in an unusual state: a read-only home (ls,
// status and check work, the commands that write say the home is read-only) and a home whose
// init was killed half-way (other commands say so and what to run, cleanup brings it down, the
// next init finishes it). Each command is run as its own process (cli-helpers.ts); an
// after.always hook checks that nothing is leaked.
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_BIN } from '../cli-process.js';
import { LONG, cli, initArgs, json, useCliBed } from './cli-helpers.js';
import { dmNames, eventually, loopLines, newHome } from './driver-helpers.js';

useCliBed({ leakCheckHook: true });

/** dm devices and loop devices that belong to `home` (its dm name prefix is devmapper-<maj>:<min>-<inode>). */
function homeDevices(home: string): { dm: string[]; loops: string[] } {
  const st = statSync(home);
  const major = (st.dev >>> 8) & 0xfff;
  const minor = (st.dev & 0xff) | ((st.dev >>> 12) & 0xfff00);
  const prefix = `devmapper-${major}:${minor}-${st.ino}-`;
  return { dm: dmNames().filter((n) => n.startsWith(prefix)), loops: loopLines().filter((l) => l.includes(home)) };
}

/** The home of the test that runs (each makes its own). */
let home = '';
const h = (): string[] => ['--home', home];

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

test.serial(
  'init with cli-options.init.json planted as a symlink: ERR_DM_UNSAFE_PATH, nothing written through it, nothing left up',
  async (t) => {
    t.timeout(LONG);
    const outside = mkdtempSync(join(tmpdir(), 'cli-outside-'));
    const victim = join(outside, 'victim');
    writeFileSync(victim, "not the driver's\n");
    for (const target of [victim, join(outside, 'made-by-init')]) {
      home = newHome('cli-pending-link');
      symlinkSync(target, join(home, 'cli-options.init.json'));
      const init = await cli(...h(), ...initArgs);
      t.is(init.code, 1, init.stderr);
      t.regex(init.stderr, /cli-options\.init\.json is a symlink.*\[ERR_DM_UNSAFE_PATH\]\n$/s);
      t.deepEqual(homeDevices(home), { dm: [], loops: [] });
    }
    t.is(readFileSync(victim, 'utf8'), "not the driver's\n", 'the file the link names is untouched');
    t.false(existsSync(join(outside, 'made-by-init')), 'no file made where a dangling link points');
  },
);
