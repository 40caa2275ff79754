//! The control socket: a Unix socket in the data dir (mode 0600, so only the host user that runs
//! Larder can use it) through which local commands talk to the running node.
//!
//! One request per connection, one JSON line each way. It answers `larder login-link`,
//! `larder vault rotate` and `larder allow add|remove|list`.
//! Must not: be reachable from the network, or do anything a signed-in person could not.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::edge::{AllowCommand, AppState, login_link};

/// The socket's file name inside the data dir.
pub const SOCKET_NAME: &str = "control.sock";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Request {
    LoginLink { user: Option<String> },
    RotateVault,
    Allow(AllowCommand),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Response {
    /// The answer, as text for the person at the terminal.
    Ok(String),
    Error(String),
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Binds the socket (replacing a stale one from a crashed run) with mode 0600.
pub fn bind(data_dir: &Path) -> anyhow::Result<UnixListener> {
    let path = socket_path(data_dir);
    if path.exists() {
        std::fs::remove_file(&path)
            .with_context(|| format!("removing stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers requests until the task is dropped.
pub async fn run(listener: UnixListener, state: AppState) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &state).await {
                tracing::warn!(error = %e, "control request failed");
            }
        });
    }
}

async fn answer(stream: UnixStream, state: &AppState) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // One line of at most 64 KiB.
    BufReader::new(read.take(64 * 1024))
        .read_line(&mut line)
        .await?;
    let response = match serde_json::from_str::<Request>(&line) {
        Ok(Request::LoginLink { user }) => {
            let user = user.unwrap_or_else(|| state.config.auth.local.default_user.clone());
            match login_link(state, &user).await {
                Ok(url) => Response::Ok(url),
                Err(e) => Response::Error(e),
            }
        }
        Ok(Request::RotateVault) => match crate::edge::rotate_vault(state).await {
            Ok(report) => Response::Ok(report),
            Err(e) => Response::Error(e),
        },
        Ok(Request::Allow(command)) => match crate::edge::allowlist_command(state, command).await {
            Ok(text) => Response::Ok(text),
            Err(e) => Response::Error(e),
        },
        Err(e) => Response::Error(format!("bad request: {e}")),
    };
    let mut out = serde_json::to_vec(&response)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    Ok(())
}

/// Client side: asks the node running on `data_dir` for a login link.
pub async fn request_login_link(data_dir: &Path, user: Option<&str>) -> anyhow::Result<String> {
    ask(
        data_dir,
        &Request::LoginLink {
            user: user.map(str::to_owned),
        },
    )
    .await
}

/// Client side: asks the running node to rotate the vault key and re-seal every record.
pub async fn request_vault_rotation(data_dir: &Path) -> anyhow::Result<String> {
    ask(data_dir, &Request::RotateVault).await
}

/// Client side: changes or lists the running node's sign-up allowlist.
pub async fn request_allowlist(data_dir: &Path, command: AllowCommand) -> anyhow::Result<String> {
    ask(data_dir, &Request::Allow(command)).await
}

async fn ask(data_dir: &Path, request: &Request) -> anyhow::Result<String> {
    let path = socket_path(data_dir);
    let stream = UnixStream::connect(&path).await.with_context(|| {
        format!(
            "no running Larder found for data dir {} (could not open {})",
            data_dir.display(),
            path.display()
        )
    })?;
    let (read, mut write) = stream.into_split();
    let mut req = serde_json::to_vec(request)?;
    req.push(b'\n');
    write.write_all(&req).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    match serde_json::from_str::<Response>(&line).context("unexpected answer from the node")? {
        Response::Ok(url) => Ok(url),
        Response::Error(e) => anyhow::bail!("{e}"),
    }
}
