// The dm ioctls each Driver call makes on the lifecycle path (create, get, put, remove of a
// container layer on a mounted image layer), as docs/benchmarks.md counts them. In the test
// kernel every syscall costs 30-90 µs, so one more ioctl on this path is a measurable
// regression: this test names it. Counted from the ioctl choke point's trace lines, in a
// child process (ioctl-budget-child.ts) because tracing is decided when the module loads.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { assertNothingLeaked, newHome } from './driver-helpers.js';
import { useDriverBed } from './helpers.js';

useDriverBed();

const child = fileURLToPath(new URL('./ioctl-budget-child.js', import.meta.url));

function lifecycleIoctls(errorIfNoSpace: boolean): Record<string, string[]> {
  const home = newHome(`budget-${errorIfNoSpace}`);
  const result = spawnSync(process.execPath, [child, home, String(errorIfNoSpace)], {
    encoding: 'utf8',
    env: { ...process.env, DEVMAPPER_LOG: 'trace' },
    timeout: 120_000,
  });
  if (result.status !== 0) throw new Error(`child exited ${result.status}: ${result.stderr.slice(-3000)}`);
  const last = result.stdout.trim().split('\n').at(-1) ?? '';
  return JSON.parse(last) as Record<string, string[]>;
}

// The pool's guard status, the origin suspended around create_snap, set_transaction_id, the
// no-flush status that confirms the commit (transaction.ts #commitPool).
const CREATE = [
  'DM_TABLE_STATUS',
  'DM_DEV_SUSPEND',
  'DM_TARGET_MSG',
  'DM_DEV_SUSPEND',
  'DM_TARGET_MSG',
  'DM_TABLE_STATUS',
];
// The pool's mode, then the device: create, load, resume (no lookup first, no udev cookie).
const GET = ['DM_TABLE_STATUS', 'DM_DEV_CREATE', 'DM_TABLE_LOAD', 'DM_DEV_SUSPEND'];
// The guard, is the device still active (no: put removed it), delete, set_transaction_id, the commit check.
const REMOVE = ['DM_TABLE_STATUS', 'DM_DEV_STATUS', 'DM_TARGET_MSG', 'DM_TARGET_MSG', 'DM_TABLE_STATUS'];

test.serial('lifecycle on an error_if_no_space pool: create 6 ioctls, get 4, put 1, remove 5', (t) => {
  const calls = lifecycleIoctls(true);
  t.deepEqual(calls.create, CREATE, 'create');
  t.deepEqual(calls.get, GET, 'get');
  // Such a pool never queues I/O, so the last put asks no status before its unmount.
  t.deepEqual(calls.put, ['DM_DEV_REMOVE'], 'put');
  t.deepEqual(calls.remove, REMOVE, 'remove');
});

test.serial(
  'on a queue_if_no_space pool the last put reads the status first (a queueing pool would block the unmount)',
  (t) => {
    const calls = lifecycleIoctls(false);
    t.deepEqual(calls.put, ['DM_TABLE_STATUS', 'DM_DEV_REMOVE'], 'put');
    t.deepEqual(calls.create, CREATE, 'create');
    t.deepEqual(calls.get, GET, 'get');
    t.deepEqual(calls.remove, REMOVE, 'remove');
  },
);

test.serial('nothing leaked', (t) => {
  assertNothingLeaked(t);
});
