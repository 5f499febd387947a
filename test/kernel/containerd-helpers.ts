// containerd in the test kernel, for the engine tests: a private containerd (root, state and
// sockets under one temporary directory, CRI and the unused snapshotters disabled) with this
// project's snapshotter registered as a proxy plugin, `ctr` wrappers (execFile, never a shell),
// and a teardown that leaves no containerd, shim, container or mount behind. The snapshotter
// server itself is snapshotter-server.ts.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mountsUnder, sleep } from './driver-helpers.js';
import { run } from './reference-tools.js';

export const CONTAINERD = '/usr/bin/containerd';
export const CTR = '/usr/bin/ctr';
export const RUNC = '/usr/sbin/runc';
/** The namespace the tests work in (containerd's default would be 'default'). */
export const NAMESPACE = 'devmapper-test';

/** Fails with what to install when containerd, ctr, runc or a static busybox is missing. */
export function assertContainerdTools(): void {
  const missing = [CONTAINERD, CTR, RUNC, '/bin/busybox'].filter((path) => !existsSync(path));
  if (missing.length > 0) {
    throw new Error(
      `the containerd engine tests need ${missing.join(', ')}: apt-get install containerd runc busybox-static (scripts/bootstrap.mjs lists them)`,
    );
  }
}

/** Mounts cgroup v2 at /sys/fs/cgroup when nothing is mounted there; returns whether it did. */
export function ensureCgroup2(): boolean {
  const mounted = readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[1] === '/sys/fs/cgroup');
  if (mounted) return false;
  mkdirSync('/sys/fs/cgroup', { recursive: true });
  run('mount', ['-t', 'cgroup2', 'none', '/sys/fs/cgroup']);
  return true;
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program with execFile; resolves however it ends (never rejects). */
export function execute(program: string, args: string[], timeoutMs = 120_000): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(program, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      const code = error
        ? typeof (error as NodeJS.ErrnoException).code === 'number'
          ? (error as unknown as { code: number }).code
          : null
        : 0;
      resolve({ code, stdout, stderr: stderr + (error && code === null ? `\n(${error.message})` : '') });
    });
  });
}

export interface ContainerdOptions {
  /** proxy plugin name → socket path. */
  proxies?: Record<string, string>;
  /** Extra TOML appended to the config. */
  extraConfig?: string;
  /** Where root, state and sockets go (default: a new directory under the system's temp dir). */
  parentDir?: string;
  /** containerd's built-in devmapper snapshotter on this pool (disabled otherwise). */
  devmapper?: { poolName: string; rootPath: string; baseImageSize: string };
}

export interface Containerd {
  dir: string;
  socket: string;
  root: string;
  state: string;
  logFile: string;
  process: ChildProcess;
  /** ctr against this containerd in the test namespace; throws with ctr's stderr (and the log tail) on failure. */
  ctr(args: string[], timeoutMs?: number): Promise<string>;
  /** ctr, resolving however it ends. */
  ctrResult(args: string[], timeoutMs?: number): Promise<CommandResult>;
  /** The last `bytes` of containerd's log. */
  logTail(bytes?: number): string;
  /** Stops containerd (tasks killed and deleted first, then SIGTERM, then SIGKILL), kills its shims, unmounts what it left. */
  stop(): Promise<void>;
}

const started: Containerd[] = [];

function configToml(dir: string, socket: string, options: ContainerdOptions): string {
  const lines = [
    'version = 2',
    `root = ${JSON.stringify(join(dir, 'root'))}`,
    `state = ${JSON.stringify(join(dir, 'state'))}`,
    'disabled_plugins = [',
    '  "io.containerd.grpc.v1.cri",',
    '  "io.containerd.internal.v1.opt",',
    '  "io.containerd.snapshotter.v1.aufs",',
    '  "io.containerd.snapshotter.v1.btrfs",',
    ...(options.devmapper ? [] : ['  "io.containerd.snapshotter.v1.devmapper",']),
    '  "io.containerd.snapshotter.v1.zfs",',
    '  "io.containerd.tracing.processor.v1.otlp",',
    ']',
    '',
    '[grpc]',
    `  address = ${JSON.stringify(socket)}`,
    '',
    '[ttrpc]',
    `  address = ${JSON.stringify(`${socket}.ttrpc`)}`,
    '',
    '[debug]',
    '  level = "debug"',
    '',
  ];
  for (const [name, address] of Object.entries(options.proxies ?? {})) {
    lines.push(`[proxy_plugins.${name}]`, '  type = "snapshot"', `  address = ${JSON.stringify(address)}`, '');
  }
  if (options.devmapper) {
    const { poolName, rootPath, baseImageSize } = options.devmapper;
    lines.push(
      '[plugins."io.containerd.snapshotter.v1.devmapper"]',
      `  pool_name = ${JSON.stringify(poolName)}`,
      `  root_path = ${JSON.stringify(rootPath)}`,
      `  base_image_size = ${JSON.stringify(baseImageSize)}`,
      '',
    );
  }
  if (options.extraConfig) lines.push(options.extraConfig);
  return lines.join('\n');
}

