// Unit tests of @pushgate/client on fake sockets, a fake clock and a fake
// fetch:  node --test test/
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, backoffDelay, tokenSubject } from "../src/index.js";
import { FakeClock, FakeServer, FakeWindow, fakeJwt, readFakeJwt, fixedRandom } from "./fakes.js";

/** A client on a fake server and clock, with every delivery and event recorded. */
function setup(opts = {}) {
  const clock = new FakeClock();
  const server = opts.server ?? new FakeServer();
  const events = { state: [], error: [], recovered: [], rollover: [] };
  let tokens = 0;
  const getToken =
    opts.getToken ??
    (async () => {
      tokens += 1;
      return fakeJwt("alice", tokens);
    });
  const client = connect({
    url: "ws://pushgate.test/local",
    historyUrl: "http://pushgate.test/history",
    WebSocket: server.WebSocket,
    fetch: server.fetch,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: opts.random ?? fixedRandom([0.5]),
    window: opts.window ?? null,
    document: null,
    getToken,
    ...opts.options,
  });
  for (const e of Object.keys(events)) client.on(e, (p) => events[e].push(p));
  return { clock, server, client, events, tokens: () => tokens };
}

/** Subscribes and records what the application sees. */
function collect(client, entityId) {
  const got = [];
  const sub = client.subscribe(entityId, (n) => got.push(n));
  return { got, sub, seqs: () => got.map((n) => n.seq) };
}

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

test("backoff: full jitter within [0, min(max, base*2^n)), capped", () => {
  for (let attempt = 0; attempt < 20; attempt++) {
    const cap = Math.min(30_000, 500 * 2 ** attempt);
    assert.equal(backoffDelay(attempt, { random: () => 0 }), 0);
    const hi = backoffDelay(attempt, { random: () => 0.999999 });
    assert.ok(hi < cap && hi >= cap * 0.99, `attempt ${attempt}: ${hi} vs cap ${cap}`);
    assert.equal(backoffDelay(attempt, { random: () => 0.5 }), Math.floor(cap / 2));
  }
  assert.equal(backoffDelay(100, { baseMs: 1000, maxMs: 5000, random: () => 0.5 }), 2500);
  // jitter: different random draws give different delays
  const draws = new Set(range(0, 19).map(() => backoffDelay(5)));
  assert.ok(draws.size > 5, "delays are spread");
});

test("tokenSubject reads the sub claim", () => {
  const claims = Buffer.from(JSON.stringify({ sub: "alice", exp: 1 })).toString("base64url");
  assert.equal(tokenSubject(`eyJhbGciOiJIUzI1NiJ9.${claims}.sig`), "alice");
  assert.equal(tokenSubject("nonsense"), undefined);
  assert.equal(tokenSubject(undefined), undefined);
});

test("subscribes on open with the token as subprotocol; baseline from the reply", async () => {
  const { clock, server, client, events } = setup();
  server.publish("a", { before: true }); // seq 1, before the client subscribes
  const { seqs } = collect(client, "a");
  await clock.advance(10);
  const ws = server.sockets[0];
  assert.deepEqual(ws.protocols, ["pushgate.v1", fakeJwt("alice", 1)]);
  assert.deepEqual(ws.sent[0], { action: "subscribe", entityId: "a" });
  assert.equal(client.state, "open");
  server.publish("a", { n: 2 });
  server.publish("a", { n: 3 });
  await clock.advance(10);
  assert.deepEqual(seqs(), [2, 3], "notifications after the subscription, not before");
  assert.deepEqual(events.state.map((s) => s.state), ["open"]);
  client.close();
  assert.equal(client.state, "closed");
});

test("token in the query string when tokenTransport is query", async () => {
  const { clock, server, client } = setup({ options: { tokenTransport: "query", protocols: ["websocket"] } });
  await clock.advance(10);
  assert.equal(server.sockets[0].url, `ws://pushgate.test/local?token=${fakeJwt("alice", 1)}`);
  assert.deepEqual(server.sockets[0].protocols, ["websocket"]);
  client.close();
});

