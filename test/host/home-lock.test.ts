// HomeLock (src/driver/home-lock.ts) needs no device-mapper: it is flock(2) on <home>/lock
// through the libc binding. Real processes race for it here:
// - a stale lock file (holding the pid of a live unrelated process, or of a dead one) blocks
//   no one, and of several processes started together exactly one holds the home at a time,
//   the others failing with ERR_DM_HOME_LOCKED naming the holder (never a raw ENOENT);
// - a waiting process (timeoutMs) gets the home when the holder lets go, and one whose wait
//   runs out gets ERR_DM_HOME_LOCKED saying it waited;
// - a worker thread that imports the package, uses a parser and the koffi backend, and exits
//   does not take the process down (no FFI package is loaded at import);
// - a lock file the process may only read is locked through a read-only fd (read-only use).
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = fileURLToPath(new URL('../../src/', import.meta.url));
const homeLockJs = join(dist, 'driver', 'home-lock.js');
const indexJs = join(dist, 'index.js');
const kernelJs = join(dist, 'ioctl', 'kernel.js');

const homes: string[] = [];
function newHome(): string {
  const home = mkdtempSync(join(tmpdir(), 'devmapper-lock-'));
  homes.push(home);
  return home;
}
test.after.always(() => {
  for (const home of homes) rmSync(home, { recursive: true, force: true });
});

// A contender: loads HomeLock, says "ready", waits for "go" on stdin, tries the lock
// (HOLD_MS: how long to hold it; TIMEOUT_MS: how long to wait), and while it holds the home
// creates <home>/holder with O_EXCL, which fails if another holder exists at the same time.
const CONTENDER = `
import { openSync, closeSync, rmSync } from 'node:fs';
import { join } from 'node:path';
const { HomeLock } = await import(process.env.HOME_LOCK_JS);
const { Kernel } = await import(process.env.KERNEL_JS);
const home = process.env.LOCK_HOME;
const hold = Number(process.env.HOLD_MS);
const timeoutMs = Number(process.env.TIMEOUT_MS);
const report = (r) => process.stdout.write(JSON.stringify({ pid: process.pid, at: Date.now(), ...r }) + '\\n');
report({ ready: true });
process.stdin.once('data', async () => {
  const started = Date.now();
  let lock;
  try {
    lock = await HomeLock.acquire(home, { timeoutMs, kernel: Kernel.for(process.env.LOCK_FFI || undefined) });
  } catch (error) {
    report({ failed: true, code: error.code, message: error.message, pid2: error.pid, waited: Date.now() - started });
    process.exit(0);
  }
  let overlap = false;
  try { closeSync(openSync(join(home, 'holder'), 'wx')); } catch (error) { overlap = error.code; }
  report({ acquired: true, overlap, waited: Date.now() - started });
  await new Promise((r) => setTimeout(r, hold));
  if (!overlap) rmSync(join(home, 'holder'));
  report({ releasing: true });
  lock.release();
  process.exit(0);
});
`;

interface Report {
  pid: number;
  at: number;
  ready?: boolean;
  failed?: boolean;
  acquired?: boolean;
  releasing?: boolean;
  code?: string;
  message?: string;
  pid2?: number;
  overlap?: false | string;
  waited?: number;
}
interface Contender {
  child: ChildProcess;
  reports: Report[];
  ready: Promise<void>;
  done: Promise<{ code: number | null; signal: string | null; stderr: string }>;
}

function contender(home: string, env: { holdMs: number; timeoutMs: number; ffi?: string }): Contender {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CONTENDER], {
    env: {
      ...process.env,
      HOME_LOCK_JS: homeLockJs,
      KERNEL_JS: kernelJs,
      LOCK_HOME: home,
      HOLD_MS: String(env.holdMs),
      TIMEOUT_MS: String(env.timeoutMs),
      LOCK_FFI: env.ffi ?? '',
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const reports: Report[] = [];
  let stderr = '';
  let buffered = '';
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const report = JSON.parse(buffered.slice(0, nl)) as Report;
      buffered = buffered.slice(nl + 1);
      reports.push(report);
      if (report.ready) onReady();
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const done = new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve) => {
    // 'close', not 'exit': the last reports can still be in the pipe when the process exits
    child.on('close', (code, signal) => {
      onReady();
      resolve({ code, signal, stderr });
    });
  });
  return { child, reports, ready, done };
}

