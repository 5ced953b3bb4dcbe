/**
 * Who the dashboard answers: the Host names it was told to (DNS rebinding), the token (a bearer
 * header, or a cookie derived from it), the CSRF and form limits its actions keep to.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export const COOKIE = 'pgpubsub_dashboard';
const BODY_LIMIT = 64 * 1024;

/** Loopback names: what `pgpubsub dashboard` answers to when bound to a loopback address. */
export const LOOPBACK_HOSTS: readonly string[] = ['localhost', '127.0.0.1', '::1'];

/** A Host header's name, lowercased and without brackets or port; null when it is not one. */
export function hostName(header: string | undefined): string | null {
  if (!header) return null;
  try {
    const { hostname, username, pathname } = new URL(`http://${header}`);
    if (username || pathname !== '/') return null;
    return hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  } catch {
    return null;
  }
}

/** The names allowedHosts gives, as hostName() reads them from a Host header; null for any. */
export function allowedHostSet(names: readonly string[] | undefined): Set<string> | null {
  if (names === undefined) return null;
  const read = names.map((name) => hostName(typeof name === 'string' && name.includes(':') && !name.startsWith('[') ? `[${name}]` : name));
  if (read.length === 0 || read.some((name) => name === null)) {
    throw new TypeError(`dashboard({ allowedHosts }): expected host names such as 'localhost' or 'ops.example.com', got ${JSON.stringify(names)}`);
  }
  return new Set(read as string[]);
}

/** The cookie's value: derived from the token, so a cookie read off a disk is not the token. */
function cookieValue(token: string): string {
  return createHmac('sha256', token).update('pgpubsub dashboard cookie').digest('hex');
}

/** Refuses a request whose Host is not an allowed name (421), or that lacks the token (401); a visit with the right ?token= gets the cookie (true). */
export function admit(request: IncomingMessage, query: URLSearchParams, options: { token?: string; allowed: Set<string> | null }): { cookie: string } | null {
  if (options.allowed) {
    const name = hostName(request.headers.host);
    if (name === null || !options.allowed.has(name)) {
      throw new HttpError(421, `this dashboard answers only to ${[...options.allowed].join(', ')}, not to Host ${JSON.stringify(request.headers.host ?? '')} (add it with allowedHosts, or pgpubsub dashboard --allowed-hosts)`);
    }
  }
  const { token } = options;
  if (token === undefined) return null;
  const given = query.get('token');
  // From the link once; from the cookie afterwards (the token leaves the address bar).
  if (given !== null && same(given, token)) return { cookie: cookieValue(token) };
  const bearer = /^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1];
  const cookie = cookies(request).get(COOKIE);
  if (!(bearer && same(bearer, token)) && !(cookie && same(cookie, cookieValue(token)))) {
    throw new HttpError(401, 'this dashboard needs its token: open it as …/?token=<token>, or send Authorization: Bearer <token>');
  }
  return null;
}

function cookies(request: IncomingMessage): Map<string, string> {
  const found = new Map<string, string>();
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0) found.set(part.slice(0, at).trim(), decodeURIComponent(part.slice(at + 1).trim()));
  }
  return found;
}

export function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export async function readForm(request: IncomingMessage): Promise<URLSearchParams> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > BODY_LIMIT) throw new HttpError(413, `the form is larger than ${BODY_LIMIT} bytes`);
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}
