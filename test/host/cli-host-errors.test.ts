// The devmapper CLI on a host it cannot work on: without device-mapper (this one) every command
// that needs the kernel exits 1 and says what is missing and what to do, touching nothing (plain
// and --json), with a hint that fits an installed package or a source checkout; a regular file
// as --home is an error naming it. Usage errors and help are cli-usage.test.ts.
import test from 'ava';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { deviceMapperHint } from '../../src/cli/host.js';
import { cli, freshHome, ROOT } from './helpers/cli-host.js';

const HAS_DM = existsSync('/dev/mapper/control');

const home = freshHome();

const demoDirs = (): string[] =>
  readdirSync(tmpdir())
    .filter((n) => n.startsWith('devmapper-demo-'))
    .sort();

// On a host that has device-mapper these cases are the kernel tests' business.
const withoutDm = HAS_DM ? test.skip : test;

withoutDm('each command that needs the kernel exits 1 and explains that device-mapper is missing', async (t) => {
  const before = demoDirs();
  const commands = [
    ['ls'],
    ['init'],
    ['create', 'img'],
    ['mount', 'img'],
    ['umount', 'img'],
    ['rm', 'img'],
    ['status'],
    ['cleanup'],
    ['check'],
    ['demo'],
    ['dm', 'version'],
    ['dm', 'ls'],
    ['dm', 'info', 'x'],
    ['dm', 'table', 'x'],
    ['dm', 'status', 'x'],
    ['dm', 'targets'],
    ['dm', 'message', 'x', '0', 'hi'],
  ];
  const runs = await Promise.all(commands.map((args) => cli('--home', home, ...args)));
  commands.forEach((args, i) => {
    const run = runs[i]!;
    const what = args.join(' ');
    t.is(run.code, 1, `${what}: ${run.stderr}`);
    t.is(run.stdout, '', what);
    t.regex(run.stderr, /^devmapper: this kernel has no device-mapper \(\/dev\/mapper\/control is missing\)/, what);
    t.regex(run.stderr, /modprobe dm_thin_pool/, `${what}: what to load`);
    t.regex(run.stderr, /\[ERR_DM_UNAVAILABLE\]\n$/, `${what}: the code`);
  });
  t.deepEqual(readdirSync(home), [], 'the home is untouched');
  t.deepEqual(demoDirs(), before, 'the demo made no temporary home');

  // The way out it names is a command that exists in this checkout: the package's bin, in the VM.
  const suggestion = /npm run vm -- node (\S+) \.\.\./.exec(runs[0]!.stderr);
  t.truthy(suggestion, runs[0]!.stderr);
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    bin: Record<string, string>;
    scripts: Record<string, string>;
  };
  t.is(resolve(ROOT, suggestion![1]!), resolve(ROOT, pkg.bin.devmapper!));
  t.true(existsSync(join(ROOT, suggestion![1]!)));
  t.truthy(pkg.scripts.vm, 'npm run vm exists');
});

withoutDm('with --json the missing device-mapper is a JSON error on stderr', async (t) => {
  const run = await cli('--home', home, '--json', 'status');
  t.is(run.code, 1);
  t.is(run.stdout, '');
  const { error } = JSON.parse(run.stderr) as { error: { code: string; message: string } };
  t.is(error.code, 'ERR_DM_UNAVAILABLE');
  t.regex(error.message, /\/dev\/mapper\/control is missing/);
});

test('a regular file as --home: an error naming it (no advice to init, no raw EEXIST), exit 1, for every command', async (t) => {
  const file = join(home, '..', `devmapper-home-file-${process.pid}`);
  writeFileSync(file, 'not a home\n');
  try {
    for (const args of [['init'], ['ls'], ['status'], ['create', 'x'], ['check'], ['cleanup'], ['image', 'ls']]) {
      const run = await cli('--home', file, ...args);
      t.is(run.code, 1, `${args.join(' ')}: ${run.stderr}`);
      t.is(
        run.stderr,
        `devmapper: --home ${file} is a regular file, not a directory: give a directory, or a path that does not exist yet (init creates it) [ENOTDIR]\n`,
        args.join(' '),
      );
    }
    const below = await cli('--home', join(file, 'sub'), 'init');
    t.is(below.code, 1);
    t.regex(below.stderr, new RegExp(`cannot be created: ${file} is a regular file, not a directory \\[ENOTDIR\\]`));
    t.is(readFileSync(file, 'utf8'), 'not a home\n');
  } finally {
    rmSync(file, { force: true });
  }
});

test('the ERR_DM_UNAVAILABLE hint fits where the CLI runs: the test kernel only in a source checkout', (t) => {
  const installed = mkdtempSync(join(tmpdir(), 'devmapper-installed-'));
  try {
    const hint = deviceMapperHint(installed); // an installed package: dist/src only, no dist/test
    t.regex(hint, /modprobe dm_thin_pool/);
    t.regex(hint, /CAP_SYS_ADMIN/);
    t.notRegex(hint, /npm run vm/);
    t.regex(deviceMapperHint(ROOT), /npm run vm -- node dist\/src\/cli\/bin\.js/);
  } finally {
    rmSync(installed, { recursive: true, force: true });
  }
});
