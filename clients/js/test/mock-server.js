// A small pushgate stand-in over real sockets for the client's socket tests:
// an RFC 6455 server (text frames only, no dependencies) speaking
// docs/design.md's protocol, GET /history, and the API Gateway limits that
// matter to the client (idle timeout, maximum duration). Not the emulator:
// the tests in tests/browser run the client against that.
import { createServer } from "node:http";
import { createHash, randomUUID } from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export async function startMockServer({ idleTimeoutMs = 0, maxDurationMs = 0, dropRate = 0, refuse = false } = {}) {
  const streams = new Map(); // key -> {seq, epoch, history}
  const conns = new Set();
  const opts = { idleTimeoutMs, maxDurationMs, dropRate, refuse };
  const stats = { connects: 0, refused: 0, dropped: 0, pings: 0, historyRequests: 0 };

  const stream = (key) => {
    let s = streams.get(key);
    if (!s) streams.set(key, (s = { seq: 0, epoch: Math.random().toString(36).slice(2, 12), history: [] }));
    return s;
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    if (req.method === "GET" && url.pathname === "/history") {
      stats.historyRequests += 1;
      const entityId = url.searchParams.get("entityId");
      const userId = url.searchParams.get("userId");
      const key = userId ? "u:" + userId : "e:" + entityId;
      const s = stream(key);
      const ref = userId ? { userId } : { entityId };
      const sinceText = url.searchParams.get("since");
      let body;
      if (sinceText === null) body = { ...ref, seq: s.seq, ...(s.seq ? { epoch: s.epoch } : {}) };
      else {
        const since = Number(sinceText);
        const epoch = url.searchParams.get("epoch");
        const limit = Number(url.searchParams.get("limit") ?? 100);
        const recovered = (!epoch || epoch === s.epoch) && (since >= s.seq || s.history.some((n) => n.seq === since + 1));
        body = { ...ref, epoch: s.epoch, seq: s.seq, recovered, notifications: s.history.filter((n) => n.seq > since).slice(0, limit) };
      }
      res.writeHead(200, { "content-type": "application/json", "access-control-allow-origin": "*" });
      res.end(JSON.stringify(body));
      return;
    }
    if (req.method === "GET" && url.pathname === "/") {
      // A page of this origin, for browser checks (loopback to loopback).
      res.writeHead(200, { "content-type": "text/html" });
      res.end("<!doctype html><title>pushgate mock</title>");
      return;
    }
    res.writeHead(404).end();
  });

  server.on("upgrade", (req, socket) => {
    if (opts.refuse) {
      stats.refused += 1;
      socket.end("HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n");
      return;
    }
    const key = req.headers["sec-websocket-key"];
    const offered = String(req.headers["sec-websocket-protocol"] ?? "")
      .split(",")
      .map((p) => p.trim())
      .filter(Boolean);
    const chosen = offered.includes("pushgate.v1") ? "pushgate.v1" : offered.includes("websocket") ? "websocket" : null;
    const accept = createHash("sha1").update(key + GUID).digest("base64");
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\n` +
        (chosen ? `Sec-WebSocket-Protocol: ${chosen}\r\n` : "") +
        "\r\n",
    );
    socket.setNoDelay(true);
    stats.connects += 1;
    const conn = { id: randomUUID(), socket, subs: new Set(), closed: false, idleTimer: null, maxTimer: null };
    conns.add(conn);
    const close = (code = 1001, reason = "") => {
      if (conn.closed) return;
      conn.closed = true;
      conns.delete(conn);
      clearTimeout(conn.idleTimer);
      clearTimeout(conn.maxTimer);
      const r = Buffer.from(reason);
      const payload = Buffer.concat([Buffer.from([code >> 8, code & 255]), r]);
      try {
        socket.write(frame(0x8, payload));
      } catch {}
      socket.end();
    };
    conn.close = close;
    conn.send = (obj) => {
      if (!conn.closed) socket.write(frame(0x1, Buffer.from(JSON.stringify(obj))));
    };
    const touch = () => {
      if (!opts.idleTimeoutMs) return;
      clearTimeout(conn.idleTimer);
      conn.idleTimer = setTimeout(() => close(1001, "Going away"), opts.idleTimeoutMs);
    };
    touch();
    if (opts.maxDurationMs) conn.maxTimer = setTimeout(() => close(1001, "Going away"), opts.maxDurationMs);
    let buf = Buffer.alloc(0);
    socket.on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const f = parse(buf);
        if (!f) break;
        buf = buf.subarray(f.length);
        if (f.opcode === 0x8) return close(1000, "");
        if (f.opcode === 0x9) {
          socket.write(frame(0xa, f.payload));
          continue;
        }
        if (f.opcode !== 0x1) continue;
        touch();
        onFrame(conn, f.payload.toString("utf8"));
      }
    });
    socket.on("close", () => {
      conn.closed = true;
      conns.delete(conn);
      clearTimeout(conn.idleTimer);
      clearTimeout(conn.maxTimer);
    });
    socket.on("error", () => {});
  });

  function onFrame(conn, text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return conn.send({ type: "error", code: "invalid_json", message: "not JSON" });
    }
    if (f.action === "ping") {
      stats.pings += 1;
      return conn.send({ type: "pong" });
    }
    if (f.action === "unsubscribe") {
      conn.subs.delete("e:" + f.entityId);
      return conn.send({ type: "unsubscribed", entityId: f.entityId });
    }
    if (f.action === "publish") {
      conn.send({ type: "accepted", entityId: f.entityId, id: `pub:x:${f.id}` });
      setTimeout(() => api.publish(f.entityId, f.data), 5);
      return;
    }
    if (f.action !== "subscribe") return conn.send({ type: "error", code: "unknown_action", message: `unknown action "${f.action}"` });
    const key = f.userId ? "u:" + f.userId : "e:" + f.entityId;
    if (f.entityId) conn.subs.add(key);
    const s = stream(key);
    const ref = f.userId ? { userId: f.userId } : { entityId: f.entityId };
    if (f.since === undefined) return conn.send({ type: "subscribed", ...ref, seq: s.seq, ...(s.seq ? { epoch: s.epoch } : {}) });
    const recovered = (f.epoch === undefined || f.epoch === s.epoch) && (f.since >= s.seq || s.history.some((n) => n.seq === f.since + 1));
    conn.send({ type: "subscribed", ...ref, seq: s.seq, epoch: s.epoch, recovered });
    for (const n of s.history) if (n.seq > f.since) conn.send(n);
  }

  const api = {
    stats,
    options: opts,
    conns,
    /** Appends and pushes (each push dropped with probability dropRate). */
    publish(entityId, data) {
      const key = "e:" + entityId;
      const s = stream(key);
      s.seq += 1;
      const n = { type: "notification", id: randomUUID(), entityId, seq: s.seq, epoch: s.epoch, time: new Date().toISOString(), data };
      s.history.push(n);
      for (const c of conns) {
        if (!c.subs.has(key)) continue;
        if (opts.dropRate && Math.random() < opts.dropRate) {
          stats.dropped += 1;
          continue;
        }
        c.send(n);
      }
      return n;
    },
    /** Closes every connection as API Gateway does for DELETE @connections. */
    dropAll(code = 1001) {
      for (const c of [...conns]) c.close(code, "Going away");
    },
    close: () =>
      new Promise((r) => {
        for (const c of [...conns]) c.socket.destroy();
        server.close(() => r());
      }),
  };
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  api.wsUrl = `ws://127.0.0.1:${port}/local`;
  api.historyUrl = `http://127.0.0.1:${port}/history`;
  return api;
}

function frame(opcode, payload) {
  const len = payload.length;
  let head;
  if (len < 126) head = Buffer.from([0x80 | opcode, len]);
  else if (len < 65536) head = Buffer.from([0x80 | opcode, 126, len >> 8, len & 255]);
  else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

function parse(buf) {
  if (buf.length < 2) return null;
  const opcode = buf[0] & 0x0f;
  const masked = (buf[1] & 0x80) !== 0;
  let len = buf[1] & 0x7f;
  let off = 2;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    off = 4;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    len = Number(buf.readBigUInt64BE(2));
    off = 10;
  }
  const maskOff = off;
  if (masked) off += 4;
  if (buf.length < off + len) return null;
  const payload = Buffer.from(buf.subarray(off, off + len));
  if (masked) for (let i = 0; i < len; i++) payload[i] ^= buf[maskOff + (i % 4)];
  return { opcode, payload, length: off + len };
}
