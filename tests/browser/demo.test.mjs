// The demo page in a real browser (Debian's chromium through playwright-core)
// against a running emulator: run.sh starts the emulator and passes its demo
// page URL in PUSHGATE_URL.
//
//   PUSHGATE_URL=http://127.0.0.1:3001/ node --test demo.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BASE = process.env.PUSHGATE_URL ?? "http://127.0.0.1:3001/";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
// Generous: a loaded CI machine can be slow; nothing here measures time.
const WAIT = 30_000;

let context;
let profile;

before(async () => {
  profile = await mkdtemp(join(tmpdir(), "pushgate-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
  context.setDefaultTimeout(WAIT);
});

after(async () => {
  await context?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
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
          text("frame-log"),
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

async function frameLog(page) {
  return page.locator("#frame-log").innerText();
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
      (await frameLog(page)).includes(JSON.stringify({ type: "subscribed", entityId })),
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
    assert.match(await page.textContent("#publish-result"), new RegExp(`^published to ${room}: id \\S+, delivered to 1 connection$`));
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
