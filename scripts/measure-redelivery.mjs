#!/usr/bin/env node
// PostToConnection calls per delivered notification under injected
// PostToConnection failures, against a running pushgate-local emulator.
//
//   node --experimental-websocket scripts/measure-redelivery.mjs http://127.0.0.1:3001 \
//     [--clients 200] [--events 50] [--fault-rate 0.3] [--statuses 429,500] \
//     [--quiet-ms 2000] [--max-wait-secs 1200] [--json]
//
// Opens N WebSocket clients to the emulator's websocketUrl, subscribes every
// one of them to the same entity (so each event fans out to N connections),
// sets the faults (PUT /_pushgate/faults), publishes E events through
// PutEvents, waits until the queue is drained (visible, delayed and
// in-flight all 0, and no frame for --quiet-ms) and prints:
//
//   - unique (client, event id) deliveries and notification frames received
//     (duplicates included);
//   - injected failures: GET /_pushgate/faults `injected.postsFailed` (the
//     same counter /_pushgate/status shows as `faults.postsFailed` in newer
//     emulators; older ones only have it on /_pushgate/faults);
//   - PostToConnection calls = frames received + injected failures. Every
//     call either queues a frame for the client (received here, as the
//     clients stay open and read) or is answered an error; injected faults
//     are the only errors expected here (410, 413, and 429 from the token
//     bucket, off by default, or from a full client buffer are not in that
//     sum, so the script checks that no client closed). Emulators whose
//     status has `postToConnection.calls` count calls themselves: that
//     counter is then used, and the sum printed beside it as a check;
//   - the DLQ count and calls / (N x E);
//   - how long after its PutEvents each (client, event) first arrived
//     (p50/p90/p99/max) and how many arrived later than 10 s (a delivery
//     that waited for a redelivery waited at least the visibility timeout;
//     a slow first pass can be late too).
//
// Works with emulators that answer subscribe with or without `seq`.
// Node 20 with --experimental-websocket (or Node 22+); no npm dependencies.

const args = process.argv.slice(2);
const opts = {
  base: null,
  clients: 200,
  events: 50,
  faultRate: 0.3,
  statuses: [429, 500],
  quietMs: 2000,
  maxWaitSecs: 1200,
  json: false,
  entity: `measure:redelivery-${Date.now().toString(36)}`,
};
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const next = () => {
    const v = args[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    return v;
  };
  switch (a) {
    case "--clients": opts.clients = Number(next()); break;
    case "--events": opts.events = Number(next()); break;
    case "--fault-rate": opts.faultRate = Number(next()); break;
    case "--statuses": opts.statuses = next().split(",").map(Number); break;
    case "--quiet-ms": opts.quietMs = Number(next()); break;
    case "--max-wait-secs": opts.maxWaitSecs = Number(next()); break;
    case "--entity": opts.entity = next(); break;
    case "--json": opts.json = true; break;
    case "-h": case "--help":
      console.log("usage: node --experimental-websocket scripts/measure-redelivery.mjs BASE_URL [--clients N] [--events E] [--fault-rate R] [--statuses 429,500] [--quiet-ms MS] [--max-wait-secs S] [--entity ID] [--json]");
      process.exit(0);
    default:
      if (a.startsWith("--") || opts.base) throw new Error(`unknown argument ${a}`);
      opts.base = a.replace(/\/+$/, "");
  }
}
opts.base ??= "http://127.0.0.1:3001";
for (const k of ["clients", "events", "quietMs", "maxWaitSecs"]) {
  if (!Number.isInteger(opts[k]) || opts[k] <= 0) throw new Error(`--${k} must be a positive integer`);
}
if (!(opts.faultRate >= 0 && opts.faultRate <= 1)) throw new Error("--fault-rate must be in 0..1");
if (typeof WebSocket === "undefined") {
  console.error("no global WebSocket: run with node --experimental-websocket (Node 20) or Node 22+");
  process.exit(2);
}