test("ordering: out-of-order frames are buffered and handed on in seq order", async () => {
  const { clock, server, client } = setup();
  const { seqs } = collect(client, "a");
  await clock.advance(10);
  const ws = server.sockets[0];
  const frames = [1, 2, 3, 4, 5].map((n) => server.publish("a", { n }, { drop: () => true }));
  for (const i of [2, 0, 4, 1, 3]) ws.deliver(frames[i]);
  await clock.advance(10);
  assert.deepEqual(seqs(), [1, 2, 3, 4, 5]);
  assert.equal(server.historyRequests.length, 0, "no history fetch: the gap closed in time");
  client.close();
});

test("dedupe: repeated seq and repeated id are dropped", async () => {
  const { clock, server, client } = setup();
  const { seqs, got } = collect(client, "a");
  await clock.advance(10);
  const ws = server.sockets[0];
  const f1 = server.publish("a", { n: 1 });
  const f2 = server.publish("a", { n: 2 });
  ws.deliver(f1);
  ws.deliver(f2);
  ws.deliver(f1);
  // an id seen before under a new seq (never sent by pushgate; the safety net)
  const f3 = server.publish("a", { n: 3 }, { drop: () => true });
  ws.deliver({ ...f3, id: f1.id });
  const f4 = server.publish("a", { n: 4 });
  await clock.advance(10);
  assert.deepEqual(seqs(), [1, 2, 4]);
  assert.equal(new Set(got.map((n) => n.id)).size, got.length);
  assert.equal(client.stats.duplicates, 4);
  assert.equal(f4.seq, 4);
  client.close();
});

test("gap repair: a gap that persists 2 s is filled from GET /history with the bearer token", async () => {
  const { clock, server, client } = setup();
  const { seqs } = collect(client, "artist:x");
  await clock.advance(10);
  server.publish("artist:x", { n: 1 });
  server.publish("artist:x", { n: 2 }, { drop: () => true });
  server.publish("artist:x", { n: 3 }, { drop: () => true });
  server.publish("artist:x", { n: 4 });
  await clock.advance(10);
  assert.deepEqual(seqs(), [1]);
  await clock.advance(1900);
  assert.equal(server.historyRequests.length, 0, "not before 2 s");
  await clock.advance(200);
  assert.deepEqual(seqs(), [1, 2, 3, 4]);
  assert.equal(server.historyRequests.length, 1);
  const req = server.historyRequests[0];
  assert.equal(req.url.searchParams.get("entityId"), "artist:x");
  assert.equal(req.url.searchParams.get("since"), "1");
  assert.equal(req.url.searchParams.get("epoch"), "ep1");
  assert.equal(req.headers.Authorization, `Bearer ${fakeJwt("alice", 1)}`);
  assert.equal(client.stats.gapRepairs, 1);
  client.close();
});

test("gap repair pages through history; without historyUrl it resubscribes with since", async () => {
  const { clock, server, client } = setup();
  server.historyLimit = 2;
  const { seqs } = collect(client, "a");
  await clock.advance(10);
  for (const n of range(1, 6)) server.publish("a", { n }, { drop: () => true });
  server.publish("a", { n: 7 });
  await clock.advance(2100);
  assert.deepEqual(seqs(), range(1, 7));
  assert.equal(server.historyRequests.length, 3);
  client.close();

  const t2 = setup({ options: { historyUrl: undefined } });
  const c2 = collect(t2.client, "b");
  await t2.clock.advance(10);
  t2.server.publish("b", { n: 1 }, { drop: () => true });
  t2.server.publish("b", { n: 2 });
  await t2.clock.advance(2100);
  assert.deepEqual(c2.seqs(), [1, 2]);
  assert.deepEqual(t2.server.sockets[0].sent.at(-1), { action: "subscribe", entityId: "b", since: 0, epoch: "ep1" });
  t2.client.close();
});

