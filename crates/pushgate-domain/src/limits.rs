//! API Gateway WebSocket limits that pushgate enforces itself, so that a bad
//! message is refused with a clear reason instead of failing inside AWS.

/// Largest message API Gateway accepts or sends on a WebSocket: 128 KB.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// Largest single WebSocket frame API Gateway accepts: 32 KB.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// API Gateway closes connections idle for this long (10 minutes).
pub const IDLE_TIMEOUT_SECS: u64 = 10 * 60;
/// API Gateway's maximum connection duration (2 hours).
pub const MAX_CONNECTION_SECS: u64 = 2 * 60 * 60;
/// Default item lifetime: the maximum connection duration plus a margin.
pub const DEFAULT_TTL_SECS: u64 = MAX_CONNECTION_SECS + 5 * 60;
/// Longest `entityId` or `userId`, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Deepest JSON nesting accepted in a client frame.
pub const MAX_FRAME_DEPTH: usize = 32;
