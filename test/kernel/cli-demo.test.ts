// The devmapper CLI against a real kernel, `devmapper demo`: exit status 0, the round trip
// reported in --json, and no dm device, loop device, mount or temporary home left behind. The
// command is run as its own process (cli-helpers.ts); an after.always hook checks that nothing
// is leaked.
import test from 'ava';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { LONG, cli, json, useCliBed } from './cli-helpers.js';
import { dmNames, loopLines } from './driver-helpers.js';

useCliBed({ leakCheckHook: true });

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
