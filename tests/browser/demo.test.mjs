// The demo page in a real browser (Debian's chromium through playwright-core)
// against a running emulator: run.sh starts the emulator and passes its demo
// page URL in PUSHGATE_URL.
//
//   PUSHGATE_URL=http://127.0.0.1:3001/ node --test demo.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { launchChromium } from "./chromium.mjs";
import { deleteConnection } from "./emulator.mjs";

const BASE = process.env.PUSHGATE_URL ?? "http://127.0.0.1:3001/";
// Generous: a loaded CI machine can be slow; nothing here measures time.
const WAIT = 30_000;
// The client module the demo page loads from /client.js.
const CLIENT_JS = join(dirname(fileURLToPath(import.meta.url)), "../../clients/js/src/index.js");

let context;
let browser;

before(async () => {
  browser = await launchChromium(
    "demo",
    // A page fulfilled by the test (PUSHGATE_DEMO_PAGE) has no address;
    // Chrome's local network access checks would block its loopback socket.
    process.env.PUSHGATE_DEMO_PAGE ? ["--disable-features=LocalNetworkAccessChecks"] : [],
  );
  context = browser.context;
  context.setDefaultTimeout(WAIT);
  // PUSHGATE_DEMO_PAGE=crates/pushgate-local/static/index.html tries a page
  // change without rebuilding the emulator (it include_str!s the page).
  if (process.env.PUSHGATE_DEMO_PAGE) {
    const page = process.env.PUSHGATE_DEMO_PAGE;
    await context.route((url) => url.href === new URL("/", BASE).href, (route) =>
      route.request().method() === "GET"
        ? route.fulfill({ path: page, contentType: "text/html; charset=utf-8" })
        : route.continue(), // PutEvents is a POST to /
    );
  }
  // The emulator serves clients/js/src/index.js at /client.js; an emulator
  // built before that route existed gets it from here instead.
  const probe = await fetch(new URL("/client.js", BASE)).catch(() => null);
  if (!probe?.ok || !/javascript/.test(probe.headers.get("content-type") ?? "")) {
    console.log("# the emulator does not serve /client.js: the test serves clients/js/src/index.js");
    await context.route("**/client.js", (route) =>
      route.fulfill({ path: CLIENT_JS, contentType: "text/javascript; charset=utf-8" }),
    );
  }
});

after(async () => {
  await browser?.close();
});

/** A unique suffix, so a test never sees another run's data. */
const unique = () => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

/**
 * Opens the demo page and runs `body(page)`. On failure: a screenshot in a
 * temp dir, its path, and the page's frame log and result lines are printed.
 */
async function onDemoPage(name, body) {
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  try {
    await page.goto(BASE);
    // The status poll has answered: the stage is known and the URL filled in.
    await page.waitForFunction(() => document.getElementById("meta-stage").textContent !== "…");
    await body(page);
    assert.deepEqual(pageErrors, [], "the page threw");
  } catch (error) {
    const shot = join(await mkdtemp(join(tmpdir(), "pushgate-browser-failure-")), `${name}.png`);
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    const dump = await page
      .evaluate(() => {
        const text = (id) => document.getElementById(id)?.innerText ?? "";
        return [
          `connection: ${text("conn-state")}`,
          `subscribe:  ${text("subscribe-result")}`,
          `publish:    ${text("publish-result")}`,
          `putEvents:  ${text("pe-result")}`,
          `token:      ${text("token-result")}`,
          "frame log:",
          ...[...document.querySelectorAll('#frame-log [data-testid="frame"]')].map(
            (f) => "  " + [...f.children].map((c) => c.textContent).join(" "),
          ),
        ].join("\n");
      })
      .catch((e) => `(could not read the page: ${e})`);
    console.error(`\n[${name}] failed; screenshot: ${shot}\n${dump}\npage errors: ${JSON.stringify(pageErrors)}\n`);
    throw error;
  } finally {
    await page.close().catch(() => {});
  }
}

const byTestId = (page, id) => page.locator(`[data-testid="${id}"]`);

async function connectAndWait(page) {
  await page.click("#connect");
  await page.waitForFunction(() => document.getElementById("conn-pill").textContent === "connected");
}

