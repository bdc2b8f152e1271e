// The JavaScript side of `pushgate-bench cpu`: the same pushes as the Rust
// pusher, made the way AWS's samples make them (one PostToConnectionCommand
// per connection through ApiGatewayManagementApiClient), with the same
// number in flight, so that the CPU per push of the two can be compared.
//
//   node push.mjs --endpoint http://127.0.0.1:PORT/local --pushes 10000 --concurrency 64
//
// Prints one JSON line: {"pushes", "cpu_us", "wall_ms", "failures"}. The CPU
// is process.cpuUsage() (user + system, all threads of this process) across
// the timed pushes only; a warm-up runs first so that the client's lazy
// set-up (credentials, endpoint resolution, the first sockets) is excluded,
// as it is on the Rust side.
import {
  ApiGatewayManagementApiClient,
  PostToConnectionCommand,
} from "@aws-sdk/client-apigatewaymanagementapi";

function flag(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const endpoint = flag("endpoint", "http://127.0.0.1:3001/local");
const pushes = Number(flag("pushes", "10000"));
const concurrency = Number(flag("concurrency", "64"));
const warmup = Number(flag("warmup", "500"));
const payload = Buffer.from(flag("payload", "x".repeat(200)));

const client = new ApiGatewayManagementApiClient({
  endpoint,
  region: "us-east-1",
  credentials: { accessKeyId: "bench", secretAccessKey: "bench" },
  maxAttempts: 1,
});

// `count` pushes, `concurrency` at a time; returns the failures.
async function run(count) {
  let next = 0;
  let failures = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      try {
        await client.send(
          new PostToConnectionCommand({ ConnectionId: `c${i % 10000}`, Data: payload }),
        );
      } catch {
        failures++;
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  return failures;
}

await run(warmup);
const cpu0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
const failures = await run(pushes);
const wall = Number(process.hrtime.bigint() - t0) / 1e6;
const cpu = process.cpuUsage(cpu0);
console.log(
  JSON.stringify({ pushes, cpu_us: cpu.user + cpu.system, wall_ms: wall, failures }),
);
client.destroy();