test("a replay that never comes (reply seq ahead of us) is repaired too", async () => {
  const { clock, server, client } = setup();
  const { seqs } = collect(client, "a");
  await clock.advance(10);
  server.publish("a", {});
  await clock.advance(10);
  // reconnect; the server's replay is lost
  server.replyToSubscribe = (ws, f) => {
    ws.subs.add("e:" + f.entityId);
    ws.deliver({ type: "subscribed", entityId: f.entityId, seq: 3, epoch: "ep1", recovered: true });
  };
  server.publish("a", {}, { drop: () => true });
  server.publish("a", {}, { drop: () => true });
  server.sockets[0]._serverClose(1001);
  await clock.advance(1000);
  assert.equal(server.open().length, 1);
  assert.deepEqual(seqs(), [1]);
  await clock.advance(2100);
  assert.deepEqual(seqs(), [1, 2, 3]);
  client.close();
});

test("reconnect after a server close resumes with since and epoch: every notification once, in order", async () => {
  const { clock, server, client, events } = setup();
  const { seqs } = collect(client, "a");
  await clock.advance(10);
  server.publish("a", {});
  server.publish("a", {});
  await clock.advance(10);
  server.sockets[0]._serverClose(1001, "Going away"); // e.g. DELETE @connections
  server.publish("a", {}); // missed while disconnected
  await clock.advance(10);
  assert.equal(client.state, "reconnecting");
  const delay = events.state.at(-1).delayMs;
  assert.ok(delay >= 0 && delay < 500, `first retry within the base: ${delay}`);
  await clock.advance(500);
  assert.equal(server.sockets.length, 2);
  assert.deepEqual(server.sockets[1].sent[0], { action: "subscribe", entityId: "a", since: 2, epoch: "ep1" });
  server.publish("a", {});
  await clock.advance(10);
  assert.deepEqual(seqs(), [1, 2, 3, 4]);
  assert.equal(client.state, "open");
  assert.equal(client.stats.reconnects, 1);
  client.close();
});

test("recovered:false on resubscribe is emitted; the stream continues from the server's seq", async () => {
  const { clock, server, client, events } = setup();
  const { seqs } = collect(client, "a");
  await clock.advance(10);
  server.publish("a", {});
  await clock.advance(10);
  server.retain = 2;
  server.sockets[0]._serverClose(1001);
  for (const _ of range(1, 5)) server.publish("a", {}); // 2..6, only 5 and 6 kept
  await clock.advance(1000);
  assert.deepEqual(events.recovered, [{ entityId: "a", recovered: false, seq: 6, epoch: "ep1", reason: "subscribe" }]);
  server.publish("a", {});
  await clock.advance(10);
  assert.deepEqual(seqs(), [1, 7]);
  client.close();
});

test("an epoch change on a notification is a recovery; late frames of the old epoch are dropped", async () => {
  const { clock, server, client, events } = setup();
  const { seqs, got } = collect(client, "a");
  await clock.advance(10);
  const old = server.publish("a", {});
  await clock.advance(10);
  server.resetStream("e:a", "ep2");
  server.publish("a", { fresh: true });
  server.sockets[0].deliver(old);
  await clock.advance(10);
  assert.deepEqual(events.recovered, [{ entityId: "a", recovered: false, seq: 0, epoch: "ep2", reason: "epoch" }]);
  assert.deepEqual(seqs(), [1, 1]);
  assert.equal(got[1].epoch, "ep2");
  client.close();
});

test("heartbeat: ping every interval; a missing pong is a dead socket and reconnects", async () => {
  const { clock, server, client } = setup({ options: { pingIntervalMs: 1000, pongTimeoutMs: 300 } });
  const { seqs } = collect(client, "a");
  await clock.advance(10);
  await clock.advance(1000);
  assert.deepEqual(server.sockets[0].sent.at(-1), { action: "ping" });
  await clock.advance(400);
  assert.equal(server.sockets.length, 1, "pong answered: still the first socket");
  server.answerPing = false;
  await clock.advance(1000);
  await clock.advance(300);
  assert.equal(server.sockets[0].closedByClient?.code, 1000, "the dead socket is closed");
  await clock.advance(600);
  assert.equal(server.open().length, 1);
  assert.equal(server.sockets.length, 2);
  server.publish("a", {});
  await clock.advance(10);
  assert.deepEqual(seqs(), [1]);
  client.close();
});