/** Subscribes through the page and waits for the reply. */
async function subscribe(page, entityId) {
  await page.fill("#entity", entityId);
  await page.click("#subscribe");
  await page.waitForFunction(
    () => /^(subscribed to|error )/.test(document.getElementById("subscribe-result").textContent),
  );
  return page.textContent("#subscribe-result");
}

/** The frame log's text, one frame a line ("time arrow text"). */
async function frameLog(page) {
  return page.evaluate(() =>
    [...document.querySelectorAll('#frame-log [data-testid="frame"]')]
      .map((f) => [...f.children].map((c) => c.textContent).join(" "))
      .join("\n"),
  );
}

test("subscribe, PutEvents from the page, see the notification; status and unsubscribe", async () => {
  await onDemoPage("put-events", async (page) => {
    const entityId = `artist:browser-${unique()}`;
    const message = { tickets: "on sale", run: unique() };
    const url = new URL(BASE);

    assert.equal(await page.inputValue("#ws-url"), `ws://${url.host}/local`);
    await page.selectOption("#connect-mode", "none");
    await connectAndWait(page);
    assert.match(await page.textContent("#conn-state"), /Connected \(no subprotocol\)/);

    assert.equal(await subscribe(page, entityId), `subscribed to ${entityId}`);
    assert.ok(
      (await frameLog(page)).includes(JSON.stringify({ type: "subscribed", entityId }).slice(0, -1)),
      "the subscribed reply is in the frame log",
    );
    await byTestId(page, "my-subscription").filter({ hasText: entityId }).waitFor();

    // The status panel shows this connection with its subscription, marked as this tab's.
    const row = byTestId(page, "status-connection").filter({
      has: page.locator(`[data-testid="status-subscription"]`, { hasText: entityId }),
    });
    await row.waitFor();
    assert.equal(await row.count(), 1);
    await page.waitForFunction(
      (id) =>
        [...document.querySelectorAll('[data-testid="status-connection"]')].some(
          (r) => r.dataset.mine === "true" && r.innerText.includes(id),
        ),
      entityId,
    );

    // The EventBridge console stand-in: PutEvents with the detail as a string.
    assert.equal(await page.inputValue("#pe-source"), "pushgate");
    assert.equal(await page.inputValue("#pe-detail-type"), "Entity Updated");
    await page.fill("#pe-detail", JSON.stringify({ entityId, message }));
    await page.click("#pe-send");
    const eventIdNode = byTestId(page, "pe-event-id");
    await eventIdNode.waitFor();
    const eventId = (await eventIdNode.textContent()).trim();
    assert.match(eventId, /^[0-9a-f-]{36}$/, "PutEvents answered an event id");
    assert.match(await page.textContent("#pe-result"), /FailedEntryCount 0/);

    // The notification arrives on the socket and is shown with its id.
    const note = page.locator(`[data-testid="notification"][data-id="${eventId}"]`);
    await note.waitFor();
    assert.equal(await note.getAttribute("data-entity-id"), entityId);
    assert.equal(await note.locator('[data-testid="notification-entity"]').textContent(), entityId);
    assert.deepEqual(JSON.parse(await note.locator('[data-testid="notification-data"]').textContent()), message);
    assert.equal(await page.textContent("#notif-count"), "1");
    assert.equal(await page.textContent("#dup-count"), "0");
    const logged = await frameLog(page);
    assert.ok(logged.includes('"type":"notification"') && logged.includes(eventId), "the notification frame is logged");

    // The command-line equivalents name the real port.
    assert.ok((await page.textContent("#cli-aws")).includes(`--endpoint-url http://${url.host}`));
    assert.ok((await page.textContent("#cli-wscat")).includes(`ws://${url.host}/local`));

    // Unsubscribe: the reply, and the status panel loses the subscription.
    await page.fill("#entity", entityId);
    await page.click("#unsubscribe");
    await page.waitForFunction(
      (id) => document.getElementById("subscribe-result").textContent === `unsubscribed from ${id}`,
      entityId,
    );
    assert.ok((await frameLog(page)).includes(JSON.stringify({ type: "unsubscribed", entityId })));
    await page.waitForFunction(
      (id) =>
        ![...document.querySelectorAll('[data-testid="status-subscription"]')].some((s) => s.textContent === id),
      entityId,
    );
    assert.equal(await byTestId(page, "my-subscription").count(), 0);

    await page.click("#disconnect");
    await page.waitForFunction(() => document.getElementById("conn-pill").textContent === "closed 1000");
    assert.match(await page.textContent("#conn-state"), /Closed: code 1000/);
  });
});

