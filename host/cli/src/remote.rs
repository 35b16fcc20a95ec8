//! `orbital login` and `--remote`: the same commands, run by a daemon over
//! HTTP/3, with the same output and exit codes. Remotes live in
//! `remotes.toml` in the user's config folder (mode 0600: it holds tokens),
//! each with the daemon's URL, token and pinned certificate hash.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use orbital_daemon::client::{Client, Response};
use orbital_engine::{Event, PlanReport, Promoted, RunCommand, RunRecord, RunStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::diagnostics::{CANCELLED, Failure};
use crate::report::Output;
use crate::{Cli, Command, RunArgs};

/// One daemon the user logged in to.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Remote {
    url: String,
    token: String,
    cert_sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Remotes {
    #[serde(default)]
    remotes: BTreeMap<String, Remote>,
}

/// `$ORBITAL_CONFIG_DIR`, else `$XDG_CONFIG_HOME/orbital`, else
/// `~/.config/orbital`.
fn config_file() -> Result<PathBuf, Failure> {
    let dir = match (
        std::env::var_os("ORBITAL_CONFIG_DIR"),
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    ) {
        (Some(dir), _, _) => PathBuf::from(dir),
        (None, Some(xdg), _) => PathBuf::from(xdg).join("orbital"),
        (None, None, Some(home)) => PathBuf::from(home).join(".config/orbital"),
        _ => {
            return Err(Failure::Environment(
                "no config folder: set ORBITAL_CONFIG_DIR or HOME".into(),
            ));
        }
    };
    Ok(dir.join("remotes.toml"))
}

fn load() -> Result<Remotes, Failure> {
    let file = config_file()?;
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            toml::from_str(&text).map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Remotes::default()),
        Err(e) => Err(Failure::Environment(format!("{}: {e}", file.display()))),
    }
}

fn save(remotes: &Remotes) -> Result<PathBuf, Failure> {
    use std::io::Write;
    let file = config_file()?;
    let write = |source| Failure::Write {
        path: file.clone(),
        source,
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    let text = toml::to_string(remotes).map_err(|e| Failure::Environment(e.to_string()))?;
    let partial = file.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&partial).map_err(write)?;
    out.write_all(text.as_bytes()).map_err(write)?;
    std::fs::rename(&partial, &file).map_err(write)?;
    Ok(file)
}

/// `https://host:port` to a socket address.
async fn address(url: &str) -> Result<SocketAddr, Failure> {
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        Failure::Usage(format!(
            "`{url}` is not an https:// URL of an orbital daemon"
        ))
    })?;
    let authority = rest.trim_end_matches('/');
    tokio::net::lookup_host(authority)
        .await
        .ok()
        .and_then(|mut found| found.next())
        .ok_or_else(|| Failure::Usage(format!("cannot resolve `{authority}` (expected host:port)")))
}

async fn connect(remote: &Remote) -> Result<Client, Failure> {
    let addr = address(&remote.url).await?;
    Client::connect(addr, &remote.cert_sha256, Some(remote.token.clone()))
        .await
        .map_err(|e| Failure::Environment(format!("{}: {e}", remote.url)))
}

