// Type-checks the declarations as an application would use them:
//   npx tsc --noEmit -p test/tsconfig.json
import connect, { type Notification, type RecoveredEvent, type ClientOptions, backoffDelay } from "@pushgate/client";

interface TicketData {
  tickets: "on sale" | "sold out";
}

const options: ClientOptions = {
  url: "wss://abc123.execute-api.eu-west-1.amazonaws.com/prod",
  historyUrl: "https://def456.execute-api.eu-west-1.amazonaws.com/history",
  getToken: async ({ reason }) => {
    const res = await fetch(`/api/pushgate-token?reason=${encodeURIComponent(reason)}`);
    return ((await res.json()) as { token: string }).token;
  },
  pingIntervalMs: 60_000,
};

const client = connect(options);

const sub = client.subscribe<TicketData>("artist:ed-sheeran", (n: Notification<TicketData>) => {
  const status: "on sale" | "sold out" = n.data.tickets;
  const seq: number | undefined = n.seq;
  console.log(status, seq, n.epoch, n.id);
});
const pos: number | undefined = sub.position.seq;

const user = client.onUser<{ status: string }>((n) => console.log(n.data.status, n.entityId));

const offState = client.on("state", (e) => {
  if (e.state === "reconnecting") console.log(`retry in ${e.delayMs} ms`);
});
client.on("recovered", (e: RecoveredEvent) => {
  // reload the entity from the application's API, then carry on
  console.log(e.entityId ?? e.userId, e.seq, e.epoch, e.reason);
});
client.on("error", (e) => console.warn(e.code, e.message));

async function publishSomething(): Promise<string> {
  const reply = await client.publish("room:1", { text: "hi" }, { id: "msg-1" });
  return reply.id;
}

const delay: number = backoffDelay(3, { baseMs: 1000 });

// @ts-expect-error: unknown event
client.on("nope", () => {});
// @ts-expect-error: url is required
connect({ getToken: () => "t" });

sub.unsubscribe();
user.unsubscribe();
offState();
client.close();
void publishSomething;
void pos;
void delay;
