// The soak test's helpers (soak.test.ts): a child process running the Driver for one create
// or remove, SIGKILLed on cue, and the pool's thin ids probed by ioctl.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DmSystemError } from '../../src/errors.js';
import type { DeviceMapper } from '../../src/ioctl/device-mapper.js';
import { type NodeChildResult, runNodeChild, SMALL } from './driver-helpers.js';

const INDEX_URL = new URL('../../src/index.js', import.meta.url).href;

/**
 * Writes the child's script into a new directory; returns its path. The child opens the home
 * (adopting the parent's mounts), says 'ready', does one create or remove, says 'done', and lets
 * go with close(), as a CLI command would.
 */
export function writeChildScript(): string {
  const dir = mkdtempSync(join(tmpdir(), 'drv-soak-script-'));
  const script = join(dir, 'child.mjs');
  writeFileSync(
    script,
    `
import { Driver } from ${JSON.stringify(INDEX_URL)};
const [home, op, id, parent] = process.argv.slice(2);
const driver = await Driver.init({ home, ...${JSON.stringify(SMALL)} });
process.stdout.write('ready\\n');
if (op === 'create') await driver.create(id, parent === '-' ? null : parent);
else await driver.remove(id);
process.stdout.write('done\\n');
await driver.close();
`,
  );
  return script;
}

/** Removes what writeChildScript() made. */
export function removeChildScript(script: string): void {
  rmSync(dirname(script), { recursive: true, force: true });
}

export interface ChildResult extends NodeChildResult {
  /** The child printed 'done': its operation finished. */
  done: boolean;
  /** The child printed 'ready': its init finished. */
  ready: boolean;
}

/** Runs the child; kills it with SIGKILL `killAfterMs` after it starts (undefined: never). */
export async function runChild(
  childScript: string,
  env: NodeJS.ProcessEnv,
  args: string[],
  killAfterMs: number | undefined,
): Promise<ChildResult> {
  const result = await runNodeChild(childScript, args, env, killAfterMs);
  return { ...result, done: /^done$/m.test(result.output), ready: /^ready$/m.test(result.output) };
}

/**
 * The thin ids 0..maxId the pool holds, probed with a device of the test's own whose table
 * `thin <pool> <id>` loads only for an id the pool has (the same idea as check(), written
 * separately; dmsetup would cost a process per id, which the test kernel makes slow).
 */
export function poolThinIdsByIoctl(dm: DeviceMapper, poolName: string, maxId: number): number[] {
  const { major, minor } = dm.info(poolName).dev;
  const probe = `soakprobe${process.pid}`;
  dm.create(probe);
  const found: number[] = [];
  try {
    for (let id = 0; id <= maxId; id++) {
      try {
        dm.load(probe, [{ start: 0n, length: 8n, type: 'thin', params: `${major}:${minor} ${id}` }]);
      } catch (error) {
        if (error instanceof DmSystemError && error.code === 'ENODATA') continue;
        throw error;
      }
      found.push(id);
      dm.clear(probe);
    }
  } finally {
    dm.remove(probe);
  }
  return found;
}
