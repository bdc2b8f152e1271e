// Starts and stops pushgate-local emulators (and moto) for the client tests,
// each with its own flags on a free port on 127.0.0.1; stops them by PID.
import { spawn, spawnSync } from "node:child_process";
import { createHash, createHmac } from "node:crypto";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");

export const EMULATOR = process.env.PUSHGATE_EMULATOR ?? join(process.env.CARGO_TARGET_DIR ?? join(root, "target"), "debug/pushgate-local");
export const CLIENT_JS = join(root, "clients/js/src/index.js");

const live = new Set();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/** A free TCP port on 127.0.0.1 (for processes that cannot be told port 0). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function watch(child, name) {
  const out = [];
  const onData = (d) => {
    out.push(...String(d).split("\n").filter(Boolean));
    if (out.length > 400) out.splice(0, out.length - 400);
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  live.add(child);
  child.once("exit", () => live.delete(child));
  return {
    output: () => out.map((l) => `[${name}] ${l}`).join("\n"),
    lines: out,
  };
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(t);
}

/**
 * Starts an emulator; resolves once it printed its URLs.
 * @returns {Promise<{base: string, port: number, wsUrl: string, historyUrl: string, stop: () => Promise<void>, restart: (args?: string[]) => Promise<void>, output: () => string, args: string[]}>}
 */
export async function startEmulator(args = [], { port = 0, name = "emulator" } = {}) {
  if (!existsSync(EMULATOR)) throw new Error(`no emulator binary at ${EMULATOR} (cargo build -p pushgate-local)`);
  const emu = { args, port, name };
  const launch = async (withArgs, onPort) => {
    const child = spawn(EMULATOR, ["--port", String(onPort), ...withArgs], {
      env: {
        AWS_REGION: "us-east-1",
        AWS_ACCESS_KEY_ID: "local",
        AWS_SECRET_ACCESS_KEY: "local",
        AWS_EC2_METADATA_DISABLED: "true",
        ...process.env,
        NO_COLOR: "1",
        RUST_LOG: process.env.RUST_LOG ?? "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const log = watch(child, name);
    const base = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: no 'demo page' line within 30 s\n${log.output()}`)), 30_000);
      const check = () => {
        const line = log.lines.find((l) => l.startsWith("pushgate-local: demo page "));
        if (line) {
          clearTimeout(timer);
          child.stdout.off("data", check);
          resolve(line.match(/http:\/\/127\.0\.0\.1:\d+/)[0]);
        }
      };
      child.stdout.on("data", check);
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (${code}) before printing its URLs\n${log.output()}`));
      });
    });
    emu.child = child;
    emu.log = log;
    emu.base = base;
    emu.port = Number(new URL(base).port);
    const status = await (await fetch(`${base}/_pushgate/status`)).json();
    emu.stage = status.stage ?? "local";
    emu.wsUrl = `ws://127.0.0.1:${emu.port}/${emu.stage}`;
    emu.historyUrl = `${base}/history`;
  };
  await launch(args, port);
  emu.stop = () => stopChild(emu.child);
  /** Stops it and starts it again on the same port (the page keeps its URL). */
  emu.restart = async (newArgs = emu.args) => {
    await stopChild(emu.child);
    const previous = emu.log.output();
    await launch(newArgs, emu.port);
    const now = emu.log;
    emu.log = { output: () => previous + "\n--- restarted ---\n" + now.output(), lines: now.lines };
  };
  emu.output = () => emu.log.output();
  return emu;
}

/** The moto server: `MOTO_SERVER`, else .venv/bin/moto_server, else moto_server on PATH; null when none. */
export function motoBinary() {
  const candidates = [process.env.MOTO_SERVER, join(root, ".venv/bin/moto_server")].filter(Boolean);
  for (const c of candidates) if (existsSync(c)) return c;
  const which = spawnSync("sh", ["-c", "command -v moto_server"], { encoding: "utf8" });
  return which.status === 0 ? which.stdout.trim() : null;
}

/**
 * moto answering one request at a time (tests/moto/serial_server.py, run by
 * the Python next to the moto binary), as the Rust tests of concurrent
 * conditional writes run it: moto's threaded server lets two transactions
 * guarded by the same condition both succeed (two notifications with one
 * seq), which real DynamoDB never allows. The emulator still runs several
 * notifier invocations at once against it.
 */
