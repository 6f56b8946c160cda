// The same web app as db_app.py, in Node.js (node:http, one request at a time) with the npm
// clients ioredis, memcached, pg and mysql2, for root_databases.
//   REDIS_PASSWORD=... PGPASSWORD=... MYSQL_PWD=... node db_app.js PORT REDIS MEMCACHED PG MYSQL
// Each route runs a known script of operations and answers "ok"; the test counts them.
const http = require("node:http");
const Redis = require("ioredis");
const Memcached = require("memcached");
const pg = require("pg");
const mysql = require("mysql2/promise");

const [port, redisPort, mcPort, pgPort, myPort] = process.argv.slice(2).map(Number);

async function redisScript() {
  // No ready check (it would send INFO); AUTH on connect is set-up, not reported.
  const r = new Redis({ port: redisPort, host: "127.0.0.1", password: process.env.REDIS_PASSWORD, enableReadyCheck: false });
  await r.set("nk", "v"); // SET
  if ((await r.get("nk")) !== "v") throw new Error("GET"); // GET
  await r.pipeline().incr("na").incr("na").exec(); // INCR x2, one write
  await r.lpush("nk", "x").then(() => { throw new Error("LPUSH on a string"); }, () => {}); // LPUSH: WRONGTYPE
  await r.del("nk", "na"); // DEL
  r.disconnect();
  // SET 1, GET 1, INCR 2, LPUSH 1 (WRONGTYPE), DEL 1.
}

function mc(client, method, ...args) {
  return new Promise((resolve, reject) => client[method](...args, (err, v) => (err ? reject(err) : resolve(v))));
}

async function memcachedScript() {
  const c = new Memcached(`127.0.0.1:${mcPort}`, { retries: 0 });
  await mc(c, "set", "nk", "hello", 60); // set
  if ((await mc(c, "get", "nk")) !== "hello") throw new Error("get"); // get
  await mc(c, "getMulti", ["nk", "nk2"]); // get (one operation, two keys)
  await mc(c, "incr", "missing", 1); // incr: NOT_FOUND (not an error)
  await mc(c, "del", "nk"); // delete
  c.end();
  // set 1, get 2, incr 1, delete 1.
}

async function postgresScript() {
  const c = new pg.Client({ host: "127.0.0.1", port: pgPort, user: "app", database: "shop" });
  await c.connect();
  await c.query("SELECT 1 AS x"); // SELECT (simple protocol)
  await c.query("SELECT $1::int AS x", [5]); // SELECT (extended, unnamed)
  for (let i = 0; i < 2; i++) await c.query({ name: "q1", text: "SELECT $1::int AS y", values: [i] }); // SELECT x2 (named, prepared once)
  await c.query("SELECT * FROM nowhere").then(() => { throw new Error("found"); }, () => {}); // SELECT: 42P01
  await c.end();
  // SELECT 4, SELECT 1 (42P01).
}

async function mysqlScript() {
  const c = await mysql.createConnection({ host: "127.0.0.1", port: myPort, user: "app", password: process.env.MYSQL_PWD, database: "shop" });
  await c.query("SELECT 1 AS x"); // SELECT (COM_QUERY)
  for (let i = 0; i < 2; i++) await c.execute("SELECT ? AS y", [i]); // SELECT x2 (prepared once)
  await c.query("SELECT * FROM nowhere").then(() => { throw new Error("found"); }, () => {}); // SELECT: 1146
  await c.end();
  // SELECT 3, SELECT 1 (1146).
}

const routes = { "/redis": redisScript, "/memcached": memcachedScript, "/postgresql": postgresScript, "/mysql": mysqlScript };
http
  .createServer((req, res) => {
    routes[req.url]().then(
      () => res.end("ok"),
      (e) => { res.statusCode = 500; res.end(String(e)); },
    );
  })
  .listen(port, "127.0.0.1");
