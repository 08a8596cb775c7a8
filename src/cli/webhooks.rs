//! `imagegen webhooks`: generate a signing secret, list the endpoints a 410 disabled,
//! and re-enable one.

use std::process::ExitCode;

use super::common;
use crate::config::Settings;
use crate::queue::Outbox as _;

/// Arguments of `imagegen webhooks`.
#[derive(Debug, clap::Args)]
pub struct WebhooksArgs {
    #[command(subcommand)]
    command: WebhooksCommand,
}

#[derive(Debug, clap::Subcommand)]
enum WebhooksCommand {
    /// Print a new `whsec_` secret (32 random bytes) for `webhook_secret`.
    Secret,
    /// List a project's endpoints disabled by a 410 Gone, with why.
    Disabled {
        /// The project.
        project: String,
    },
    /// Re-enable an endpoint a 410 Gone disabled: its next events are delivered again.
    Enable {
        /// The project.
        project: String,
        /// The endpoint URL, as listed by `imagegen webhooks disabled`.
        url: String,
    },
}

/// Runs `webhooks`.
pub async fn run(args: WebhooksArgs, settings: Option<Settings>) -> anyhow::Result<ExitCode> {
    let settings = match (args.command, settings) {
        (WebhooksCommand::Secret, _) => {
            println!("{}", crate::webhooks::Signer::generate());
            return Ok(ExitCode::SUCCESS);
        }
        (cmd, Some(s)) => (cmd, s),
        (_, None) => anyhow::bail!("no settings"),
    };
    let (cmd, settings) = settings;
    let queue = common::redis_queue(&settings).await?;
    match cmd {
        WebhooksCommand::Disabled { project } => {
            let off = queue.hooks_disabled(&project).await?;
            if off.is_empty() {
                println!("no disabled endpoints in project `{project}`");
            }
            for (url, why) in off {
                println!("{url}\n  {why}");
            }
        }
        WebhooksCommand::Enable { project, url } => {
            let was = queue.hooks_enable(&project, &url).await?;
            println!(
                "{url}: {}",
                if was {
                    "enabled; its next events are delivered"
                } else {
                    "was not disabled"
                }
            );
        }
        WebhooksCommand::Secret => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}