test("heartbeat: a server that never answers ping but sends frames is not declared dead", async () => {
  const server = new FakeServer();
  server.answerPing = false;
  const { clock, client } = setup({ server, options: { pingIntervalMs: 1000, pongTimeoutMs: 300 } });
  collect(client, "a");
  await clock.advance(10);
  for (let i = 0; i < 5; i++) {
    server.publish("a", {});
    await clock.advance(1000);
  }
  assert.equal(server.sockets.length, 1);
  client.close();
});

test("rollover before the maximum duration: a new socket, switch once subscribed, no gap and no duplicate", async () => {
  const { clock, server, client, events } = setup({ options: { maxConnectionMs: 10_000, pingIntervalMs: 60_000 } });
  const { seqs } = collect(client, "a");
  const b = collect(client, "b");
  await clock.advance(10);
  // a steady stream: one notification every 100 ms; during the overlap both sockets get it
  for (let i = 0; i < 120; i++) {
    server.publish("a", { i });
    if (i % 3 === 0) server.publish("b", { i });
    await clock.advance(100);
  }
  assert.equal(events.rollover.length, 1, "one rollover in 12 s with a 10 s maximum");
  assert.ok(server.sockets.length === 2, `two sockets in all (${server.sockets.length})`);
  const [first, second] = server.sockets;
  assert.equal(first.closedByClient?.code, 1000);
  assert.equal(second.readyState, 1);
  assert.deepEqual(second.sent[0].action, "subscribe");
  assert.ok(second.sent[0].since > 0, "resubscribed with since");
  assert.deepEqual(seqs(), range(1, 120));
  assert.deepEqual(b.seqs(), range(1, 40));
  assert.equal(client.state, "open");
  client.close();
});

test("rollover: frames in flight on both sockets, in any order, reach the app once", async () => {
  const { clock, server, client } = setup({ options: { maxConnectionMs: 10_000, rolloverMin: 0.9, rolloverMax: 0.9 } });
  const { seqs } = collect(client, "a");
  await clock.advance(10);
  for (const _ of range(1, 3)) server.publish("a", {});
  await clock.advance(8_990); // rollover timer fires at 9 s, the candidate opens
  const [old, cand] = server.sockets;
  assert.ok(cand, "the candidate opened");
  // the old socket lags behind: 4 and 5 reach the candidate first
  const f4 = server.publish("a", {}, { drop: (ws) => ws === old });
  const f5 = server.publish("a", {}, { drop: (ws) => ws === old });
  await clock.advance(1);
  old.deliver(f5);
  old.deliver(f4);
  await clock.advance(100);
  assert.deepEqual(seqs(), [1, 2, 3, 4, 5]);
  assert.equal(server.open().length, 1);
  client.close();
});

test("token_expired: a fresh token and a reconnect with backoff, not a loop", async () => {
  const server = new FakeServer();
  let expiredUntil = 3; // tokens 1..3 are refused as expired
  server.replyToSubscribe = (ws, f) => {
    const n = readFakeJwt(ws.protocols[1]).n;
    if (n <= expiredUntil) ws.deliver({ type: "error", code: "token_expired", message: "the token expired" });
    else server._subscribe(ws, f);
  };
  const { clock, client, events, tokens } = setup({ server });
  const { seqs } = collect(client, "a");
  await clock.advance(10);
  assert.equal(events.error[0].code, "token_expired");
  await clock.advance(10_000);
  const delays = events.state.filter((s) => s.state === "reconnecting").map((s) => s.delayMs);
  assert.equal(tokens(), 4, "getToken for every connection");
  assert.deepEqual(delays, [250, 500, 1000], "exponential (random fixed at 0.5)");
  assert.equal(client.state, "open");
  assert.equal(server.sockets.length, 4);
  assert.deepEqual(server.sockets[3].protocols, ["pushgate.v1", fakeJwt("alice", 4)]);
  server.publish("a", {});
  await clock.advance(10);
  assert.deepEqual(seqs(), [1]);
  expiredUntil = 0;
  client.close();
});

