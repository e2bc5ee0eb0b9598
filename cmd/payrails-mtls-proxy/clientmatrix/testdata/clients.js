// The client matrix's Node.js clients: node:http, fetch, undici 7, axios 1 and axios 0.27.
//
// Usage: node clients.js LIBRARY, with the plan in MATRIX_PLAN (see matrix_test.go) and NODE_PATH
// naming the node_modules that holds undici, axios1 and axios0. The proxy comes from the
// environment where the library reads it (axios: http_proxy / https_proxy; undici's EnvHttpProxyAgent:
// HTTP_PROXY / HTTPS_PROXY), else from code as its users write it. Trust in the local CA comes from
// NODE_EXTRA_CA_CERTS. Prints one JSON line per case.
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const tls = require('node:tls');

const plan = JSON.parse(process.env.MATRIX_PLAN);
const jsonBody = plan.json;

function report(name, status, error, body, headers) {
  const h = headers || {};
  const get = (k) => {
    const v = typeof h.get === 'function' ? h.get(k) : h[k.toLowerCase()];
    return v == null ? '' : String(v);
  };
  const sha = crypto.createHash('sha256').update(body || Buffer.alloc(0)).digest('hex');
  console.log(JSON.stringify({ case: name, status, error: error || '', body_sha256: sha,
    proxy_error: get('X-Payrails-Proxy-Error'), content_encoding: get('Content-Encoding') }));
}

// what a case sends: method, headers and a body factory (a new stream per request).
function shape(name) {
  switch (name) {
    case 'post': return { method: 'POST', headers: { 'content-type': 'application/json', 'x-idempotency-key': plan.idem }, body: () => jsonBody };
    case 'upload': return { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: () => fs.readFileSync(plan.upload) };
    case 'chunked': return { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: () => fs.createReadStream(plan.upload), stream: true };
    case 'gzip': return { method: 'GET', headers: { 'accept-encoding': 'gzip' } };
    default: return { method: 'GET', headers: {} };
  }
}

const proxyAuth = plan.proxy.user ? { 'proxy-authorization': 'Basic ' + Buffer.from(plan.proxy.user + ':' + plan.proxy.pass).toString('base64') } : {};

// node:http has no proxy support of its own: HTTP_PROXY is absolute-form requests to the proxy, and
// HTTPS_PROXY an Agent that opens a CONNECT tunnel (what the https-proxy-agent package does).
class TunnelAgent extends https.Agent {
  createConnection(options, cb) {
    const req = http.request({ host: plan.proxy.host, port: plan.proxy.port, method: 'CONNECT',
      path: `${options.host}:${options.port}`, headers: { host: `${options.host}:${options.port}`, ...proxyAuth } });
    req.on('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        cb(new Error(`tunnel failed: ${res.statusCode} ${res.statusMessage}`));
        return;
      }
      cb(null, tls.connect({ socket, servername: options.servername || options.host }));
    });
    req.on('error', cb);
    req.end();
  }
}

async function nodeHTTP() {
  const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const tunnelAgent = new TunnelAgent({ keepAlive: true, maxSockets: 1 });
  const one = (url, s) => new Promise((resolve, reject) => {
    const u = new URL(url);
    let opts;
    if (u.protocol === 'https:') {
      opts = { method: s.method, host: u.hostname, port: u.port || 443, path: u.pathname + u.search, headers: { ...s.headers }, agent: tunnelAgent };
    } else if (plan.proxy.http) {
      opts = { method: s.method, host: plan.proxy.host, port: plan.proxy.port, path: url, headers: { host: u.host, ...s.headers, ...proxyAuth }, agent: httpAgent };
    } else {
      opts = { method: s.method, host: u.hostname, port: u.port, path: u.pathname + u.search, headers: { ...s.headers }, agent: httpAgent };
    }
    const req = (u.protocol === 'https:' ? https : http).request(opts, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('error', reject);
    const body = s.body ? s.body() : null;
    if (body && s.stream) body.pipe(req);
    else req.end(body);
  });
  await runAll(one);
}

async function runAll(one) {
  for (const c of plan.cases) {
    const s = shape(c.name);
    try {
      let r;
      for (const [i, url] of c.urls.entries()) {
        // undici returns a connection to its pool only after the response's end has been handled: a
        // request sent in the same tick opens a second connection (so it does against any server).
        if (i > 0) await new Promise((resolve) => setImmediate(resolve));
        r = await one(url, s);
      }
      report(c.name, r.status, '', r.body, r.headers);
    } catch (e) {
      report(c.name, 0, describe(e));
    }
  }
}

function describe(e) {
  let m = String(e);
  for (let c = e && e.cause; c; c = c.cause) m += ` (cause: ${c})`;
  return m;
}

function fetchBody(s) {
  if (!s.body) return {};
  const b = s.body();
  if (s.stream) return { body: require('node:stream').Readable.toWeb(b), duplex: 'half' };
  return { body: b };
}

async function nodeFetch() {
  // Node 20's fetch reads no proxy variable; a dispatcher from undici makes it do so.
  const { EnvHttpProxyAgent } = require('undici');
  const dispatcher = new EnvHttpProxyAgent();
  await runAll(async (url, s) => {
    const r = await fetch(url, { method: s.method, headers: s.headers, dispatcher, ...fetchBody(s) });
    return { status: r.status, body: Buffer.from(await r.arrayBuffer()), headers: r.headers };
  });
}

async function undiciRequest() {
  const undici = require('undici');
  const dispatcher = new undici.EnvHttpProxyAgent(); // HTTP_PROXY / HTTPS_PROXY, user:password too
  await runAll(async (url, s) => {
    const b = s.body ? s.body() : undefined;
    const r = await undici.request(url, { method: s.method, headers: s.headers, body: b, dispatcher });
    let body = Buffer.from(await r.body.arrayBuffer());
    return { status: r.statusCode, body, headers: r.headers };
  });
}

async function axios(mod) {
  const ax = require(mod); // reads http_proxy / https_proxy (and user:password in them) by itself
  await runAll(async (url, s) => {
    const r = await ax.request({ url, method: s.method, headers: s.headers, data: s.body ? s.body() : undefined,
      responseType: 'arraybuffer', validateStatus: () => true, maxBodyLength: Infinity, maxContentLength: Infinity });
    return { status: r.status, body: Buffer.from(r.data), headers: r.headers };
  });
}

const libs = { 'node:http': nodeHTTP, fetch: nodeFetch, undici: undiciRequest, 'axios-1': () => axios('axios1'), 'axios-0.27': () => axios('axios0') };
libs[process.argv[2]]().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
