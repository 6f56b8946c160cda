// An Express app (root_conformance_servers): `/user/:id/item/:n` answers n bytes with a
// length, `/stream/:n` n lines with res.write() (no length: chunked), `POST /echo` the size
// of its body (201), `/fail/:n` throws (Express's 500),
// anything else Express's 404. Listens on 127.0.0.1:<argv[2]>.
const express = require("express");

const app = express();
app.get("/user/:id/item/:n", (req, res) => {
  res.type("text/plain").send("e".repeat(Number(req.params.n)));
});
app.get("/stream/:n", (req, res) => {
  res.type("text/plain");
  const n = Number(req.params.n);
  let i = 0;
  const next = () => {
    if (i === n) return res.end();
    res.write(`line ${String(i++).padStart(4, "0")}\n`);
    setImmediate(next);
  };
  next();
});
app.post("/echo", express.raw({ type: "*/*", limit: "8mb" }), (req, res) => {
  res.status(201).type("text/plain").send(String(req.body?.length ?? 0));
});
app.get("/fail/:n", () => {
  throw new Error("conformance: a handler that throws");
});
app.listen(Number(process.argv[2]), "127.0.0.1");
