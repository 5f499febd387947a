// Runs one command inside a throwaway Linux kernel that has device-mapper, because the machines
// this project is built on run a kernel without it. Default backend: Debian's user-mode-linux
// (a kernel that runs as a process) booted with the host's `/` as its root through hostfs.
// The guest's PID 1 is test/vm/init.c; see the contract at its top.
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bootQemu } from './qemu.js';

export type VmBackend = 'uml' | 'qemu';

/** The modules every kernel test needs, by file name without `.ko`; dependencies are added. */
export const DEFAULT_MODULES = ['dm-mod', 'dm-bufio', 'dm-persistent-data', 'dm-bio-prison', 'dm-thin-pool', 'loop'];

export interface VmRunOptions {
  /** argv of the command; run with `exec` from /bin/sh, so argv[0] is looked up in PATH. */
  command: string[];
  /** Working directory inside the guest (the host path; the guest sees the host's `/`). */
  cwd?: string;
  /** Extra environment for the command (PATH, HOME and TERM are set by the guest's init). */
  env?: Record<string, string>;
  /** Kill the guest after this long. Default 10 minutes. */
  timeoutMs?: number;
  backend?: VmBackend;
  /** Extra kernel modules to load, e.g. 'dm-flakey'. */
  modules?: string[];
  /** Host directories under /tmp the job needs besides its cwd and this project. */
  keep?: string[];
  /** Guest memory, e.g. '2G'. */
  memory?: string;
  /** Receives the guest console output as it arrives. Default: this process's stdout. */
  onOutput?: (chunk: Buffer) => void;
  /**
   * Aborting it hard-stops the guest: the VM's process group gets SIGKILL, with no shutdown,
   * no sync and no flush of the guest's page cache (a power cut; outcome 'killed').
   */
  signal?: AbortSignal;
}

export type VmOutcome =
  | 'exited' // the command ran and exited; see exitCode
  | 'signaled' // the command was killed by a signal; see signal
  | 'timeout' // the guest ran past timeoutMs and was killed
  | 'killed' // the caller's signal hard-stopped the guest (a power cut)
  | 'guest-died'; // the guest stopped without reporting the command's status

export interface VmRunResult {
  outcome: VmOutcome;
  exitCode: number | null;
  signal: number | null;
  /** Console output of the command (stdout and stderr interleaved, as a terminal shows them). */
  output: string;
  /** The kernel's own log (dmesg) at the end, when the guest got that far. */
  kernelLog: string;
  /** What the VM process itself printed on stderr (boot chatter, crash reports). */
  vmStderr: string;
  durationMs: number;
  /** The VM's private scratch directory name: it appears in the command line of its processes. */
  vmId: string;
}

/** Exit status a CLI should use for a result: the command's own, or 124 (timeout) / 125 (guest died). */
export function exitStatusOf(result: VmRunResult): number {
  switch (result.outcome) {
    case 'exited':
      return result.exitCode ?? 125;
    case 'signaled':
      return 128 + (result.signal ?? 0);
    case 'timeout':
      return 124;
    case 'killed':
      return 137;
    case 'guest-died':
      return 125;
  }
}

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const cacheDir = join(projectRoot, '.vm');

/** Compiles test/vm/init.c (static, so the guest does no dynamic linking) once per source hash. */
export function buildInit(): string {
  const source = join(projectRoot, 'test/vm/init.c');
  const hash = createHash('sha256').update(readFileSync(source)).digest('hex').slice(0, 12);
  const binary = join(cacheDir, `init-${hash}`);
  if (!existsSync(binary)) {
    mkdirSync(cacheDir, { recursive: true });
    const partial = `${binary}.${process.pid}.tmp`;
    execFileSync('gcc', ['-static', '-O2', '-Wall', '-o', partial, source], { stdio: 'inherit' });
    execFileSync('mv', [partial, binary]);
  }
  return binary;
}

export const UML_BINARY = '/usr/bin/linux';
const UML_MODULES_ROOT = '/usr/lib/uml/modules';

