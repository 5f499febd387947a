// A real image end to end: Debian bookworm's minbase, made by debootstrap and packed by umoci
// (test/real-image/build.ts, on the host), imported by `devmapper image import` as a user runs
// it. The imported rootfs must equal umoci's own unpack entry by entry (content, modes, owners,
// device nodes, hard links, symlinks, xattrs); a container run by runc on it must find every file
// dpkg installed with the checksum dpkg recorded (`dpkg --verify`: only what the second layer
// deleted may be missing), the second layer's deletions, addition and replacement in place, and
// must be able to change the system (useradd), which `devmapper diff` then carries. Ends with
// image rm, check clean and nothing left.
import test from 'ava';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { CLI_BIN } from '../cli-process.js';
import { REAL_IMAGE_NAME, REAL_IMAGE_TAG, REAL_IMAGE_TARBALL, realImageUnavailable } from '../real-image/build.js';
import { assertKernelTestBed } from './reference-tools.js';
import { assertNothingLeaked } from './driver-helpers.js';
import { useImageBed } from './image-bed.js';
import { ensureCgroup2, execute, RUNC } from './containerd-helpers.js';
import { tarEntries, treeView, umociUnpack, viewDifferences } from './layer-tree.js';
import { assertDebianContainer, assertTopLayerHostname, CONTAINER_SCRIPT } from './real-image-helpers.js';

assertKernelTestBed();

const unavailable = realImageUnavailable();

if (unavailable) {
  test.skip(`a real Debian image end to end: ${unavailable}`, () => undefined);
} else {
  const bed = useImageBed('real-image', { baseSize: '1G', loopDataSize: '4G', loopMetadataSize: '64M' });
  const { cli, cliJson } = bed;

  test.serial(
    'image import of Debian minbase: two layers; the rootfs equals umoci unpack entry by entry',
    async (t) => {
      t.timeout(15 * 60_000);
      const started = Date.now();
      const r = await cli('image', 'import', REAL_IMAGE_TARBALL, '--name', REAL_IMAGE_NAME);
      t.is(r.code, 0, r.stderr);
      t.is(r.stdout, `${REAL_IMAGE_NAME} (2 layers)\n`);
      t.log(`import: ${((Date.now() - started) / 1000).toFixed(1)} s`);
      const rootfs = (await cli('image', 'rootfs', REAL_IMAGE_NAME, 'view1')).stdout.trim();
      t.true(rootfs.endsWith('/mnt/view1/rootfs'), rootfs);
      const reference = treeView(umociUnpack(REAL_IMAGE_TARBALL, REAL_IMAGE_TAG, join(bed.work(), 'umoci')), {
        xattrs: true,
      });
      const actual = treeView(rootfs, { xattrs: true });
      t.log(`${reference.size} entries in umoci's unpack`);
      t.true(reference.size > 5000, 'a whole Debian userland');
      t.true(
        [...reference.values()].some((e) => e.type === 'char'),
        'device nodes are part of the image',
      );
      t.deepEqual(viewDifferences(actual, reference).slice(0, 20), []);
      t.is((await cli('umount', 'view1')).code, 0);
      t.is((await cli('rm', 'view1')).code, 0);
    },
  );

  test.serial(
    "runc on the imported image: dpkg --verify finds every installed file as dpkg recorded it; the top layer's changes hold; useradd works and devmapper diff carries it",
    async (t) => {
      t.timeout(10 * 60_000);
      t.teardown(async () => {
        await cli('umount', 'ctr1'); // also when an assertion below failed: the last test removes it
      });
      ensureCgroup2();
      const bundle = join(bed.work(), 'bundle');
      mkdirSync(bundle, { recursive: true });
      const r = await cli('image', 'rootfs', REAL_IMAGE_NAME, 'ctr1', '--bundle', bundle);
      t.is(r.code, 0, r.stderr);
      const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
        process: { args: string[] };
        root: { path: string };
      };
      t.deepEqual(spec.process.args, ['/bin/bash'], 'the image config Cmd');
      spec.process.args = ['/bin/sh', '-c', CONTAINER_SCRIPT];
      writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
      const state = join(bed.work(), 'runc-state');
      const run = await execute(RUNC, ['--root', state, 'run', '--bundle', bundle, 'devmapper-real'], 300_000);
      await execute(RUNC, ['--root', state, 'delete', '--force', 'devmapper-real']);
      t.is(run.code, 0, run.stderr);
      assertDebianContainer(t, run.stdout);
      assertTopLayerHostname(t, run.stdout);
      const diff = execFileSync(process.execPath, [CLI_BIN, '--home', bed.home(), 'diff', 'ctr1'], {
        maxBuffer: 256 << 20,
      });
      const entries = await tarEntries(diff);
      const names = new Set(entries.map((e) => e.name));
      for (const name of ['etc/passwd', 'etc/shadow', 'etc/group', 'home/devtest/']) {
        t.true(names.has(name) || names.has(name.replace(/\/$/, '')), `devmapper diff carries ${name}`);
      }
      t.false(
        [...names].some((n) => n.startsWith('usr/share/doc/')),
        'and nothing of the image layers it did not change',
      );
    },
  );

  test.serial('image rm and rm free every layer; check is clean; nothing is left', async (t) => {
    t.is((await cli('rm', 'ctr1')).code, 0);
    const removed = await cliJson<{ removedLayers: string[] }>('image', 'rm', REAL_IMAGE_NAME);
    t.is(removed.removedLayers.length, 2);
    t.deepEqual(await cliJson<unknown[]>('ls'), []);
    const check = await cli('check');
    t.is(check.code, 0, check.stdout + check.stderr);
    t.is((await cli('cleanup')).code, 0);
    assertNothingLeaked(t);
  });
}