export async function startMoto() {
  const bin = motoBinary();
  if (!bin) return null;
  const venvPython = join(dirname(bin), "python");
  const python = existsSync(venvPython) ? venvPython : "python3";
  const port = await freePort();
  const child = spawn(python, [join(root, "tests/moto/serial_server.py"), "-H", "127.0.0.1", "-p", String(port)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log = watch(child, "moto");
  const endpoint = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`moto exited\n${log.output()}`);
    try {
      await fetch(endpoint);
      return { endpoint, stop: () => stopChild(child), output: log.output };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`moto did not answer within 30 s\n${log.output()}`);
}

/** PutEvents to the emulator, as a producer does. Returns the event ids. */
export async function putEvents(base, details) {
  const res = await fetch(base + "/", {
    method: "POST",
    headers: { "X-Amz-Target": "AWSEvents.PutEvents", "Content-Type": "application/x-amz-json-1.1" },
    body: JSON.stringify({
      Entries: details.map((d) => ({ Source: "pushgate", DetailType: "Entity Updated", Detail: JSON.stringify(d) })),
    }),
  });
  const body = await res.json();
  if (!res.ok || body.FailedEntryCount) throw new Error(`PutEvents: ${res.status} ${JSON.stringify(body)}`);
  return body.Entries.map((e) => e.EventId);
}

/** Connections the emulator holds that are subscribed to `entityId`. */
export async function connectionsOf(base, entityId) {
  const s = await (await fetch(`${base}/_pushgate/status`)).json();
  return (s.connections ?? []).filter((c) => (c.subscriptions ?? []).includes(entityId)).map((c) => c.connectionId);
}

export async function setFaults(base, faults) {
  const res = await fetch(`${base}/_pushgate/faults`, {
    method: faults ? "PUT" : "DELETE",
    headers: { "Content-Type": "application/json" },
    body: faults ? JSON.stringify(faults) : undefined,
  });
  if (!res.ok) throw new Error(`faults: ${res.status} ${await res.text()}`);
}

export async function localToken(base, sub, grants, ttlSecs = 3600) {
  const res = await fetch(`${base}/_pushgate/token`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sub, grants, ttlSecs }),
  });
  if (!res.ok) throw new Error(`token: ${res.status} ${await res.text()}`);
  return (await res.json()).token;
}

/** Does this emulator speak the stream protocol (seq in `subscribed`, GET /history)? */
export async function hasStreams(emu) {
  const res = await fetch(`${emu.historyUrl}?entityId=probe:streams`).catch(() => null);
  if (!res || ![200, 400, 401, 403].includes(res.status)) return false;
  const body = await res.json().catch(() => null);
  return !!body && (Number.isInteger(body.seq) || typeof body.code === "string");
}

const sha256Hex = (data) => createHash("sha256").update(data).digest("hex");
const hmac = (key, data) => createHmac("sha256", key).update(data).digest();
const rfc3986 = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());

/**
 * A `@connections` call signed with SigV4 for `execute-api` in us-east-1
 * with the emulator's own key (`local`/`local`), which it verifies, as API
 * Gateway verifies every call to that API. The canonical path encodes each
 * already-encoded segment again, as SigV4 does for every service but S3.
 */
export async function signedFetch(url, { method = "GET", body = "" } = {}) {
  const u = new URL(url);
  const amzDate = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  const day = amzDate.slice(0, 8);
  const scope = `${day}/us-east-1/execute-api/aws4_request`;
  const canonical = [
    method,
    u.pathname.split("/").map(rfc3986).join("/"),
    u.searchParams.toString(),
    `host:${u.host}\nx-amz-date:${amzDate}\n`,
    "host;x-amz-date",
    sha256Hex(body),
  ].join("\n");
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, sha256Hex(canonical)].join("\n");
  let key = hmac("AWS4local", day);
  for (const part of ["us-east-1", "execute-api", "aws4_request"]) key = hmac(key, part);
  const signature = createHmac("sha256", key).update(toSign).digest("hex");
  return fetch(u, {
    method,
    body: method === "GET" || method === "DELETE" ? undefined : body,
    headers: {
      "x-amz-date": amzDate,
      authorization: `AWS4-HMAC-SHA256 Credential=local/${scope}, SignedHeaders=host;x-amz-date, Signature=${signature}`,
    },
  });
}

/** DELETE @connections/{id}: API Gateway closes the connection. */
export function deleteConnection(base, stage, id) {
  return signedFetch(new URL(`/${stage}/@connections/${encodeURIComponent(id)}`, base), { method: "DELETE" });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
