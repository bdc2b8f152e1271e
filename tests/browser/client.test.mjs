// @pushgate/client in Debian's chromium against emulators started with the
// flags each case needs. Every case asserts that the application received
// every published notification exactly once and in seq order.
//
//   PUSHGATE_EMULATOR=target/debug/pushgate-local node --test client.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchChromium } from "./chromium.mjs";
import {
  CLIENT_JS,
  startEmulator,
  startMoto,
  putEvents,
  connectionsOf,
  localToken,
  hasStreams,
  freePort,
  deleteConnection,
  sleep,
} from "./emulator.mjs";

const WAIT = 30_000;

let context;
let browser;

before(async () => {
  browser = await launchChromium("client");
  context = browser.context;
  context.setDefaultTimeout(WAIT);
  // /client.js from the emulator; from clients/js when an older emulator has no such route.
  await context.route("**/client.js", async (route) => {
    const res = await route.fetch().catch(() => null);
    if (res && res.ok() && /javascript/.test(res.headers()["content-type"] ?? "")) return route.fulfill({ response: res });
    return route.fulfill({ path: CLIENT_JS, contentType: "text/javascript; charset=utf-8" });
  });
});

after(async () => {
  await browser?.close();
});

const unique = () => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

/**
 * Runs `body` with an emulator started with `args` and a page of its origin
 * that holds a client. On failure prints the client's record and the
 * emulator's output.
 */
async function withClient(t, name, args, body) {
  const emu = await startEmulator(args, { name });
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  try {
    assert.ok(await hasStreams(emu), `${emu.historyUrl} does not answer: the emulator has no stream protocol`);
    await page.goto(`${emu.base}/_pushgate/status`);
    await page.evaluate(async () => {
      const lib = await import("/client.js");
      window.__lib = lib;
      window.__t = { got: [], states: [], recovered: [], errors: [], rollovers: 0 };
    });
    const api = {
      emu,
      page,
      /** connect({...options}); `token: {sub, grants}` fetches a fresh local token for every connection. */
      connect: (options) =>
        page.evaluate(
          ({ options }) => {
            const { token, ...rest } = options;
            const t = window.__t;
            const c = window.__lib.connect({
              ...rest,
              getToken: token
                ? async () => {
                    const res = await fetch("/_pushgate/token", {
                      method: "POST",
                      headers: { "Content-Type": "application/json" },
                      body: JSON.stringify({ ttlSecs: 3600, ...token }),
                    });
                    return (await res.json()).token;
                  }
                : undefined,
            });
            window.__c = c;
            c.on("state", (e) => t.states.push(e.state));
            c.on("recovered", (e) => t.recovered.push(e));
            c.on("error", (e) => t.errors.push(`${e.code}: ${e.message}`));
            c.on("rollover", () => (t.rollovers += 1));
          },
          { options },
        ),
      subscribe: (entityId) =>
        page.evaluate((entityId) => {
          window.__subs ??= {};
          window.__subs[entityId] = window.__c.subscribe(entityId, (n) =>
            window.__t.got.push({ seq: n.seq, id: n.id, epoch: n.epoch, data: n.data }),
          );
        }, entityId),
      /** Until the stream's position is known (the `subscribed` reply, or the first poll). */
      waitSubscribed: (entityId) => page.waitForFunction((e) => window.__subs[e].position.seq !== undefined, entityId),
      state: () => page.evaluate(() => window.__c.state),
      stats: () => page.evaluate(() => ({ ...window.__c.stats })),
      record: () => page.evaluate(() => window.__t),
      waitState: (state) => page.waitForFunction((s) => window.__c.state === s, state),
      /** Waits until `n` notifications arrived, then a little longer for any duplicate. */
      waitGot: async (n, timeout = WAIT) => {
        await page.waitForFunction((n) => window.__t.got.length >= n, n, { timeout });
        await sleep(600);
        return (await page.evaluate(() => window.__t)).got;
      },
    };
    await body(api);
    assert.deepEqual(pageErrors, [], "the page threw");
  } catch (error) {
    const record = await page.evaluate(() => ({ ...window.__t, state: window.__c?.state, stats: window.__c?.stats })).catch((e) => String(e));
    console.error(`\n[${name}] failed; client record: ${JSON.stringify(record).slice(0, 4000)}\n${emu.output().split("\n").slice(-40).join("\n")}\n`);
    throw error;
  } finally {
    await context.setOffline(false).catch(() => {});
    await page.close().catch(() => {});
    await emu.stop();
  }
}