const log = (...m) => console.error(`[${new Date().toISOString().slice(11, 23)}]`, ...m);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function http(method, path, body, headers = {}) {
  const res = await fetch(opts.base + path, {
    method,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
const status = () => http("GET", "/_pushgate/status");
const injected = async () => (await http("GET", "/_pushgate/faults")).injected;

// ---- clients ---------------------------------------------------------------

let lastFrameAt = Date.now();
const clients = [];

function openClient(url, index) {
  return new Promise((resolve, reject) => {
    const c = {
      index,
      ws: new WebSocket(url),
      ids: new Map(), // event id -> first arrival (ms since epoch)
      frames: 0,
      other: 0,
      closed: null,
      subscribed: false,
    };
    const timer = setTimeout(() => reject(new Error(`client ${index}: no subscribe reply in 15 s`)), 15000);
    c.ws.addEventListener("open", () => {
      c.ws.send(JSON.stringify({ action: "subscribe", entityId: opts.entity }));
    });
    c.ws.addEventListener("message", (ev) => {
      let msg;
      try {
        msg = JSON.parse(typeof ev.data === "string" ? ev.data : Buffer.from(ev.data).toString());
      } catch {
        c.other++;
        return;
      }
      if (msg.type === "notification") {
        lastFrameAt = Date.now();
        c.frames++;
        if (!c.ids.has(msg.id)) c.ids.set(msg.id, lastFrameAt);
      } else if (msg.type === "subscribed" && msg.entityId === opts.entity) {
        // Older emulators reply {"type":"subscribed","entityId"}; newer add seq/epoch.
        c.subscribed = true;
        clearTimeout(timer);
        resolve(c);
      } else if (msg.type === "error") {
        clearTimeout(timer);
        reject(new Error(`client ${index}: ${JSON.stringify(msg)}`));
      } else {
        c.other++;
      }
    });
    c.ws.addEventListener("close", (ev) => {
      c.closed = { code: ev.code, reason: ev.reason };
      clearTimeout(timer);
      if (!c.subscribed) reject(new Error(`client ${index}: closed ${ev.code} before subscribing`));
    });
    c.ws.addEventListener("error", () => {
      if (!c.subscribed) {
        clearTimeout(timer);
        reject(new Error(`client ${index}: WebSocket error`));
      }
    });
  });
}

// ---- run -------------------------------------------------------------------

const before = await status();
const wsUrl = before.websocketUrl;
log(`emulator ${opts.base}, WebSocket ${wsUrl}, entity ${opts.entity}`);
if ((before.queue?.visible ?? 0) + (before.queue?.inFlight ?? 0) > 0) {
  throw new Error(`the queue is not empty at start: ${JSON.stringify(before.queue)}`);
}
const dlqBefore = before.dlq ?? before.queue?.deadLetters ?? 0;

// Connect in waves of 50.
for (let i = 0; i < opts.clients; i += 50) {
  const wave = [];
  for (let j = i; j < Math.min(i + 50, opts.clients); j++) wave.push(openClient(wsUrl, j));
  clients.push(...(await Promise.all(wave)));
}
log(`${clients.length} clients subscribed`);

// Faults: set, then read the counter the measurement starts from.
await http("PUT", "/_pushgate/faults", {
  postFailureRate: opts.faultRate,
  postFailureStatuses: opts.statuses,
});
const injectedBefore = await injected();
// A direct counter of PostToConnection calls, in emulators that have one.
const directCalls = (st) => (typeof st.postToConnection?.calls === "number" ? st.postToConnection.calls : null);
const callsBefore = directCalls(await status());
log(`faults: ${opts.faultRate * 100}% of PostToConnection fail with ${opts.statuses.join("/")}`);

// Publish E events, one PutEvents entry each.
const started = Date.now();
const eventIds = [];
const publishedAt = new Map(); // event id -> when PutEvents answered
for (let i = 0; i < opts.events; i++) {
  const reply = await http(
    "POST",
    "/",
    JSON.stringify({
      Entries: [
        {
          Source: before.eventSource ?? "pushgate",
          DetailType: before.detailType ?? "Entity Updated",
          Detail: JSON.stringify({ entityId: opts.entity, message: { n: i, text: "measure-redelivery" } }),
        },
      ],
    }),
    {
      "X-Amz-Target": "AWSEvents.PutEvents",
      "Content-Type": "application/x-amz-json-1.1",
    },
  );
  if (reply.FailedEntryCount) throw new Error(`PutEvents failed: ${JSON.stringify(reply)}`);
  eventIds.push(reply.Entries[0].EventId);
  publishedAt.set(reply.Entries[0].EventId, Date.now());
}
log(`${eventIds.length} events published in ${Date.now() - started} ms`);

// Wait for the queue to drain and the frames to stop.
const deadline = Date.now() + opts.maxWaitSecs * 1000;
let last;
let lastLog = 0;
for (;;) {
  last = await status();
  const q = last.queue;
  const drained = q.visible === 0 && q.inFlight === 0 && (q.delayed ?? 0) === 0;
  if (drained && Date.now() - lastFrameAt >= opts.quietMs) break;
  if (Date.now() > deadline) throw new Error(`not drained after ${opts.maxWaitSecs} s: ${JSON.stringify(q)}`);
  if (Date.now() - lastLog > 10000) {
    const frames = clients.reduce((n, c) => n + c.frames, 0);
    log(`waiting: queue ${JSON.stringify(q)}, frames ${frames}/${opts.clients * opts.events}`);
    lastLog = Date.now();
  }
  await sleep(200);
}
const elapsedMs = Date.now() - started;
const injectedAfter = await injected();

// ---- results ---------------------------------------------------------------

const expected = opts.clients * opts.events;
const frames = clients.reduce((n, c) => n + c.frames, 0);
const unique = clients.reduce((n, c) => n + c.ids.size, 0);
const foreign = clients.reduce((n, c) => n + [...c.ids.keys()].filter((id) => !publishedAt.has(id)).length, 0);
// Time from an event's PutEvents answer to its first frame at each client.
const latencies = clients
  .flatMap((c) => [...c.ids].filter(([id]) => publishedAt.has(id)).map(([id, at]) => at - publishedAt.get(id)))
  .sort((a, b) => a - b);
const pct = (q) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : null);
const lateMs = 10000;
const late = latencies.filter((l) => l > lateMs).length;
const otherFrames = clients.reduce((n, c) => n + c.other, 0);
const closed = clients.filter((c) => c.closed).length;
const postsFailed = injectedAfter.postsFailed - injectedBefore.postsFailed;
const callsSum = frames + postsFailed;
const callsAfter = directCalls(last);
const callsDirect = callsBefore !== null && callsAfter !== null ? callsAfter - callsBefore : null;
const calls = callsDirect ?? callsSum;
const dlq = (last.dlq ?? last.queue.deadLetters) - dlqBefore;
const result = {
  clients: opts.clients,
  events: opts.events,
  faultRate: opts.faultRate,
  statuses: opts.statuses,
  expectedDeliveries: expected,
  uniqueDeliveries: unique,
  missingDeliveries: expected - unique,
  framesReceived: frames,
  duplicateFrames: frames - unique,
  injectedFailures: postsFailed,
  postToConnectionCalls: calls,
  callsCountedBy: callsDirect === null ? "frames + injected" : "emulator counter",
  callsFramesPlusInjected: callsSum,
  dlq,
  pushesPerDeliveredNotification: calls / expected,
  pushesPerUniqueDelivery: unique ? calls / unique : null,
  elapsedSecs: elapsedMs / 1000,
  firstArrivalMs: { p50: pct(0.5), p90: pct(0.9), p99: pct(0.99), max: latencies.at(-1) ?? null },
  deliveriesLaterThan10s: late,
  clientsClosedEarly: closed,
  otherFrames,
  framesWithUnknownIds: foreign,
};

await http("DELETE", "/_pushgate/faults").catch(() => {});
for (const c of clients) c.ws.close(1000);

if (opts.json) {
  console.log(JSON.stringify(result));
} else {
  const f = (n) => n.toLocaleString("en-US");
  console.log(`clients (N) x events (E)                      ${opts.clients} x ${opts.events} = ${f(expected)}`);
  console.log(`unique (client, event id) deliveries          ${f(unique)}${unique < expected ? ` (${f(expected - unique)} missing)` : ""}`);
  console.log(`notification frames received (dups included)  ${f(frames)} (${f(frames - unique)} duplicates)`);
  console.log(`injected PostToConnection failures            ${f(postsFailed)}`);
  console.log(
    callsDirect === null
      ? `PostToConnection calls (frames + injected)    ${f(calls)}`
      : `PostToConnection calls (emulator's counter)   ${f(calls)} (frames + injected: ${f(callsSum)})`,
  );
  console.log(`DLQ                                           ${dlq}`);
  console.log(`pushes per delivered notification (calls/NxE) ${result.pushesPerDeliveredNotification.toFixed(3)}`);
  console.log(`elapsed                                       ${result.elapsedSecs.toFixed(1)} s`);
  const fa = result.firstArrivalMs;
  console.log(`first arrival after publish p50/p90/p99/max   ${fa.p50}/${fa.p90}/${fa.p99}/${fa.max} ms; ${f(late)} deliveries first seen later than ${lateMs / 1000} s`);
  if (closed || otherFrames || foreign) {
    console.log(`WARNING: ${closed} clients closed early, ${otherFrames} other frames, ${foreign} frames with unknown ids`);
  }
}
setTimeout(() => process.exit(0), 200);
