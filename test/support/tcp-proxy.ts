import net from 'node:net';

/**
 * A loopback TCP proxy that can silently black-hole chosen connections: their bytes are dropped
 * while both sockets stay open, as when a network path dies without a reset.
 */
export async function startProxy(targetHost: string, targetPort: number) {
  const connections: Array<{ index: number; client: net.Socket; upstream: net.Socket; dead: boolean }> = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    const connection = { index: connections.length, client, upstream, dead: false };
    connections.push(connection);
    client.on('data', (chunk) => { if (!connection.dead) upstream.write(chunk); });
    upstream.on('data', (chunk) => { if (!connection.dead) client.write(chunk); });
    const close = () => { client.destroy(); upstream.destroy(); };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections,
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