/** The kernel release of the installed user-mode-linux modules, e.g. '6.1.176'. */
export function umlRelease(): string {
  if (!existsSync(UML_BINARY) || !existsSync(UML_MODULES_ROOT)) {
    throw new Error(
      `user-mode-linux is not installed (${UML_BINARY}); run: apt-get install --no-install-recommends user-mode-linux`,
    );
  }
  const releases = readdirSync(UML_MODULES_ROOT).sort();
  if (releases.length === 0) throw new Error(`no module tree under ${UML_MODULES_ROOT}`);
  return releases[releases.length - 1]!;
}

/**
 * Module paths in load order for `names` and everything they depend on, from the tree's
 * modules.dep (whose lines are `path: dep dep ...`, deps listed nearest first).
 */
export function resolveModules(moduleTree: string, names: string[]): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of readFileSync(join(moduleTree, 'modules.dep'), 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const path = line.slice(0, colon);
    deps.set(
      path,
      line
        .slice(colon + 1)
        .trim()
        .split(/\s+/)
        .filter(Boolean),
    );
    byName.set(moduleName(path), path);
  }
  const builtin = new Set(
    existsSync(join(moduleTree, 'modules.builtin'))
      ? readFileSync(join(moduleTree, 'modules.builtin'), 'utf8').split('\n').filter(Boolean).map(moduleName)
      : [],
  );
  const order: string[] = [];
  const visit = (path: string): void => {
    if (order.includes(path)) return;
    for (const dep of [...(deps.get(path) ?? [])].reverse()) visit(dep);
    order.push(path);
  };
  for (const name of names) {
    const path = byName.get(name.replace(/_/g, '-')) ?? byName.get(name);
    if (path) visit(path);
    else if (!builtin.has(name) && !builtin.has(name.replace(/_/g, '-'))) {
      throw new Error(`kernel module '${name}' is neither in ${moduleTree}/modules.dep nor built in`);
    }
  }
  return order.map((path) => join(moduleTree, path));
}

function moduleName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1).replace(/\.ko(\.[a-z]+)?$/, '');
}