/// `orbital login`: checks the daemon answers with this token and
/// certificate, then stores them under `name`.
pub(crate) async fn login(
    url: &str,
    token_file: &std::path::Path,
    cert_sha256: &str,
    name: &str,
) -> Result<ExitCode, Failure> {
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| Failure::Usage(format!("{}: {e}", token_file.display())))?
        .trim()
        .to_string();
    if token.is_empty() {
        return Err(Failure::Usage(format!(
            "{} is empty: give the daemon's token file (its path is printed when the daemon starts)",
            token_file.display()
        )));
    }
    let remote = Remote {
        url: url.trim_end_matches('/').to_string(),
        token,
        cert_sha256: cert_sha256.to_ascii_lowercase(),
    };
    let mut client = connect(&remote).await?;
    check(client.request("GET", "/v1/runs?limit=1", None).await)?;
    let mut remotes = load()?;
    remotes.remotes.insert(name.to_string(), remote);
    let file = save(&remotes)?;
    println!(
        "Logged in to {url} as `{name}` (saved in {}).",
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The remote `--remote` names: a saved name, or the URL of one.
fn resolve(name: &str) -> Result<Remote, Failure> {
    let remotes = load()?;
    if let Some(remote) = remotes.remotes.get(name) {
        return Ok(remote.clone());
    }
    let url = name.trim_end_matches('/');
    remotes
        .remotes
        .values()
        .find(|r| r.url == url)
        .cloned()
        .ok_or_else(|| {
            Failure::Usage(format!(
                "no remote `{name}`: log in first with `orbital login URL --token-file F --cert-sha256 HASH`"
            ))
        })
}

/// A daemon's answer: its JSON body on success, its error as the failure
/// the local command would have had (same message, code and exit code).
fn check(response: Result<Response, orbital_daemon::DaemonError>) -> Result<Value, Failure> {
    let response = response.map_err(|e| Failure::Environment(e.to_string()))?;
    let body = if response.body.is_empty() {
        Value::Null
    } else {
        response
            .json()
            .map_err(|e| Failure::Environment(e.to_string()))?
    };
    if response.status < 400 {
        return Ok(body);
    }
    let error = &body["error"];
    Err(Failure::Remote {
        status: response.status,
        code: error["code"].as_str().unwrap_or("unknown").to_string(),
        message: error["message"].as_str().map_or_else(
            || format!("the daemon answered {}", response.status),
            str::to_string,
        ),
    })
}

fn parse<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Failure> {
    serde_json::from_value(value)
        .map_err(|e| Failure::Environment(format!("the daemon's answer: {e}")))
}

/// Runs `cli`'s command through the daemon `name` names.
pub(crate) async fn command(cli: &Cli, name: &str, output: &Output) -> Result<ExitCode, Failure> {
    let remote = resolve(name)?;
    let mut client = connect(&remote).await?;
    let json_or = |value: &Value| {
        if output.json {
            println!("{value}");
        }
        output.json
    };
    match &cli.command {
        Command::Seed(args) => run(&remote, &mut client, RunCommand::Seed, args, output).await,
        Command::Run(args) => run(&remote, &mut client, RunCommand::Run, args, output).await,
        Command::Build(args) => run(&remote, &mut client, RunCommand::Build, args, output).await,
        Command::Test(args) => run(&remote, &mut client, RunCommand::Test, args, output).await,
        Command::Plan { select, env } => {
            let body = json!({
                "env": env, "select": select.select, "exclude": select.exclude, "target": select.target,
            });
            let report = check(client.request("POST", "/v1/plan", Some(&body)).await)?;
            output.plan(&parse::<PlanReport>(report)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls { select } => {
            if !select.select.is_empty() || !select.exclude.is_empty() || select.target.is_some() {
                return Err(Failure::Usage(
                    "`ls --remote` lists the whole project: drop --select, --exclude and --target".into(),
                ));
            }
            let listing = check(client.request("GET", "/v1/project", None).await)?;
            let nodes = json!({ "nodes": listing["nodes"] });
            if !json_or(&nodes) {
                output.list_rows(&crate::report::rows_of(&listing["nodes"]));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { id, limit } => {
            let runs: Vec<RunRecord> = match id {
                Some(id) => vec![parse(check(
                    client.request("GET", &format!("/v1/runs/{id}"), None).await,
                )?)?],
                None => {
                    let listed = check(
                        client
                            .request("GET", &format!("/v1/runs?limit={limit}"), None)
                            .await,
                    )?;
                    parse(listed["runs"].clone())?
                }
            };
            output.runs(&runs);
            Ok(ExitCode::SUCCESS)
        }
        Command::Promote { from, to, select } => {
            let body = json!({
                "from": from, "select": select.select, "exclude": select.exclude, "target": select.target,
            });
            let promoted = check(
                client
                    .request("POST", &format!("/v1/environments/{to}/promote"), Some(&body))
                    .await,
            )?;
            output.promoted(&parse::<Promoted>(promoted)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            command: crate::plugin::PluginCommand::Install { file },
        } => {
            let bytes = std::fs::read(file)
                .map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
            let installed =
                check(client.request_with("POST", "/v1/plugins", Some(bytes), &[]).await)?;
            if !json_or(&installed) {
                let listed: orbital_engine::ListedIn =
                    serde_json::from_value(installed["orbital_toml"].clone()).unwrap_or_default();
                let text = |key: &str| installed[key].as_str().unwrap_or("").to_string();
                println!(
                    "Installed {} {} {} into the daemon's project.\n{}",
                    text("kind"),
                    text("name"),
                    text("version"),
                    crate::plugin::listed_line(&text("hash"), &text("name"), &listed)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Peers => {
            let peers = check(client.request("GET", "/v1/peers", None).await)?;
            if !json_or(&peers) {
                print_peers(&peers["peers"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(Failure::Usage(
            "this command runs only locally: drop --remote (through a daemon: plan, run, build, seed, test, ls, runs, promote, plugin install, peers)".into(),
        )),
    }
}

/// Two lines per peer: name, address, and connected (round trip,
/// protocol) or why not; then what was exchanged with it.
fn print_peers(peers: &Value) {
    let peers = peers.as_array().map(Vec::as_slice).unwrap_or_default();
    if peers.is_empty() {
        println!("No peers: list them in the daemon's peers.toml (docs/peering.md).");
    }
    for peer in peers {
        let name = peer["name"].as_str().unwrap_or("");
        let address = peer["address"].as_str().unwrap_or("");
        let state = if peer["connected"] == true {
            format!(
                "connected, rtt {:.1} ms, protocol {}-{}",
                peer["rtt_ms"].as_f64().unwrap_or(0.0),
                peer["protocol_versions"][0],
                peer["protocol_versions"][1]
            )
        } else {
            format!(
                "not connected: {}",
                peer["error"].as_str().unwrap_or("unknown")
            )
        };
        let last = peer["last_contact"].as_str().unwrap_or("never");
        println!("{name}  {address}  {state}  (last contact: {last})");
        println!("  {}", exchanged(peer));
    }
}

/// What came from a peer and what it did for this daemon, in one line.
fn exchanged(peer: &Value) -> String {
    let count = |value: &Value| value.as_u64().unwrap_or(0);
    let (received, sent) = (&peer["received"], &peer["sent"]);
    let mut line = format!(
        "received {} objects ({:.1} kB), {} builds, {} environment records; sent {} environment records; built {} tasks ({} lost)",
        count(&received["objects"]),
        count(&received["bytes"]) as f64 / 1000.0,
        count(&received["builds"]),
        count(&received["environments"]),
        count(&sent["environments"]),
        count(&sent["tasks"]),
        count(&sent["tasks_lost"]),
    );
    let reaches: Vec<&str> = peer["reaches"]
        .as_array()
        .map(|targets| targets.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !reaches.is_empty() {
        line.push_str(&format!(
            "; holds the connection of target {} ({} warehouse calls)",
            reaches.join(", "),
            count(&sent["warehouse_calls"])
        ));
    }
    if count(&received["rejected"]) > 0 {
        line.push_str(&format!(
            "; {} answers rejected (hash mismatch): distrusted",
            count(&received["rejected"])
        ));
    }
    line
}

/// A run through the daemon: its events feed the same progress lines and
/// summary as a local run's; Ctrl-C cancels it on the daemon.
async fn run(
    remote: &Remote,
    client: &mut Client,
    command: RunCommand,
    args: &RunArgs,
    output: &Output,
) -> Result<ExitCode, Failure> {
    let body = json!({
        "command": command,
        "select": args.select.select,
        "exclude": args.select.exclude,
        "target": args.select.target,
        "threads": args.threads,
        "full_refresh": args.full_refresh,
        "env": args.env,
        "peers": args.peers,
    });
    let started = check(client.request("POST", "/v1/runs", Some(&body)).await)?;
    let run = started["run"].as_u64().ok_or_else(|| {
        Failure::Environment(format!("the daemon's answer has no run id: {started}"))
    })?;
    let (events, received) = tokio::sync::mpsc::unbounded_channel();
    let shown = output.progress(received);
    let mut results = Vec::new();
    let (mut status, mut elapsed, mut error) = (None, 0, None);
    let followed = async {
        let path = format!("/v1/runs/{run}/events");
        let followed = client
            .events(&path, None, |_, name, data| {
                if name == "run_error" {
                    error = serde_json::from_str::<Value>(data).ok();
                    return true;
                }
                if let Ok(event) = serde_json::from_str::<Event>(data) {
                    match &event {
                        Event::NodeFinished { result, .. } => results.push(result.clone()),
                        Event::RunFinished {
                            status: s,
                            elapsed_ms,
                            ..
                        } => {
                            status = Some(*s);
                            elapsed = *elapsed_ms;
                        }
                        _ => {}
                    }
                    let _ = events.send(event);
                }
                true
            })
            .await;
        drop(events);
        followed
    };
    let interrupt = tokio::spawn(cancel_on_ctrl_c(remote.clone(), run, output.json));
    let (followed, shown) = tokio::join!(followed, shown);
    interrupt.abort();
    followed.map_err(|e| Failure::Environment(e.to_string()))?;
    output.summary(&shown, &results, std::time::Duration::from_millis(elapsed));
    if let Some(error) = error {
        return Err(Failure::Remote {
            status: 503,
            code: error["code"].as_str().unwrap_or("unknown").to_string(),
            message: error["message"].as_str().unwrap_or("").to_string(),
        });
    }
    // A stream that ended without saying how the run ended is a failure.
    let status = match status {
        Some(s @ (RunStatus::Succeeded | RunStatus::Cancelled)) => s,
        _ => RunStatus::Failed,
    };
    Ok(crate::run_exit(status, output.json))
}

/// The first Ctrl-C asks the daemon to cancel the run (whose events then
/// end with it cancelled); a second ends this process.
async fn cancel_on_ctrl_c(remote: Remote, run: u64, json: bool) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    if !json {
        eprintln!("\nCancelling the run on the daemon (Ctrl-C again to quit now)...");
    }
    let cancel = async {
        let mut client = connect(&remote).await.ok()?;
        client
            .request("POST", &format!("/v1/runs/{run}/cancel"), None)
            .await
            .ok()
    };
    tokio::select! {
        _ = cancel => {}
        _ = tokio::signal::ctrl_c() => std::process::exit(i32::from(CANCELLED)),
    }
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(i32::from(CANCELLED));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_line_says_what_it_did_and_which_targets_it_holds() {
        let peer = serde_json::json!({
            "received": { "objects": 2, "bytes": 1500, "builds": 3, "environments": 1, "rejected": 0 },
            "sent": { "environments": 4, "tasks": 5, "tasks_lost": 1, "warehouse_calls": 42 },
            "reaches": ["prod"],
        });
        assert_eq!(
            exchanged(&peer),
            "received 2 objects (1.5 kB), 3 builds, 1 environment records; sent 4 environment records; \
             built 5 tasks (1 lost); holds the connection of target prod (42 warehouse calls)"
        );
    }
}
