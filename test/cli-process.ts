// Runs the built devmapper CLI as its own process (node bin.js ..., through execFile, never a
// shell) for the host and kernel CLI tests, with the environment that could change its
// behaviour (DEVMAPPER_HOME, DEVMAPPER_LOG) removed.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI_BIN = fileURLToPath(new URL('../src/cli/bin.js', import.meta.url));

export interface CliRun {
  /** The exit status; null when it was killed (e.g. at the timeout). */
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Resolves with however the CLI exited (never rejects). */
export function runCli(args: string[], timeoutMs = 90_000): Promise<CliRun> {
  const env = { ...process.env };
  delete env.DEVMAPPER_HOME;
  delete env.DEVMAPPER_LOG;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI_BIN, ...args],
      { encoding: 'utf8', env, timeout: timeoutMs, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr });
      },
    );
  });
}