/** The emulator's status, read from node (not through the page). */
async function emulatorStatus() {
  const res = await fetch(new URL("/_pushgate/status", BASE));
  assert.equal(res.status, 200);
  return res.json();
}

async function setFaults(faults) {
  const res = await fetch(new URL("/_pushgate/faults", BASE), {
    method: faults ? "PUT" : "DELETE",
    headers: { "Content-Type": "application/json" },
    body: faults ? JSON.stringify(faults) : undefined,
  });
  assert.equal(res.status, 200, `faults: ${await res.text()}`);
}

test("a record that keeps failing for another tab shows in the DLQ panel; this tab shows its notification once", async () => {
  await onDemoPage("duplicates-dlq", async (page) => {
    const entityId = `artist:dup-${unique()}`;
    const message = { tickets: "sold out", run: unique() };

    await page.selectOption("#connect-mode", "none");
    await connectAndWait(page);
    assert.equal(await subscribe(page, entityId), `subscribed to ${entityId}`);

    // A second tab subscribes too; every push to it fails with 500, so the
    // record is received again and again until it moves to the DLQ. The
    // notifier keeps its progress, so a redelivery pushes only to the tab it
    // failed for; whatever does reach this tab twice is dropped by seq.
    const before = new Set((await emulatorStatus()).connections.map((c) => c.connectionId));
    const other = await context.newPage();
    try {
      await other.goto(BASE);
      await other.waitForFunction(() => document.getElementById("meta-stage").textContent !== "…");
      await other.selectOption("#connect-mode", "none");
      await connectAndWait(other);
      assert.equal(await subscribe(other, entityId), `subscribed to ${entityId}`);
      const fresh = (await emulatorStatus()).connections.filter((c) => !before.has(c.connectionId));
      assert.equal(fresh.length, 1, "one new connection: the second tab's");
      const otherId = fresh[0].connectionId;
      await setFaults({ connections: { [otherId]: 500 } });

      await page.fill("#pe-detail", JSON.stringify({ entityId, message }));
      await page.click("#pe-send");
      const eventIdNode = byTestId(page, "pe-event-id");
      await eventIdNode.waitFor();
      const eventId = (await eventIdNode.textContent()).trim();

      // Shown once.
      const note = page.locator(`[data-testid="notification"][data-id="${eventId}"]`);
      await note.waitFor();
      assert.deepEqual(JSON.parse(await note.locator('[data-testid="notification-data"]').textContent()), message);

      // After max receives the record is in the DLQ, and the panel shows it.
      await page.waitForFunction(
        (id) =>
          [...document.querySelectorAll('[data-testid="dlq-message"]')].some((m) => m.textContent.includes(id)),
        eventId,
        { timeout: 90_000 },
      );
      assert.ok(Number(await page.textContent("#q-dead")) >= 1);
      assert.ok(Number(await page.textContent("#dlq-count")) >= 1);
      assert.equal(await note.count(), 1, "a duplicate is never shown twice");
      assert.equal(await page.textContent("#notif-count"), "1");

      // This tab's connection is marked, and never the other tab's.
      const mine = page.locator('[data-testid="status-connection"][data-mine="true"]');
      await mine.waitFor();
      assert.equal(await mine.count(), 1);
      assert.notEqual(await mine.getAttribute("data-connection-id"), otherId);
    } finally {
      await setFaults(null);
      await other.close().catch(() => {});
    }
  });
});

