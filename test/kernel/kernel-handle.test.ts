// One Kernel handle, made from the Driver's `ffi` option (or the CLI home's recorded --ffi), is
// what every layer calls the kernel through. Each scenario runs in a process of its own with
// DEVMAPPER_FFI=ffi-rs and asks for koffi: a layer that ignored the handle and fell back to the
// default would load ffi-rs, which the process's module cache then shows.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertNothingLeaked, newHome, removeHomes } from './driver-helpers.js';
import { assertKernelTestBed } from './reference-tools.js';

test.before(() => assertKernelTestBed());
test.after.always('nothing leaked', (t) => {
  assertNothingLeaked(t);
  removeHomes();
});

const child = fileURLToPath(new URL('./kernel-handle-child.js', import.meta.url));

function runScenario(scenario: 'driver' | 'cli', home: string): Record<string, unknown> & { loaded: string[] } {
  const scratch = mkdtempSync(join(tmpdir(), 'kernel-handle-'));
  try {
    const result = spawnSync(process.execPath, [child, scenario, home, scratch], {
      env: { ...process.env, DEVMAPPER_FFI: 'ffi-rs' },
      encoding: 'utf8',
      timeout: 110_000,
    });
    if (result.status !== 0) throw new Error(`${scenario} scenario exited ${result.status}: ${result.stderr}`);
    return JSON.parse(result.stdout.trim().split('\n').pop()!);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

test.serial("a Driver opened with ffi 'koffi' makes every layer call the kernel through koffi", (t) => {
  const seen = runScenario('driver', newHome('handle'));
  t.deepEqual(seen.before, [], 'nothing loaded before the Driver');
  t.is(seen.kernel, 'koffi', 'Driver.kernel is the koffi handle');
  t.deepEqual(
    seen.changes,
    ['add /x', 'add /x/fifo', 'add /x/file', 'add /x/null'],
    'the layer tar was applied (xattrs, mknod, syncfs)',
  );
  t.true((seen.diffBytes as number) > 0, 'diff exported the layer (xattrs read back)');
  t.true(BigInt(seen.mapped as string) > 0n, 'mappedBytes of an active layer');
  t.true(seen.checkClean as boolean, 'check (thin_ls / thin_check loops) found nothing');
  t.is(seen.mode, 'rw');
  t.is(seen.images, 1, 'an image imported onto the driver');
  t.deepEqual(
    seen.loaded,
    ['koffi'],
    'lock, pool, loops, mounts, discard, diff, check, watcher and image import all went through koffi: ffi-rs was never loaded',
  );
});

test.serial('CLI commands on a home initialised with --ffi koffi use koffi, dm commands and image import too', (t) => {
  const seen = runScenario('cli', newHome('handle-cli'));
  t.deepEqual(
    seen.codes,
    {
      init: 0,
      create: 0,
      mount: 0,
      ls: 0,
      umount: 0,
      status: 0,
      'dm ls': 0,
      'dm version': 0,
      'image import': 0,
      check: 0,
      rm: 0,
      cleanup: 0,
    },
    'every command succeeded',
  );
  t.deepEqual(seen.loaded, ['koffi'], 'ffi-rs was never loaded: each command took the home’s recorded backend');
});