/** Every notification exactly once, in seq order, and all `n` of them (data.i = 0..n-1). */
function assertExactlyOnceInOrder(got, n, { firstSeq = 1 } = {}) {
  const seqs = got.map((g) => g.seq);
  assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => firstSeq + i), "seqs consecutive, in order, none twice");
  assert.equal(new Set(got.map((g) => g.id)).size, n, "no id twice");
  assert.deepEqual(
    got.map((g) => g.data.i).sort((a, b) => a - b),
    Array.from({ length: n }, (_, i) => i),
    "every published notification",
  );
}

/** Publishes `count` events (data.i = from..from+count-1), `gapMs` apart. */
async function publish(base, entityId, from, count, gapMs = 50) {
  for (let i = from; i < from + count; i++) {
    await putEvents(base, [{ entityId, message: { i } }]);
    if (gapMs) await sleep(gapMs);
  }
}

test("the server deletes the connection mid-stream: reconnect with a fresh token, resume with since", async (t) => {
  await withClient(t, "deleted", ["--auth-mode", "token"], async (c) => {
    const entityId = `artist:deleted-${unique()}`;
    await c.connect({
      url: c.emu.wsUrl,
      historyUrl: c.emu.historyUrl,
      token: { sub: "alice", grants: [{ role: "subscribe", entity: "artist:*" }] },
      backoffBaseMs: 200,
    });
    await c.subscribe(entityId);
    await c.waitSubscribed(entityId);
    await publish(c.emu.base, entityId, 0, 10);
    await c.page.waitForFunction(() => window.__t.got.length >= 5);
    const [id] = await connectionsOf(c.emu.base, entityId);
    assert.ok(id, "the page's connection holds the subscription");
    const del = await deleteConnection(c.emu.base, c.emu.stage, id);
    assert.ok(del.status === 204 || del.status === 200, `DELETE @connections: ${del.status}`);
    await publish(c.emu.base, entityId, 10, 10);
    const got = await c.waitGot(20);
    assertExactlyOnceInOrder(got, 20);
    const stats = await c.stats();
    assert.ok(stats.reconnects >= 1, "reconnected");
    const now = await connectionsOf(c.emu.base, entityId);
    assert.equal(now.length, 1);
    assert.notEqual(now[0], id, "a new connection");
  });
});

test("rollover before the maximum connection duration (--max-duration-secs 3): no gap, no duplicate", async (t) => {
  await withClient(t, "rollover", ["--max-duration-secs", "3"], async (c) => {
    const entityId = `artist:rollover-${unique()}`;
    await c.connect({ url: c.emu.wsUrl, historyUrl: c.emu.historyUrl, maxConnectionMs: 3000 });
    await c.subscribe(entityId);
    await c.waitSubscribed(entityId);
    await publish(c.emu.base, entityId, 0, 70, 100); // ~7 s+: two rollovers
    const got = await c.waitGot(70);
    assertExactlyOnceInOrder(got, 70);
    const stats = await c.stats();
    assert.ok(stats.rollovers >= 2, `rolled over (${stats.rollovers})`);
    assert.equal(stats.reconnects, 0, "never lost the connection: each was replaced before the limit");
  });
});

test("the heartbeat keeps a connection open past a short idle timeout (--idle-timeout-secs 2)", async (t) => {
  await withClient(t, "idle", ["--idle-timeout-secs", "2"], async (c) => {
    const entityId = `artist:idle-${unique()}`;
    await c.connect({ url: c.emu.wsUrl, historyUrl: c.emu.historyUrl, pingIntervalMs: 600, pongTimeoutMs: 1000 });
    await c.subscribe(entityId);
    await c.waitSubscribed(entityId);
    const [before] = await connectionsOf(c.emu.base, entityId);
    await sleep(5000); // 2.5 idle timeouts without a notification
    const [after] = await connectionsOf(c.emu.base, entityId);
    assert.equal(after, before, "the same connection");
    const stats = await c.stats();
    assert.equal(stats.connects, 1);
    await publish(c.emu.base, entityId, 0, 5);
    assertExactlyOnceInOrder(await c.waitGot(5), 5);
  });
});

