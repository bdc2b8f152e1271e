// Type declarations for @pushgate/client (src/index.js).

/** A `notification` frame as the server sends it (docs/design.md). */
export interface Notification<T = unknown> {
  type: "notification";
  /** The event id. */
  id: string;
  /** The entity (for a user-stream notification: information only). */
  entityId?: string;
  /** Present when the notification belongs to the user's stream. */
  userId?: string;
  /** Position in its stream: 1, 2, 3… (absent from servers without streams). */
  seq?: number;
  /** The stream's incarnation. */
  epoch?: string;
  /** ISO 8601 time of the event. */
  time?: string;
  data: T;
  [extra: string]: unknown;
}

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "polling" | "closed";

export interface StateEvent {
  state: ConnectionState;
  previous: ConnectionState;
  /** Consecutive failed attempts so far (when reconnecting). */
  attempt?: number;
  /** The backoff before the next attempt (when reconnecting). */
  delayMs?: number;
  reason?: string;
  /** The connection's serial number (when open). */
  connection?: number;
  /** The subprotocol the server chose (when open; "" for none). */
  protocol?: string;
}

/**
 * The stream could not be replayed from where the client was: the
 * application should reload its state (from its own API), then carry on.
 * Exactly one of `entityId` / `userId` is set.
 */
export interface RecoveredEvent {
  entityId?: string;
  userId?: string;
  recovered: false;
  /** The stream's seq the client continues after. */
  seq: number;
  epoch?: string;
  /** What revealed it: a `subscribe` reply, an epoch change on a notification, or the history endpoint. */
  reason: "subscribe" | "epoch" | "history";
}

export interface ErrorEvent {
  /** A server error code (`token_expired`, `forbidden`, …) or a client one
   * (`connect_failed`, `heartbeat_timeout`, `history_failed`, `token_failed`,
   * `handler_error`, `listener_error`, `send_failed`, `http_<status>`). */
  code: string;
  message: string;
  entityId?: string;
  userId?: string;
  status?: number;
  connection?: number;
  cause?: unknown;
}

export interface FrameEvent {
  direction: "in" | "out" | "close";
  /** The frame's text (in/out). */
  text?: string;
  /** The parsed frame (in/out; null when not JSON). */
  frame?: Record<string, unknown> | null;
  /** Close code and reason (close). */
  code?: number;
  reason?: string;
  connection: number;
}

export interface RolloverEvent {
  from?: number;
  to: number;
}

export interface DuplicateEvent {
  stream: "entity" | "user";
  id?: string;
  seq?: number;
}

export interface ClientEvents {
  state: StateEvent;
  error: ErrorEvent;
  recovered: RecoveredEvent;
  notification: Notification;
  frame: FrameEvent;
  rollover: RolloverEvent;
  duplicate: DuplicateEvent;
}

export interface TokenContext {
  /** Why a token is wanted: "initial", "refused", "token_expired", "closed …", "rollover", "history", "expired", "online", … */
  reason: string;
  attempt?: number;
}

/** The subset of the WebSocket API the client uses. */
export interface WebSocketLike {
  readonly protocol: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[]): WebSocketLike;
}

export interface FetchResponseLike {
  ok: boolean;
  status: number;
  json(): Promise<any>;
}

export type FetchLike = (url: string, init?: { headers?: Record<string, string> }) => Promise<FetchResponseLike>;

export interface EventTargetLike {
  addEventListener(type: string, listener: (ev: unknown) => void): void;
  removeEventListener(type: string, listener: (ev: unknown) => void): void;
}

export interface ClientOptions {
  /** The WebSocket URL: `wss://{api}.execute-api.{region}.amazonaws.com/{stage}` (locally `ws://127.0.0.1:3001/local`). */
  url: string;
  /** Called for every (re)connect and when the history endpoint needs a token; resolve null/undefined for anonymous. */
  getToken?: (context: TokenContext) => string | null | undefined | Promise<string | null | undefined>;
  /** How the token travels: as the subprotocol pair `["pushgate.v1", token]` (default) or `?token=`. */
  tokenTransport?: "protocol" | "query";
  /** Subprotocols to offer (besides `pushgate.v1` with a token), e.g. `["websocket"]`. */
  protocols?: string[];
  /** `GET /history` URL for gap repair and the polling fallback (locally `http://127.0.0.1:3001/history`). Without it, gaps are repaired by resubscribing and there is no polling. */
  historyUrl?: string;
  /** The user whose stream `onUser` resumes (default: the token's `sub`). */
  userId?: string;

