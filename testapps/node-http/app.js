// Minimal HTTP/1.1 test service (node `http` only) used to exercise beyla-rs instrumentation.
// Routes: GET /ping, GET /users/{id}, POST /echo, GET /error, GET /call (-> $DOWNSTREAM_URL), else 404.
// Usage: node app.js <port>
'use strict';
const http = require('http');

const port = parseInt(process.argv[2], 10);
if (!port) {
  console.error('usage: node app.js <port>');
  process.exit(2);
}

function reply(res, status, body, ctype = 'text/plain') {
  const data = Buffer.isBuffer(body) ? body : Buffer.from(body);
  res.writeHead(status, { 'Content-Type': ctype, 'Content-Length': data.length });
  res.end(data);
}

function callDownstream(res) {
  const url = process.env.DOWNSTREAM_URL;
  if (!url) return reply(res, 502, 'DOWNSTREAM_URL not set');
  // agent: false => a fresh TCP connection for every outgoing request.
  const req = http.get(url, { agent: false, headers: { Connection: 'close' } }, (r) => {
    r.resume();
    r.on('end', () => reply(res, 200, `called:${r.statusCode}`));
  });
  req.setTimeout(10000, () => req.destroy(new Error('timeout')));
  req.on('error', (e) => reply(res, 502, `downstream error: ${e.message}`));
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const path = req.url.split('?')[0];
    if (req.method === 'GET' && path === '/ping') return reply(res, 200, 'pong');
    if (req.method === 'GET' && path.startsWith('/users/') && path.length > 7) {
      return reply(res, 200, `{"id":"${path.slice(7)}"}`, 'application/json');
    }
    if (req.method === 'POST' && path === '/echo') {
      return reply(res, 200, Buffer.concat(chunks), 'application/octet-stream');
    }
    if (req.method === 'GET' && path === '/error') return reply(res, 500, 'boom');
    if (req.method === 'GET' && path === '/call') return callDownstream(res);
    reply(res, 404, 'not found');
  });
});
server.keepAliveTimeout = 60000;
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening on ${port}\n`);
});
