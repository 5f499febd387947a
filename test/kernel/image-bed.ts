// The home and work directory an image test runs the CLI in (image-import, real-image): made
// and `devmapper init`ed before the file's tests, brought down (cleanup) and removed after.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CliRun, runCli } from '../cli-process.js';
import { initHome } from './snapshotter-server.js';
import { newHome, removeHomes } from './driver-helpers.js';

export interface ImageBed {
  home(): string;
  work(): string;
  /** `devmapper --home <home> …` */
  cli(...args: string[]): Promise<CliRun>;
  /** `devmapper --home <home> --json …`, parsed; a failed command throws with its stderr. */
  cliJson<T>(...args: string[]): Promise<T>;
}

/** Registers the hooks; `tag` names the home and work directory, `sizes` go to init. */
export function useImageBed(
  tag: string,
  sizes: { baseSize: string; loopDataSize: string; loopMetadataSize: string },
): ImageBed {
  let home: string | undefined;
  let work: string | undefined;
  const made = (what: string, value: string | undefined): string => {
    if (value === undefined) throw new Error(`the image test's ${what} was not made`);
    return value;
  };
  const bed: ImageBed = {
    home: () => made('home', home),
    work: () => made('work directory', work),
    cli: (...args) => runCli(['--home', bed.home(), ...args]),
    async cliJson<T>(...args: string[]): Promise<T> {
      const r = await bed.cli('--json', ...args);
      if (r.code !== 0) throw new Error(`devmapper ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
      return JSON.parse(r.stdout) as T;
    },
  };
  test.serial.before(async () => {
    home = newHome(tag);
    work = mkdtempSync(join(tmpdir(), `${tag}-`));
    await initHome(home, sizes);
  });
  test.after.always(async () => {
    if (home) await bed.cli('cleanup');
    if (work) rmSync(work, { recursive: true, force: true });
    removeHomes();
  });
  return bed;
}
