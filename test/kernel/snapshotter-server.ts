// The devmapper snapshotter server as a child process, for the engine tests:
// `devmapper --home HOME init` with the engine tests' sizes, `serve containerd` started and
// waited for, stopped (SIGTERM, then SIGKILL after 30 s), and the CLI's JSON output parsed.
import { type ChildProcess, spawn } from 'node:child_process';
import { CLI_BIN, type CliRun, runCli } from '../cli-process.js';
import { sleep } from './driver-helpers.js';

export interface Server {
  home: string;
  socket: string;
  process: ChildProcess;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** Resolves with the exit code (or signal name) when it exits. */
  exited: Promise<number | string>;
  /** Resolves when a line of output matches `pattern` (or rejects after timeoutMs / at exit). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

const servers: Server[] = [];

/** `devmapper --home HOME init ...` with the sizes the engine tests use. */
export async function initHome(
  home: string,
  sizes = { baseSize: '256M', loopDataSize: '4G', loopMetadataSize: '64M' },
): Promise<CliRun> {
  const result = await runCli([
    '--home',
    home,
    'init',
    '--base-size',
    sizes.baseSize,
    '--loop-data-size',
    sizes.loopDataSize,
    '--loop-metadata-size',
    sizes.loopMetadataSize,
  ]);
  if (result.code !== 0) throw new Error(`devmapper init failed (${result.code}): ${result.stderr}`);
  return result;
}

/** Starts `devmapper --home HOME serve containerd --socket SOCKET` and waits for `listening`. */
export async function startServer(home: string, socket: string, extraArgs: string[] = []): Promise<Server> {
  const env = { ...process.env };
  delete env.DEVMAPPER_HOME;
  delete env.DEVMAPPER_LOG;
  const child = spawn(
    process.execPath,
    [CLI_BIN, '--home', home, 'serve', 'containerd', '--socket', socket, ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'], env },
  );
  let text = '';
  const listeners = new Set<() => void>();
  const feed = (chunk: Buffer) => {
    text += chunk.toString('utf8');
    for (const listener of listeners) listener();
  };
  child.stdout!.on('data', feed);
  child.stderr!.on('data', feed);
  // 'close', not 'exit': what the server printed last may still be in the pipe at exit
  const exited = new Promise<number | string>((resolve) =>
    child.on('close', (code, signal) => {
      resolve(code ?? signal ?? 'unknown');
      for (const listener of listeners) listener();
    }),
  );
  let done = false;
  void exited.then(() => {
    done = true;
  });
  const waitFor = (pattern: RegExp, timeoutMs = 60_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const line = text.split('\n').find((l) => pattern.test(l));
        if (line !== undefined) finish(() => resolve(line));
        else if (done)
          finish(() => reject(new Error(`devmapper serve exited before printing ${pattern}:\n${text.slice(-4000)}`)));
      };
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(new Error(`devmapper serve printed no ${pattern} within ${timeoutMs} ms:\n${text.slice(-4000)}`)),
          ),
        timeoutMs,
      );
      const finish = (action: () => void) => {
        clearTimeout(timer);
        listeners.delete(check);
        action();
      };
      listeners.add(check);
      check();
    });
  const server: Server = { home, socket, process: child, output: () => text, exited, waitFor };
  servers.push(server);
  void exited.then(() => servers.splice(servers.indexOf(server), 1));
  await waitFor(/listening/);
  return server;
}

/** SIGTERM and wait for the exit; returns the exit code (or the signal name). */
export async function stopServer(server: Server, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string> {
  if (server.process.exitCode === null && server.process.signalCode === null) server.process.kill(signal);
  const timeout = sleep(30_000).then(() => 'timeout' as const);
  const result = await Promise.race([server.exited, timeout]);
  if (result === 'timeout') {
    server.process.kill('SIGKILL');
    return 'timeout (killed)';
  }
  return result;
}

/** Kills every server still running (for test.after.always). */
export async function killAllServers(): Promise<void> {
  for (const server of [...servers]) await stopServer(server, 'SIGKILL');
}

/** `devmapper --home HOME <args> --json` parsed; throws with stderr on failure. */
export async function cliJson<T = unknown>(home: string, args: string[]): Promise<T> {
  const result = await runCli(['--home', home, ...args, '--json']);
  if (result.code !== 0)
    throw new Error(`devmapper ${args.join(' ')} --json failed (${result.code}): ${result.stderr}${result.stdout}`);
  return JSON.parse(result.stdout) as T;
}

export { runCli };