test("a handshake refused before open asks getToken again, with backoff", async () => {
  const server = new FakeServer();
  server.refuse = true;
  const reasons = [];
  let n = 0;
  const { clock, client } = setup({
    server,
    options: { pollAfterFailures: 100 },
    getToken: async (ctx) => {
      reasons.push(ctx.reason);
      return fakeJwt("alice", ++n);
    },
  });
  await clock.advance(10);
  await clock.advance(250);
  await clock.advance(500);
  assert.deepEqual(reasons, ["initial", "refused", "refused"]);
  server.refuse = false;
  await clock.advance(1000);
  assert.equal(client.state, "open");
  client.close();
});

test("polling fallback after 3 failed connects; the same notifications; back to WebSocket seamlessly", async () => {
  const server = new FakeServer();
  server.refuse = true;
  const { clock, client, events } = setup({ server, options: { pollIntervalMs: 2000, backoffMaxMs: 8000 } });
  server.publish("a", { before: true });
  const { seqs } = collect(client, "a");
  await clock.advance(10); // fail 1
  await clock.advance(250); // fail 2
  await clock.advance(500); // fail 3 -> polling
  assert.equal(client.state, "polling");
  const head = server.historyRequests[0];
  assert.equal(head.url.searchParams.get("since"), null, "the first poll reads the head");
  for (let i = 0; i < 10; i++) {
    server.publish("a", { i });
    await clock.advance(700);
  }
  assert.ok(server.historyRequests.length >= 3);
  assert.equal(server.historyRequests.at(-1).url.searchParams.get("since") !== null, true);
  await clock.advance(2000);
  assert.deepEqual(seqs(), range(2, 11), "polled notifications in order, from the head on");
  assert.ok(server.sockets.length >= 4, "WebSockets retried in the background");
  server.refuse = false;
  await clock.advance(8000);
  assert.equal(client.state, "open");
  const polls = server.historyRequests.length;
  server.publish("a", {});
  await clock.advance(5000);
  assert.equal(server.historyRequests.length, polls, "polling stopped");
  assert.deepEqual(seqs(), range(2, 12));
  assert.ok(events.state.some((s) => s.state === "polling"));
  client.close();
});

test("the user stream: onUser gets user notifications, resumed with userId and since", async () => {
  const { clock, server, client } = setup();
  const got = [];
  client.onUser((n) => got.push(n.seq));
  await clock.advance(10);
  assert.equal(client.userId, "alice");
  assert.deepEqual(server.sockets[0].sent[0], { action: "subscribe", userId: "alice" });
  server.publish("order:7", { s: 1 }, { userId: "alice" });
  server.publish("order:7", { s: 2 }, { userId: "alice" });
  await clock.advance(10);
  server.sockets[0]._serverClose(1001);
  server.publish("order:7", { s: 3 }, { userId: "alice" });
  await clock.advance(1000);
  assert.deepEqual(server.sockets[1].sent[0], { action: "subscribe", userId: "alice", since: 2, epoch: "ep1" });
  assert.deepEqual(got, [1, 2, 3]);
  client.close();
});

test("offline closes the socket, online reconnects at once", async () => {
  const win = new FakeWindow();
  const { clock, server, client } = setup({ window: win, options: { backoffBaseMs: 60_000 } });
  const { seqs } = collect(client, "a");
  await clock.advance(10);
  win.dispatch("offline");
  await clock.advance(10);
  assert.equal(client.state, "reconnecting");
  server.publish("a", {});
  win.dispatch("online");
  await clock.advance(10);
  assert.equal(client.state, "open");
  assert.deepEqual(seqs(), [1]);
  client.close();
  assert.equal(win.listeners.get("online").size, 0, "listeners removed on close");
});

