// Self-test of the VM runner: exit statuses, streamed output, timeouts, and nothing left behind.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { exitStatusOf, resolveModules, runInVm, umlRelease } from '../vm/runner.js';

/** PIDs of host processes whose command line mentions `needle` (our VM's private dirs). */
function processesMentioning(needle: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(needle)) found.push(Number(entry));
    } catch {
      /* exited meanwhile */
    }
  }
  return found;
}

test('module resolution puts dependencies first', (t) => {
  const tree = `/usr/lib/uml/modules/${umlRelease()}`;
  const order = resolveModules(tree, ['dm-thin-pool']).map((p) => p.slice(p.lastIndexOf('/') + 1));
  t.true(order.indexOf('dm-mod.ko') < order.indexOf('dm-thin-pool.ko'));
  t.true(order.indexOf('dm-persistent-data.ko') < order.indexOf('dm-thin-pool.ko'));
  t.is(order[order.length - 1], 'dm-thin-pool.ko');
  t.throws(() => resolveModules(tree, ['no-such-module']), { message: /no-such-module/ });
});

test.serial('a failing command in the guest gives its exit status and its output', async (t) => {
  const chunks: Buffer[] = [];
  const result = await runInVm({
    command: ['sh', '-c', 'echo "out $GREETING"; test -c /dev/mapper/control && echo has-dm; exit 7'],
    env: { GREETING: "it's me" },
    onOutput: (c) => chunks.push(c),
    timeoutMs: 120_000,
  });
  t.is(result.outcome, 'exited');
  t.is(result.exitCode, 7);
  t.is(exitStatusOf(result), 7);
  t.is(result.output, "out it's me\nhas-dm\n");
  t.is(Buffer.concat(chunks).toString(), result.output, 'output is streamed as it comes');
  t.regex(result.kernelLog, /device-mapper: ioctl/);
});

test.serial('a command that hangs is killed at the timeout and no VM process survives', async (t) => {
  const result = await runInVm({ command: ['sleep', '600'], timeoutMs: 6_000, onOutput: () => {} });
  t.is(result.outcome, 'timeout');
  t.is(exitStatusOf(result), 124);
  t.true(result.durationMs < 60_000);
  t.truthy(result.vmId);
  t.deepEqual(processesMentioning(result.vmId), [], 'no process of this VM left on the host');
});

test.serial('aborting the signal hard-stops the guest (a power cut): outcome killed, no VM process left', async (t) => {
  const controller = new AbortController();
  let seen = '';
  const running = runInVm({
    command: ['sh', '-c', 'echo started; sleep 600'],
    timeoutMs: 120_000,
    signal: controller.signal,
    onOutput: (c) => {
      seen += c.toString();
      if (seen.includes('started')) controller.abort();
    },
  });
  const result = await running;
  t.is(result.outcome, 'killed');
  t.is(exitStatusOf(result), 137);
  t.true(result.durationMs < 60_000);
  t.deepEqual(processesMentioning(result.vmId), [], 'no process of this VM left on the host');
});

test.serial('a command killed by a signal is reported as such', async (t) => {
  const result = await runInVm({ command: ['sh', '-c', 'kill -TERM $$'], timeoutMs: 120_000, onOutput: () => {} });
  t.is(result.outcome, 'signaled');
  t.is(result.signal, 15);
  t.is(exitStatusOf(result), 128 + 15);
});

test.serial(
  'the QEMU backend boots the Debian kernel with device-mapper and keeps exit status and output',
  async (t) => {
    const result = await runInVm({
      backend: 'qemu',
      command: [
        'sh',
        '-c',
        'echo "kernel $(uname -r)"; test -c /dev/mapper/control && echo has-dm; grep -c "^dm_thin_pool " /proc/modules; exit 9',
      ],
      timeoutMs: 300_000,
      onOutput: () => {},
    });
    t.is(result.outcome, 'exited', result.vmStderr.slice(-2000));
    t.is(result.exitCode, 9);
    t.regex(result.output, /^kernel \d+\.\d+\.\d+-\d+-amd64\nhas-dm\n1\n$/);
    t.deepEqual(processesMentioning(result.vmId), [], 'no process of this VM left on the host');
  },
);

test.serial('a QEMU guest that hangs is killed at the timeout', async (t) => {
  const result = await runInVm({ backend: 'qemu', command: ['sleep', '600'], timeoutMs: 20_000, onOutput: () => {} });
  t.is(result.outcome, 'timeout');
  t.is(exitStatusOf(result), 124);
  t.deepEqual(processesMentioning(result.vmId), [], 'no process of this VM left on the host');
});
