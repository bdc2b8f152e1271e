// @pushgate/client in Node (the global WebSocket: Node 22+, or Node 20 with
// --experimental-websocket) against an emulator it starts itself.
//
//   PUSHGATE_EMULATOR=target/debug/pushgate-local node --experimental-websocket --test node-client.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "../../clients/js/src/index.js";
import { startEmulator, putEvents, connectionsOf, localToken, hasStreams, deleteConnection, sleep } from "./emulator.mjs";

const unique = () => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

async function until(check, what, timeout = 30_000) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function withEmulator(t, args, body) {
  if (typeof WebSocket !== "function") return t.skip("no global WebSocket (node --experimental-websocket)");
  const emu = await startEmulator(args, { name: "node-client" });
  const clients = [];
  try {
    assert.ok(await hasStreams(emu), `${emu.historyUrl} does not answer: the emulator has no stream protocol`);
    await body(emu, (options) => {
      const c = connect({ url: emu.wsUrl, historyUrl: emu.historyUrl, ...options });
      clients.push(c);
      return c;
    });
  } catch (e) {
    console.error(emu.output().split("\n").slice(-40).join("\n"));
    throw e;
  } finally {
    for (const c of clients) c.close();
    await emu.stop();
  }
}

test("node: entity and user streams with a token, publish through the socket, resume after the server drops the connection", async (t) => {
  await withEmulator(t, ["--auth-mode", "token"], async (emu, open) => {
    const entityId = `room:node-${unique()}`;
    const grants = [{ role: "subscribe_publish", entity: "room:*" }];
    const reasons = [];
    const client = open({
      getToken: async (ctx) => {
        reasons.push(ctx.reason);
        return localToken(emu.base, "nora", grants);
      },
      backoffBaseMs: 200,
    });
    const errors = [];
    client.on("error", (e) => errors.push(e));
    const got = [];
    const user = [];
    const sub = client.subscribe(entityId, (n) => got.push(n));
    client.onUser((n) => user.push(n));
    await until(() => sub.position.seq !== undefined, "subscribed");
    assert.equal(client.userId, "nora", "the user id from the token");

    // Through EventBridge, and through the socket.
    await putEvents(emu.base, [{ entityId, message: { i: 0 } }]);
    const reply = await client.publish(entityId, { i: 1 }, { id: `retry-safe-${unique()}` });
    assert.ok(reply.type === "accepted" || reply.type === "published", JSON.stringify(reply));
    await until(() => got.length >= 2, "two notifications");

    // The server closes the connection; more is published meanwhile.
    const [id] = await connectionsOf(emu.base, entityId);
    const del = await deleteConnection(emu.base, emu.stage, id);
    assert.equal(del.status, 204, "DELETE @connections");
    for (let i = 2; i < 10; i++) await putEvents(emu.base, [{ entityId, message: { i } }]);
    await until(() => got.length >= 10, "ten notifications");
    await sleep(500);
    assert.deepEqual(got.map((n) => n.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(got.map((n) => n.data.i).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.ok(client.stats.reconnects >= 1);
    assert.ok(reasons.length >= 2, `getToken for every connection (${reasons})`);

    // The user stream.
    await putEvents(emu.base, [{ userId: "nora", message: { order: "shipped" } }, { userId: "nora", message: { order: "delivered" } }]);
    await until(() => user.length >= 2, "two user notifications");
    await sleep(300);
    assert.deepEqual(user.map((n) => n.seq), [1, 2]);
    assert.deepEqual(user.map((n) => n.data.order).sort(), ["delivered", "shipped"]);
    assert.deepEqual(errors.filter((e) => e.code !== "connect_failed"), []);
  });
});

test("node: a subscription outside the token's grants is refused once, not retried in a loop", async (t) => {
  await withEmulator(t, ["--auth-mode", "token"], async (emu, open) => {
    const client = open({ getToken: () => localToken(emu.base, "nora", [{ role: "subscribe", entity: "room:*" }]) });
    const errors = [];
    client.on("error", (e) => errors.push(e.code));
    client.subscribe("venue:1", () => {});
    await until(() => errors.includes("forbidden"), "forbidden");
    await sleep(1000);
    assert.equal(errors.filter((e) => e === "forbidden").length, 1);
    assert.equal(client.state, "open");
  });
});

test("node: resuming from a position the history no longer reaches gives a recovered event, then carries on", async (t) => {
  await withEmulator(t, ["--history-max-per-stream", "3"], async (emu, open) => {
    const entityId = `artist:recover-${unique()}`;
    const first = open({});
    const got = [];
    const sub = first.subscribe(entityId, (n) => got.push(n));
    await until(() => sub.position.seq !== undefined, "subscribed");
    await putEvents(emu.base, [{ entityId, message: { i: 0 } }]);
    await until(() => got.length === 1, "the first notification");
    const kept = sub.position; // what an application would store (e.g. in localStorage)
    first.close();

    for (let i = 1; i <= 6; i++) await putEvents(emu.base, [{ entityId, message: { i } }]);
    await until(async () => {
      const res = await fetch(`${emu.historyUrl}?entityId=${encodeURIComponent(entityId)}`);
      return (await res.json()).seq === 7;
    }, "seq 7 appended");

    const second = open({});
    const recovered = [];
    second.on("recovered", (e) => recovered.push(e));
    const later = [];
    second.subscribe(entityId, (n) => later.push(n), { since: kept.seq, epoch: kept.epoch });
    await until(() => recovered.length === 1, "a recovered event");
    assert.deepEqual(recovered[0], { entityId, recovered: false, seq: 7, epoch: kept.epoch, reason: "subscribe" });
    await putEvents(emu.base, [{ entityId, message: { i: 7 } }]);
    await until(() => later.length === 1, "the next notification");
    await sleep(300);
    assert.deepEqual(later.map((n) => n.seq), [8], "only what follows the server's seq");
  });
});