test("unsubscribe sends unsubscribe when the last handler leaves; publish resolves on accepted", async () => {
  const { clock, server, client } = setup();
  const a1 = collect(client, "a");
  const a2 = collect(client, "a");
  await clock.advance(10);
  assert.equal(server.sockets[0].sent.filter((f) => f.action === "subscribe").length, 1);
  a1.sub.unsubscribe();
  assert.equal(server.sockets[0].sent.at(-1).action, "subscribe");
  server.publish("a", {});
  await clock.advance(10);
  assert.deepEqual(a1.seqs(), []);
  assert.deepEqual(a2.seqs(), [1]);
  a2.sub.unsubscribe();
  assert.deepEqual(server.sockets[0].sent.at(-1), { action: "unsubscribe", entityId: "a" });
  const reply = client.publish("room:1", { hi: 1 }, { id: "abc" });
  await clock.advance(10);
  assert.deepEqual(await reply, { type: "accepted", entityId: "room:1", id: "pub:x:abc" });
  client.close();
});

test("old servers: no seq (dedupe by id), no pong (error reply), subscribed without seq", async () => {
  const server = new FakeServer();
  server.replyToSubscribe = (ws, f) => {
    ws.subs.add("e:" + f.entityId);
    ws.deliver({ type: "subscribed", entityId: f.entityId });
  };
  server.onFrame = ((orig) => (ws, f) => {
    if (f.action === "ping") ws.deliver({ type: "error", code: "unknown_action", message: 'unknown action "ping"' });
    else orig.call(server, ws, f);
  })(server.onFrame);
  const { clock, client, events } = setup({ server, options: { pingIntervalMs: 1000, pongTimeoutMs: 100 } });
  const got = [];
  client.subscribe("a", (n) => got.push(n.id));
  await clock.advance(10);
  const ws = server.sockets[0];
  ws.deliver({ type: "notification", id: "x1", entityId: "a", data: {} });
  ws.deliver({ type: "notification", id: "x1", entityId: "a", data: {} });
  ws.deliver({ type: "notification", id: "x2", entityId: "a", data: {} });
  await clock.advance(5000);
  assert.deepEqual(got, ["x1", "x2"]);
  assert.equal(server.sockets.length, 1, "no reconnect for an old server's ping reply");
  assert.deepEqual(events.error, []);
  client.close();
});

test("a subscribe without a reply is sent again; three times without one replaces the connection", async () => {
  const server = new FakeServer();
  let silent = 4; // the first four subscribes get no reply
  server.replyToSubscribe = (ws, f) => {
    if (silent-- > 0) return;
    server._subscribe(ws, f);
  };
  const { clock, client, events } = setup({ server, options: { subscribeTimeoutMs: 1000 } });
  const { seqs } = collect(client, "a");
  await clock.advance(10);
  await clock.advance(1000);
  assert.equal(server.sockets[0].sent.filter((f) => f.action === "subscribe").length, 2, "sent again");
  await clock.advance(2000);
  assert.equal(events.error.at(-1).code, "subscribe_timeout");
  await clock.advance(1000); // reconnect (backoff), first subscribe there is the 4th: silent
  await clock.advance(1000); // sent again: answered
  assert.equal(client.state, "open");
  server.publish("a", {});
  await clock.advance(10);
  assert.deepEqual(seqs(), [1]);
  client.close();
});

test("an error event without a close (Node 20's refused handshake) is a failed attempt; a hung handshake times out", async () => {
  const server = new FakeServer();
  const { clock, client, events } = setup({ server, options: { connectTimeoutMs: 3000, pollAfterFailures: 100 } });
  await flushOnly();
  const ws = server.sockets[0];
  ws.readyState = 3; // the fake never opens it
  ws.onerror?.({ message: "Incorrect hash" });
  await clock.advance(10);
  assert.equal(client.state, "reconnecting");
  assert.equal(events.error[0].code, "connect_failed");
  // The next handshake hangs: neither open nor close.
  server.hang = true;
  await clock.advance(300);
  assert.equal(server.sockets.length, 2);
  await clock.advance(3000);
  assert.equal(server.sockets.length, 2, "not before the backoff");
  assert.equal(events.error.length, 2, "the hung handshake was given up");
  server.hang = false;
  await clock.advance(1000);
  assert.equal(client.state, "open");
  client.close();
});

