// @pushgate/client — the browser and Node client for pushgate.
//
// One ES module, no dependencies. It speaks the protocol in docs/design.md:
// streams with `seq`/`epoch`, `subscribe` with `since`, `recovered`,
// `ping`/`pong` and the `GET /history` endpoint, and gives the application
// every notification once, in seq order per stream, across reconnects,
// connection rollovers (API Gateway's 2-hour limit), token refreshes and a
// polling fallback when WebSockets cannot connect.
//
// Everything that touches the outside world (WebSocket, fetch, timers, random,
// clock, the window's online/offline events) can be injected through the
// options, which is how the unit tests drive it.

/** Client library version (also sent nowhere; for diagnostics). */
export const VERSION = "0.1.0";

const DEFAULTS = {
  protocols: undefined,
  tokenTransport: "protocol",
  backoffBaseMs: 500,
  backoffMaxMs: 30_000,
  // Every ping is a billed API Gateway message: 8 minutes stays under the
  // 10-minute idle timeout even when a background tab's timers run up to a
  // minute late, at half the cost of a 4-minute heartbeat.
  pingIntervalMs: 8 * 60_000,
  pongTimeoutMs: 10_000,
  maxConnectionMs: 2 * 60 * 60_000,
  rolloverMin: 0.85,
  rolloverMax: 0.95,
  rolloverTimeoutMs: 15_000,
  gapTimeoutMs: 2_000,
  pollAfterFailures: 3,
  pollIntervalMs: 2_000,
  historyLimit: 100,
  seenIdsPerStream: 1_000,
  subscribeTimeoutMs: 10_000,
  connectTimeoutMs: 10_000,
};

/**
 * Full-jitter exponential backoff: a uniformly random delay in
 * [0, min(maxMs, baseMs * 2^attempt)).
 * @param {number} attempt 0 for the first retry
 * @param {{baseMs?: number, maxMs?: number, random?: () => number}} [o]
 */
export function backoffDelay(attempt, o = {}) {
  const base = o.baseMs ?? DEFAULTS.backoffBaseMs;
  const max = o.maxMs ?? DEFAULTS.backoffMaxMs;
  const random = o.random ?? Math.random;
  const cap = Math.min(max, base * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * cap);
}

/**
 * Reads the `sub` claim of a JWT without checking it (the server checks).
 * @param {string | null | undefined} token
 * @returns {string | undefined}
 */