/** A pid that no process has any more. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

const TRIALS = 20;
const CONTENDERS = 3;

for (const stale of ['a live unrelated pid', 'a dead pid'] as const) {
  test(`stale lock file with ${stale}: of ${CONTENDERS} processes started together, exactly one holds the home, the others get ERR_DM_HOME_LOCKED naming it (${TRIALS} trials)`, async (t) => {
    const unrelated = stale === 'a live unrelated pid' ? spawn('sleep', ['600'], { stdio: 'ignore' }) : undefined;
    t.teardown(() => unrelated?.kill());
    for (let trial = 0; trial < TRIALS; trial++) {
      const home = newHome();
      const stalePid = unrelated?.pid ?? deadPid();
      writeFileSync(join(home, 'lock'), `${stalePid}\n`, { mode: 0o600 });
      const ffi = trial % 2 === 0 ? 'ffi-rs' : 'koffi';
      // The winner holds long enough that a loser, however late the loaded machine runs it, still finds it in /proc/locks.
      const all = Array.from({ length: CONTENDERS }, () => contender(home, { holdMs: 1500, timeoutMs: 0, ffi }));
      await Promise.all(all.map((c) => c.ready));
      for (const c of all) c.child.stdin!.write('go\n');
      const exits = await Promise.all(all.map((c) => c.done));
      const label = `trial ${trial} (${ffi}, stale pid ${stalePid})`;
      for (const exit of exits)
        t.deepEqual({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, `${label}: ${exit.stderr}`);
      const reports = all.flatMap((c) => c.reports);
      const winners = reports.filter((r) => r.acquired);
      const losers = reports.filter((r) => r.failed);
      t.is(winners.length, 1, `${label}: exactly one holder: ${JSON.stringify(reports)}`);
      t.is(losers.length, CONTENDERS - 1, `${label}: the others failed`);
      t.true(
        winners.every((w) => w.overlap === false),
        `${label}: no holder saw another holder`,
      );
      for (const loser of losers) {
        t.is(loser.code, 'ERR_DM_HOME_LOCKED', `${label}: ${loser.message}`);
        t.is(loser.pid2, winners[0]!.pid, `${label}: the error names the holder: ${loser.message}`);
        t.regex(loser.message!, new RegExp(`in use by process ${winners[0]!.pid}\\b`));
      }
      t.is(
        readFileSync(join(home, 'lock'), 'utf8'),
        '',
        `${label}: the holder cleared its pid on release (the file stays)`,
      );
    }
  });
}

test('a process that waits gets the home when the holder lets go', async (t) => {
  const home = newHome();
  // Both processes are started before the holder takes the home, so the holder's time with it
  // is not spent starting the waiter (on a loaded machine that took longer than the hold).
  const holder = contender(home, { holdMs: 1500, timeoutMs: 0 });
  const waiter = contender(home, { holdMs: 0, timeoutMs: 10_000, ffi: 'koffi' });
  await Promise.all([holder.ready, waiter.ready]);
  holder.child.stdin!.write('go\n');
  while (!holder.reports.some((r) => r.acquired)) await new Promise((r) => setTimeout(r, 10));
  waiter.child.stdin!.write('go\n');
  const [, waiterExit] = await Promise.all([holder.done, waiter.done]);
  const released = holder.reports.find((r) => r.releasing);
  const got = waiter.reports.find((r) => r.acquired);
  t.truthy(released, JSON.stringify(holder.reports));
  t.truthy(got, `the waiter got the home: ${JSON.stringify(waiter.reports)}, exit ${JSON.stringify(waiterExit)}`);
  t.true(got!.at >= released!.at, 'only after the holder released it');
  t.true(got!.waited! >= 100, `it waited (${got!.waited} ms)`);
  t.is(got!.overlap, false);
});

test('a wait that runs out is ERR_DM_HOME_LOCKED saying it waited', async (t) => {
  const home = newHome();
  const holder = contender(home, { holdMs: 2500, timeoutMs: 0 });
  await holder.ready;
  holder.child.stdin!.write('go\n');
  while (!holder.reports.some((r) => r.acquired)) await new Promise((r) => setTimeout(r, 10));
  const waiter = contender(home, { holdMs: 0, timeoutMs: 400 });
  await waiter.ready;
  waiter.child.stdin!.write('go\n');
  await waiter.done;
  const failed = waiter.reports.find((r) => r.failed);
  t.truthy(failed, JSON.stringify(waiter.reports));
  t.is(failed!.code, 'ERR_DM_HOME_LOCKED');
  t.regex(failed!.message!, /waited 400 ms/);
  t.regex(failed!.message!, new RegExp(`in use by process ${holder.child.pid}\\b`));
  t.true(failed!.waited! >= 400 && failed!.waited! < 2000, `gave up after its timeout (${failed!.waited} ms)`);
  t.true(
    holder.reports.every((r) => !r.releasing),
    'while the holder still held the home',
  );
  holder.child.kill('SIGKILL');
  await holder.done;
  // The kernel dropped the SIGKILLed holder's lock: the next process takes the home at once.
  const next = contender(home, { holdMs: 0, timeoutMs: 0 });
  await next.ready;
  next.child.stdin!.write('go\n');
  await next.done;
  t.truthy(
    next.reports.find((r) => r.acquired),
    `a killed holder leaves no stale lock: ${JSON.stringify(next.reports)}`,
  );
});

test('a worker thread that imports the package, parses and calls libc through koffi, then exits, leaves the process alive', async (t) => {
  const home = newHome();
  const script = `
import { Worker } from 'node:worker_threads';
const worker = new Worker(\`
  import { parentPort } from 'node:worker_threads';
  import { createRequire } from 'node:module';
  const pkg = await import(\${JSON.stringify(process.env.INDEX_JS)});
  const loadedAtImport = Object.keys(createRequire(import.meta.url).cache).filter((k) => /node_modules\\\\/(ffi-rs|koffi|ref-napi)\\\\//.test(k));
  const status = pkg.parseThinStatus('2048 4095');
  const { HomeLock } = await import(\${JSON.stringify(process.env.HOME_LOCK_JS)});
  const koffi = pkg.Kernel.for('koffi');
  const lock = HomeLock.tryAcquire(process.env.LOCK_HOME, { kernel: koffi });
  const second = HomeLock.tryAcquire(process.env.LOCK_HOME, { kernel: koffi });
  lock.release();
  parentPort.postMessage({ loadedAtImport, status: JSON.stringify(status, (k, v) => typeof v === 'bigint' ? String(v) : v), took: lock !== undefined, second: second !== undefined });
\`, { eval: true });
// Both listeners go on before any await: a worker that posts and exits at once has its
// message and its exit emitted in one go, after which a late 'exit' listener never fires.
const exited = new Promise((resolve) => worker.once('exit', resolve));
const message = await new Promise((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject); });
const code = await exited;
await new Promise((r) => setTimeout(r, 200));
process.stdout.write(JSON.stringify({ ...message, workerExit: code }));
`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, INDEX_JS: indexJs, HOME_LOCK_JS: homeLockJs, LOCK_HOME: home },
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.deepEqual(
    { status: child.status, signal: child.signal },
    { status: 0, signal: null },
    `the process survived the worker's exit: ${child.stderr}`,
  );
  const result = JSON.parse(child.stdout) as {
    loadedAtImport: string[];
    status: string;
    took: boolean;
    second: boolean;
    workerExit: number;
  };
  t.deepEqual(result.loadedAtImport, [], 'importing the package loads no FFI package');
  t.deepEqual(
    JSON.parse(result.status),
    { kind: 'ok', mappedSectors: '2048', highestMappedSector: '4095' },
    'the parser worked in the worker',
  );
  t.true(result.took, 'koffi took the lock (flock) in the worker');
  t.false(result.second, 'and a second open of the lock file could not');
  t.is(result.workerExit, 0);
});

test('a home whose lock file can only be read is locked through a read-only fd (no pid written), and still excludes others', (t) => {
  if (process.getuid?.() !== 0) return t.pass('needs root, to run a contender as an unprivileged uid');
  const home = newHome();
  chmodSync(home, 0o755);
  writeFileSync(join(home, 'lock'), '', { mode: 0o644 }); // root's, readable by all, writable by root only
  const script = `
process.setgid(65534); process.setuid(65534);
const { HomeLock } = await import(process.env.HOME_LOCK_JS);
const { Kernel } = await import(process.env.KERNEL_JS);
const koffi = Kernel.for('koffi');
const first = HomeLock.tryAcquire(process.env.LOCK_HOME, { kernel: koffi });
const second = HomeLock.tryAcquire(process.env.LOCK_HOME, { kernel: koffi });
process.stdout.write(JSON.stringify({ took: first !== undefined, writable: first?.writable, second: second !== undefined }));
first?.release();
`;
  const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, HOME_LOCK_JS: homeLockJs, KERNEL_JS: kernelJs, LOCK_HOME: home },
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.is(child.status, 0, child.stderr);
  t.deepEqual(JSON.parse(child.stdout), { took: true, writable: false, second: false });
  t.is(readFileSync(join(home, 'lock'), 'utf8'), '', 'nothing was written into a file it may not write');
});
