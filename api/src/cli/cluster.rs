//! `weir cluster status|add-member|remove-member`.

use super::print_json;
use super::weir_api_client_args::ClientArgs;
use clap::Subcommand;
use weir_core::wire::ClusterStatus;

/// Cluster commands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the leader, the term and every member.
    Status {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a coordinator (started with --peers listing the current members) to the group.
    AddMember {
        /// The new member's --id.
        #[arg(long)]
        id: u64,
        /// The new member's host:port.
        #[arg(long)]
        addr: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a coordinator from the group.
    RemoveMember {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Prints a cluster status as a table.
pub fn print_status(s: &ClusterStatus) {
    let leader = s
        .leader
        .map(|l| l.to_string())
        .unwrap_or_else(|| "none".into());
    println!(
        "leader {leader}  term {}  last_applied {}",
        s.term, s.last_applied
    );
    println!("{:<6} {:<24} STATE", "ID", "ADDR");
    for m in &s.members {
        println!("{:<6} {:<24} {}", m.id, m.addr, m.state);
    }
}

/// Runs a cluster command.
pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    let (status, client) = match cmd {
        ClusterCommand::Status { client } => (client.client().cluster_status().await?, client),
        ClusterCommand::AddMember { id, addr, client } => {
            (client.client().add_member(id, &addr).await?, client)
        }
        ClusterCommand::RemoveMember { id, client } => {
            (client.client().remove_member(id).await?, client)
        }
    };
    if client.json {
        return print_json(&status);
    }
    print_status(&status);
    Ok(())
}
