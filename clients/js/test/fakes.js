// Test doubles: a deterministic clock, a fake WebSocket class, a fake
// pushgate server that speaks docs/design.md's protocol over those sockets,
// and a fake fetch serving its GET /history.

/** A JWT-shaped token (unsigned) with `sub` and a serial number `n`. */
export function fakeJwt(sub, n) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, n, exp: 4102444800 })}.sig${n}`;
}

export function readFakeJwt(token) {
  try {
    return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString());
  } catch {
    return undefined;
  }
}

/** A manual clock: timers run only when the test advances time. */
export class FakeClock {
  constructor(start = 1_000_000) {
    this.t = start;
    this.timers = new Map();
    this.nextId = 1;
    this.setTimeout = (fn, ms = 0) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.t + Math.max(0, ms), fn, id, ms });
      return id;
    };
    this.clearTimeout = (id) => {
      this.timers.delete(id);
    };
    this.now = () => this.t;
  }

  /** Pending timers' delays (as scheduled), soonest first. */
  pending() {
    return [...this.timers.values()].sort((a, b) => a.at - b.at || a.id - b.id);
  }

  /** Runs every timer due within `ms`, in order, letting promises settle between them. */
  async advance(ms) {
    const end = this.t + ms;
    await flush();
    for (;;) {
      const next = this.pending()[0];
      if (!next || next.at > end) break;
      this.timers.delete(next.id);
      this.t = next.at;
      next.fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

/** Lets pending promise callbacks and fake socket events run. */
export async function flush(rounds = 5) {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

/** Deterministic random numbers (a fixed sequence, or a constant). */
export function fixedRandom(values = [0.5]) {
  let i = 0;
  return () => values[i++ % values.length];
}

/**
 * A fake server: `server.WebSocket` is the class to inject. Each socket
 * opens on the next tick unless the server refuses it. It keeps streams
 * (seq, epoch, history), answers subscribe (with `since` replay), ping,
 * publish, and pushes notifications to subscribers.
 */
export class FakeServer {
  constructor() {
    this.sockets = [];
    this.streams = new Map(); // key -> {seq, epoch, history: frame[]}
    this.refuse = false; // close every handshake before open (1006)
    this.hang = false; // handshakes neither open nor close
    this.answerPing = true;
    this.replyToSubscribe = (ws, frame) => this._subscribe(ws, frame);
    this.historyLimit = 100;
    this.historyRequests = [];
    this.retain = Infinity; // history items kept per stream
    const server = this;
    this.WebSocket = class FakeWebSocket {
      constructor(url, protocols) {
        this.url = url;
        this.protocols = protocols;
        this.sent = [];
        this.readyState = 0;
        this.protocol = "";
        this.subs = new Set();
        this.closedByClient = null;
        this.userId = server.userFor(url, protocols);
        server.sockets.push(this);
        setImmediate(() => {
          if (this.readyState !== 0 || server.hang) return;
          if (server.refuse) this._serverClose(1006, "");
          else {
            this.readyState = 1;
            this.protocol = Array.isArray(protocols) && protocols.includes("pushgate.v1") ? "pushgate.v1" : "";
            this.onopen?.({});
          }
        });
      }
      send(text) {
        if (this.readyState !== 1) throw new Error("not open");
        const frame = JSON.parse(text);
        this.sent.push(frame);
        server.onFrame(this, frame);
      }
      close(code = 1000, reason = "") {
        if (this.readyState >= 2) return;
        this.closedByClient = { code, reason };
        this.readyState = 3;
        setImmediate(() => this.onclose?.({ code, reason, wasClean: true }));
      }
      /** Server-side helpers. */
      deliver(frame) {
        if (this.readyState !== 1) return;
        setImmediate(() => this.readyState === 1 && this.onmessage?.({ data: JSON.stringify(frame) }));
      }
      _serverClose(code = 1001, reason = "") {
        if (this.readyState >= 2) return;
        this.readyState = 3;
        setImmediate(() => this.onclose?.({ code, reason, wasClean: code !== 1006 }));
      }
    };
  }

  /** The user a handshake authenticates as: the token's sub claim (tokens here are fakeJwt(sub, n)). */
  userFor(url, protocols) {
    const t = Array.isArray(protocols) ? protocols[1] : new URL(url).searchParams.get("token");
    return typeof t === "string" ? readFakeJwt(t)?.sub : undefined;
  }

  open() {
    return this.sockets.filter((s) => s.readyState === 1);
  }

  stream(key) {
    let s = this.streams.get(key);
    if (!s) this.streams.set(key, (s = { seq: 0, epoch: "ep1", history: [] }));
    return s;
  }

  onFrame(ws, frame) {
    if (frame.action === "ping") {
      if (this.answerPing) ws.deliver({ type: "pong" });
    } else if (frame.action === "subscribe") {
      this.replyToSubscribe(ws, frame);
    } else if (frame.action === "unsubscribe") {
      ws.subs.delete("e:" + frame.entityId);
      ws.deliver({ type: "unsubscribed", entityId: frame.entityId });
    } else if (frame.action === "publish") {
      ws.deliver({ type: "accepted", entityId: frame.entityId, id: `pub:x:${frame.id}` });
    }
  }

  _subscribe(ws, f) {
    const key = f.userId ? "u:" + f.userId : "e:" + f.entityId;
    if (f.entityId) ws.subs.add(key);
    const s = this.stream(key);
    const ref = f.userId ? { userId: f.userId } : { entityId: f.entityId };
    if (f.since === undefined) {
      ws.deliver({ type: "subscribed", ...ref, seq: s.seq, ...(s.seq ? { epoch: s.epoch } : {}) });
      return;
    }
    const first = s.history[0]?.seq ?? s.seq + 1;
    const recovered = (f.epoch === undefined || f.epoch === s.epoch) && (f.since >= s.seq || f.since + 1 >= first);
    ws.deliver({ type: "subscribed", ...ref, seq: s.seq, epoch: s.epoch, recovered });
    for (const n of s.history) if (n.seq > f.since) ws.deliver(n);
  }

  /** Appends a notification to a stream and pushes it to subscribers (unless `drop` says not to). */
  publish(entityId, data, { userId, drop = () => false, id } = {}) {
    const key = userId ? "u:" + userId : "e:" + entityId;
    const s = this.stream(key);
    s.seq += 1;
    const frame = {
      type: "notification",
      id: id ?? `evt-${key}-${s.epoch}-${s.seq}`,
      ...(userId ? { userId } : {}),
      ...(entityId ? { entityId } : {}),
      seq: s.seq,
      epoch: s.epoch,
      time: "2026-11-22T10:00:00Z",
      data,
    };
    s.history.push(frame);
    while (s.history.length > this.retain) s.history.shift();
    for (const ws of this.open()) {
      const target = userId ? ws.userId === userId : ws.subs.has(key);
      if (target && !drop(ws, frame)) ws.deliver(frame);
    }
    return frame;
  }

  /** Starts the stream over (as after a TTL without events). */
  resetStream(key, epoch) {
    this.streams.set(key, { seq: 0, epoch, history: [] });
  }

  /** A fetch serving GET /history (records each request). */
  get fetch() {
    return async (url, init = {}) => {
      const u = new URL(url);
      this.historyRequests.push({ url: u, headers: init.headers ?? {} });
      if (this.historyStatus) {
        const status = this.historyStatus;
        return { ok: false, status, json: async () => ({ code: status === 401 ? "token_expired" : "error", message: "no" }) };
      }
      const entityId = u.searchParams.get("entityId");
      const userId = u.searchParams.get("userId");
      const key = userId ? "u:" + userId : "e:" + entityId;
      const s = this.stream(key);
      const ref = userId ? { userId } : { entityId };
      const sinceText = u.searchParams.get("since");
      if (sinceText === null) return jsonResponse({ ...ref, seq: s.seq, ...(s.seq ? { epoch: s.epoch } : {}), notifications: [] });
      const since = Number(sinceText);
      const epoch = u.searchParams.get("epoch");
      const first = s.history[0]?.seq ?? s.seq + 1;
      const recovered = (!epoch || epoch === s.epoch) && (since >= s.seq || since + 1 >= first);
      const limit = Number(u.searchParams.get("limit") ?? this.historyLimit);
      const notifications = s.history.filter((n) => n.seq > since).slice(0, Math.min(limit, this.historyLimit));
      return jsonResponse({ ...ref, epoch: s.epoch, seq: s.seq, recovered, notifications });
    };
  }
}

function jsonResponse(body, status = 200) {
  return { ok: status >= 200 && status < 300, status, json: async () => JSON.parse(JSON.stringify(body)) };
}

/** A minimal window stand-in for online/offline events. */
export class FakeWindow {
  constructor() {
    this.listeners = new Map();
  }
  addEventListener(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }
  removeEventListener(type, fn) {
    this.listeners.get(type)?.delete(fn);
  }
  dispatch(type) {
    for (const fn of this.listeners.get(type) ?? []) fn({ type });
  }
}
