/**
 * The floor a Node.js pooler stands on: a TCP proxy that forwards bytes
 * between each client and a server connection of its own and does nothing
 * else. Usage: node bench/bare-proxy.ts <listen port> <server host> <server port>
 */
import net from 'node:net';

const [listenPort, host, port] = process.argv.slice(2);
if (port === undefined) {
  console.error('usage: bare-proxy <listen port> <server host> <server port>');
  process.exit(2);
}

const server = net.createServer({ noDelay: true }, (client) => {
  const upstream = net.connect({ host, port: Number(port), noDelay: true });
  client.pipe(upstream);
  upstream.pipe(client);
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', end).on('close', end);
  upstream.on('error', end).on('close', end);
});
server.listen(Number(listenPort), '127.0.0.1');

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
