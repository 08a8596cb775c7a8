//! Logging setup: `tracing` to stderr, filtered by `RUST_LOG` (default `warn` for
//! interactive commands, `info` for services).

/// Installs the global subscriber once; later calls are ignored. Colours only when
/// stderr is a terminal (a log file or a pipe gets plain text).
pub fn init(default_level: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
