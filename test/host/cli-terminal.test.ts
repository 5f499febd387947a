// The devmapper CLI in a shell and on a terminal, which needs no kernel: bash and zsh completion
// (sourced in bash, parsed by zsh), colour only where asked for (NO_COLOR, --no-color,
// FORCE_COLOR), and the progress of a long step (a spinner on a terminal, one line otherwise).
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI_BIN, type CliRun } from '../cli-process.js';
import { cli, freshHome, LAYER_COMMANDS, ROOT } from './helpers/cli-host.js';

const home = freshHome();

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
      [...LAYER_COMMANDS, 'image', 'diff', 'serve', 'demo', 'dm', 'completion'].every((c) =>
        complete('devmapper', '').includes(c),
      ),
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
