import { createHash } from 'node:crypto';

/** PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes. */
export const MAX_IDENTIFIER_BYTES = 63;

/** Quotes an identifier for SQL text: `"my ""table"""`. */
export function quoteIdent(name: string): string {
  if (name.includes('\0')) throw new TypeError(`identifier contains a NUL byte: ${JSON.stringify(name)}`);
  return `"${name.replace(/"/g, '""')}"`;
}

/** A schema-qualified, quoted name: `"public"."author"`. */
export function qualified(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/** Quotes a string literal for SQL text (standard_conforming_strings is on since PostgreSQL 9.1). */
export function quoteLiteral(value: string): string {
  if (value.includes('\0')) throw new TypeError(`literal contains a NUL byte: ${JSON.stringify(value)}`);
  return `'${value.replace(/'/g, "''")}'`;
}

/** A short, stable content hash (hex). */
export function shortHash(text: string, length = 16): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

/**
 * Spread into the options of the library's queries through Sequelize that need it:
 * - `supportsSearchPath: false`: with `dialectOptions.prependSearchPath`, Sequelize puts
 *   `SET search_path to …;` before each query, which makes one with bind parameters two
 *   statements, and PostgreSQL refuses to prepare those. The library's SQL qualifies every name.
 * - `useMaster: true`: with `replication`, Sequelize sends a SELECT outside a transaction to a read
 *   replica; the library's (the running-alone charge is a SELECT that writes) need the primary.
 */
export const LIBRARY_QUERY = { supportsSearchPath: false, useMaster: true } as const;
