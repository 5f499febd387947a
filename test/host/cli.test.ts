// The devmapper CLI on a host without device-mapper (this one): every command that needs the
// kernel exits 1 and says what is missing and what to do, touching nothing; usage errors are
// still usage errors (exit status 2) and --help still works. The CLI runs as its own process
// (the built bin.js through execFile, never a shell).
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli, type CliRun } from '../cli-process.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const HAS_DM = existsSync('/dev/mapper/control');

type Run = CliRun;

const cli = (...args: string[]): Promise<Run> => runCli(args, 60_000);

const home = mkdtempSync(join(tmpdir(), 'devmapper-cli-host-'));
test.after.always(() => rmSync(home, { recursive: true, force: true }));

const demoDirs = (): string[] => readdirSync(tmpdir()).filter((n) => n.startsWith('devmapper-demo-')).sort();

// On a host that has device-mapper these cases are the kernel tests' business.
const withoutDm = HAS_DM ? test.skip : test;

withoutDm('each command that needs the kernel exits 1 and explains that device-mapper is missing', async (t) => {
  const before = demoDirs();
  const commands = [['ls'], ['init'], ['create', 'img'], ['mount', 'img'], ['umount', 'img'], ['rm', 'img'], ['status'], ['cleanup'], ['check'], ['demo'],
    ['dm', 'version'], ['dm', 'ls'], ['dm', 'info', 'x'], ['dm', 'table', 'x'], ['dm', 'status', 'x'], ['dm', 'targets'], ['dm', 'message', 'x', '0', 'hi']];
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
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>; scripts: Record<string, string> };
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

test('usage errors exit 2 before anything needs the kernel; --help exits 0', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['frobnicate'], /unknown command "frobnicate"/],
    [['toString'], /unknown command "toString"/],
    [[], /no command given/],
    [['create'], /usage: devmapper create <id>/],
    [['mount', 'a', 'b'], /usage: devmapper mount <id>/],
    [['ls', '--bogus'], /unknown option --bogus/],
    [['create', 'x', '--size', '12Q'], /size: "12Q" has an unknown unit/],
    [['create', 'x', '--size'], /--size needs a value/],
    [['create', '../escape'], /not a valid layer id/],
    [['mount', 'x', '--label', 'bad label'], /not a valid SELinux context/],
    [['init', '--base-size', 'huge'], /baseSize: "huge" is not a size/],
    [['init', '--fs', 'btrfs'], /"btrfs" is not ext4 or xfs/],
    [['init', '--min-free-space', 'ten'], /whole percentage/],
    [['init', '--data-dev', '/dev/loop0'], /dataDevice and metadataDevice go together/],
    [['check', '--repair=yes'], /--repair takes no value/],
    [['demo', 'now'], /usage: devmapper demo/],
    [['dm'], /devmapper dm <command>/],
    [['dm', 'nope'], /unknown dm command "nope"/],
    [['dm', 'info'], /usage: devmapper dm info <name>/],
    [['dm', 'ls', '--flush'], /unknown option --flush/],
    [['dm', 'message', 'x', 'first', 'hi'], /sector must be a whole number/],
    [['--wait=soon', 'ls'], /--wait=SECONDS takes a non-negative number of seconds/],
    [['--wait=-1', 'ls'], /--wait=SECONDS takes a non-negative number of seconds/],
  ];
  const runs = await Promise.all(cases.map(([args]) => cli('--home', home, ...args)));
  cases.forEach(([args, message], i) => {
    const run = runs[i]!;
    const what = args.join(' ') || '(nothing)';
    t.is(run.code, 2, `${what}: ${run.stderr}`);
    t.is(run.stdout, '', what);
    t.regex(run.stderr, /^devmapper: /, what);
    t.regex(run.stderr, message, what);
    t.notRegex(run.stderr, /no device-mapper|ERR_DM_UNAVAILABLE/, `${what}: a usage error, not a missing kernel`);
  });
  const relative = await cli('--home', 'relative/dir', 'ls');
  t.is(relative.code, 2);
  t.regex(relative.stderr, /--home must be an absolute path/);
  const json = await cli('--home', home, '--json', 'create');
  t.is(json.code, 2);
  t.deepEqual(JSON.parse(json.stderr), { error: { code: 'ERR_DM_USAGE', message: 'usage: devmapper create <id> [--parent <id>] [--size <size>]' } });
  t.deepEqual(readdirSync(home), []);

  for (const args of [['--help'], ['-h'], ['ls', '--help'], ['dm', 'info', '--help']]) {
    const help = await cli(...args);
    t.is(help.code, 0, args.join(' '));
    t.is(help.stderr, '');
    t.regex(help.stdout, /^usage: devmapper \[--home DIR\] \[--json\] \[--wait\[=SECONDS\]\] <command>/);
    for (const command of ['init', 'create', 'mount', 'umount', 'rm', 'ls', 'status', 'cleanup', 'check', 'demo', 'dm version', 'dm ls', 'dm info', 'dm table',
      'dm status', 'dm targets', 'dm message']) {
      t.regex(help.stdout, new RegExp(`^  ${command}\\b`, 'm'), `${args.join(' ')} lists ${command}`);
    }
  }
});
