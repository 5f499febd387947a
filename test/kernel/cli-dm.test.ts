// The devmapper CLI against a real kernel, the raw dm commands: --json of version, ls, info,
// table, status, targets and message compared with DeviceMapper in this process, and a failure
// carrying the library's code. Each command is run as its own process (cli-helpers.ts); the
// test's teardown removes its device, and an after.always hook checks that nothing is leaked.
import test from 'ava';
import { DeviceMapper } from '../../src/ioctl/device-mapper.js';
import { LONG, cli, codeOf, json, plain, useCliBed } from './cli-helpers.js';
import { Cleanup, uniqueName } from './helpers.js';

useCliBed({ leakCheckHook: true });

test.serial(
  'dm commands: --json of version, ls, info, table, status, targets, message matches DeviceMapper',
  async (t) => {
    t.timeout(LONG);
    const cleanup = new Cleanup(t);
    const dm = cleanup.handle(DeviceMapper.open());
    const name = cleanup.device(uniqueName('cli'));
    dm.create(name);
    dm.load(name, [{ start: 0n, length: 2048n, type: 'zero', params: '' }]);
    dm.resume(name);
    dm.load(name, [{ start: 0n, length: 4096n, type: 'error', params: '' }]); // waits in the inactive slot

    t.deepEqual(json(t, await cli('--json', 'dm', 'version'), 'dm version'), { driverVersion: dm.version().join('.') });
    const ls = json(t, await cli('--json', 'dm', 'ls'), 'dm ls');
    t.deepEqual(ls, plain(dm.list()));
    t.true(ls.some((d: { name: string }) => d.name === name));
    t.deepEqual(json(t, await cli('--json', 'dm', 'info', name), 'dm info'), plain(dm.info(name)));
    const inactive = json(t, await cli('--json', 'dm', 'table', name, '--inactive'), 'dm table --inactive');
    t.deepEqual(inactive, plain(dm.table(name, { inactive: true })));
    t.notDeepEqual(inactive, plain(dm.table(name)), 'the inactive slot, not the live one');
    t.deepEqual(
      json(t, await cli('--json', 'dm', 'status', name), 'dm status'),
      plain(dm.status(name, { noFlush: true })),
    );
    const targets = json(t, await cli('--json', 'dm', 'targets'), 'dm targets');
    t.deepEqual(targets, plain(dm.targets()));
    t.true(targets.some((target: { name: string }) => target.name === 'thin-pool'));

    // A message with a reply (dm statistics, in dm core).
    const created = json(
      t,
      await cli('--json', 'dm', 'message', name, '0', '@stats_create', '-', '/1'),
      'dm message @stats_create',
    );
    t.regex(created.reply, /^\d+$/, 'the new region id');
    const region = new RegExp(`^${created.reply}: 0\\+2048 `, 'm');
    t.regex(dm.message(name, 0n, '@stats_list') ?? '', region, 'the library sees the region the CLI made');
    t.is(dm.message(name, 0n, `@stats_delete ${created.reply}`), undefined);

    // A failure carries the library's code.
    const missing = `${name}-missing`;
    const infoErr = await cli('dm', 'info', missing);
    t.is(infoErr.code, 1);
    const libCode = codeOf(t.throws(() => dm.info(missing)));
    t.true(infoErr.stderr.includes(`[${libCode}]`) && infoErr.stderr.includes(missing), infoErr.stderr);
  },
);
