//! `thinglake`: one binary, one interface. `thinglake run` starts the whole platform.

mod lake_cli;
mod rebuild;

mod simulate;

mod sql;

mod trim;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use thinglake_server::{RunArgs, RunningApp, Settings};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

#[derive(Debug, Parser)]
#[command(name = "thinglake", version, about = "An event-sourced, ThingsBoard-compatible IoT platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; boxing the run flags would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole platform on this machine.
    Run(RunArgs),
    /// Run simulated devices that publish telemetry over MQTT (demo, load tests).
    Simulate(simulate::SimulateArgs),
    /// Rebuild a lake table from the log into a new table version, beside a running platform.
    Rebuild(rebuild::RebuildArgs),
    /// Trim old telemetry from the log, never past what the lake has committed.
    Trim(trim::TrimArgs),
    /// Run read-only SQL against a running platform over HTTP and print the answer.
    Sql(sql::SqlArgs),
}

/// mimalloc instead of the system allocator: the ingest path allocates per key and value
/// (decision 0008).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `thinglake sql` writes its answer to standard output: its logs go to standard error.
    let (writer, terminal) = if matches!(cli.command, Command::Sql(_)) {
        (BoxMakeWriter::new(std::io::stderr), std::io::IsTerminal::is_terminal(&std::io::stderr()))
    } else {
        (BoxMakeWriter::new(std::io::stdout), std::io::IsTerminal::is_terminal(&std::io::stdout()))
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("THINGLAKE_LOG").unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn,buoyant_kernel=warn,deltalake_core=warn")))
        .with_writer(writer)
        // Colour only on a terminal: logs redirected to a file stay plain text.
        .with_ansi(terminal)
        .init();
    match cli.command {
        Command::Run(args) => {
            let args = args.with_config_file(matches.subcommand_matches("run").expect("the run command was parsed"))?;
            tracing::info!(config = ?args, "effective configuration");
            Box::pin(run(Settings::resolve(args)?)).await?
        }
        Command::Simulate(args) => simulate::run(args).await?,
        Command::Rebuild(args) => rebuild::run(args).await?,
        Command::Trim(args) => trim::run(args).await?,
        // Its own exit codes: connection, login and SQL failures are told apart.
        Command::Sql(args) => return Ok(sql::run(args).await),
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let admin_email = settings.admin_email.clone();
    let app = RunningApp::start(settings).await?;
    if let Some(password) = &app.generated_admin_password {
        // Printed once, on the start that created the administrator; never logged again.
        println!("\nCreated system administrator {admin_email} with password: {password}\n(keep it: it is not shown again)\n");
    }
    println!("Thinglake is running: http://{} (Ctrl-C to stop)", app.http_addr);
    wait_for_signal().await;
    app.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