/** Starts a private containerd and waits until `ctr version` answers on its socket. */
export async function startContainerd(options: ContainerdOptions = {}): Promise<Containerd> {
  assertContainerdTools();
  ensureCgroup2();
  const dir = mkdtempSync(join(options.parentDir ?? tmpdir(), 'ctrd-'));
  const socket = join(dir, 'containerd.sock');
  const configFile = join(dir, 'config.toml');
  writeFileSync(configFile, configToml(dir, socket, options));
  const logFile = join(dir, 'containerd.log');
  const log: Buffer[] = [];
  // No udev runs in the test kernel and Debian's libdm trusts udev to make /dev/mapper nodes:
  // containerd's devmapper (dmsetup) must be told to make them itself.
  const env = options.devmapper ? { ...process.env, DM_DISABLE_UDEV: '1' } : process.env;
  const child = spawn(CONTAINERD, ['--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const collect = (chunk: Buffer) => {
    log.push(chunk);
    writeFileSync(logFile, chunk, { flag: 'a' });
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  let exited: string | undefined;
  child.on('exit', (code, signal) => {
    exited = `containerd exited (${code ?? signal})`;
  });
  const logTail = (bytes = 6000) => Buffer.concat(log).toString('utf8').slice(-bytes);
  const ctrResult = (args: string[], timeoutMs?: number) =>
    execute(CTR, ['-a', socket, '-n', NAMESPACE, ...args], timeoutMs);
  const ctr = async (args: string[], timeoutMs?: number) => {
    const result = await ctrResult(args, timeoutMs);
    if (result.code !== 0) {
      throw new Error(
        `ctr ${args.join(' ')} failed (${result.code}): ${result.stderr.trim()}\n--- containerd log (tail)\n${logTail(3000)}`,
      );
    }
    return result.stdout;
  };
  const instance: Containerd = {
    dir,
    socket,
    root: join(dir, 'root'),
    state: join(dir, 'state'),
    logFile,
    process: child,
    ctr,
    ctrResult,
    logTail,
    stop: () => stopContainerd(instance, () => exited !== undefined),
  };
  started.push(instance);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error(`${exited} before answering\n${logTail()}`);
    if (existsSync(socket) && (await ctrResult(['version'], 10_000)).code === 0) break;
    if (Date.now() > deadline) {
      await instance.stop();
      throw new Error(`containerd did not answer on ${socket} within 30 s\n${logTail()}`);
    }
    await sleep(100);
  }
  return instance;
}

export interface PluginRow {
  type: string;
  id: string;
  status: string;
}

/** `ctr plugins ls`, parsed (TYPE ID PLATFORMS STATUS). */
export async function plugins(c: Containerd): Promise<PluginRow[]> {
  const out = await c.ctr(['plugins', 'ls']);
  return out
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length >= 3)
    .map((cols) => ({ type: cols[0]!, id: cols[1]!, status: cols[cols.length - 1]! }));
}

/** PIDs of every process whose argv contains `needle` (from /proc), this process excluded. */
export function pidsWithArg(needle: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (argv.includes(needle)) pids.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** The shims a containerd started: their argv carries `-address <its socket>`. */
export function shimPids(c: Containerd): number[] {
  return pidsWithArg(c.socket).filter((pid) => {
    try {
      return (
        /containerd-shim/.test(readlinkSync(`/proc/${pid}/exe`)) ||
        /containerd-shim/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))
      );
    } catch {
      return false;
    }
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pids: number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(alive)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/** Kills and deletes every task, then every container, in the test namespace. */
export async function removeAllContainers(c: Containerd): Promise<void> {
  const tasks = (await c.ctrResult(['tasks', 'ls', '-q'])).stdout
    .split('\n')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const id of tasks) {
    await c.ctrResult(['tasks', 'kill', '-s', 'SIGKILL', id]);
    for (let i = 0; i < 50; i++) {
      if ((await c.ctrResult(['tasks', 'delete', id])).code === 0) break;
      await sleep(100);
    }
  }
  const containers = (await c.ctrResult(['containers', 'ls', '-q'])).stdout
    .split('\n')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const id of containers) await c.ctrResult(['containers', 'delete', id]);
}

async function stopContainerd(c: Containerd, hasExited: () => boolean): Promise<void> {
  const index = started.indexOf(c);
  if (index < 0) return;
  started.splice(index, 1);
  if (!hasExited()) await removeAllContainers(c).catch(() => undefined);
  const shims = shimPids(c);
  if (!hasExited()) {
    c.process.kill('SIGTERM');
    if (!(await waitGone([c.process.pid!], 10_000))) c.process.kill('SIGKILL');
    await waitGone([c.process.pid!], 5_000);
  }
  for (const pid of [...shims, ...shimPids(c)]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await waitGone(shims, 5_000);
  for (const point of mountsUnder(c.dir).reverse()) {
    await execute('umount', [point]);
    if (mountsUnder(c.dir).includes(point)) await execute('umount', ['-l', point]);
  }
  rmSync(c.dir, { recursive: true, force: true });
}

/** Stops every containerd still running (for test.after.always). */
export async function stopAllContainerd(): Promise<void> {
  for (const c of [...started].reverse()) await c.stop().catch(() => undefined);
}
