// The devmapper CLI against a real kernel, the layer commands' edge cases on a home of their own:
// mount/umount across processes (idempotent mount, one umount unmounts), umount of an unknown id,
// ls of a removed parent, sizes refused as usage errors, the CLI's words for a busy rm. Each
// command is run as its own process (cli-helpers.ts); an after.always hook checks that nothing
// is leaked.
import test from 'ava';
import { LONG, cli, initArgs, json, jsonError, library, useCliBed } from './cli-helpers.js';
import { mountsUnder, newHome } from './driver-helpers.js';

useCliBed({ leakCheckHook: true });

/** The home of the test. */
let home = '';
const h = (): string[] => ['--home', home];

test.serial(
  'mount/umount across processes, an unknown id, ls of a removed parent, sizes, CLI words for a busy rm',
  async (t) => {
    t.timeout(LONG);
    home = newHome('cli-sem');
    t.is((await cli(...h(), ...initArgs)).code, 0);
    t.is((await cli(...h(), 'create', 'p')).code, 0);
    t.is((await cli(...h(), 'create', 'c', '--parent', 'p')).code, 0);

    // umount of an id that does not exist: an error, not a silent success.
    const unknown = jsonError(t, await cli(...h(), '--json', 'umount', 'nope'), 1, 'umount of an unknown id');
    t.is(unknown.code, 'ERR_DM_UNKNOWN_LAYER');
    t.regex(unknown.message, /layer nope does not exist/);

    // A CLI mount is idempotent: the second mount adds nothing, one umount unmounts.
    const first = json(t, await cli(...h(), '--json', 'mount', 'c'), 'mount c');
    const again = await cli(...h(), 'mount', 'c');
    t.is(again.code, 0);
    t.is(again.stdout, `${first.rootfs}\n`);
    t.regex(again.stderr, /c was already mounted/);
    t.false(first.alreadyMounted);
    // rm of a mounted layer speaks the CLI: umount it first.
    const busy = await cli(...h(), 'rm', 'c');
    t.is(busy.code, 1);
    t.is(busy.stderr, 'devmapper: layer c is mounted: run `devmapper umount c` first [EBUSY]\n');
    t.deepEqual(json(t, await cli(...h(), '--json', 'umount', 'c'), 'umount c'), {
      id: 'c',
      mounted: false,
      wasMounted: true,
    });
    t.deepEqual(mountsUnder(home), [], 'one umount after two mounts unmounts');
    const notMounted = await cli(...h(), 'umount', 'c');
    t.is(notMounted.code, 0, 'umount of a layer that is not mounted is fine');
    t.regex(notMounted.stderr, /c is not mounted: nothing to do/);

    // Sizes: smaller than the parent, more than the filesystem can grow to: usage errors naming --size, nothing made.
    const smaller = await cli(...h(), 'create', 's', '--parent', 'p', '--size', '32M');
    t.is(smaller.code, 2, smaller.stderr);
    t.regex(smaller.stderr, /^devmapper: --size: \d+ bytes is smaller than the parent's/);
    const huge = await cli(...h(), 'create', 'huge', '--size', '17T');
    t.is(huge.code, 2, huge.stderr);
    t.regex(
      huge.stderr,
      /^devmapper: --size: "17T" is more than the layer's filesystem can grow to \(nothing was created\)/,
    );

    // ls: a removed parent is shown as such, also once a new layer takes its id.
    t.is((await cli(...h(), 'rm', 'p')).code, 0);
    let text = await cli(...h(), 'ls');
    t.regex(text.stdout, /^c\s+\(removed\)\s+\d+/m, text.stdout);
    t.is((await cli(...h(), 'create', 'p')).code, 0);
    const rows = json(t, await cli(...h(), '--json', 'ls'), 'ls') as Array<{
      id: string;
      parent: string | null;
      parentRemoved: boolean;
    }>;
    t.deepEqual(rows.map((r) => [r.id, r.parent, r.parentRemoved]).sort(), [
      ['c', 'p', true],
      ['p', null, false],
    ]);
    text = await cli(...h(), 'ls');
    t.regex(text.stdout, /^c\s+\(removed\)\s+\d+/m, "the new p is not c's parent");
    await library(home, async (driver) => t.deepEqual((await driver.list()).map((l) => l.id).sort(), ['c', 'p']));
    t.is((await cli(...h(), 'cleanup')).code, 0);
  },
);
