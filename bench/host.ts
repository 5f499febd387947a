// The host part of `npm run bench`: the native FFI overhead on loop-device ioctls, on this
// machine, no VM.
//   node dist/bench/host.js [--quick] [--out FILE]
import { writeFileSync } from 'node:fs';
import { buildCPrograms } from './c-build.js';
import { machineInfo, phase } from './common.js';
import { canRunNative, measureNative } from './native.js';
import type { HostResult } from './report.js';

export async function runHost(options: { quick: boolean }): Promise<HostResult> {
  const started = Date.now();
  const result: HostResult = { info: machineInfo() };
  const reason = canRunNative();
  if (reason) result.skipped = reason;
  else {
    const programs = await phase('building the C programs', () => buildCPrograms(['loopFloor']));
    result.native = await phase('native', () => measureNative({ quick: options.quick, programs }));
  }
  result.info.durationS = Math.round((Date.now() - started) / 100) / 10;
  return result;
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const outIndex = args.indexOf('--out');
  const result = await runHost({ quick });
  const text = `${JSON.stringify(result, null, 1)}\n`;
  if (outIndex >= 0) writeFileSync(args[outIndex + 1]!, text);
  else process.stdout.write(text);
  process.exit(0);
}
