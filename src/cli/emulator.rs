//! `imagegen emulator`: serve the Vertex AI / Gemini Developer API stand-in.

/// Arguments of `imagegen emulator`.
#[derive(Debug, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on; port 0 picks a free port (printed on the first stdout line).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: String,
    /// Scenario file (TOML): latency, faults, quotas, markers.
    #[arg(long)]
    pub scenario: Option<std::path::PathBuf>,
}

/// Runs the emulator until interrupted.
pub async fn run(_args: EmulatorArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("the emulator is being built")
}
