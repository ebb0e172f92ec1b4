//! The HTTP listener's options: where the REST API, WebSocket and web UI listen.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::Args;

/// Where the HTTP API and web UI listen and what they serve.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpArgs {
    /// Address the HTTP API and web UI listen on.
    #[arg(long, env = "THINGLAKE_HTTP_HOST", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub http_host: IpAddr,
    /// Port of the HTTP API and web UI (0 picks a free port).
    #[arg(long, env = "THINGLAKE_HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,
    /// Directory of the built web UI (`dist` of services/web/ui). Unset: `services/web/ui/dist`
    /// under the working directory if it exists, else `web` next to the executable.
    #[arg(long, env = "THINGLAKE_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
}
