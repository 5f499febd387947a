// The devmapper CLI's arguments, which need no kernel: usage errors exit 2 (plain and --json)
// before anything needs the kernel, on this host without device-mapper too; --help lists every
// command, <command> --help prints its usage, options and an example; --version. Touches nothing.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { COMMANDS } from '../../src/cli/command-help.js';
import { cli, DM_SUBCOMMANDS, freshHome, LAYER_COMMANDS, ROOT } from './helpers/cli-host.js';

const home = freshHome();

test('usage errors exit 2 before anything needs the kernel; --help exits 0', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['frobnicate'], /unknown command "frobnicate"/],
    [['toString'], /unknown command "toString"/],
    [[], /no command given/],
    [['create'], /usage: devmapper create <id>/],
    [['mount', 'a', 'b'], /usage: devmapper mount <id>/],
    [['ls', '--bogus'], /unknown option --bogus/],
    [['create', 'x', '--size', '12Q'], /^devmapper: --size: "12Q" has an unknown unit/],
    [['create', 'x', '--size', '99999999999999999999'], /^devmapper: --size: "99999999999999999999" is too large/],
    [
      ['create', 'x', '--size', '1000'],
      /^devmapper: --size: "1000" is 1000 bytes, not a whole number of 512-byte sectors/,
    ],
    [['create', 'x', '--size', '-1G'], /^devmapper: --size: "-1G" is not a size/],
    [['create', 'x', '--parent', '../up'], /^devmapper: --parent: /],
    [['init', '--loop-data-size', '10X'], /^devmapper: --loop-data-size: "10X" has an unknown unit/],
    [['init', '--block-size', '100k'], /^devmapper: --block-size: /],
    [['init', '--base-size', '1M'], /^devmapper: --base-size: 1048576 bytes is below the minimum/],
    [['completion'], /usage: devmapper completion bash\|zsh/],
    [['completion', 'fish'], /usage: devmapper completion bash\|zsh/],
    [['frobnicate', '--help'], /unknown command "frobnicate"/],
    [['image', 'nope', '--help'], /unknown image command "nope"/],
    [['create', 'x', '--size'], /--size needs a value/],
    [['create', '../escape'], /not a valid layer id/],
    [['mount', 'x', '--label', 'bad label'], /not a valid SELinux context/],
    [['init', '--base-size', 'huge'], /--base-size: "huge" is not a size/],
    [['init', '--fs', 'btrfs'], /--fs: "btrfs" is not ext4 or xfs/],
    [['init', '--min-free-space', 'ten'], /whole percentage/],
    [['init', '--data-dev', '/dev/loop0'], /--data-dev and --metadata-dev go together/],
    [['check', '--repair=yes'], /--repair takes no value/],
    [['demo', 'now'], /usage: devmapper demo/],
    [['dm'], /devmapper dm <command>/],
    [['dm', 'nope'], /unknown dm command "nope"/],
    [['dm', 'info'], /usage: devmapper dm info <name>/],
    [['dm', 'ls', '--flush'], /unknown option --flush/],
    [['dm', 'message', 'x', 'first', 'hi'], /sector must be a whole number/],
    [['--wait=soon', 'ls'], /--wait=SECONDS takes a non-negative number of seconds/],
    [['--wait=-1', 'ls'], /--wait=SECONDS takes a non-negative number of seconds/],
    [['--wait', '5', 'ls'], /--wait takes its seconds joined to it: --wait=5/],
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
  t.deepEqual(JSON.parse(json.stderr), {
    error: { code: 'ERR_DM_USAGE', message: 'usage: devmapper create <id> [--parent <id>] [--size <size>]' },
  });
  t.deepEqual(readdirSync(home), []);

  for (const args of [['--help'], ['-h'], ['--home', home, '--help']]) {
    const help = await cli(...args);
    t.is(help.code, 0, args.join(' '));
    t.is(help.stderr, '');
    t.regex(help.stdout, /^usage: devmapper \[--home DIR\] \[--json\] \[--wait\[=SECONDS\]\] \[--no-color\] <command>/);
    t.regex(help.stdout, /^Exit status: 0 done, 1 failed, 2 usage error, 3 check found problems\.$/m);
    for (const command of [...LAYER_COMMANDS, 'demo', ...DM_SUBCOMMANDS]) {
      t.regex(help.stdout, new RegExp(`^  ${command}\\b`, 'm'), `${args.join(' ')} lists ${command}`);
    }
  }
});

test("<command> --help prints that command's usage, options and an example, exit 0, for every command", async (t) => {
  t.true(COMMANDS.length >= 23, 'every command has a help entry');
  for (const name of [
    ...LAYER_COMMANDS,
    'demo',
    'diff',
    'image import',
    'image ls',
    'image rm',
    'image rootfs',
    'serve containerd',
    ...DM_SUBCOMMANDS,
    'completion',
  ]) {
    t.truthy(
      COMMANDS.find((c) => c.name === name),
      `${name} has help`,
    );
  }
  const runs = await Promise.all(COMMANDS.map((c) => cli(...c.name.split(' '), '--help')));
  COMMANDS.forEach((command, i) => {
    const run = runs[i]!;
    t.is(run.code, 0, `${command.name} --help: ${run.stderr}`);
    t.is(run.stderr, '', command.name);
    t.true(run.stdout.startsWith(`usage: ${command.usage}\n`), `${command.name}: ${run.stdout.slice(0, 200)}`);
    for (const [flag] of command.flags)
      t.true(
        run.stdout.includes(`  ${flag}  `) || run.stdout.includes(`  ${flag} `),
        `${command.name} --help names ${flag}`,
      );
    t.regex(run.stdout, /^Global options:\n {2}--home DIR/m, command.name);
    t.regex(run.stdout, /^Example:\n {2}.*devmapper/m, `${command.name}: one example`);
    t.notRegex(run.stdout, /^Layers \(over --home/m, `${command.name}: not the global list`);
  });
  // --help wherever it is, and before the command's own arguments are checked.
  const spots = [
    ['create', 'x', '--size', 'nonsense', '--help'],
    ['--help', 'create'],
    ['--json', 'create', '--help'],
    ['create', '-h'],
  ];
  for (const args of spots) {
    const run = await cli(...args);
    t.is(run.code, 0, args.join(' '));
    t.true(run.stdout.startsWith('usage: devmapper create <id>'), args.join(' '));
  }
  // A group without its sub-command lists the group.
  for (const [group, members] of [
    ['image', ['import', 'ls', 'rm', 'rootfs']],
    ['dm', ['version', 'ls', 'info', 'table', 'status', 'targets', 'message']],
    ['serve', ['containerd']],
  ] as const) {
    const run = await cli(group, '--help');
    t.is(run.code, 0, group);
    t.true(run.stdout.startsWith(`usage: devmapper ${group} <command>`), group);
    for (const member of members)
      t.regex(run.stdout, new RegExp(`^ {2}devmapper ${group} ${member}\\b`, 'm'), `${group} --help lists ${member}`);
  }
  t.deepEqual(readdirSync(home), [], 'help touched nothing');
});

test("--version prints package.json's version (plain and --json), exit 0", async (t) => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const args of [['--version'], ['-V'], ['--home', home, '--version']]) {
    const run = await cli(...args);
    t.is(run.code, 0);
    t.is(run.stdout, `devmapper ${version}\n`);
    t.is(run.stderr, '');
  }
  t.deepEqual(JSON.parse((await cli('--json', '--version')).stdout), { version });
});
