import fs from 'node:fs';
import { installedOn } from '../installed';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Sequelize } from 'sequelize';
import { AppLoadError } from '../errors';
import { install } from '../plugin';
import type { PgPubSub } from '../pubsub';

export interface LoadedApp {
  sequelize: Sequelize;
  pubsub: PgPubSub;
  /** The sequelize-cli migrations folder (from .sequelizerc, default ./migrations). */
  migrationsPath: string;
  /** What was loaded, for messages. */
  source: string;
}

interface SequelizeRc {
  'models-path'?: string;
  'migrations-path'?: string;
}

function isSequelize(value: unknown): value is Sequelize {
  return typeof value === 'object' && value !== null
    && typeof (value as Sequelize).getQueryInterface === 'function' && typeof (value as Sequelize).define === 'function';
}

/** The Sequelize instance a module exports: itself, `.sequelize` (sequelize-cli's models/index.js), or under `default`. */
function sequelizeOf(exported: unknown): Sequelize | null {
  const candidates = [exported, (exported as { sequelize?: unknown })?.sequelize, (exported as { default?: unknown })?.default,
    ((exported as { default?: { sequelize?: unknown } })?.default)?.sequelize];
  return candidates.find(isSequelize) ?? null;
}

/** Registers tsx's require hook, so that a TypeScript app loads; says what to install when tsx is missing. */
function loadTypeScript(file: string): void {
  try {
    require('tsx/cjs');
  } catch {
    throw new AppLoadError('PGPUBSUB_APP_TS', `${file} is TypeScript; install tsx (npm i -D tsx) so the CLI can load it, or point --app at compiled JavaScript`);
  }
}

/** A TypeScript module that Node's own resolution would not find: `<source>.ts` or `<source>/index.ts` with no JavaScript beside it. */
function typeScriptEntry(source: string): string | null {
  const js = ['.js', '.cjs', '.json'].flatMap((ext) => [`${source}${ext}`, path.join(source, `index${ext}`)]);
  if (fs.existsSync(source) && fs.statSync(source).isFile()) return null;
  if (js.some((file) => fs.existsSync(file))) return null;
  return ['.ts', '.cts', '.mts'].flatMap((ext) => [`${source}${ext}`, path.join(source, `index${ext}`)]).find((file) => fs.existsSync(file)) ?? null;
}

/**
 * The project a command run from `start` belongs to: the nearest folder up that holds a
 * .sequelizerc, else the nearest that holds a package.json, else `start` itself.
 */
export function projectRoot(start: string): string {
  const nearest = (file: string) => {
    for (let dir = start; ; dir = path.dirname(dir)) {
      if (fs.existsSync(path.join(dir, file))) return dir;
      if (path.dirname(dir) === dir) return null;
    }
  };
  return nearest('.sequelizerc') ?? nearest('package.json') ?? start;
}

/** A .sequelizerc, evaluated from its own folder (its path.resolve() calls mean that folder, as for sequelize-cli run there). */
function readRc(file: string, root: string): SequelizeRc {
  const previous = process.cwd();
  if (previous === root) return requireFrom(file) as SequelizeRc;
  process.chdir(root);
  try {
    return requireFrom(file) as SequelizeRc;
  } finally {
    process.chdir(previous);
  }
}

function requireFrom(file: string): unknown {
  if (/\.[cm]?ts$/.test(file)) loadTypeScript(file);
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- loading the user's app by path.
  return require(file);
}

/**
 * The app's module: required (CommonJS, TypeScript through tsx), else imported when it is an ES
 * module that require() cannot load (Node 20: any; Node 22 and later: one with top-level await).
 */
async function requireOrImport(file: string): Promise<unknown> {
  try {
    return requireFrom(file);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code !== 'ERR_REQUIRE_ESM' && code !== 'ERR_REQUIRE_ASYNC_MODULE') throw error;
    return import(pathToFileURL(file).href);
  }
}

