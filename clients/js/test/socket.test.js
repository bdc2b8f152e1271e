// The client over real WebSockets and real timers, against test/mock-server.js
// (Node's global WebSocket: Node 22+, or Node 20 with --experimental-websocket).
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../src/index.js";
import { startMockServer } from "./mock-server.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const range = (n) => Array.from({ length: n }, (_, i) => i + 1);

async function until(check, what, timeout = 10_000) {
  const end = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function scenario(t, serverOptions, clientOptions, body) {
  if (typeof WebSocket !== "function") return t.skip("no global WebSocket (node --experimental-websocket)");
  const server = await startMockServer(serverOptions);
  const client = connect({ url: server.wsUrl, historyUrl: server.historyUrl, window: null, ...clientOptions });
  const got = [];
  client.subscribe("artist:x", (n) => got.push(n));
  try {
    await body({ server, client, got });
  } finally {
    client.close();
    await server.close();
  }
}

function assertOnceInOrder(got, n) {
  assert.deepEqual(got.map((g) => g.seq), range(n));
  assert.equal(new Set(got.map((g) => g.id)).size, n);
}

test("socket: the server drops the connection mid-stream; resumed with since, nothing lost or doubled", async (t) => {
  await scenario(t, {}, { backoffBaseMs: 50 }, async ({ server, client, got }) => {
    await until(() => client.state === "open", "open");
    for (let i = 0; i < 40; i++) {
      server.publish("artist:x", { i });
      if (i === 15 || i === 30) server.dropAll();
      await sleep(5);
    }
    await until(() => got.length >= 40, "40 notifications");
    await sleep(100);
    assertOnceInOrder(got, 40);
    assert.ok(client.stats.reconnects >= 2);
  });
});

test("socket: rollover before the maximum duration, twice, without a gap or a duplicate", async (t) => {
  await scenario(t, { maxDurationMs: 1000 }, { maxConnectionMs: 1000, pingIntervalMs: 60_000 }, async ({ server, client, got }) => {
    await until(() => client.state === "open", "open");
    for (let i = 0; i < 120; i++) {
      server.publish("artist:x", { i });
      await sleep(20);
    }
    await until(() => got.length >= 120, "120 notifications");
    await sleep(100);
    assertOnceInOrder(got, 120);
    assert.ok(client.stats.rollovers >= 2, `rollovers: ${client.stats.rollovers}`);
    assert.equal(client.stats.reconnects, 0, "never dropped by the server");
  });
});

test("socket: the heartbeat keeps the connection past the idle timeout", async (t) => {
  await scenario(t, { idleTimeoutMs: 400 }, { pingIntervalMs: 150, pongTimeoutMs: 500 }, async ({ server, client, got }) => {
    await until(() => client.state === "open", "open");
    await sleep(1500);
    assert.equal(server.stats.connects, 1);
    assert.ok(server.stats.pings >= 5);
    server.publish("artist:x", {});
    await until(() => got.length === 1, "a notification");
  });
});

test("socket: 30% of pushes dropped; gaps repaired from /history", async (t) => {
  await scenario(t, { dropRate: 0.3 }, { gapTimeoutMs: 150 }, async ({ server, client, got }) => {
    await until(() => client.state === "open", "open");
    for (let i = 0; i < 60; i++) {
      server.publish("artist:x", { i });
      await sleep(3);
    }
    server.options.dropRate = 0;
    server.publish("artist:x", { last: true });
    await until(() => got.length >= 61, "61 notifications");
    await sleep(100);
    assertOnceInOrder(got, 61);
    assert.ok(server.stats.dropped > 5);
    assert.ok(client.stats.gapRepairs >= 1);
  });
});

test("socket: refused handshakes fall back to polling; back to the socket when it works, seamlessly", async (t) => {
  await scenario(
    t,
    { refuse: true },
    { backoffBaseMs: 100, backoffMaxMs: 400, pollIntervalMs: 100, pollAfterFailures: 2 },
    async ({ server, client, got }) => {
      await until(() => client.state === "polling", "polling");
      await sleep(150); // the head is read
      for (let i = 0; i < 10; i++) {
        server.publish("artist:x", { i });
        await sleep(30);
      }
      await until(() => got.length >= 10, "10 polled notifications");
      assert.ok(server.stats.refused >= 2);
      server.options.refuse = false;
      await until(() => client.state === "open", "open", 5000);
      const polls = server.stats.historyRequests;
      for (let i = 10; i < 20; i++) {
        server.publish("artist:x", { i });
        await sleep(10);
      }
      await until(() => got.length >= 20, "20 notifications");
      await sleep(300);
      assertOnceInOrder(got, 20);
      assert.ok(server.stats.historyRequests <= polls + 1, "polling stopped");
    },
  );
});