  /** Full-jitter backoff: first cap (default 500 ms), doubled per failure up to `backoffMaxMs` (default 30 s). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** Heartbeat: a `ping` every `pingIntervalMs` (default 8 min); no `pong` within `pongTimeoutMs` (default 10 s) is a dead socket. */
  pingIntervalMs?: number;
  pongTimeoutMs?: number;
  /** API Gateway's maximum connection duration (default 2 h); the client rolls over to a new connection at `rolloverMin`–`rolloverMax` (default 0.85–0.95) of it. */
  maxConnectionMs?: number;
  rolloverMin?: number;
  rolloverMax?: number;
  /** How long a rollover waits for the new connection's subscriptions (default 15 s). */
  rolloverTimeoutMs?: number;
  /** A gap in a stream that lasts this long is repaired (default 2 s). */
  gapTimeoutMs?: number;
  /** Poll the history endpoint after this many failed connects in a row (default 3). */
  pollAfterFailures?: number;
  /** Polling interval (default 2 s). */
  pollIntervalMs?: number;
  /** `limit` for history pages (default 100). */
  historyLimit?: number;
  /** A handshake not open within this long is given up (default 10 s). */
  connectTimeoutMs?: number;
  /** A `subscribe` without a reply is sent again after this long (default 10 s); the third time the connection is replaced. */
  subscribeTimeoutMs?: number;
  /** Ids remembered per stream for the by-id duplicate check (default 1000). */
  seenIdsPerStream?: number;

  /** Injection points (tests, other runtimes). */
  WebSocket?: WebSocketConstructor;
  fetch?: FetchLike;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (id: any) => void;
  random?: () => number;
  now?: () => number;
  /** Where `online`/`offline` events come from (default: `window` in browsers; `null` for none). */
  window?: EventTargetLike | null;
  /** Where `visibilitychange` comes from: a tab back in the foreground pings at once (default: `document`; `null` for none). */
  document?: (EventTargetLike & { visibilityState?: string }) | null;
}

export interface SubscribeOptions {
  /** Resume after this seq (a position the application kept), with its epoch. */
  since?: number;
  epoch?: string;
}

export interface Subscription {
  readonly entityId: string;
  /** The last seq handed to the handlers, and the stream's epoch. */
  readonly position: { seq: number | undefined; epoch: string | undefined };
  unsubscribe(): void;
}

export interface UserSubscription {
  unsubscribe(): void;
}

export interface PublishOptions {
  /** 1–128 of `A–Z a–z 0–9 . _ : -`; a retried publish with the same id is appended once (default: random). */
  id?: string;
  timeoutMs?: number;
}

export interface ClientStats {
  connects: number;
  reconnects: number;
  rollovers: number;
  recoveries: number;
  duplicates: number;
  gapRepairs: number;
  polls: number;
  delivered: number;
}

export declare class PushgateClient {
  constructor(options: ClientOptions);
  readonly state: ConnectionState;
  readonly userId: string | undefined;
  readonly stats: ClientStats;
  on<K extends keyof ClientEvents>(event: K, listener: (event: ClientEvents[K]) => void): () => void;
  off<K extends keyof ClientEvents>(event: K, listener: (event: ClientEvents[K]) => void): void;
  subscribe<T = unknown>(entityId: string, handler: (notification: Notification<T>) => void, options?: SubscribeOptions): Subscription;
  onUser<T = unknown>(handler: (notification: Notification<T>) => void): UserSubscription;
  publish(entityId: string, data: unknown, options?: PublishOptions): Promise<{ type: "accepted" | "published"; entityId: string; id: string; [k: string]: unknown }>;
  send(frame: Record<string, unknown> | string): boolean;
  reconnect(): void;
  close(): void;
}

export declare function connect(options: ClientOptions): PushgateClient;
export default connect;

export declare function backoffDelay(attempt: number, options?: { baseMs?: number; maxMs?: number; random?: () => number }): number;
export declare function tokenSubject(token: string | null | undefined): string | undefined;
export declare const VERSION: string;
