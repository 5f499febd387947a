// The snapshots service's gRPC status codes are declared once in src/containerd/errors.ts (so
// that importing the package, or running `devmapper ls`/`check`, does not load gRPC): here they
// are checked against @grpc/grpc-js's own table, and the package and those CLI commands are
// checked to load no @grpc module until serveContainerd is called.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import { GRPC_STATUS, SnapshotError } from '../../src/containerd/errors.js';

const dist = fileURLToPath(new URL('../../src/', import.meta.url));

test('every gRPC status code the service sends is grpc-js’s', (t) => {
  for (const [name, code] of Object.entries(GRPC_STATUS)) {
    t.is<number, number>(code, status[name as keyof typeof status], name);
  }
  t.is<number, number>(new SnapshotError('NOT_FOUND', 'x').grpcCode, status.NOT_FOUND);
});

/** How many @grpc modules a fresh node has loaded after importing `modules` (and running `then`). */
function grpcModulesAfter(modules: string[], then = ''): number {
  const script = `
    import { createRequire } from 'node:module';
    for (const m of ${JSON.stringify(modules)}) await import(m);
    ${then}
    const cache = createRequire(import.meta.url).cache;
    process.stdout.write(String(Object.keys(cache).filter((k) => k.includes('/@grpc/')).length));`;
  return Number(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));
}

test('importing the package, or the CLI commands ls/status/check, loads no gRPC; serveContainerd does', (t) => {
  t.is(grpcModulesAfter([`${dist}index.js`]), 0, 'import of the package');
  t.is(grpcModulesAfter([`${dist}cli/report-commands.js`, `${dist}cli/layer-commands.js`]), 0, 'the CLI commands');
  const loaded = grpcModulesAfter(
    [`${dist}index.js`],
    `const pkg = await import(${JSON.stringify(`${dist}index.js`)});
     await pkg.serveContainerd({ driver: null, socket: '' }).catch(() => undefined);`,
  );
  t.true(loaded > 0, `the first serveContainerd call loads it (${loaded} modules)`);
});
