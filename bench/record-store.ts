// The durable write of one layer create, several ways, side by side in one run (issue 16's
// "measured against each other"): what the crash protocol wrote before transactions.log (the
// intent's file and directory fsync, then the record, deviceset.json, one directory fsync and
// the intent's unlink), what MetadataStore writes now (transactions.log: the intent line and one
// fdatasync, the done line, its folds into the files), the bare journal prototype (one line, one
// fdatasync, no fold), and SQLite through better-sqlite3 in WAL mode (one transaction per create;
// synchronous=FULL is the durable setting, NORMAL is shown for reference: it may lose the last
// commits in a power cut). The pool messages are left out: they are the same in every design.
// Rounds interleave the variants so load on the machine falls on all of them alike.
//
//   npm run build && node dist/bench/record-store.js [--ops 600] [--rounds 6] [--dir DIR]
//   in the test kernel: npm run vm -- --timeout 900 -- node dist/bench/record-store.js
// better-sqlite3 (a native addon, ~3 min to build) is installed once into .vm/bench-deps by
// `node dist/bench/record-store.js --install-sqlite` on the host; without it those rows say so.
import { execFileSync } from 'node:child_process';
import {
  closeSync,
  constants,
  existsSync,
  fdatasyncSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import type { DeviceSetState, LayerRecord, OpenTransaction } from '../src/driver/metadata-schema.js';
import { unlinkIfPresent, writeDurably } from '../src/driver/metadata-files.js';
import { MetadataStore } from '../src/driver/metadata-store.js';

const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DEPS = join(PROJECT_ROOT, '.vm/bench-deps');
const SQLITE_VERSION = '12.11.1';

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

/** One create's worth of durable writes; `i` makes each layer distinct. */
interface Variant {
  name: string;
  create(i: number): void;
  close(): void;
}

const recordOf = (i: number): LayerRecord => ({
  id: `layer-${i}`,
  parent: 'image-0',
  deviceId: i + 2,
  size: '10737418240',
  transactionId: String(i + 2),
});
const stateOf = (i: number): DeviceSetState => ({
  formatVersion: 1,
  nextDeviceId: i + 3,
  transactionId: String(i + 2),
});
const intentOf = (i: number): OpenTransaction => ({
  transactionId: String(i + 2),
  op: 'create',
  layerId: `layer-${i}`,
  deviceId: i + 2,
  record: recordOf(i),
});

/** What MetadataStore writes now: the intent line with one fdatasync, the done line unsynced, a fold per 256 lines. */
function storeVariant(dir: string): Variant {
  const store = new MetadataStore(join(dir, 'metadata'));
  return {
    name: 'store (today: transactions.log, folds included)',
    create(i) {
      store.openTransaction(intentOf(i)); // one write, one fdatasync
      store.finishTransaction({ write: recordOf(i) }, stateOf(i)); // one write
    },
    close: () => store.close(),
  };
}

/**
 * The protocol before transactions.log, as MetadataStore wrote it until then: transaction.json
 * (temp, fsync, rename, directory fsync), then the record and deviceset.json (temp, fsync,
 * rename each), one directory fsync for both, and the intent's unlink.
 */
function filesVariant(dir: string): Variant {
  mkdirSync(dir, { recursive: true });
  const dirFd = openSync(dir, 'r');
  const replace = (name: string, value: unknown): void => {
    const path = join(dir, name);
    writeDurably(`${path}.tmp`, `${JSON.stringify(value, null, 2)}\n`);
    renameSync(`${path}.tmp`, path);
  };
  return {
    name: 'files (before the log: intent, record, state)',
    create(i) {
      replace('transaction.json', intentOf(i));
      fsyncSync(dirFd);
      replace(`layer-${i}.layer.json`, recordOf(i));
      replace('deviceset.json', stateOf(i));
      fsyncSync(dirFd);
      unlinkIfPresent(join(dir, 'transaction.json'));
    },
    close: () => closeSync(dirFd),
  };
}

function journalVariant(dir: string): Variant {
  mkdirSync(dir, { recursive: true });
  const fd = openSync(join(dir, 'journal'), constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND, 0o600);
  return {
    name: 'journal (one line, one fdatasync)',
    create(i) {
      const json = JSON.stringify({ ...intentOf(i), nextDeviceId: i + 3 });
      writeSync(fd, `${crc32(json).toString(16).padStart(8, '0')} ${json}\n`);
      fdatasyncSync(fd);
    },
    close: () => closeSync(fd),
  };
}

interface SqliteDatabase {
  pragma(text: string): unknown;
  exec(sql: string): void;
  prepare(sql: string): { run(...args: unknown[]): unknown };
  transaction(fn: (i: number) => void): (i: number) => void;
  close(): void;
}

function loadSqlite(): ((path: string) => SqliteDatabase) | string {
  const entry = join(DEPS, 'node_modules/better-sqlite3');
  if (!existsSync(entry))
    return `not installed: node dist/bench/record-store.js --install-sqlite (better-sqlite3@${SQLITE_VERSION} into .vm/bench-deps)`;
  const Database = createRequire(join(DEPS, 'package.json'))('better-sqlite3') as new (path: string) => SqliteDatabase;
  return (path) => new Database(path);
}

function sqliteVariant(open: (path: string) => SqliteDatabase, dir: string, synchronous: 'FULL' | 'NORMAL'): Variant {
  mkdirSync(dir, { recursive: true });
  const db = open(join(dir, 'records.db'));
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${synchronous}`);
  db.exec(
    'CREATE TABLE layers (id TEXT PRIMARY KEY, record TEXT NOT NULL); CREATE TABLE state (k INTEGER PRIMARY KEY, v TEXT)',
  );
  const insert = db.prepare('INSERT INTO layers (id, record) VALUES (?, ?)');
  const state = db.prepare('INSERT OR REPLACE INTO state (k, v) VALUES (0, ?)');
  const create = db.transaction((i: number) => {
    insert.run(`layer-${i}`, JSON.stringify(recordOf(i)));
    state.run(JSON.stringify(stateOf(i)));
  });
  return {
    name: `sqlite WAL, synchronous=${synchronous}${synchronous === 'NORMAL' ? ' (not power-cut safe)' : ''}`,
    create: (i) => create(i),
    close: () => db.close(),
  };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

function main(): void {
  if (process.argv.includes('--install-sqlite')) {
    mkdirSync(DEPS, { recursive: true });
    execFileSync('npm', ['install', '--no-save', '--prefix', DEPS, `better-sqlite3@${SQLITE_VERSION}`], {
      stdio: 'inherit',
    });
    return;
  }
  const ops = Number(flag('ops', '600'));
  const rounds = Number(flag('rounds', '6'));
  const root = mkdtempSync(join(flag('dir', tmpdir()), 'record-store-bench-'));
  try {
    const sqlite = loadSqlite();
    const variants: Variant[] = [
      filesVariant(join(root, 'files')),
      storeVariant(join(root, 'store')),
      journalVariant(join(root, 'journal')),
    ];
    if (typeof sqlite === 'string') process.stdout.write(`sqlite: ${sqlite}\n`);
    else {
      variants.push(sqliteVariant(sqlite, join(root, 'sqlite-full'), 'FULL'));
      variants.push(sqliteVariant(sqlite, join(root, 'sqlite-normal'), 'NORMAL'));
    }
    const samples = variants.map(() => [] as number[]);
    const perRound = Math.ceil(ops / rounds);
    let next = 0;
    for (let round = 0; round < rounds; round++) {
      for (const [v, variant] of variants.entries()) {
        for (let k = 0; k < perRound; k++) {
          const t0 = process.hrtime.bigint();
          variant.create(next + k);
          samples[v]!.push(Number(process.hrtime.bigint() - t0) / 1000);
        }
      }
      next += perRound;
    }
    for (const variant of variants) variant.close();
    const medians = samples.map((s) =>
      percentile(
        [...s].sort((a, b) => a - b),
        0.5,
      ),
    );
    process.stdout.write(`${ops} creates per variant in ${rounds} interleaved rounds, on ${root}\n`);
    process.stdout.write('| variant | median µs | p99 µs | creates/s | × files |\n|---|---:|---:|---:|---:|\n');
    for (const [v, variant] of variants.entries()) {
      const sorted = [...samples[v]!].sort((a, b) => a - b);
      const total = sorted.reduce((a, b) => a + b, 0);
      process.stdout.write(
        `| ${variant.name} | ${medians[v]!.toFixed(0)} | ${percentile(sorted, 0.99).toFixed(0)} | ${Math.round((sorted.length / total) * 1e6)} | ${(medians[v]! / medians[0]!).toFixed(2)} |\n`,
      );
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

main();