test("30% of pushes dropped: gaps are repaired from GET /history", async (t) => {
  // 403 from PostToConnection is logged and not retried: the push is lost.
  await withClient(t, "dropped", ["--fault-post-rate", "0.3", "--fault-post-statuses", "403"], async (c) => {
    const entityId = `artist:dropped-${unique()}`;
    await c.connect({ url: c.emu.wsUrl, historyUrl: c.emu.historyUrl, gapTimeoutMs: 500 });
    await c.subscribe(entityId);
    await c.waitSubscribed(entityId);
    await publish(c.emu.base, entityId, 0, 30, 30);
    // The last pushes may be lost with nothing after them to show the gap:
    // one more, with the fault off, reveals it.
    await fetch(`${c.emu.base}/_pushgate/faults`, { method: "DELETE" });
    await publish(c.emu.base, entityId, 30, 1, 0);
    const got = await c.waitGot(31);
    assertExactlyOnceInOrder(got, 31);
    const stats = await c.stats();
    assert.ok(stats.gapRepairs >= 1, "repaired from history");
  });
});

test("the emulator restarts on a DynamoDB store (moto) while the page stays open", async (t) => {
  const moto = await startMoto();
  if (!moto) return t.skip("no moto_server (.venv/bin/moto_server, MOTO_SERVER or PATH)");
  try {
    await withClient(t, "dynamodb", ["--dynamodb-endpoint", moto.endpoint, "--table", `client-${unique()}`], async (c) => {
      const entityId = `artist:restart-${unique()}`;
      await c.connect({ url: c.emu.wsUrl, historyUrl: c.emu.historyUrl, backoffBaseMs: 300, backoffMaxMs: 2000 });
      await c.subscribe(entityId);
      await c.waitSubscribed(entityId);
      await publish(c.emu.base, entityId, 0, 5);
      await c.page.waitForFunction(() => window.__t.got.length >= 5);
      await c.emu.restart();
      await publish(c.emu.base, entityId, 5, 5); // while the page may still be reconnecting
      const got = await c.waitGot(10, 60_000);
      assertExactlyOnceInOrder(got, 10);
      const rec = await c.record();
      assert.deepEqual(rec.recovered, [], "the stream's history survived in DynamoDB");
      assert.ok((await c.stats()).reconnects >= 1);
    });
  } finally {
    await moto.stop();
  }
});

test("the browser goes offline and back online: the client reconnects at once and catches up", async (t) => {
  await withClient(t, "offline", [], async (c) => {
    const entityId = `artist:offline-${unique()}`;
    await c.connect({ url: c.emu.wsUrl, historyUrl: c.emu.historyUrl, backoffBaseMs: 60_000, backoffMaxMs: 60_000 });
    await c.subscribe(entityId);
    await c.waitSubscribed(entityId);
    await publish(c.emu.base, entityId, 0, 5);
    await c.page.waitForFunction(() => window.__t.got.length >= 5);
    await c.page.context().setOffline(true);
    await c.page.waitForFunction(() => window.__c.state !== "open");
    await publish(c.emu.base, entityId, 5, 5); // while offline
    await sleep(300);
    await c.page.context().setOffline(false);
    // The backoff is a minute: only the online event brings it back this soon.
    const got = await c.waitGot(10, 15_000);
    assertExactlyOnceInOrder(got, 10);
    assert.equal(await c.state(), "open");
  });
});

test("WebSockets blocked: polling GET /history delivers the same notifications", async (t) => {
  await withClient(t, "polling", [], async (c) => {
    const entityId = `artist:polling-${unique()}`;
    const dead = await freePort(); // nothing listens there
    await c.connect({
      url: `ws://127.0.0.1:${dead}/${c.emu.stage}`,
      historyUrl: c.emu.historyUrl,
      backoffBaseMs: 100,
      backoffMaxMs: 1000,
      pollIntervalMs: 300,
    });
    await c.subscribe(entityId);
    await c.waitState("polling");
    await c.waitSubscribed(entityId); // the first poll has read the head
    await publish(c.emu.base, entityId, 0, 10);
    const got = await c.waitGot(10);
    assertExactlyOnceInOrder(got, 10);
    const stats = await c.stats();
    assert.ok(stats.polls >= 2);
    assert.equal(stats.connects, 0, "never connected");
  });
});
