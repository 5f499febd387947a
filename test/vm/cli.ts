// `npm run vm -- [--qemu] [--timeout S] [--module NAME]... -- <command...>`: runs one command
// in the test kernel and exits with its status (124: timed out, 125: the guest died).
import { guestEnv } from './guest-env.js';
import { exitStatusOf, runInVm, type VmBackend } from './runner.js';

function usage(message: string): never {
  process.stderr.write(
    `${message}\nusage: npm run vm -- [--qemu|--uml] [--timeout SECONDS] [--module NAME]... [--] COMMAND [ARG...]\n`,
  );
  process.exit(2);
}

const args = process.argv.slice(2);
let backend: VmBackend | undefined;
let timeoutMs: number | undefined;
const modules: string[] = [];
while (args.length > 0 && args[0]!.startsWith('--')) {
  const flag = args.shift()!;
  if (flag === '--') break;
  else if (flag === '--qemu') backend = 'qemu';
  else if (flag === '--uml') backend = 'uml';
  else if (flag === '--timeout') {
    const seconds = Number(args.shift());
    if (!(seconds > 0)) usage('--timeout needs a positive number of seconds');
    timeoutMs = seconds * 1000;
  } else if (flag === '--module') {
    const name = args.shift();
    if (!name) usage('--module needs a module name');
    modules.push(name);
  } else usage(`unknown option ${flag}`);
}
if (args.length === 0) usage('no command given');

const env = guestEnv();

const result = await runInVm({ command: args, backend, timeoutMs, modules, env });
if (result.outcome === 'timeout' || result.outcome === 'guest-died') {
  process.stderr.write(
    `vm: ${result.outcome} after ${result.durationMs} ms\n${result.vmStderr.slice(-2000)}\n${result.kernelLog.slice(-3000)}\n`,
  );
}
process.exit(exitStatusOf(result));
