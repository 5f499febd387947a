// The devmapper CLI against a real kernel, usage: usage errors exit 2 with a message and touch
// nothing, --help and <command> --help exit 0 and list the commands, an uninitialised home is an
// operation error (exit 1). Each command is run as its own process (cli-helpers.ts); an
// after.always hook checks that nothing is leaked.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LONG, cli, jsonError, useCliBed } from './cli-helpers.js';

useCliBed({ leakCheckHook: true });

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
