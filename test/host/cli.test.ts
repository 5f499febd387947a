// The devmapper CLI on a host without device-mapper (this one): every command that needs the
// kernel exits 1 and says what is missing and what to do, touching nothing; usage errors are
// still usage errors (exit status 2) and --help still works. Also what needs no kernel at all:
// per-command --help, --version, shell completion, NO_COLOR/--no-color, a file as --home. The
// CLI runs as its own process (the built bin.js through execFile, never a shell).
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI_BIN, runCli, type CliRun } from '../cli-process.js';
import { COMMANDS } from '../../src/cli/command-help.js';
import { deviceMapperHint } from '../../src/cli/host.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const HAS_DM = existsSync('/dev/mapper/control');

type Run = CliRun;

const cli = (...args: string[]): Promise<Run> => runCli(args, 60_000);

const home = mkdtempSync(join(tmpdir(), 'devmapper-cli-host-'));
test.after.always(() => rmSync(home, { recursive: true, force: true }));

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
    for (const command of [
      'init',
      'create',
      'mount',
      'umount',
      'rm',
      'ls',
      'status',
      'cleanup',
      'check',
      'demo',
      'dm version',
      'dm ls',
      'dm info',
      'dm table',
      'dm status',
      'dm targets',
      'dm message',
    ]) {
      t.regex(help.stdout, new RegExp(`^  ${command}\\b`, 'm'), `${args.join(' ')} lists ${command}`);
    }
  }
});

