// Run by ioctl-budget.test.ts in a process of its own with DEVMAPPER_LOG=trace (the ioctl choke
// point decides at load whether it traces): one container layer's lifecycle on an image layer,
// printing as JSON the dm ioctls each Driver call made, in order.
//   node ioctl-budget-child.js <home> <errorIfNoSpace: true|false>
import { Driver } from '../../src/driver/driver.js';
import { logger } from '../../src/log.js';
import { SMALL } from './driver-helpers.js';

const [home, errorIfNoSpace] = process.argv.slice(2);
if (!home || (errorIfNoSpace !== 'true' && errorIfNoSpace !== 'false'))
  throw new Error('usage: ioctl-budget-child <home> <true|false>');

let current: string[] | undefined;
logger.attachTransport((entry) => {
  const message = (entry as Record<string, unknown>)['0'];
  const op = typeof message === 'string' ? /^ioctl (DM_\w+) /.exec(message)?.[1] : undefined;
  if (op && current) current.push(op);
});

async function step(calls: Record<string, string[]>, name: string, call: () => Promise<unknown>): Promise<void> {
  current = [];
  await call();
  calls[name] = current;
  current = undefined;
}

const driver = await Driver.init({ home, ...SMALL, ffi: 'koffi', errorIfNoSpace: errorIfNoSpace === 'true' });
try {
  await driver.create('img');
  await driver.get('img'); // the image layer active and mounted, as under a running container
  const calls: Record<string, string[]> = {};
  for (let round = 0; round < 2; round++) {
    // the second round is the one reported: the first may still read what a process reads once
    await step(calls, 'create', () => driver.create(`ctr${round}`, 'img'));
    await step(calls, 'get', () => driver.get(`ctr${round}`));
    await step(calls, 'put', () => driver.put(`ctr${round}`));
    await step(calls, 'remove', () => driver.remove(`ctr${round}`));
  }
  process.stdout.write(`${JSON.stringify(calls)}\n`);
} finally {
  await driver.cleanup();
}
