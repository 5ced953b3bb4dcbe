import net from 'node:net';

export interface ProxiedConnection {
  index: number;
  client: net.Socket;
  upstream: net.Socket;
  /** Set by blackhole(): bytes are dropped both ways while both sockets stay open. */
  dead: boolean;
}

/**
 * A loopback TCP proxy in front of PostgreSQL, with two hooks:
 * - blackhole(which): silently drops the traffic of chosen connections while both sockets stay
 *   open, as when a network path dies without a reset;
 * - statements(): the statements clients sent through it (each simple-protocol Query 'Q' and
 *   each extended-protocol Execute 'E' message), read off the wire: it needs no server extension
 *   or log access, and counts exactly the traffic of the processes pointed at it.
 * `port` makes it listen on a given port, e.g. one a closed proxy had, for a server that comes back;
 * `host` on another address than 127.0.0.1 (one that other network namespaces reach).
 */
export async function startProxy(targetUrl: string, options: { port?: number; host?: string } = {}) {
  const host = options.host ?? '127.0.0.1';
  const target = new URL(targetUrl);
  const connections: ProxiedConnection[] = [];
  let statements = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    const connection: ProxiedConnection = { index: connections.length, client, upstream, dead: false };
    connections.push(connection);
    const count = statementCounter(() => { statements++; });
    client.on('data', (chunk: Buffer) => {
      if (connection.dead) return;
      upstream.write(chunk);
      count(chunk);
    });
    upstream.on('data', (chunk) => { if (!connection.dead) client.write(chunk); });
    const close = () => { client.destroy(); upstream.destroy(); };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(options.port ?? 0, host, resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    connections,
    /** `url` with its host and port replaced by the proxy's. */
    via(url: string): string {
      const proxied = new URL(url);
      proxied.hostname = host;
      proxied.port = String(port);
      return proxied.toString();
    },
    statements: () => statements,
    /** Silently drops all traffic of the connections `which` selects, from now on. */
    blackhole(which: (index: number) => boolean) {
      for (const connection of connections) if (which(connection.index)) connection.dead = true;
    },
    async close() {
      for (const { client, upstream } of connections) { client.destroy(); upstream.destroy(); }
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

export type Proxy = Awaited<ReturnType<typeof startProxy>>;

/** Feeds a client's bytes through PostgreSQL's framing and calls `onStatement` per Query or Execute message. */
function statementCounter(onStatement: () => void): (chunk: Buffer) => void {
  let pending: Buffer = Buffer.alloc(0);
  let startup = true; // the first message(s) have no type byte: startup, SSL or GSS request
  return (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    for (;;) {
      if (startup) {
        if (pending.length < 8) break;
        const length = pending.readInt32BE(0);
        if (pending.length < length) break;
        const code = pending.readInt32BE(4);
        pending = pending.subarray(length);
        if (code !== 80877103 && code !== 80877104) startup = false; // not SSLRequest / GSSENCRequest
        continue;
      }
      if (pending.length < 5) break;
      const length = pending.readInt32BE(1);
      if (pending.length < 1 + length) break;
      const type = String.fromCharCode(pending[0]);
      if (type === 'Q' || type === 'E') onStatement();
      pending = pending.subarray(1 + length);
    }
  };
}