export function tokenSubject(token) {
  if (typeof token !== "string") return undefined;
  const part = token.split(".")[1];
  if (!part) return undefined;
  try {
    let b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    const text =
      typeof atob === "function"
        ? decodeURIComponent(
            Array.from(atob(b64), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
          )
        : // eslint-disable-next-line no-undef
          Buffer.from(b64, "base64").toString("utf8");
    const claims = JSON.parse(text);
    return typeof claims.sub === "string" ? claims.sub : undefined;
  } catch {
    return undefined;
  }
}

const entityKey = (id) => "e:" + id;
const userKey = (id) => "u:" + id;

/**
 * Opens a client. It starts connecting at once.
 * @param {import("./index").ClientOptions} options
 * @returns {import("./index").PushgateClient}
 */
export function connect(options) {
  return new PushgateClient(options);
}

/** The client. Create it with {@link connect}. */
export class PushgateClient {
  constructor(options) {
    if (!options || typeof options.url !== "string") throw new TypeError("connect: `url` (the WebSocket URL) is required");
    const o = (this._o = { ...DEFAULTS, ...options });
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    this._fetch = o.fetch ?? (globalThis.fetch ? globalThis.fetch.bind(globalThis) : undefined);
    this._setTimeout = o.setTimeout ?? globalThis.setTimeout.bind(globalThis);
    this._clearTimeout = o.clearTimeout ?? globalThis.clearTimeout.bind(globalThis);
    this._random = o.random ?? Math.random;
    this._now = o.now ?? Date.now;
    if (!this._WebSocket) throw new TypeError("connect: no WebSocket (pass `WebSocket`, or run Node with --experimental-websocket / Node 22+)");

    this._listeners = new Map();
    this._streams = new Map();
    this._state = "idle";
    this._closed = false;
    this._primary = null;
    this._candidate = null;
    this._connSeq = 0;
    this._attempts = 0; // consecutive failed connection attempts
    this._reconnectTimer = null;
    this._connecting = false;
    this._polling = false;
    this._pollTimer = null;
    this._token = undefined;
    this._tokenStale = false;
    this._userId = o.userId;
    this._userResume = true; // false once the server refuses `subscribe` with userId
    this._pongEverSeen = false;
    this._pendingPublishes = [];
    this.stats = {
      connects: 0,
      reconnects: 0,
      rollovers: 0,
      recoveries: 0,
      duplicates: 0,
      gapRepairs: 0,
      polls: 0,
      delivered: 0,
    };

    this._win = o.window !== undefined ? o.window : typeof window !== "undefined" ? window : null;
    if (this._win && typeof this._win.addEventListener === "function") {
      this._onOffline = () => this._handleOffline();
      this._onOnline = () => this._handleOnline();
      this._win.addEventListener("offline", this._onOffline);
      this._win.addEventListener("online", this._onOnline);
    }
    // A tab that comes back to the foreground (possibly after being frozen)
    // checks its socket at once rather than at the next heartbeat.
    this._doc = o.document !== undefined ? o.document : typeof document !== "undefined" ? document : null;
    if (this._doc && typeof this._doc.addEventListener === "function") {
      this._onVisible = () => {
        if (this._doc.visibilityState === "visible" && this._primary?.open) this._ping(this._primary);
      };
      this._doc.addEventListener("visibilitychange", this._onVisible);
    }
    this._setState("connecting");
    this._connectPrimary("initial");
  }

  // ---------------------------------------------------------------- public API

  /** The connection state. */
  get state() {
    return this._state;
  }

  /** The user id the user stream is resumed with (option `userId`, else the token's `sub`). */
  get userId() {
    return this._userId;
  }

  /**
   * Adds a listener; returns a function that removes it.
   * Events: "state", "error", "recovered", "notification", "frame", "rollover".
   */
  on(event, fn) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
  }

  /**
   * Subscribes to an entity's stream. Several handlers may share a stream;
   * the server subscription is dropped with the last one.
   * `opts.since`/`opts.epoch` resume from a position the application kept.
   */
  subscribe(entityId, handler, opts = {}) {
    if (typeof entityId !== "string" || !entityId) throw new TypeError("subscribe: entityId must be a non-empty string");
    if (typeof handler !== "function") throw new TypeError("subscribe: handler must be a function");
    const key = entityKey(entityId);
    let stream = this._streams.get(key);
    const fresh = !stream;
    if (!stream) {
      stream = this._newStream("entity", entityId);
      if (Number.isInteger(opts.since) && opts.since >= 0) {
        stream.last = opts.since;
        stream.epoch = opts.epoch;
      }
      this._streams.set(key, stream);
    }
    stream.handlers.add(handler);
    if (fresh && !this._closed) {
      for (const conn of [this._primary, this._candidate]) if (conn?.open) this._sendSubscribe(conn, stream);
      if (this._polling) this._pollStream(stream);
    }
    let active = true;
    return {
      entityId,
      get position() {
        return { seq: stream.last, epoch: stream.epoch };
      },
      unsubscribe: () => {
        if (!active) return;
        active = false;
        stream.handlers.delete(handler);
        if (stream.handlers.size === 0 && this._streams.get(key) === stream) this._dropStream(stream);
      },
    };
  }

  /**
   * Listens to the user stream (notifications sent to the token's user).
   * Returns an object with `unsubscribe()`.
   */
  onUser(handler) {
    if (typeof handler !== "function") throw new TypeError("onUser: handler must be a function");
    this._userHandlers ??= new Set();
    this._userHandlers.add(handler);
    const stream = this._userStream();
    if (stream && !stream.requested) {
      for (const conn of [this._primary, this._candidate]) if (conn?.open) this._sendSubscribe(conn, stream);
    }
    let active = true;
    return {
      unsubscribe: () => {
        if (!active) return;
        active = false;
        this._userHandlers.delete(handler);
      },
    };
  }

  /**
   * Publishes through the socket. Resolves with the server's `accepted`
   * (or legacy `published`) reply; rejects on an error reply or after 10 s.
   * `opts.id` (default: random) makes a retried publish append once.
   */
  publish(entityId, data, opts = {}) {
    const id = opts.id ?? randomId(this._random);
    const frame = { action: "publish", entityId, data, id };
    return new Promise((resolve, reject) => {
      const conn = this._primary?.open ? this._primary : null;
      if (!conn) return reject(Object.assign(new Error("not connected"), { code: "not_connected" }));
      const pending = { entityId, id, resolve, reject, timer: null };
      pending.timer = this._setTimeout(() => {
        this._pendingPublishes = this._pendingPublishes.filter((p) => p !== pending);
        reject(Object.assign(new Error("no reply to publish within 10 s"), { code: "timeout" }));
      }, opts.timeoutMs ?? 10_000);
      this._pendingPublishes.push(pending);
      this._send(conn, frame);
    });
  }

  /** Sends a raw frame (an object, or text as is) on the current connection; false when not connected. */
  send(frame) {
    const conn = this._primary?.open ? this._primary : null;
    if (!conn) return false;
    this._send(conn, frame);
    return true;
  }

  /** Reconnects now (a fresh token, every stream resumed with `since`). */
  reconnect() {
    if (this._closed) return;
    this._attempts = 0;
    if (this._primary) this._lose(this._primary, "reconnect", { immediate: true });
    else this._connectNow("reconnect");
  }

  /** Closes the connection for good. */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._clear("_reconnectTimer");
    this._stopPolling();
    for (const conn of [this._primary, this._candidate]) if (conn) this._discard(conn, 1000, "client closed");
    this._primary = this._candidate = null;
    for (const s of this._streams.values()) this._clearGapTimer(s);
    for (const p of this._pendingPublishes) {
      this._clearTimeout(p.timer);
      p.reject(Object.assign(new Error("client closed"), { code: "closed" }));
    }
    this._pendingPublishes = [];
    if (this._onOffline) {
      this._win.removeEventListener("offline", this._onOffline);
      this._win.removeEventListener("online", this._onOnline);
    }
    if (this._onVisible) this._doc.removeEventListener("visibilitychange", this._onVisible);
    this._setState("closed");
  }

  // ------------------------------------------------------------------ events

  _emit(event, payload) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(payload);
      } catch (e) {
        if (event !== "error") this._emit("error", { code: "listener_error", message: String(e), cause: e });
      }
    }
  }

  _setState(state, detail = {}) {
    if (this._state === state) return;
    const previous = this._state;
    this._state = state;
    this._emit("state", { state, previous, ...detail });
  }

  _error(code, message, extra = {}) {
    this._emit("error", { code, message, ...extra });
  }

  // ---------------------------------------------------------------- streams

  _newStream(kind, id) {
    return {
      kind,
      id,
      key: kind === "entity" ? entityKey(id) : userKey(id),
      handlers: new Set(),
      last: undefined, // the last seq handed to the application
      epoch: undefined,
      oldEpochs: new Set(),
      buffer: new Map(), // seq -> notification, for seq > last + 1
      head: 0, // the highest seq the server said exists
      early: [], // notifications that arrived before the first `subscribed` reply
      awaitingBaseline: false,
      seen: new Set(), // ids delivered (safety net), bounded
      gapTimer: null,
      fetching: false,
      requested: false,
      failed: false,
    };
  }

  _userStream() {
    if (!this._userId) return null;
    const key = userKey(this._userId);
    let stream = this._streams.get(key);
    if (!stream) this._streams.set(key, (stream = this._newStream("user", this._userId)));
    return stream;
  }

  _handlersOf(stream) {
    if (stream.kind === "user") return this._userHandlers ? [...this._userHandlers] : [];
    return [...stream.handlers];
  }

  _dropStream(stream) {
    this._streams.delete(stream.key);
    this._clearGapTimer(stream);
    if (stream.kind === "entity") {
      for (const conn of [this._primary, this._candidate]) {
        if (!conn?.open) continue;
        const held = conn.acked.has(stream.key) || conn.pending.has(stream.key);
        conn.acked.delete(stream.key);
        conn.pending.delete(stream.key);
        // Nothing to undo for a subscription the server refused.
        if (held && !stream.failed) this._send(conn, { action: "unsubscribe", entityId: stream.id });
      }
    }
  }

  /** Routes a notification frame to its stream (user stream when it names a userId). */
  _onNotification(frame, source) {
    let stream;
    if (typeof frame.userId === "string") {
      if (!this._userId) this._userId = frame.userId;
      stream = this._streams.get(userKey(frame.userId));
      if (!stream) {
        stream = this._newStream("user", frame.userId);
        this._streams.set(stream.key, stream);
      }
    } else if (typeof frame.entityId === "string") {
      stream = this._streams.get(entityKey(frame.entityId));
      if (!stream) return; // unsubscribed meanwhile
    } else return;
    this._accept(stream, frame, source);
  }

  _accept(stream, n, source) {
    if (typeof n.seq !== "number" || !Number.isInteger(n.seq)) {
      // A server without sequence numbers: drop duplicates by id only.
      if (n.id != null && stream.seen.has(n.id)) return this._duplicate(stream, n);
      this._deliver(stream, n);
      return;
    }
    if (typeof n.epoch === "string") {
      if (stream.epoch === undefined) stream.epoch = n.epoch;
      else if (n.epoch !== stream.epoch) {
        if (stream.oldEpochs.has(n.epoch)) return this._duplicate(stream, n); // a late frame of a reset stream
        this._reset(stream, { seq: n.seq - 1, epoch: n.epoch, reason: "epoch" });
      }
    }
    if (stream.last === undefined) {
      if (stream.awaitingBaseline) {
        stream.early.push(n);
        return;
      }
      stream.last = n.seq - 1;
    }
    if (n.seq <= stream.last || stream.buffer.has(n.seq)) return this._duplicate(stream, n);
    stream.buffer.set(n.seq, n);
    this._drain(stream);
  }

  _drain(stream) {
    let progressed = false;
    while (stream.buffer.has(stream.last + 1)) {
      const n = stream.buffer.get(stream.last + 1);
      stream.buffer.delete(stream.last + 1);
      stream.last += 1;
      progressed = true;
      if (n.id != null && stream.seen.has(n.id)) this._duplicate(stream, n);
      else this._deliver(stream, n);
    }
    if (!this._hasGap(stream)) this._clearGapTimer(stream);
    else if (progressed || !stream.gapTimer) this._armGapTimer(stream);
  }

  /** Something is missing: buffered frames after a hole, or a head the replay has not reached. */
  _hasGap(stream) {
    return stream.last !== undefined && (stream.buffer.size > 0 || stream.last < stream.head);
  }

  _duplicate(stream, n) {
    this.stats.duplicates += 1;
    this._emit("duplicate", { stream: stream.kind, id: n.id, seq: n.seq });
  }

  _deliver(stream, n) {
    if (n.id != null) {
      stream.seen.add(n.id);
      if (stream.seen.size > this._o.seenIdsPerStream) stream.seen.delete(stream.seen.values().next().value);
    }
    this.stats.delivered += 1;
    for (const h of this._handlersOf(stream)) {
      try {
        h(n);
      } catch (e) {
        this._error("handler_error", String(e), { cause: e, ...streamRef(stream) });
      }
    }
    this._emit("notification", n);
  }

  /** The stream cannot be replayed from where the client is: carry on from `seq`. */
  _reset(stream, { seq, epoch, reason }) {
    if (stream.epoch !== undefined && epoch !== undefined && stream.epoch !== epoch) stream.oldEpochs.add(stream.epoch);
    stream.epoch = epoch ?? stream.epoch;
    stream.last = seq;
    stream.head = seq;
    for (const [s, n] of stream.buffer) {
      if (s <= seq || (n.epoch !== undefined && n.epoch !== stream.epoch)) stream.buffer.delete(s);
    }
    this.stats.recoveries += 1;
    this._emit("recovered", { ...streamRef(stream), recovered: false, seq, epoch: stream.epoch, reason });
  }

  _setBaseline(stream, seq, epoch) {
    stream.awaitingBaseline = false;
    if (epoch !== undefined) stream.epoch = epoch;
    stream.last = seq;
    stream.head = Math.max(stream.head, seq);
    const early = stream.early;
    stream.early = [];
    for (const n of early.sort((a, b) => a.seq - b.seq)) this._accept(stream, n, "early");
  }

  // -------------------------------------------------------------- gap repair

  _armGapTimer(stream) {
    this._clearGapTimer(stream);
    stream.gapTimer = this._setTimeout(() => {
      stream.gapTimer = null;
      this._repairGap(stream);
    }, this._o.gapTimeoutMs);
  }

  _clearGapTimer(stream) {
    if (stream.gapTimer) this._clearTimeout(stream.gapTimer);
    stream.gapTimer = null;
  }

  async _repairGap(stream) {
    if (this._closed || !this._hasGap(stream) || this._streams.get(stream.key) !== stream) return;
    this.stats.gapRepairs += 1;
    const fetched = this._o.historyUrl && this._fetch ? await this._fetchHistory(stream) : false;
    if (!fetched && this._hasGap(stream) && this._primary?.open) {
      this._sendSubscribe(this._primary, stream); // the server replays everything after `since`
    }
    if (this._hasGap(stream) && !stream.gapTimer && !this._closed) this._armGapTimer(stream);
  }

  /** Reads `GET {historyUrl}` from the stream's position (the head only when it has none). */
  /** Resolves true when the endpoint answered (whatever it held), false when it could not be read. */
  async _fetchHistory(stream) {
    if (stream.fetching || stream.failed) return stream.fetching;
    stream.fetching = true;
    try {
      for (let page = 0; page < 50 && !this._closed; page++) {
        const url = new URL(this._o.historyUrl, typeof location !== "undefined" ? location.href : undefined);
        url.searchParams.set(stream.kind === "entity" ? "entityId" : "userId", stream.id);
        const since = stream.last;
        if (since !== undefined) {
          url.searchParams.set("since", String(since));
          if (stream.epoch !== undefined) url.searchParams.set("epoch", stream.epoch);
          url.searchParams.set("limit", String(this._o.historyLimit));
        }
        const token = await this._historyToken();
        const headers = token ? { Authorization: `Bearer ${token}` } : {};
        let res;
        try {
          res = await this._fetch(url.toString(), { headers });
        } catch (e) {
          this._error("history_failed", `GET ${this._o.historyUrl}: ${e?.message ?? e}`, streamRef(stream));
          return false;
        }
        let body = null;
        try {
          body = await res.json();
        } catch {
          body = null;
        }
        if (this._closed || this._streams.get(stream.key) !== stream) return true;
        if (!res.ok) {
          const code = body?.code ?? `http_${res.status}`;
          if (res.status === 401) this._tokenStale = true;
          if (res.status === 403 || code === "forbidden") stream.failed = true;
          this._error(code, body?.message ?? `history answered ${res.status}`, { status: res.status, ...streamRef(stream) });
          return false;
        }
        if (!body || typeof body !== "object") return false;
        const head = Number.isInteger(body.seq) ? body.seq : undefined;
        if (since === undefined || stream.last === undefined) {
          // The head: a polling client starts there.
          if (stream.last === undefined && head !== undefined) this._setBaseline(stream, head, body.epoch);
          return true;
        }
        if (body.recovered === false && head !== undefined) {
          if (stream.last === since) this._reset(stream, { seq: head, epoch: body.epoch, reason: "history" });
        } else {
          if (stream.epoch === undefined && typeof body.epoch === "string") stream.epoch = body.epoch;
          if (head !== undefined && (body.epoch === undefined || body.epoch === stream.epoch)) stream.head = Math.max(stream.head, head);
        }
        const list = Array.isArray(body.notifications) ? body.notifications : [];
        for (const n of list) if (n && typeof n === "object") this._accept(stream, n, "history");
        const lastSeq = list.length ? list[list.length - 1].seq : undefined;
        if (!list.length || head === undefined || !(lastSeq < head) || stream.last === since || stream.last >= head) return true;
      }
      return true;
    } finally {
      stream.fetching = false;
    }
  }

  async _historyToken() {
    if (!this._o.getToken) return undefined;
    if (this._token === undefined || this._tokenStale) {
      try {
        this._token = (await this._o.getToken({ reason: this._tokenStale ? "expired" : "history" })) ?? null;
        this._tokenStale = false;
        this._learnUser(this._token);
      } catch (e) {
        this._error("token_failed", `getToken: ${e?.message ?? e}`, { cause: e });
        return undefined;
      }
    }
    return this._token ?? undefined;
  }

  _learnUser(token) {
    if (this._o.userId === undefined) {
      const sub = tokenSubject(token);
      if (sub) this._userId = sub;
    }
  }

  // ----------------------------------------------------------------- polling

  _startPolling() {
    if (this._polling || this._closed || !this._o.historyUrl || !this._fetch) return;
    this._polling = true;
    this._setState("polling");
    this._pollTick();
  }

  _stopPolling() {
    this._polling = false;
    this._clear("_pollTimer");
  }

  async _pollTick() {
    this._pollTimer = null;
    if (!this._polling || this._closed) return;
    this.stats.polls += 1;
    if (this._userHandlers?.size) this._userStream();
    await Promise.all([...this._streams.values()].map((s) => this._pollStream(s)));
    if (this._polling && !this._closed && !this._pollTimer) {
      this._pollTimer = this._setTimeout(() => this._pollTick(), this._o.pollIntervalMs);
    }
  }

  _pollStream(stream) {
    if (stream.failed || (stream.kind === "user" && !this._userHandlers?.size)) return Promise.resolve();
    return this._fetchHistory(stream);
  }

  // ------------------------------------------------------------- connections

  _clear(name) {
    if (this[name]) this._clearTimeout(this[name]);
    this[name] = null;
  }

  _scheduleReconnect(reason) {
    if (this._closed || this._reconnectTimer || this._connecting) return;
    // The first retry after a failure waits up to the base; each further one doubles the cap.
    const delay = backoffDelay(Math.max(0, this._attempts - 1), {
      baseMs: this._o.backoffBaseMs,
      maxMs: this._o.backoffMaxMs,
      random: this._random,
    });
    if (!this._polling) this._setState("reconnecting", { attempt: this._attempts, delayMs: delay, reason });
    this._reconnectTimer = this._setTimeout(() => {
      this._reconnectTimer = null;
      this._connectPrimary(reason);
    }, delay);
  }

  _connectNow(reason) {
    this._clear("_reconnectTimer");
    this._connectPrimary(reason);
  }

  async _connectPrimary(reason) {
    if (this._closed || this._primary || this._connecting) return;
    this._connecting = true;
    let conn;
    try {
      conn = await this._open("primary", reason);
    } finally {
      this._connecting = false;
    }
    if (!conn) {
      this._failed("token");
      return;
    }
    if (this._closed) {
      this._discard(conn, 1000, "client closed");
      return;
    }
    this._primary = conn;
  }

  /** A connection attempt failed: back off, and poll after enough failures. */
  _failed(reason) {
    this._attempts += 1;
    if (this._attempts >= this._o.pollAfterFailures) this._startPolling();
    this._scheduleReconnect(reason);
  }

  async _open(role, reason) {
    let token;
    if (this._o.getToken) {
      try {
        token = await this._o.getToken({ reason, attempt: this._attempts });
      } catch (e) {
        this._error("token_failed", `getToken: ${e?.message ?? e}`, { cause: e });
        return null;
      }
      if (this._closed) return null;
      this._token = token ?? null;
      this._tokenStale = false;
      this._learnUser(token);
    }
    let url = this._o.url;
    let protocols = this._o.protocols ? [...this._o.protocols] : undefined;
    if (token) {
      if (this._o.tokenTransport === "query") {
        url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
      } else {
        protocols = ["pushgate.v1", token, ...(protocols ?? []).filter((p) => p !== "pushgate.v1")];
      }
    }
    const conn = {
      id: ++this._connSeq,
      role,
      ws: null,
      open: false,
      dead: false,
      acked: new Set(),
      pending: new Set(),
      openedAt: 0,
      lastRx: 0,
      pingTimer: null,
      pongTimer: null,
      pongSeen: false,
      rolloverTimer: null,
      switchTimer: null,
      subscribeTimer: null,
      subscribeTries: 0,
      protocol: "",
    };
    try {
      conn.ws = protocols ? new this._WebSocket(url, protocols) : new this._WebSocket(url);
    } catch (e) {
      this._error("connect_failed", `WebSocket: ${e?.message ?? e}`, { cause: e });
      return null;
    }
    const ws = conn.ws;
    ws.onopen = () => this._onOpen(conn);
    ws.onmessage = (ev) => this._onMessage(conn, ev);
    ws.onclose = (ev) => this._onClose(conn, ev);
    // Browsers follow an error with a close; some runtimes (Node 20's undici
    // after a refused handshake) do not. An error before open is a failed
    // attempt; after open, a close that does not follow within 2 s is made up.
    ws.onerror = (ev) => {
      if (conn.dead) return;
      if (!conn.open) return this._onClose(conn, { code: 1006, reason: ev?.message ?? "error before open" });
      if (!conn.errorTimer) {
        conn.errorTimer = this._setTimeout(() => {
          conn.errorTimer = null;
          if (!conn.dead) this._onClose(conn, { code: 1006, reason: "error" });
        }, 2000);
      }
    };
    // A handshake that hangs (a black-holed network) is given up.
    conn.connectTimer = this._setTimeout(() => {
      conn.connectTimer = null;
      if (!conn.open && !conn.dead) this._onClose(conn, { code: 1006, reason: "connect timeout" });
    }, this._o.connectTimeoutMs);
    return conn;
  }

  _onOpen(conn) {
    if (conn.dead) return;
    if (conn.connectTimer) this._clearTimeout(conn.connectTimer);
    conn.connectTimer = null;
    conn.open = true;
    conn.openedAt = this._now();
    conn.lastRx = conn.openedAt;
    conn.protocol = conn.ws.protocol ?? "";
    this.stats.connects += 1;
    if (conn.role === "primary") {
      if (this.stats.connects > 1) this.stats.reconnects += 1;
      this._primaryReady(conn);
    } else {
      for (const s of this._streams.values()) this._sendSubscribe(conn, s);
      this._maybeSwitch(conn);
    }
  }

  _primaryReady(conn) {
    if (!this._polling) this._setState("open", { connection: conn.id, protocol: conn.protocol });
    for (const s of this._streams.values()) this._sendSubscribe(conn, s);
    if (this._userHandlers?.size) {
      const us = this._userStream();
      if (us && !conn.pending.has(us.key) && !conn.acked.has(us.key)) this._sendSubscribe(conn, us);
    }
    this._checkSynced(conn);
    this._startHeartbeat(conn);
    this._scheduleRollover(conn);
  }

  _sendSubscribe(conn, stream) {
    if (stream.failed) return;
    let frame;
    if (stream.kind === "entity") frame = { action: "subscribe", entityId: stream.id };
    else {
      if (!this._userResume || !this._userHandlers?.size) return;
      frame = { action: "subscribe", userId: stream.id };
    }
    if (stream.last !== undefined) {
      frame.since = stream.last;
      if (stream.epoch !== undefined) frame.epoch = stream.epoch;
    } else stream.awaitingBaseline = true;
    stream.requested = true;
    conn.pending.add(stream.key);
    this._send(conn, frame);
    this._armSubscribeTimer(conn);
  }

  /**
   * A `subscribe` that gets no reply (a lost frame, an `internal_error` the
   * server cannot attribute to an entity) is sent again; after three tries
   * the connection is treated as broken.
   */
  _armSubscribeTimer(conn) {
    if (conn.subscribeTimer || conn.dead) return;
    conn.subscribeTimer = this._setTimeout(() => {
      conn.subscribeTimer = null;
      if (conn.dead || !conn.open || conn.pending.size === 0) return;
      conn.subscribeTries = (conn.subscribeTries ?? 0) + 1;
      if (conn.subscribeTries >= 3) {
        this._error("subscribe_timeout", `no reply to subscribe within ${this._o.subscribeTimeoutMs} ms, three times`, { connection: conn.id });
        if (conn === this._primary) {
          this._attempts += 1;
          this._lose(conn, "subscribe_timeout");
        } else if (conn === this._candidate) {
          this._candidate = null;
          this._discard(conn, 1000, "subscribe timeout");
          this._scheduleRollover(this._primary, true);
        }
        return;
      }
      for (const key of [...conn.pending]) {
        const s = this._streams.get(key);
        if (!s || s.failed) conn.pending.delete(key);
        else this._sendSubscribe(conn, s);
      }
      this._checkSynced(conn);
    }, this._o.subscribeTimeoutMs);
  }

  _send(conn, frame) {
    const text = typeof frame === "string" ? frame : JSON.stringify(frame);
    if (typeof frame === "string") {
      try {
        frame = JSON.parse(frame);
      } catch {
        frame = null;
      }
    }
    try {
      conn.ws.send(text);
    } catch (e) {
      this._error("send_failed", String(e?.message ?? e), { cause: e });
      return;
    }
    this._emit("frame", { direction: "out", text, frame, connection: conn.id });
  }

  _onMessage(conn, ev) {
    if (conn.dead) return;
    conn.lastRx = this._now();
    const text = typeof ev.data === "string" ? ev.data : null;
    if (text === null) return;
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      frame = null;
    }
    this._emit("frame", { direction: "in", text, frame, connection: conn.id });
    if (!frame || typeof frame !== "object") return;
    switch (frame.type) {
      case "notification":
        this._onNotification(frame, conn.role);
        break;
      case "pong":
        conn.pongSeen = true;
        this._pongEverSeen = true;
        this._clearPong(conn);
        this._healthy(conn);
        break;
      case "subscribed":
        this._onSubscribed(conn, frame);
        break;
      case "accepted":
      case "published":
        this._onPublishReply(frame);
        break;
      case "error":
        this._onErrorFrame(conn, frame);
        break;
      default:
        break;
    }
  }

  _healthy(conn) {
    if (conn === this._primary) this._attempts = 0;
  }

  _onSubscribed(conn, f) {
    const key = typeof f.userId === "string" ? userKey(f.userId) : typeof f.entityId === "string" ? entityKey(f.entityId) : null;
    if (!key) return;
    conn.pending.delete(key);
    conn.acked.add(key);
    conn.subscribeTries = 0;
    this._healthy(conn);
    const stream = this._streams.get(key);
    if (stream) {
      const seq = Number.isInteger(f.seq) ? f.seq : undefined;
      const epoch = typeof f.epoch === "string" ? f.epoch : undefined;
      if (seq === undefined) {
        // A server without sequence numbers.
        if (stream.awaitingBaseline) {
          stream.awaitingBaseline = false;
          const early = stream.early;
          stream.early = [];
          for (const n of early) this._accept(stream, n, "early");
        }
      } else if (stream.last === undefined) {
        this._setBaseline(stream, seq, epoch);
      } else if (f.recovered === false) {
        stream.awaitingBaseline = false;
        this._reset(stream, { seq, epoch, reason: "subscribe" });
        this._drain(stream);
      } else {
        stream.awaitingBaseline = false;
        if (epoch !== undefined && stream.epoch === undefined) stream.epoch = epoch;
        else if (epoch !== undefined && epoch !== stream.epoch && !stream.oldEpochs.has(epoch) && f.recovered !== true) {
          this._reset(stream, { seq, epoch, reason: "epoch" });
        }
        if (epoch === undefined || epoch === stream.epoch) stream.head = Math.max(stream.head, seq);
        this._drain(stream); // arms the gap timer if the replay does not arrive
      }
    }
    if (conn === this._candidate) this._maybeSwitch(conn);
    else if (conn === this._primary) this._checkSynced(conn);
  }

  /** Every stream acknowledged on the primary: polling can stop. */
  _checkSynced(conn) {
    if (conn !== this._primary || !conn.open) return;
    if (conn.pending.size > 0) return;
    if (this._streams.size === 0) this._attempts = 0;
    if (this._polling) {
      this._stopPolling();
    }
    this._setState("open", { connection: conn.id, protocol: conn.protocol });
  }

  _onErrorFrame(conn, f) {
    const code = typeof f.code === "string" ? f.code : "unknown";
    const message = typeof f.message === "string" ? f.message : "";
    const ref = {};
    if (typeof f.entityId === "string") ref.entityId = f.entityId;
    if (typeof f.userId === "string") ref.userId = f.userId;
    if (code === "token_expired") {
      this._tokenStale = true;
      this._error(code, message, { connection: conn.id, ...ref });
      if (conn === this._candidate) {
        this._candidate = null;
        this._discard(conn, 1000, "token expired");
        this._scheduleRollover(this._primary, true);
      } else if (conn === this._primary) {
        this._attempts += 1; // a fresh token, with backoff: never a tight loop
        this._lose(conn, "token_expired", { counted: true });
      }
      return;
    }
    // A server that does not know `ping`, or `subscribe` with userId.
    if (conn.pingOutstanding && code === "unknown_action" && /ping/.test(message)) {
      this._clearPong(conn);
      return;
    }
    const userPending = [...conn.pending].find((k) => k.startsWith("u:"));
    if (userPending && !ref.entityId && (code === "missing_entity_id" || code === "invalid_frame")) {
      this._userResume = false;
      conn.pending.delete(userPending);
      const us = this._streams.get(userPending);
      if (us) {
        us.awaitingBaseline = false;
        const early = us.early;
        us.early = [];
        for (const n of early) this._accept(us, n, "early");
      }
      this._checkSynced(conn);
      if (conn === this._candidate) this._maybeSwitch(conn);
      return;
    }
    if (ref.entityId || ref.userId) {
      const key = ref.userId ? userKey(ref.userId) : entityKey(ref.entityId);
      if (conn.pending.has(key)) {
        conn.pending.delete(key);
        const s = this._streams.get(key);
        if (s && (code === "forbidden" || code === "invalid_entity_id" || code === "too_many_subscriptions")) s.failed = true;
        if (s) s.awaitingBaseline = false;
        this._checkSynced(conn);
        if (conn === this._candidate) this._maybeSwitch(conn);
      }
    } else if (code !== "internal_error" && conn.pending.size > 0 && this._pendingPublishes.length === 0) {
      // An uncorrelated refusal of a subscribe (older servers do not name the entity).
      if (code === "forbidden" || code === "invalid_entity_id" || code === "too_many_subscriptions") {
        const key = [...conn.pending].find((k) => k.startsWith("e:"));
        if (key) {
          conn.pending.delete(key);
          const s = this._streams.get(key);
          if (s) {
            s.failed = true;
            s.awaitingBaseline = false;
            ref.entityId = s.id;
          }
          this._checkSynced(conn);
          if (conn === this._candidate) this._maybeSwitch(conn);
        }
      }
    }
    const pub = this._pendingPublishes.find((p) => !ref.entityId || p.entityId === ref.entityId);
    if (pub && conn === this._primary && !ref.userId && (ref.entityId || conn.pending.size === 0)) {
      this._pendingPublishes = this._pendingPublishes.filter((p) => p !== pub);
      this._clearTimeout(pub.timer);
      pub.reject(Object.assign(new Error(message || code), { code, frame: f }));
    }
    this._error(code, message, { connection: conn.id, ...ref });
  }

  _onPublishReply(f) {
    const i = this._pendingPublishes.findIndex(
      (p) => p.entityId === f.entityId && (typeof f.id !== "string" || f.type === "published" || f.id.endsWith(":" + p.id)),
    );
    const j = i >= 0 ? i : this._pendingPublishes.findIndex((p) => p.entityId === f.entityId);
    if (j < 0) return;
    const p = this._pendingPublishes[j];
    this._pendingPublishes.splice(j, 1);
    this._clearTimeout(p.timer);
    p.resolve(f);
  }

  _onClose(conn, ev) {
    if (conn.dead) return;
    const wasOpen = conn.open;
    this._emit("frame", { direction: "close", code: ev?.code, reason: ev?.reason ?? "", connection: conn.id });
    if (conn === this._candidate) {
      this._discard(conn, 1000, "failed");
      this._candidate = null;
      this._scheduleRollover(this._primary, true);
      return;
    }
    if (conn !== this._primary) return this._cleanup(conn);
    if (!wasOpen) {
      // Closed before it opened: refused (possibly a 401: browsers do not say)
      // or unreachable. The next attempt asks getToken for a fresh token.
      this._tokenStale = true;
      this._discard(conn, 1000, "failed");
      this._primary = null;
      this._error("connect_failed", `the WebSocket closed before it opened (code ${ev?.code ?? "?"})`, {
        connection: conn.id,
      });
      this._failed("refused");
      return;
    }
    this._lose(conn, "closed", { code: ev?.code });
  }

  /**
   * The primary is gone (closed, dead, offline, token expired): promote a
   * rollover candidate when one is open, else reconnect with backoff.
   */
  _lose(conn, reason, { immediate = false, code } = {}) {
    if (conn !== this._primary) return;
    this._discard(conn, 4000, reason);
    this._primary = null;
    const cand = this._candidate;
    if (cand?.open && reason !== "token_expired") {
      this._candidate = null;
      this._promote(cand);
      return;
    }
    if (cand) {
      this._candidate = null;
      this._discard(cand, 1000, reason);
    }
    if (this._closed) return;
    if (immediate) {
      this._setState("reconnecting", { reason });
      this._connectNow(reason);
    } else this._scheduleReconnect(code !== undefined ? `${reason} ${code}` : reason);
  }

  /** Detaches and closes a connection; its events are ignored from now on. */
  _discard(conn, code, reason) {
    this._cleanup(conn);
    const ws = conn.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code === 4000 ? 1000 : code, reason.slice(0, 100));
    } catch {
      /* closing a socket that never opened may throw in some runtimes */
    }
  }

  _cleanup(conn) {
    conn.dead = true;
    conn.open = false;
    for (const t of ["pingTimer", "pongTimer", "rolloverTimer", "switchTimer", "subscribeTimer", "connectTimer", "errorTimer"]) {
      if (conn[t]) this._clearTimeout(conn[t]);
      conn[t] = null;
    }
  }

  // --------------------------------------------------------------- heartbeat

  _startHeartbeat(conn) {
    if (conn.pingTimer) this._clearTimeout(conn.pingTimer);
    conn.pingTimer = this._setTimeout(() => {
      conn.pingTimer = null;
      if (conn.dead) return;
      this._ping(conn);
      this._startHeartbeat(conn);
    }, this._o.pingIntervalMs);
  }

  _ping(conn) {
    if (conn.dead || !conn.open || conn.pongTimer) return;
    const sentAt = this._now();
    const rxBefore = conn.lastRx;
    conn.pingOutstanding = true;
    this._send(conn, { action: "ping" });
    conn.pongTimer = this._setTimeout(() => {
      conn.pongTimer = null;
      conn.pingOutstanding = false;
      if (conn.dead) return;
      // Any frame since the ping proves the socket alive. A server that has
      // never answered `pong` (an older deployment) is given the benefit of
      // the doubt as long as it sent anything in the previous interval.
      if (conn.lastRx > sentAt) return;
      if (!conn.pongSeen && !this._pongEverSeen && sentAt - rxBefore < this._o.pingIntervalMs + this._o.pongTimeoutMs) return;
      this._error("heartbeat_timeout", `no pong within ${this._o.pongTimeoutMs} ms`, { connection: conn.id });
      this._lose(conn, "dead");
    }, this._o.pongTimeoutMs);
  }

  _clearPong(conn) {
    conn.pingOutstanding = false;
    if (conn.pongTimer) this._clearTimeout(conn.pongTimer);
    conn.pongTimer = null;
  }

  // ---------------------------------------------------------------- rollover

  _scheduleRollover(conn, retry = false) {
    if (!conn || conn.dead || this._closed) return;
    if (conn.rolloverTimer) this._clearTimeout(conn.rolloverTimer);
    const o = this._o;
    let at;
    if (retry) {
      at = this._now() + Math.max(1000, backoffDelay(2, { baseMs: o.backoffBaseMs, maxMs: o.backoffMaxMs, random: this._random }));
      // never past the hard limit: then the server closes and we reconnect.
      if (at >= conn.openedAt + o.maxConnectionMs) return;
    } else {
      at = conn.openedAt + o.maxConnectionMs * (o.rolloverMin + this._random() * (o.rolloverMax - o.rolloverMin));
    }
    conn.rolloverTimer = this._setTimeout(() => {
      conn.rolloverTimer = null;
      this._rollover(conn);
    }, Math.max(0, at - this._now()));
  }

  async _rollover(conn) {
    if (conn !== this._primary || conn.dead || this._candidate || this._closed) return;
    const cand = await this._open("rollover", "rollover");
    if (!cand) {
      this._scheduleRollover(this._primary, true);
      return;
    }
    if (conn !== this._primary || this._closed || conn.dead) {
      // The primary went away meanwhile; this becomes the new primary.
      if (!this._primary && !this._closed && !this._connecting) {
        cand.role = "primary";
        this._primary = cand;
        this._clear("_reconnectTimer");
      } else this._discard(cand, 1000, "not needed");
      return;
    }
    this._candidate = cand;
    cand.switchTimer = this._setTimeout(() => {
      cand.switchTimer = null;
      if (this._candidate !== cand) return;
      if (cand.open && cand.acked.size > 0) {
        // Some subscribe was never answered (an older server does not name
        // the entity in errors): switch anyway; seq-based gap repair covers it.
        cand.pending.clear();
        this._maybeSwitch(cand);
        return;
      }
      this._candidate = null;
      this._discard(cand, 1000, "rollover timed out");
      this._scheduleRollover(this._primary, true);
    }, this._o.rolloverTimeoutMs);
  }

  _maybeSwitch(cand) {
    if (cand !== this._candidate || !cand.open || cand.pending.size > 0) return;
    const old = this._primary;
    this._candidate = null;
    if (old) this._discard(old, 1000, "rollover");
    this._primary = null;
    this._promote(cand);
    this.stats.rollovers += 1;
    this._emit("rollover", { from: old?.id, to: cand.id });
  }

  _promote(cand) {
    if (cand.switchTimer) this._clearTimeout(cand.switchTimer);
    cand.switchTimer = null;
    cand.role = "primary";
    this._primary = cand;
    this._clear("_reconnectTimer");
    this._startHeartbeat(cand);
    this._scheduleRollover(cand);
    for (const s of this._streams.values()) {
      if (!cand.pending.has(s.key) && !cand.acked.has(s.key)) this._sendSubscribe(cand, s);
    }
    this._checkSynced(cand);
  }

  // ----------------------------------------------------------- online/offline

  _handleOffline() {
    if (this._closed) return;
    if (this._primary) this._lose(this._primary, "offline");
  }

  _handleOnline() {
    if (this._closed) return;
    this._attempts = 0;
    if (this._primary?.open) this._ping(this._primary);
    else if (!this._primary && !this._connecting) this._connectNow("online");
  }
}

function streamRef(stream) {
  return stream.kind === "entity" ? { entityId: stream.id } : { userId: stream.id };
}

function randomId(random) {
  let s = "";
  for (let i = 0; i < 16; i++) s += "abcdefghijklmnopqrstuvwxyz0123456789"[Math.floor(random() * 36)];
  return s;
}

export default connect;
