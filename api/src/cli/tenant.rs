//! `weir tenant create|token` (administrator).

use super::print_json;
use super::weir_api_client_args::ClientArgs;
use clap::Subcommand;

/// Tenant commands.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and print its first token.
    Create {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Issue a tenant a new token; its old tokens stop working.
    Token {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a tenant command.
pub async fn run(cmd: TenantCommand) -> anyhow::Result<()> {
    let (token, client) = match cmd {
        TenantCommand::Create { name, client } => {
            (client.client().create_tenant(&name).await?, client)
        }
        TenantCommand::Token { name, client } => {
            (client.client().rotate_tenant_token(&name).await?, client)
        }
    };
    if client.json {
        return print_json(&token);
    }
    println!("tenant {} token {}", token.name, token.token);
    println!("(the token is shown only now; the cluster stores only its hash)");
    Ok(())
}
