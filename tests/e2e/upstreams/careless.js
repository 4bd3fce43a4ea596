// The careless upstream of careless.py, on Node's own http server: it answers without reading the
// request body and appends one JSON line per request it parsed to the file in CARELESS_LOG.
"use strict";
const http = require("http");
const fs = require("fs");
const log = process.env.CARELESS_LOG || "careless.log";
const port = Number(process.argv[2]);

const server = http.createServer((req, res) => {
  const record = {
    method: req.method, path: req.url.split("?")[0], user: req.headers["x-forwarded-user"] || null,
    content_length: req.headers["content-length"] || null,
  };
  fs.appendFileSync(log, JSON.stringify(record) + "\n");
  let head = `${req.method} ${req.url} HTTP/1.1\r\n`.length + 2;
  for (let i = 0; i < req.rawHeaders.length; i += 2) head += req.rawHeaders[i].length + req.rawHeaders[i + 1].length + 4;
  const body = JSON.stringify({ path: record.path, head_length: head });
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
});
server.keepAliveTimeout = 60000;
server.listen(port, "127.0.0.1");