async function flushOnly() {
  await new Promise((r) => setImmediate(r));
}

test("gap repair falls back to resubscribing when the history endpoint cannot be read", async () => {
  const { clock, server, client, events } = setup();
  server.historyStatus = 404;
  const { seqs } = collect(client, "a");
  await clock.advance(10);
  server.publish("a", {}, { drop: () => true });
  server.publish("a", {});
  await clock.advance(2100);
  assert.equal(events.error[0].status, 404);
  assert.deepEqual(seqs(), [1, 2]);
  assert.deepEqual(server.sockets[0].sent.at(-1), { action: "subscribe", entityId: "a", since: 0, epoch: "ep1" });
  client.close();
});

test("history answering 401 gets a fresh token for the next request", async () => {
  const { clock, server, client, tokens } = setup();
  const { seqs } = collect(client, "a");
  await clock.advance(10);
  server.historyStatus = 401;
  // A resubscribe answers without the replay, so only history can fill the gap.
  server.replyToSubscribe = (ws, f) =>
    ws.deliver({ type: "subscribed", entityId: f.entityId, seq: server.stream("e:a").seq, epoch: "ep1", recovered: true });
  server.publish("a", {}, { drop: () => true });
  server.publish("a", {});
  await clock.advance(2100);
  assert.equal(server.historyRequests.length, 1);
  assert.equal(server.historyRequests[0].headers.Authorization, `Bearer ${fakeJwt("alice", 1)}`);
  server.historyStatus = 0;
  await clock.advance(2100);
  assert.deepEqual(seqs(), [1, 2]);
  assert.equal(tokens(), 2, "getToken again after the 401");
  client.close();
});

test("a tab back in the foreground pings at once; a dead socket is found without waiting for the heartbeat", async () => {
  const doc = new FakeWindow();
  doc.visibilityState = "hidden";
  const { clock, server, client } = setup({ options: { document: doc, pingIntervalMs: 240_000, pongTimeoutMs: 1000 } });
  collect(client, "a");
  await clock.advance(10);
  server.answerPing = false;
  server.publish("a", {}); // the socket has been alive: it sent something
  await clock.advance(10);
  doc.visibilityState = "visible";
  doc.dispatch("visibilitychange");
  assert.deepEqual(server.sockets[0].sent.at(-1), { action: "ping" });
  server.answerPing = true;
  await clock.advance(1000);
  // No pong yet from this server, but it sent a frame within the interval:
  // the benefit of the doubt (see the old-server heartbeat test).
  assert.equal(server.sockets.length, 1);
  client.close();
  assert.equal(doc.listeners.get("visibilitychange").size, 0);
});

test("a refusal naming its entity fails that subscription only, while others are in flight", async () => {
  const server = new FakeServer();
  let heldA = null;
  server.replyToSubscribe = (ws, f) => {
    // The server's refusals of subscribe name the entity. a's reply is held
    // until b's refusal has gone out, so both are in flight when it comes.
    if (f.entityId === "a" && !heldA) {
      heldA = [ws, f];
      return;
    }
    if (f.entityId === "b") {
      ws.deliver({ type: "error", code: "forbidden", entityId: "b", message: "no grant" });
      if (heldA) server._subscribe(...heldA);
      return;
    }
    server._subscribe(ws, f);
  };
  const { clock, client, events } = setup({ server, options: { subscribeTimeoutMs: 1000 } });
  const a = collect(client, "a");
  const b = collect(client, "b");
  await clock.advance(20);
  const refusal = events.error.find((e) => e.code === "forbidden");
  assert.equal(refusal?.entityId, "b", "the error event names the refused entity");
  server.publish("a", { n: 1 });
  server.publish("b", { n: 1 });
  await clock.advance(3000);
  assert.deepEqual(a.seqs(), [1], "the other subscription is live");
  assert.deepEqual(b.seqs(), []);
  const sent = server.sockets[0].sent.filter((f) => f.action === "subscribe");
  assert.equal(sent.filter((f) => f.entityId === "b").length, 1, "a refused subscription is not sent again");
  assert.equal(client.state, "open");
  client.close();
});
