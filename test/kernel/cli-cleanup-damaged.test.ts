// `devmapper cleanup` on a home whose metadata cannot be read at all: a damaged line in
// transactions.log, or a damaged deviceset.json, stops every open of the home (check's inspect
// mode too), and cleanup used to fail the same way, leaving the pool, its loop devices and
// the mounts up with no command able to take them down.
import test from 'ava';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, errorOf, initArgs, useCliBed } from './cli-helpers.js';
import { loopLines, mountsUnder, newHome, driverDmNames } from './driver-helpers.js';

useCliBed({ leakCheckHook: true });

for (const [what, file, text] of [
  ['a damaged transactions.log line', 'transactions.log', 'not a checksummed line\n'],
  ['a damaged deviceset.json', 'deviceset.json', '{"formatVersion": 1, "nextDeviceId": "x"'],
] as const) {
  test.serial(`cleanup with ${what}: everything comes down, the metadata is left as it was`, async (t) => {
    t.timeout(300_000);
    const home = newHome('cleanup-damaged');
    const h = (...args: string[]) => cli('--home', home, ...args);
    t.is((await h(...initArgs)).code, 0);
    t.is((await h('create', 'a')).code, 0);
    const mounted = await h('mount', 'a');
    t.is(mounted.code, 0, mounted.stderr);
    writeFileSync(join(mounted.stdout.trim(), 'f'), 'data of a');
    const path = join(home, 'metadata', file);
    const saved = existsSync(path) ? readFileSync(path, 'utf8') : undefined; // the log is folded away between commands
    writeFileSync(path, text);
    const ls = await h('--json', 'ls');
    t.is(ls.code, 1);
    t.is(errorOf(ls).code, 'ERR_DM_METADATA');
    const cleanup = await h('cleanup');
    t.is(cleanup.code, 0, cleanup.stderr);
    t.regex(cleanup.stderr, new RegExp(`${file}.*\\n.*cleaning up all the same`));
    t.deepEqual(driverDmNames(), [], 'no dm device of the home');
    t.deepEqual(loopLines(), [], 'no loop device');
    t.deepEqual(mountsUnder(home), [], 'no mount under the home');
    t.is(readFileSync(path, 'utf8'), text, 'the damaged file untouched');
    // Mended by hand, the home opens again with its layer and data.
    if (saved === undefined) rmSync(path);
    else writeFileSync(path, saved);
    const again = await h('mount', 'a');
    t.is(again.code, 0, again.stderr);
    t.is(readFileSync(join(again.stdout.trim(), 'f'), 'utf8'), 'data of a');
    t.is((await h('cleanup')).code, 0);
  });
}
