// Shared pieces of the Driver's kernel tests (driver.test.ts, driver-failures.test.ts,
// driver-crash.test.ts): driver homes under the guest's private /tmp, a driver that cleans up
// at teardown, and the reference views that check the Driver from
// outside: dmsetup ls, losetup -l, /proc/self/mounts, the metadata as saved on disk,
// and a probe of which thin ids the pool really holds. Also the small readers the Driver's
// other kernel tests share for their messages and data checks (show, sha).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { Driver } from '../../src/driver/driver.js';
import { HomeLock } from '../../src/driver/home-lock.js';
import { MetadataStore } from '../../src/driver/metadata-store.js';
import type { DriverOptions } from '../../src/driver/options.js';
import { Kernel } from '../../src/ioctl/kernel.js';
import { dmsetup, run } from './reference-tools.js';

/** Small sizes keep mkfs and the loop files cheap in the test kernel. */
export const SMALL = { baseSize: '64M', loopDataSize: '512M', loopMetadataSize: '16M' } as const;

/** JSON text with bigints as decimal strings: a report or status in an assertion message. */
export const show = (value: unknown): string =>
  JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));

/** The SHA-256 of `data`, in hex: a file's content compared before and after. */
export const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

const homes: string[] = [];

/** A fresh, empty directory for one driver's home (remembered for the final leak check). */
export function newHome(tag: string): string {
  const home = mkdtempSync(join(tmpdir(), `drv-${tag}-`));
  homes.push(home);
  return home;
}

/** Every home handed out so far. */
export function allHomes(): readonly string[] {
  return homes;
}

export function removeHomes(): void {
  for (const home of homes) rmSync(home, { recursive: true, force: true });
}

/** Names of all active dm devices, as `dmsetup ls` shows them, sorted. */
export function dmNames(): string[] {
  const out = dmsetup('ls');
  if (/No devices found/.test(out)) return [];
  return out
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name !== '')
    .sort();
}

/** The dm devices a Driver makes (its names start with 'devmapper-'). */
export function driverDmNames(): string[] {
  return dmNames().filter((name) => name.startsWith('devmapper-'));
}

/** Attached loop devices as `<device> <backing file>` lines, sorted. */
export function loopLines(): string[] {
  return run('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'])
    .split('\n')
    .map((line) => line.trim().replace(/\s+/g, ' '))
    .filter((line) => line !== '')
    .sort();
}

/** Mount points at or under `dir`, from /proc/self/mounts (octal escapes decoded). */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) =>
      (line.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
    )
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort();
}

/** Every file under <home>/metadata with its content: a before/after picture of the driver's state. */
export function metadataSnapshot(home: string): Record<string, string> {
  const dir = join(home, 'metadata');
  const picture: Record<string, string> = {};
  for (const name of readdirSync(dir).sort()) picture[name] = readFileSync(join(dir, name), 'utf8');
  return picture;
}

export interface SavedState {
  nextDeviceId: number;
  transactionId: string;
}

/**
 * The home's metadata as a later init reads it: the files and, over them, transactions.log
 * (what a killed process logged and did not fold). Read through MetadataStore's readers, which
 * change nothing on disk.
 */
const metadataOf = (home: string): MetadataStore => new MetadataStore(join(home, 'metadata'));

/** The set's state (deviceset.json, or the log's newer one). */
export function savedState(home: string): SavedState {
  const state = metadataOf(home).readState();
  if (!state) throw new Error(`${home}: no device set state saved`);
  return state;
}

/** Whether an intent is open: logged and neither done nor abandoned (a home not made yet has none). */
export function openTransactionExists(home: string): boolean {
  return existsSync(join(home, 'metadata')) && metadataOf(home).readTransaction() !== undefined;
}

/** layer id -> thin id, from every saved layer record (the base device's '.base' included). */
export function savedThinIds(home: string): Map<string, number> {
  return new Map(
    metadataOf(home)
      .scanLayers()
      .records.map((r) => [r.id, r.deviceId]),
  );
}

/**
 * Which of the thin ids 1..maxId exist in the pool: each is probed with a temporary dm device
 * whose table is `0 8 thin <pool> <id>` (the kernel refuses the table for an id it does not
 * have), removed again right after.
 */
export function poolThinIds(poolName: string, maxId: number): number[] {
  const dev = dmsetup('info', '-c', '--noheadings', '-o', 'major,minor', poolName).trim();
  const found: number[] = [];
  const probeName = (id: number): string => `thinprobe${process.pid}-${id}`;
  for (let id = 1; id <= maxId; id++) {
    try {
      dmsetup('create', probeName(id), '--table', `0 8 thin ${dev} ${id}`);
    } catch {
      continue; // no such thin id (dmsetup removes the half-made device itself)
    }
    found.push(id);
    dmsetup('remove', probeName(id));
  }
  for (const name of dmNames().filter((n) => n.startsWith(`thinprobe${process.pid}-`))) dmsetup('remove', name);
  return found;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls an async condition until it holds (true) or `timeoutMs` passes (false). */
export async function eventually(
  condition: () => Promise<boolean> | boolean,
  timeoutMs = 5000,
  stepMs = 50,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(stepMs);
  }
}

/** The end-of-file check of every driver test file: no dm device, loop device or mount is left. */
export function assertNothingLeaked(t: ExecutionContext): void {
  t.deepEqual(driverDmNames(), []);
  t.deepEqual(
    dmNames().filter((name) => name.startsWith('thinprobe')),
    [],
    'no thin-id probe device either',
  );
  t.deepEqual(loopLines(), []);
  for (const home of allHomes()) t.deepEqual(mountsUnder(home), [], home);
}

/** An error's string code (undefined: it has none). */
export const codeOf = (error: unknown): string | undefined => (error as { code?: string } | undefined)?.code;

/** No one holds the home: its flock on <home>/lock can be taken (the file itself stays). */
export function homeLockFree(home: string): boolean {
  const lock = HomeLock.tryAcquire(home, { kernel: Kernel.for() });
  lock?.release();
  return lock !== undefined;
}

/** Opens a driver whose cleanup() also runs at teardown if the test fails half-way (cleanup is idempotent). */
export async function openDriver(
  t: { teardown: (fn: () => Promise<void>) => void },
  options: DriverOptions,
): Promise<Driver> {
  const driver = await Driver.init(options);
  t.teardown(() => driver.cleanup());
  return driver;
}

/** How a Node child process ended, with what it printed (stdout and stderr together). */
export interface NodeChildResult {
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
  ms: number;
}

/** Runs `node script ...args` with `env` added; SIGKILLs it `killAfterMs` after the start (undefined: never). */
export function runNodeChild(
  script: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  killAfterMs?: number,
): Promise<NodeChildResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [script, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ pid: child.pid!, code, signal, output, ms: Date.now() - started });
    });
  });
}
