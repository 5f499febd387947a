// Security properties that need no kernel (their kernel-side halves are in
// test/kernel/security.test.ts):
// - no shell is ever involved in running a program: every file under src/ is parsed with the
//   TypeScript compiler and its syntax tree (not its text) is checked: child_process is only
//   imported by name, and only execFile / execFileSync / spawn / spawnSync (never exec or
//   execSync, which always run /bin/sh, nor a namespace or default import that could reach
//   them); no object literal anywhere sets `shell`; no require() or dynamic import() of
//   child_process; the first argument of every execFile / spawn call is never a shell;
// - layer ids that could name a path outside <home> (or the pool's dm name) are refused with a
//   typed error;
// - a mount label or a mount option with a comma or newline cannot add mount options.
import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { InvalidArgumentError } from '../../src/errors.js';
import { assertLayerId, assertMountLabel, resolveOptions } from '../../src/driver/options.js';

const projectRoot = fileURLToPath(new URL('../../..', import.meta.url));
const srcDir = join(projectRoot, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

const CHILD_PROCESS = new Set(['child_process', 'node:child_process']);
const ALLOWED_IMPORTS = new Set(['execFile', 'execFileSync', 'spawn', 'spawnSync']);
const SHELLS = /^(?:\/(?:usr\/)?bin\/)?(?:sh|bash|dash|zsh|ksh|ash|busybox)$/;

interface Finding {
  file: string;
  line: number;
  what: string;
}

/** Every way src/ could run a program through a shell, found in the syntax tree. */
function shellFindings(file: string): { findings: Finding[]; runners: string[] } {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const findings: Finding[] = [];
  const runners: string[] = []; // local names bound to execFile/spawn...
  const at = (node: ts.Node, what: string): void => {
    findings.push({
      file: relative(projectRoot, file),
      line: source.getLineAndCharacterOfPosition(node.getStart()).line + 1,
      what,
    });
  };
  const visit = (node: ts.Node): void => {
    if (
      ts.isImportDeclaration(node) &&
      ts.isStringLiteral(node.moduleSpecifier) &&
      CHILD_PROCESS.has(node.moduleSpecifier.text)
    ) {
      const clause = node.importClause;
      if (clause?.name) at(node, 'default import of child_process');
      const bindings = clause?.namedBindings;
      if (bindings && ts.isNamespaceImport(bindings)) at(node, 'namespace import of child_process');
      if (bindings && ts.isNamedImports(bindings)) {
        for (const element of bindings.elements) {
          const imported = (element.propertyName ?? element.name).text;
          if (!ALLOWED_IMPORTS.has(imported)) at(element, `imports ${imported} from child_process`);
          else runners.push(element.name.text);
        }
      }
    }
    if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const firstArg = node.arguments[0];
      const isRequire = ts.isIdentifier(callee) && callee.text === 'require';
      const isDynamicImport = callee.kind === ts.SyntaxKind.ImportKeyword;
      if (
        (isRequire || isDynamicImport) &&
        firstArg &&
        ts.isStringLiteralLike(firstArg) &&
        CHILD_PROCESS.has(firstArg.text)
      ) {
        at(node, `${isRequire ? 'require' : 'import'}() of child_process`);
      }
      if (
        ts.isIdentifier(callee) &&
        runners.includes(callee.text) &&
        firstArg &&
        ts.isStringLiteralLike(firstArg) &&
        SHELLS.test(firstArg.text)
      ) {
        at(node, `${callee.text}() runs the shell ${firstArg.text}`);
      }
    }
    if (
      (ts.isPropertyAssignment(node) || ts.isShorthandPropertyAssignment(node)) &&
      node.name &&
      ts.isIdentifier(node.name) &&
      node.name.text === 'shell'
    ) {
      at(node, 'an object literal sets `shell`');
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return { findings, runners };
}

test('no shell: src/ runs programs only through execFile/spawn by name, never exec/execSync or `shell`', (t) => {
  const files = sourceFiles(srcDir);
  t.true(files.length > 20, `found ${files.length} source files under ${srcDir}`);
  const findings: Finding[] = [];
  const runnersByFile: Record<string, string[]> = {};
  for (const file of files) {
    const result = shellFindings(file);
    findings.push(...result.findings);
    if (result.runners.length > 0) runnersByFile[relative(projectRoot, file)] = result.runners;
  }
  t.deepEqual(findings, [], findings.map((f) => `${f.file}:${f.line}: ${f.what}`).join('\n'));
  t.log(`${files.length} files parsed; programs are run from: ${JSON.stringify(runnersByFile)}`);
  // mkfs and the grow tools run through execFile (an argument vector, no shell).
  t.deepEqual(runnersByFile['src/driver/filesystem.ts'], ['execFile']);
});

test('no shell: the checker itself catches each forbidden form', (t) => {
  // The analysis above must not pass by being blind: run it on a file of bad examples.
  const dir = mkdtempSync(join(tmpdir(), 'devmapper-security-'));
  const file = join(dir, 'bad.ts');
  const samples = [
    "import { exec } from 'node:child_process';",
    "import { execSync as run } from 'child_process';",
    "import * as cp from 'node:child_process';",
    "import cp2 from 'child_process';",
    "import { execFile, spawn } from 'node:child_process';",
    "const a = require('child_process');",
    "const b = await import('node:child_process');",
    "spawn('mkfs.ext4', ['-q'], { shell: true });",
    "const shell = '/bin/sh'; spawn('x', [], { shell });",
    "execFile('/bin/sh', ['-c', 'mkfs.ext4 x']);",
    "spawn('bash', ['-c', 'x']);",
  ];
  try {
    writeFileSync(file, `${samples.join('\n')}\n`);
    const { findings } = shellFindings(file);
    t.deepEqual(
      findings.map((f) => f.line),
      [1, 2, 3, 4, 6, 7, 8, 9, 10, 11],
      findings.map((f) => `${f.line}: ${f.what}`).join('\n'),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const BAD_IDS: unknown[] = [
  '../x',
  '..',
  '.',
  '/abs',
  '/',
  'a/b',
  'a/../b',
  'a\\b',
  'a\0b',
  '\0',
  'x'.repeat(81),
  'a\nb',
  'a\n',
  '\n',
  'a\r',
  '',
  ' ',
  'a b',
  '-x',
  '.hidden',
  '.base',
  'a..b',
  '..a',
  'ünï',
  'a,b',
  'a"b',
  "a'b",
  'a;b',
  '$(x)',
  'a*',
  'pool',
  42,
  null,
  undefined,
  {},
  ['a'],
];

test("layer ids that could escape <home>, or take the pool's dm name, are refused with InvalidArgumentError", (t) => {
  for (const id of BAD_IDS) {
    const error = t.throws(
      () => assertLayerId(id),
      { instanceOf: InvalidArgumentError },
      JSON.stringify(id) ?? String(id),
    );
    t.is(error?.code, 'ERR_DM_INVALID_ARGUMENT');
    t.is(error?.argument, 'id');
  }
  for (const id of ['img', 'a.b', 'a-b_c', 'x'.repeat(80), 'a'.repeat(64), 'pool2', 'my-pool', '0', 'A.b-C_d'])
    t.notThrows(() => assertLayerId(id), id);
});

test('a mount label with a comma (outside an MLS category list), quote or newline is refused', (t) => {
  for (const label of [
    'a,ro',
    'x,dev,suid',
    'system_u:object_r:t:s0,nosuid',
    's0:c1,exec',
    'a,',
    ',a',
    'a\nb',
    'a\n',
    'a"b',
    'a b',
    '',
    'a\0',
    'a,c',
    'a\r',
  ]) {
    t.throws(
      () => assertMountLabel(label),
      { instanceOf: InvalidArgumentError, code: 'ERR_DM_INVALID_ARGUMENT' },
      JSON.stringify(label),
    );
  }
  for (const label of [
    'system_u:object_r:container_file_t:s0',
    'system_u:object_r:container_file_t:s0:c1,c2',
    's0-s0:c0.c1023',
    's0:c1,c2-s0:c1,c2,c3',
  ]) {
    t.notThrows(() => assertMountLabel(label), label);
  }
});

test('a mount option with a newline or other unusual character is refused before anything is touched', (t) => {
  const home = '/nonexistent/devmapper-security-test';
  for (const mountOptions of ['ro\nexec', 'noatime\n', 'a b', 'context="x"', 'x;y', 'a\0', 'a\r']) {
    t.throws(
      () => resolveOptions({ home, mountOptions }),
      { instanceOf: InvalidArgumentError, code: 'ERR_DM_INVALID_ARGUMENT' },
      JSON.stringify(mountOptions),
    );
  }
  // Commas separate options (Docker's dm.mountopt): each piece is checked on its own.
  t.deepEqual(resolveOptions({ home, mountOptions: 'noatime,nodiratime' }).mountOptions, ['noatime', 'nodiratime']);
  t.throws(() => resolveOptions({ home, mkfsArgs: ['-L', 'a\0'] }), { instanceOf: InvalidArgumentError });
  t.throws(() => resolveOptions({ home: 'relative/home' }), { instanceOf: InvalidArgumentError });
  t.throws(() => resolveOptions({ home: '/a\nb' }), { instanceOf: InvalidArgumentError });
  for (const root of ['/', '//']) {
    const error = t.throws(() => resolveOptions({ home: root }), { instanceOf: InvalidArgumentError });
    t.regex(
      error!.message,
      /not \//,
      'the root directory is never a home (its lock, metadata and mnt would land in /)',
    );
  }
});
