//! `palisade bans list|lift`: the admin listener's ban endpoints from the command line.
//!
//! The address and token come from `--config` (the same file the gateway runs with) or from
//! `--admin` / `--token` (or `PALISADE_ADMIN_TOKEN`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct BansArgs {
    #[command(subcommand)]
    action: BanAction,
    /// Read the admin address and token from this config file.
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Admin listener address (when no --config).
    #[arg(long, default_value = "127.0.0.1:9901", global = true)]
    admin: SocketAddr,
    /// Admin token (when no --config); also read from PALISADE_ADMIN_TOKEN.
    #[arg(
        long,
        env = "PALISADE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
}

#[derive(clap::Subcommand)]
enum BanAction {
    /// List the clients currently banned (JSON).
    List,
    /// Lift the ban on an IP address, on every site.
    Lift { ip: std::net::IpAddr },
}

pub fn run(args: BansArgs) -> ExitCode {
    let (admin, token) = match &args.config {
        Some(path) => match palisade_config::load(path) {
            Ok(l) => match l.config.server.admin {
                Some(a) => (a, l.config.server.admin_token.clone()),
                None => {
                    eprintln!(
                        "palisade bans: the admin listener is off in {}",
                        path.display()
                    );
                    return ExitCode::FAILURE;
                }
            },
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(crate::EX_CONFIG);
            }
        },
        None => (args.admin, args.token.clone()),
    };
    let (method, path) = match &args.action {
        BanAction::List => ("GET", "/bans".to_string()),
        BanAction::Lift { ip } => ("DELETE", format!("/bans/{ip}")),
    };
    match request(admin, method, &path, token.as_deref()) {
        Ok((200, body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!(
                "palisade bans: the admin listener answered {status}: {}",
                body.trim()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("palisade bans: cannot reach the admin listener at {admin}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns the status and body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    conn.take(1 << 20).read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}