test("token from the page, pushgate.v1 subprotocol, publish through the socket, forbidden outside the grant", async () => {
  await onDemoPage("token", async (page) => {
    const room = `room:${unique()}`;
    const data = { msg: "hello room", run: unique() };

    // Get a token with a subscribe_publish grant on room:*.
    await page.fill("#token-sub", "bob");
    await page.fill("#token-ttl", "600");
    const grant = byTestId(page, "grant").first();
    await grant.locator("select").selectOption("subscribe_publish");
    await grant.locator("input").fill("room:*");
    await page.click("#token-get");
    await page.waitForFunction(() => /put in the token field|No token|did not answer/.test(document.getElementById("token-result").textContent));
    assert.match(await page.textContent("#token-result"), /^Token for bob \(subscribe_publish room:\*\) put in the token field/);
    const token = await page.inputValue("#token");
    assert.match(token, /^eyJ[\w-]*\.[\w-]*\.[\w-]*$/, "a JWT in the token field");
    assert.equal(await page.inputValue("#connect-mode"), "pushgate.v1");

    await connectAndWait(page);
    assert.match(await page.textContent("#conn-state"), /Connected \(subprotocol pushgate\.v1\)/);

    assert.equal(await subscribe(page, room), `subscribed to ${room}`);

    // Publish through the socket: the reply, then the notification.
    await page.fill("#publish-entity", room);
    await page.fill("#publish-data", JSON.stringify(data));
    await page.click("#publish");
    await page.waitForFunction(() => /^(published to|error )/.test(document.getElementById("publish-result").textContent));
    assert.match(
      await page.textContent("#publish-result"),
      new RegExp(`^published to ${room}: id \\S+, (delivered to 1 connection|accepted \\(delivery follows\\))$`),
    );
    const note = page.locator(`[data-testid="notification"][data-entity-id="${room}"]`);
    await note.waitFor();
    assert.deepEqual(JSON.parse(await note.locator('[data-testid="notification-data"]').textContent()), data);

    // Outside the grant: forbidden.
    const answer = await subscribe(page, "venue:1");
    assert.match(answer, /^error forbidden: /);
    assert.ok((await frameLog(page)).includes('"code":"forbidden"'));

    // The token is never shown: not in the frame log, not in the page's text.
    assert.ok(!(await frameLog(page)).includes(token), "the frame log masks the token");
    assert.ok(!(await page.locator("body").innerText()).includes(token), "the page shows no token");

    await page.click("#disconnect");
    await page.waitForFunction(() => document.getElementById("conn-pill").textContent === "closed 1000");

    // A token with a broken signature: the handshake is refused (1006 in browsers).
    const [head, claims, signature] = token.split(".");
    const flipped = signature[0] === "A" ? "B" : "A";
    await page.fill("#token", `${head}.${claims}.${flipped}${signature.slice(1)}`);
    await page.click("#connect");
    await page.waitForFunction(() => document.getElementById("conn-pill").textContent === "refused");
    assert.match(await page.textContent("#conn-state"), /Handshake refused \(check the token\)/);
  });
});

test("the server drops this tab's connection: the page shows the reconnect and the subscription carries on", async () => {
  await onDemoPage("reconnect", async (page) => {
    const entityId = `artist:reconnect-${unique()}`;
    await page.selectOption("#connect-mode", "none");
    await connectAndWait(page);
    assert.equal(await subscribe(page, entityId), `subscribed to ${entityId}`);
    assert.equal(await page.textContent("#cs-state"), "open");
    assert.equal(await page.textContent("#cs-reconnects"), "0");

    const [id] = (await emulatorStatus()).connections
      .filter((c) => (c.subscriptions ?? []).includes(entityId))
      .map((c) => c.connectionId);
    assert.ok(id, "the tab's connection");
    const stage = (await emulatorStatus()).stage ?? "local";
    const del = await deleteConnection(BASE, stage, id);
    assert.ok(del.ok, `DELETE @connections: ${del.status}`);

    // Reconnected with backoff, the subscription resumed with since.
    await page.waitForFunction(() => document.getElementById("cs-reconnects").textContent === "1");
    await page.waitForFunction(() => document.getElementById("conn-pill").textContent === "connected");
    assert.match(await page.textContent("#conn-state"), /Reconnected 1×/);
    assert.ok((await frameLog(page)).includes(`"entityId":"${entityId}","since":0`), "resubscribed with since");
    await byTestId(page, "my-subscription").filter({ hasText: entityId }).waitFor();

    // A notification published now arrives once.
    await page.fill("#pe-detail", JSON.stringify({ entityId, message: { after: "reconnect" } }));
    await page.click("#pe-send");
    await page.locator(`[data-testid="notification"][data-entity-id="${entityId}"]`).waitFor();
    assert.equal(await page.textContent("#notif-count"), "1");
    await page.click("#disconnect");
    await page.waitForFunction(() => document.getElementById("conn-pill").textContent === "closed 1000");
  });
});