function shellQuote(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Writes the job script the guest's init runs: cwd, environment, then exec of the command. */
function writeJob(share: string, options: VmRunOptions): void {
  const lines = ['set -e', `cd ${shellQuote(options.cwd ?? process.cwd())}`];
  for (const [key, value] of Object.entries(options.env ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new Error(`bad environment variable name ${JSON.stringify(key)}`);
    lines.push(`export ${key}=${shellQuote(value)}`);
  }
  lines.push('export DEVMAPPER_IN_VM=1');
  lines.push(`exec ${options.command.map(shellQuote).join(' ')}`);
  writeFileSync(join(share, 'job.sh'), `${lines.join('\n')}\n`);
  // The guest's /tmp is private; host paths under it that the job needs are bound back.
  const keep = new Set([options.cwd ?? process.cwd(), projectRoot, ...(options.keep ?? [])]);
  writeFileSync(join(share, 'keep'), `${[...keep].join('\n')}\n`);
}

function parseStatus(text: string): Pick<VmRunResult, 'outcome' | 'exitCode' | 'signal'> | undefined {
  const match = /^(exit|signal) (\d+)/.exec(text);
  if (!match) return undefined;
  const n = Number(match[2]);
  return match[1] === 'exit'
    ? { outcome: 'exited', exitCode: n, signal: null }
    : { outcome: 'signaled', exitCode: null, signal: n };
}

/** Boots the guest, runs the command, returns how it ended. Never leaves a process behind. */
export async function runInVm(options: VmRunOptions): Promise<VmRunResult> {
  if (options.command.length === 0) throw new Error('runInVm: empty command');
  const backend = options.backend ?? (process.env.DEVMAPPER_VM as VmBackend | undefined) ?? 'uml';
  const share = mkdtempSync(join(tmpdir(), 'devmapper-vm-'));
  try {
    writeJob(share, options);
    const init = buildInit();
    const names = [...DEFAULT_MODULES, ...(options.modules ?? [])];
    const started = Date.now();
    const boot =
      backend === 'qemu'
        ? bootQemu({ share, init, modules: names, memory: options.memory ?? '2G' })
        : bootUml(share, init, names, options.memory ?? '2G');
    const ended = await supervise(
      boot,
      options.timeoutMs ?? 600_000,
      options.onOutput ?? ((c) => process.stdout.write(c)),
      options.signal,
    );
    const statusFile = join(share, 'status');
    const status = existsSync(statusFile) ? parseStatus(readFileSync(statusFile, 'utf8')) : undefined;
    const kernelLogFile = join(share, 'kernel.log');
    return {
      ...(ended.killed
        ? { outcome: 'killed', exitCode: null, signal: null }
        : ended.timedOut
          ? { outcome: 'timeout', exitCode: null, signal: null }
          : (status ?? { outcome: 'guest-died', exitCode: null, signal: null })),
      output: ended.output,
      vmStderr: ended.stderr,
      kernelLog: existsSync(kernelLogFile) ? readFileSync(kernelLogFile, 'utf8') : '',
      durationMs: Date.now() - started,
      // A name unique to this VM that appears in its host process's command line.
      vmId: basename(boot.scratch[0] ?? share),
    };
  } finally {
    rmSync(share, { recursive: true, force: true });
  }
}

export interface BootSpec {
  executable: string;
  args: string[];
  /** Directories to delete once the VM process is gone. */
  scratch: string[];
}

function bootUml(share: string, init: string, moduleNames: string[], memory: string): BootSpec {
  const release = umlRelease();
  const modules = resolveModules(join(UML_MODULES_ROOT, release), moduleNames);
  writeFileSync(join(share, 'modules'), `${modules.join('\n')}\n`);
  // uml_dir keeps UML's control socket out of $HOME; its memory file goes to TMPDIR.
  const umlDir = mkdtempSync(join(tmpdir(), 'devmapper-uml-'));
  return {
    executable: UML_BINARY,
    args: [
      `mem=${memory}`,
      'root=/dev/root',
      'rootfstype=hostfs',
      'rootflags=/',
      'rw',
      `init=${init}`,
      'con=null',
      'con0=null,fd:1',
      'ssl=null',
      `uml_dir=${umlDir}`,
      'loglevel=0',
      `VM_SHARE=${share}`,
    ],
    scratch: [umlDir],
  };
}

interface Ended {
  timedOut: boolean;
  killed: boolean;
  output: string;
  stderr: string;
}

/** Runs the VM process in its own process group, streams its console, kills the group on timeout. */
function supervise(
  boot: BootSpec,
  timeoutMs: number,
  onOutput: (chunk: Buffer) => void,
  signal?: AbortSignal,
): Promise<Ended> {
  return new Promise((resolvePromise, reject) => {
    // cwd: a fresh directory, since UML takes a file named root_fs in its cwd as a disk.
    const child = spawn(boot.executable, boot.args, {
      cwd: boot.scratch[0] ?? tmpdir(),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const killGroup = (): void => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    // A power cut: SIGKILL to every process of the VM at once, whatever the guest is doing.
    let killed = false;
    const onAbort = (): void => {
      killed = true;
      killGroup();
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    const onExit = (): void => killGroup();
    process.once('exit', onExit);
    child.stdout.on('data', (chunk: Buffer) => {
      out.push(chunk);
      onOutput(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (e) => {
      clearTimeout(timer);
      process.off('exit', onExit);
      reject(e);
    });
    child.on('close', () => {
      clearTimeout(timer);
      process.off('exit', onExit);
      signal?.removeEventListener('abort', onAbort);
      // UML's helper processes share the group; make sure none outlives the kernel.
      killGroup();
      for (const dir of boot.scratch) rmSync(dir, { recursive: true, force: true });
      resolvePromise({
        timedOut,
        killed,
        output: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      });
    });
  });
}
