// Node's own HTTPS (the node binary's OpenSSL, through Node's memory BIOs): an https server
// whose GET /call/<n> GETs DOWNSTREAM + "/ok/<n>" with https.get (certificate not verified: the
// tests make self-signed ones) and answers its status; GET /missing/<n> answers 404; any other
// GET answers "ok".
// Usage: node tls_app.js PORT CERT KEY DOWNSTREAM
const fs = require('fs');
const https = require('https');

const [port, cert, key, downstream] = process.argv.slice(2);
const agent = new https.Agent({ keepAlive: true, rejectUnauthorized: false });

https
  .createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
    const reply = (status, body) => {
      res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (req.url.startsWith('/call/')) {
      const n = req.url.split('/').pop();
      https
        .get(`${downstream}/ok/${n}`, { agent }, (r) => {
          r.resume();
          r.on('end', () => reply(200, String(r.statusCode)));
        })
        .on('error', (e) => reply(502, e.message));
    } else if (req.url.startsWith('/missing')) {
      reply(404, 'no');
    } else {
      reply(200, 'ok');
    }
  })
  .listen(Number(port), '127.0.0.1');
