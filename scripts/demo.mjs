#!/usr/bin/env node
// `npm run demo`: the README's main job. Sets up what is missing, builds, then runs
// `devmapper demo` directly on a host with device-mapper, or inside the test kernel otherwise.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { build, canUseDeviceMapperHere, ensureAptPackages, ensureNodeModules, root, step } from './bootstrap.mjs';

const args = process.argv.slice(2);
ensureAptPackages(['user-mode-linux', 'gcc', 'libc6-dev', 'e2fsprogs']);
ensureNodeModules();
build();
const cli = join(root, 'dist/src/cli/bin.js');
if (canUseDeviceMapperHere()) {
  step('devmapper demo (on this host)');
  process.exit(spawnSync(process.execPath, [cli, 'demo', ...args], { stdio: 'inherit' }).status ?? 1);
}
step('no device-mapper on this host: devmapper demo runs inside the test kernel');
const { runInVm, exitStatusOf } = await import(join(root, 'dist/test/vm/runner.js'));
const result = await runInVm({ command: [process.execPath, cli, 'demo', ...args], cwd: root, timeoutMs: 10 * 60_000 });
if (result.outcome !== 'exited')
  process.stderr.write(`the test kernel ${result.outcome}\n${result.vmStderr.slice(-2000)}\n`);
process.exit(exitStatusOf(result));
