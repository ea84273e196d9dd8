// PING about every millisecond on its own connection; on SIGTERM print {n, p50, p99, max} (ms) as JSON.
import { connect } from 'node:net';

const port = Number(process.argv[2]);
const latencies = [];
const sock = connect(port, '127.0.0.1');
sock.setNoDelay(true);
let sent = 0n;
let buf = '';
function ping() {
  sent = process.hrtime.bigint();
  sock.write('PING\r\n');
}
sock.on('data', (d) => {
  buf += d.toString();
  if (!buf.includes('\r\n')) return;
  buf = '';
  latencies.push(Number(process.hrtime.bigint() - sent) / 1e6);
  setTimeout(ping, 1);
});
sock.on('connect', ping);
sock.on('error', () => {});
process.on('SIGTERM', () => {
  const s = latencies.sort((a, b) => a - b);
  const pick = (p) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
  process.stdout.write(JSON.stringify({ n: s.length, p50: pick(50), p99: pick(99), max: s[s.length - 1] ?? 0 }));
  process.exit(0);
});
process.stdout.write('ready\n');