/**
 * Loads the user's app: `--app <module>` if given, else the models index that `.sequelizerc`
 * names ('models-path', default ./models), which exports the configured `sequelize`.
 */
export async function loadApp(options: { app?: string; cwd?: string } = {}): Promise<LoadedApp> {
  // From a subfolder, the project's root: where .sequelizerc (or package.json) is. --app stays relative to where you are.
  const here = options.cwd ?? process.cwd();
  const cwd = options.cwd ?? projectRoot(here);
  const rcFile = path.join(cwd, '.sequelizerc');
  const rc: SequelizeRc = fs.existsSync(rcFile) ? readRc(rcFile, cwd) : {};
  const migrationsPath = path.resolve(cwd, rc['migrations-path'] ?? 'migrations');
  const source = options.app ? path.resolve(here, options.app) : path.resolve(cwd, rc['models-path'] ?? 'models');
  // A models folder whose index is TypeScript: Node finds it only once tsx is registered.
  const typeScript = typeScriptEntry(source);
  if (typeScript) loadTypeScript(typeScript);

  let resolved: string;
  try {
    resolved = require.resolve(source);
  } catch {
    throw new AppLoadError(
      'PGPUBSUB_APP_NOT_FOUND',
      options.app
        ? `--app ${options.app}: no module at ${source}`
        : `no app found: ${source} does not exist. Run from your project root, set 'models-path' in .sequelizerc, or pass --app <module exporting sequelize>`,
    );
  }
  let exported: unknown;
  try {
    exported = await requireOrImport(resolved);
  } catch (error) {
    throw databaseUrlProblem(process.env.DATABASE_URL, error, resolved) ?? error;
  }
  const sequelize = sequelizeOf(exported);
  if (!sequelize) {
    throw new AppLoadError(
      'PGPUBSUB_APP_NO_SEQUELIZE',
      `${resolved} does not export a Sequelize instance. Export it as 'sequelize' (module.exports.sequelize = sequelize), or pass --app <module>`,
    );
  }
  // An app that defines channels but forgot use(pgpubsub) still gets its triggers managed.
  const pubsub = installedOn<PgPubSub>(sequelize) ?? install(sequelize);
  return { sequelize, pubsub, migrationsPath, source: resolved };
}

/**
 * When loading the app failed and DATABASE_URL is not a PostgreSQL URL, that is the likely cause
 * (Sequelize fails on it with a TypeError that names neither): say so, naming the variable. So
 * when it is not set and the app handed `new Sequelize()` an undefined URL (sequelize-cli's models
 * index does, from `use_env_variable`), which fails with Node's "The "url" argument must be of type string".
 */
function databaseUrlProblem(url: string | undefined, cause: unknown, app: string): AppLoadError | null {
  if (url === undefined) {
    const undefinedUrl = (cause as { code?: unknown })?.code === 'ERR_INVALID_ARG_TYPE' && /"url" argument/.test((cause as Error).message ?? '');
    return undefinedUrl
      ? new AppLoadError('PGPUBSUB_BAD_DATABASE_URL', `DATABASE_URL is not set: the app (${app}) passed an undefined URL to new Sequelize(). `
        + 'Set it, e.g. DATABASE_URL=postgres://user:password@localhost:5432/app, or give config/config.json the connection', { cause })
      : null;
  }
  let problem: string | null = null;
  try {
    const parsed = new URL(url);
    if (!/^postgres(ql)?:$/.test(parsed.protocol)) problem = `its scheme is '${parsed.protocol}'`;
    else if (parsed.port !== '' && !/^\d+$/.test(parsed.port)) problem = `its port is '${parsed.port}'`;
  } catch {
    problem = 'it is not a URL';
  }
  return problem
    ? new AppLoadError('PGPUBSUB_BAD_DATABASE_URL', `DATABASE_URL is not a valid PostgreSQL URL (${problem}). Set it like postgres://user:password@host:5432/database`, { cause })
    : null;
}
