//! Test and benchmark support shared by the workspace's crates, so that
//! there is one moto launcher rather than a copy per crate.
//!
//! - [`Moto`]: a moto server (DynamoDB's API in Python) started on a free
//!   127.0.0.1 port for as long as the value lives.
//! - [`free_port`] and [`wait_for_port`]: the two halves of starting any
//!   child server on the loopback.
//! - [`FIXED_NOW_S`] / [`FIXED_NOW_MS`]: one fixed "now", for code that takes
//!   the time as an argument (the store, the token verifier).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A fixed "now" in epoch seconds (2026-11-22T10:00:00Z), far enough ahead
/// that records written with it do not expire while a test runs against a
/// real server with TTL, and fixed so that expiry arithmetic is repeatable.
pub const FIXED_NOW_S: i64 = 1_795_341_600;

/// [`FIXED_NOW_S`] in milliseconds, the unit of the records' `…At` fields.
pub const FIXED_NOW_MS: i64 = FIXED_NOW_S * 1000;

/// How long [`Moto::try_start`] waits for the server to accept connections:
/// a cold Python start on a busy two-core machine takes several seconds.
pub const MOTO_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a helper failed.
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// A port of 127.0.0.1 that was free a moment ago: the OS picks it for a
/// listener that is then closed. For child processes that take a port
/// number rather than a listener. Another process could take it in
/// between; on a test machine that race is rare, and the caller's
/// [`wait_for_port`] then fails loudly rather than talking to a stranger for
/// long.
pub fn free_port() -> Result<u16, Error> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error(format!("no free port on 127.0.0.1: {e}")))
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`,
/// polling every 100 ms, for at most `timeout`.
pub fn wait_for_port(port: u16, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(Error(format!(
                "nothing accepted connections on 127.0.0.1:{port} within {timeout:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The moto server program: `$MOTO_SERVER`, else the workspace's
/// `.venv/bin/moto_server` (what `scripts/test` installs), else
/// `moto_server` on `PATH`. Looked up at run time, not build time, so that
/// a test binary built before the virtualenv existed still finds it.
pub fn moto_program() -> String {
    if let Ok(program) = std::env::var("MOTO_SERVER") {
        return program;
    }
    let venv = workspace_root().join(".venv/bin/moto_server");
    if venv.is_file() {
        venv.display().to_string()
    } else {
        "moto_server".into()
    }
}

/// The workspace root (this crate lives in `crates/pushgate-testkit`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A moto server child process, killed (by its own pid, never by name) and
/// reaped when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl Moto {
    /// Starts [`moto_program`] on a free port of 127.0.0.1 and waits until it
    /// accepts connections.
    pub fn try_start() -> Result<Moto, Error> {
        Self::try_start_program(moto_program(), Vec::new())
    }

    /// Starts moto answering one request at a time
    /// (`tests/moto/serial_server.py`, with the virtualenv's Python next to
    /// [`moto_program`]), for tests of concurrent conditional writes: moto's
    /// threaded server does not isolate transactions from each other, which
    /// real DynamoDB does.
    pub fn try_start_serial() -> Result<Moto, Error> {
        let moto = PathBuf::from(moto_program());
        let python = moto
            .parent()
            .map(|bin| bin.join("python"))
            .filter(|p| p.is_file())
            .map_or_else(|| "python3".to_owned(), |p| p.display().to_string());
        let script = workspace_root().join("tests/moto/serial_server.py");
        Self::try_start_program(python, vec![script.display().to_string()])
    }

    /// [`Moto::try_start_serial`] for tests: panics with the reason.
    ///
    /// # Panics
    ///
    /// When the server cannot be started.
    pub fn start_serial() -> Moto {
        match Self::try_start_serial() {
            Ok(moto) => moto,
            Err(e) => panic!("{e}"),
        }
    }

    fn try_start_program(program: String, mut args: Vec<String>) -> Result<Moto, Error> {
        let port = free_port()?;
        args.extend([
            "-H".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ]);
        let child = Command::new(&program)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error(format!(
                    "cannot start {program} ({e}); run scripts/test once (it installs \
                     moto[server] into .venv) or set MOTO_SERVER"
                ))
            })?;
        // Owned from here on, so an early return below still kills it.
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        wait_for_port(port, MOTO_START_TIMEOUT)
            .map_err(|e| Error(format!("{program} did not start: {e}")))?;
        Ok(moto)
    }

    /// [`Moto::try_start`] for tests: panics with the reason.
    ///
    /// # Panics
    ///
    /// When the server cannot be started.
    pub fn start() -> Moto {
        match Self::try_start() {
            Ok(moto) => moto,
            Err(e) => panic!("{e}"),
        }
    }

    /// A DynamoDB client for this server (region us-east-1, dummy
    /// credentials, the latest behaviour version).
    #[cfg(feature = "dynamodb")]
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(self.dynamodb_config().build())
    }

    /// The configuration [`Moto::dynamodb`] builds its client from, for a
    /// caller that adds to it (an interceptor, say).
    #[cfg(feature = "dynamodb")]
    pub fn dynamodb_config(&self) -> aws_sdk_dynamodb::config::Builder {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_port_can_be_bound_and_is_then_waited_for() {
        let port = free_port().expect("a port");
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("still free");
        wait_for_port(port, Duration::from_secs(1)).expect("accepting");
        drop(listener);
    }

    #[test]
    fn waiting_on_a_closed_port_times_out() {
        let port = free_port().expect("a port");
        assert!(wait_for_port(port, Duration::from_millis(150)).is_err());
    }

    #[test]
    fn the_fixed_clock_agrees_with_itself() {
        assert_eq!(FIXED_NOW_MS / 1000, FIXED_NOW_S);
    }
}