test("<command> --help prints that command's usage, options and an example, exit 0, for every command", async (t) => {
  t.true(COMMANDS.length >= 23, 'every command has a help entry');
  for (const name of [
    'init',
    'create',
    'mount',
    'umount',
    'rm',
    'ls',
    'status',
    'cleanup',
    'check',
    'demo',
    'diff',
    'image import',
    'image ls',
    'image rm',
    'image rootfs',
    'serve containerd',
    'dm version',
    'dm ls',
    'dm info',
    'dm table',
    'dm status',
    'dm targets',
    'dm message',
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

test("completion bash: sourced in bash it registers devmapper and completes commands, sub-commands and each command's flags", async (t) => {
  const script = await cli('completion', 'bash');
  t.is(script.code, 0, script.stderr);
  const file = join(home, '..', `devmapper-completion-${process.pid}.bash`);
  writeFileSync(file, script.stdout);
  try {
    // COMP_WORDS/COMP_CWORD as bash sets them for the line being completed; prints COMPREPLY.
    const complete = (...words: string[]): string[] =>
      execFileSync(
        'bash',
        [
          '--noprofile',
          '--norc',
          '-c',
          `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _devmapper; printf '%s\\n' "\${COMPREPLY[@]}"`,
          'bash',
          file,
          ...words,
        ],
        { encoding: 'utf8' },
      )
        .split('\n')
        .filter((w) => w !== '');
    const registered = execFileSync(
      'bash',
      ['--noprofile', '--norc', '-c', 'source "$1"; complete -p devmapper', 'bash', file],
      { encoding: 'utf8' },
    );
    t.is(registered.trim(), 'complete -F _devmapper devmapper');
    t.deepEqual(complete('devmapper', 'cr'), ['create']);
    t.true(
      [
        'init',
        'create',
        'mount',
        'umount',
        'rm',
        'ls',
        'status',
        'cleanup',
        'check',
        'image',
        'diff',
        'serve',
        'demo',
        'dm',
        'completion',
      ].every((c) => complete('devmapper', '').includes(c)),
      complete('devmapper', '').join(' '),
    );
    t.deepEqual(complete('devmapper', 'image', 'r'), ['rm', 'rootfs']);
    t.deepEqual(complete('devmapper', '--home', '/x', 'dm', 'ta'), ['table', 'targets']);
    t.deepEqual(complete('devmapper', 'completion', ''), ['bash', 'zsh']);
    t.deepEqual(complete('devmapper', 'create', 'img', '--s'), ['--size']);
    t.deepEqual(complete('devmapper', 'check', '--r'), ['--repair']);
    t.deepEqual(complete('devmapper', 'dm', 'status', 'x', '--f'), ['--flush']);
    t.deepEqual(complete('devmapper', 'serve', 'containerd', '--so'), ['--socket']);
    t.true(complete('devmapper', 'init', '--').includes('--loop-data-size'));
    t.true(complete('devmapper', 'ls', '--').includes('--json'), 'global options everywhere');
  } finally {
    rmSync(file, { force: true });
  }
  const zsh = await cli('completion', 'zsh');
  t.is(zsh.code, 0);
  t.true(zsh.stdout.startsWith('#compdef devmapper\n'));
  t.regex(zsh.stdout, /compdef _devmapper devmapper/);
  const zshBinary = spawnSync('sh', ['-c', 'command -v zsh'], { encoding: 'utf8' }).stdout.trim();
  if (zshBinary) {
    const parsed = spawnSync(zshBinary, ['-n'], { input: zsh.stdout, encoding: 'utf8' });
    t.is(parsed.status, 0, `zsh -n: ${parsed.stderr}`);
  } else {
    t.log('zsh is not installed: the zsh script was not parsed by zsh');
  }
});

test('colour: only where asked for; NO_COLOR and --no-color turn it off, FORCE_COLOR cannot override them', async (t) => {
  const run = (env: Record<string, string>, ...args: string[]): Promise<CliRun> =>
    new Promise((resolvePromise) => {
      const child = spawnSync(process.execPath, [CLI_BIN, ...args], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH ?? '', ...env },
      });
      resolvePromise({ code: child.status, stdout: child.stdout, stderr: child.stderr });
    });
  const ESC = '\u001b[';
  const forced = await run({ FORCE_COLOR: '1' }, 'frobnicate');
  t.is(forced.code, 2);
  t.true(forced.stderr.includes(ESC), 'FORCE_COLOR colours the error');
  t.regex(forced.stderr, /unknown command "frobnicate"/);
  for (const [env, args] of [
    [{ FORCE_COLOR: '1', NO_COLOR: '1' }, []],
    [{ FORCE_COLOR: '1' }, ['--no-color']],
    [{}, []],
    [{ NO_COLOR: '1' }, []],
  ] as const) {
    const plain = await run(env, ...args, 'frobnicate');
    t.is(plain.code, 2);
    t.false(plain.stderr.includes(ESC), `no colour with ${JSON.stringify(env)} ${args.join(' ')}`);
    t.true(plain.stderr.startsWith('devmapper: unknown command "frobnicate"'));
  }
  // The logger (tslog's pretty output) follows NO_COLOR too: its setting is read from the environment at load.
  const log = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { logger } = await import(${JSON.stringify(join(ROOT, 'dist/src/log.js'))}); console.log(logger.settings.stylePrettyLogs)`,
    ],
    { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', NO_COLOR: '1' } },
  );
  t.is(log.stdout.trim(), 'false');
});

test('progress of a long step: a spinner with the seconds on a terminal, one plain line otherwise', (t) => {
  const snippet = `const { Progress } = await import(${JSON.stringify(join(ROOT, 'dist/src/cli/output.js'))});
await Progress.run('formatting the base device', () => new Promise((r) => setTimeout(r, 700)));
await Progress.run('a quick step', () => new Promise((r) => setTimeout(r, 10)), { delayMs: 1000 });`;
  const plain = spawnSync(process.execPath, ['--input-type=module', '-e', snippet], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '' },
  });
  t.is(plain.status, 0, plain.stderr);
  t.is(
    plain.stderr,
    'formatting the base device\n',
    'no terminal: one line, no control characters; a quick step shows nothing',
  );
  // script(1) gives the child a pseudo-terminal.
  const file = join(home, '..', `devmapper-progress-${process.pid}.mjs`);
  writeFileSync(file, snippet);
  try {
    const tty = spawnSync('script', ['-qec', `${process.execPath} ${file}`, '/dev/null'], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '', TERM: 'xterm', NO_COLOR: '1' },
    });
    t.is(tty.status, 0, tty.stderr);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: matching the terminal's escape sequences
    t.regex(tty.stdout, /\r\u001b\[K[|/\\-] formatting the base device \(0 s\)/, 'a spinner frame with the seconds');
    t.regex(
      tty.stdout,
      // biome-ignore lint/suspicious/noControlCharactersInRegex: as above
      /\r\u001b\[Kformatting the base device: done in 0\.\d s\r?\n/,
      'ends as one line with the time taken',
    );
    t.notRegex(tty.stdout, /a quick step/);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: as above
    t.notRegex(tty.stdout, /\u001b\[3\dm/, 'NO_COLOR: the spinner is not coloured');
  } finally {
    rmSync(file, { force: true });
  }
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
