//! # orbital: the CLI box
//!
//! Parses the command line into requests for the engine
//! ([`orbital_engine`]), and shows what comes back: a progress bar and
//! dbt-style lines on a terminal (rendered from the run's events), one
//! JSON document with `--json`, errors with their file, line and column.
//! Also scaffolds and builds plugin crates. Owns the process's one tokio
//! runtime; the first Ctrl-C cancels a run cleanly, a second ends the
//! process.
//!
//! Exit codes: 0 success; 1 a seed or model failed; 2 the project, a model,
//! a selector or the command line is wrong; 3 the environment failed (the
//! database, a plugin component, the state store); 4 another orbital
//! process holds the environment; 130 the run was cancelled (Ctrl-C).

mod diagnostics;
mod docs;
mod init;
mod plugin;
mod remote;
mod report;
mod sdk_source;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use orbital_engine::{
    CancellationToken, CompileRequest, DocsRequest, Engine, EngineOptions, GcRequest,
    LineageRequest, Listing, PlanRequest, PromoteRequest, RunCommand, RunRequest, RunStatus,
    Selector, ShowRequest,
};

use crate::diagnostics::Failure;

// Parsing thousands of models allocates millions of small AST nodes; mimalloc
// takes about a fifth off a cold compile against the system allocator
// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "orbital",
    version,
    about = "Build a SQL warehouse from a folder of plain SQL models."
)]
pub(crate) struct Cli {
    /// The project folder (holding orbital.toml).
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    pub(crate) project: PathBuf,
    /// Print one JSON document instead of human output.
    #[arg(long, global = true)]
    json: bool,
    /// Show plugin log lines and more detail.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Run the command through a daemon: a name given to `orbital login`,
    /// or its URL.
    #[arg(long, global = true, env = "ORBITAL_REMOTE", value_name = "NAME|URL")]
    remote: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a project in DIR (default: --project): a new native one, or
    /// with --from-dbt the native equivalent of a dbt project.
    Init {
        dir: Option<PathBuf>,
        /// A dbt project (its folder) to write as a native one: plain SQL
        /// with `-- config:` lines. What cannot be translated is listed.
        #[arg(long, value_name = "DBT_DIR")]
        from_dbt: Option<PathBuf>,
    },
    /// Compile models to SQL under the target folder; print one model's SQL.
    Compile {
        /// Print this model's compiled SQL.
        model: Option<String>,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Write the docs site to target/docs/: one page (index.html) that
    /// opens from disk, and its data (docs.json).
    Docs {
        /// The target in orbital.toml.
        #[arg(short, long)]
        target: Option<String>,
        /// A dbt project's vars, over dbt_project.yml's.
        #[arg(long, value_name = "YAML")]
        vars: Option<String>,
    },
    /// Trace a column's lineage: what it derives from, up to seeds and
    /// sources (with --downstream: every column derived from it).
    Lineage {
        /// The column, as MODEL.COLUMN (e.g. orders.amount).
        column: String,
        /// Trace what derives from the column instead.
        #[arg(long)]
        downstream: bool,
        /// The target in orbital.toml (its SQL dialect).
        #[arg(short, long)]
        target: Option<String>,
        /// A dbt project's vars, over dbt_project.yml's.
        #[arg(long, value_name = "YAML")]
        vars: Option<String>,
    },
    /// Print the first rows of a model (or of --inline 'select ...' over
    /// the project's models) in an environment.
    Show {
        /// The model or seed to read.
        model: Option<String>,
        /// A query over the project's models, seeds and sources, written as
        /// a model is (instead of MODEL).
        #[arg(long, value_name = "SQL")]
        inline: Option<String>,
        /// How many rows.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// The environment to read (default: prod).
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
        /// The target in orbital.toml.
        #[arg(short, long)]
        target: Option<String>,
        /// A dbt project's vars, over dbt_project.yml's.
        #[arg(long, value_name = "YAML")]
        vars: Option<String>,
    },
    /// List seeds and models.
    Ls {
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Load seed CSVs into tables.
    Seed(RunArgs),
    /// Build models (not seeds) in dependency order.
    Run(RunArgs),
    /// Load seeds, build models and run their data tests, in dependency
    /// order; what is built from a model whose test fails is skipped.
    Build(RunArgs),
    /// Run the data tests of the selected nodes (all, without --select).
    Test(RunArgs),
    /// Show what a run would build, reuse or remove, with SQL diffs.
    Plan {
        #[command(flatten)]
        select: SelectArgs,
        /// The environment to plan for.
        #[arg(long, value_name = "NAME")]
        env: Option<String>,
    },
    /// Point one environment at another's builds, atomically; runs no model SQL.
    Promote {
        /// The environment to promote.
        from: String,
        /// The environment to point at its builds.
        #[arg(long, value_name = "NAME", default_value = orbital_core::plan::DEFAULT_ENVIRONMENT)]
        to: String,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Drop builds no environment uses and store objects nothing reaches.
    Gc {
        /// Show what would go without dropping anything.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Scaffold, build, install and list plugin components.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// Save a daemon's URL, token and certificate hash for `--remote`.
    Login {
        /// The daemon, e.g. https://127.0.0.1:7321.
        url: String,
        /// The daemon's token file (printed when it starts).
        #[arg(long, value_name = "FILE")]
        token_file: PathBuf,
        /// The SHA-256 of the daemon's certificate (printed when it starts).
        #[arg(long, value_name = "HEX")]
        cert_sha256: String,
        /// The name `--remote` takes.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Serve the project over an HTTP/3 API (docs/api.md) until SIGINT or
    /// SIGTERM.
    Daemon {
        /// Where to listen; port 0 picks a free one (printed).
        #[arg(long, default_value = "127.0.0.1:7321")]
        listen: std::net::SocketAddr,
        /// Where the daemon keeps its certificate, key and API token
        /// (default: <target-path>/daemon in the project).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Seconds running runs may go on after a stop signal before they
        /// are cancelled.
        #[arg(long, default_value_t = 30)]
        grace: u64,
        /// The largest request body the daemon reads.
        #[arg(long, default_value_t = 16 << 20, value_name = "BYTES")]
        max_body: usize,
        /// Serve the peers listed in <data-dir>/peers.toml here (QUIC with
        /// mutual TLS; docs/peering.md).
        #[arg(long, value_name = "ADDR")]
        peer_listen: Option<std::net::SocketAddr>,
    },
    /// Show the daemon's peers: connected or not, round trip, protocol
    /// (through a daemon: --remote).
    Peers,
    /// List past runs with their status and per-node status, timing and
    /// fingerprints; or one run by its id.
    Runs {
        /// Show only this run.
        id: Option<u64>,
        /// How many runs to show, newest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Args, Clone)]
pub(crate) struct SelectArgs {
    /// Nodes to act on: names, `+name`, `name+`, `tag:x`, `path:dir`; space = union, comma = intersection.
    #[arg(short, long, num_args = 1.., value_name = "SELECTOR")]
    pub(crate) select: Vec<String>,
    /// Nodes to leave out, same syntax as --select.
    #[arg(long, num_args = 1.., value_name = "SELECTOR")]
    pub(crate) exclude: Vec<String>,
    /// The target in orbital.toml (default: default-target, or the only one).
    #[arg(short, long)]
    pub(crate) target: Option<String>,
    /// A dbt project's vars, over dbt_project.yml's: a YAML or JSON mapping,
    /// e.g. '{start: 2024-01-01}'.
    #[arg(long, value_name = "YAML")]
    pub(crate) vars: Option<String>,
}

#[derive(Args, Clone)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) select: SelectArgs,
    /// How many nodes build at once (default: the target's `threads`, else 4).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Rebuild selected nodes even where a build with the same fingerprint exists.
    #[arg(long)]
    pub(crate) full_refresh: bool,
    /// The environment to build (default: prod). Others are free: they reuse
    /// every build they share with any environment.
    #[arg(long, value_name = "NAME")]
    pub(crate) env: Option<String>,
    /// With --remote: peers of the daemon (names in its peers.toml) the run
    /// may hand its view and table builds to.
    #[arg(long, value_name = "NAME", value_delimiter = ',')]
    pub(crate) peers: Vec<String>,
    /// Keep each data test's failing rows in a table, `failures__<test>`
    /// (`<env>__failures__<test>` in another environment).
    #[arg(long)]
    pub(crate) store_failures: bool,
}

impl SelectArgs {
    fn selector(&self) -> Selector {
        Selector {
            select: self.select.clone(),
            exclude: self.exclude.clone(),
            target: self.target.clone(),
            vars: self.vars.clone(),
        }
    }
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let output = report::Output::new(cli.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let engine = Engine::new(EngineOptions {
        cache_dir: cache_dir(),
        // A long-lived daemon answers from its last compile; a one-shot
        // command would only pay for the copy.
        keep_projects: matches!(cli.command, Command::Daemon { .. }),
    });
    let result = runtime.block_on(async {
        let result = command(&engine, &cli, &output).await;
        // Closed on every path: SQLite checkpoints its WAL on the last close.
        engine.close().await;
        result
    });
    match result {
        Ok(code) => code,
        Err(failure) => {
            diagnostics::report(&failure, &cli.project, &output);
            failure.exit_code()
        }
    }
}

async fn command(engine: &Engine, cli: &Cli, output: &report::Output) -> Result<ExitCode, Failure> {
    if let Some(name) = &cli.remote
        && !matches!(cli.command, Command::Daemon { .. } | Command::Login { .. })
    {
        return remote::command(cli, name, output).await;
    }
    let run = |command, args: &RunArgs| RunRequest {
        project: cli.project.clone(),
        command,
        selector: args.select.selector(),
        threads: args.threads,
        full_refresh: args.full_refresh,
        env: args.env.clone(),
        peers: args.peers.clone(),
        store_failures: args.store_failures,
    };
    match &cli.command {
        Command::Init { dir, from_dbt } => init::init(
            dir.as_deref().unwrap_or(&cli.project),
            from_dbt.as_deref(),
            output,
        ),
        Command::Compile { model, select } => {
            compile(engine, cli, select, model.as_deref(), output).await
        }
        Command::Docs { target, vars } => {
            let document = engine
                .docs(DocsRequest {
                    project: cli.project.clone(),
                    selector: Selector {
                        target: target.clone(),
                        vars: vars.clone(),
                        ..Selector::default()
                    },
                })
                .await?;
            let written = docs::write(&cli.project, &document)?;
            output.docs(&written, document.nodes.len());
            Ok(ExitCode::SUCCESS)
        }
        Command::Lineage {
            column,
            downstream,
            target,
            vars,
        } => {
            let tree = engine
                .lineage(LineageRequest {
                    project: cli.project.clone(),
                    selector: Selector {
                        target: target.clone(),
                        vars: vars.clone(),
                        ..Selector::default()
                    },
                    column: column.clone(),
                    downstream: *downstream,
                })
                .await?;
            output.lineage(&tree, *downstream);
            Ok(ExitCode::SUCCESS)
        }
        Command::Show {
            model,
            inline,
            limit,
            env,
            target,
            vars,
        } => {
            let rows = engine
                .show(ShowRequest {
                    project: cli.project.clone(),
                    selector: Selector {
                        target: target.clone(),
                        vars: vars.clone(),
                        ..Selector::default()
                    },
                    env: env.clone(),
                    model: model.clone(),
                    inline: inline.clone(),
                    limit: *limit,
                })
                .await?;
            output.rows(&rows);
            Ok(ExitCode::SUCCESS)
        }
        Command::Ls { select } => {
            let compiled = engine
                .compile(CompileRequest {
                    project: cli.project.clone(),
                    selector: select.selector(),
                    listing: Listing::All,
                })
                .await?;
            output.list(&compiled.compiled.dag, &compiled.selection.nodes);
            Ok(ExitCode::SUCCESS)
        }
        Command::Seed(args) => run_nodes(engine, run(RunCommand::Seed, args), output).await,
        Command::Run(args) => run_nodes(engine, run(RunCommand::Run, args), output).await,
        Command::Build(args) => run_nodes(engine, run(RunCommand::Build, args), output).await,
        Command::Test(args) => run_nodes(engine, run(RunCommand::Test, args), output).await,
        Command::Plan { select, env } => {
            let report = engine
                .plan(PlanRequest {
                    project: cli.project.clone(),
                    selector: select.selector(),
                    env: env.clone(),
                })
                .await?;
            output.plan(&report);
            Ok(ExitCode::SUCCESS)
        }
        Command::Promote { from, to, select } => {
            let promoted = engine
                .promote(PromoteRequest {
                    project: cli.project.clone(),
                    selector: select.selector(),
                    from: from.clone(),
                    to: to.clone(),
                })
                .await?;
            output.promoted(&promoted);
            Ok(ExitCode::SUCCESS)
        }
        Command::Gc { dry_run, select } => {
            let collected = engine
                .gc(GcRequest {
                    project: cli.project.clone(),
                    selector: select.selector(),
                    dry_run: *dry_run,
                })
                .await?;
            output.garbage(&collected);
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { id: None, limit } => {
            output.runs(&engine.runs(&cli.project, *limit)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs { id: Some(id), .. } => {
            let run = engine.run_record(&cli.project, *id)?.ok_or_else(|| {
                Failure::Usage(format!(
                    "no run #{id} is recorded (orbital runs lists them)"
                ))
            })?;
            output.runs(std::slice::from_ref(&run));
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin { command } => plugin::command(engine, cli, command, output).await,
        Command::Peers => Err(Failure::Usage(
            "`orbital peers` asks a daemon: give --remote NAME (or set ORBITAL_REMOTE)".into(),
        )),
        Command::Login {
            url,
            token_file,
            cert_sha256,
            name,
        } => remote::login(url, token_file, cert_sha256, name).await,
        Command::Daemon {
            listen,
            data_dir,
            grace,
            max_body,
            peer_listen,
        } => {
            let limits = (std::time::Duration::from_secs(*grace), *max_body);
            daemon(
                engine,
                cli,
                (*listen, *peer_listen),
                data_dir.clone(),
                limits,
            )
            .await
        }
    }
}

/// `orbital daemon`: serves until SIGINT or SIGTERM, then stops cleanly.
async fn daemon(
    engine: &Engine,
    cli: &Cli,
    (listen, peer_listen): (std::net::SocketAddr, Option<std::net::SocketAddr>),
    data_dir: Option<PathBuf>,
    (grace, max_body): (std::time::Duration, usize),
) -> Result<ExitCode, Failure> {
    let config = orbital_core::ProjectConfig::load(&cli.project)
        .map_err(|e| Failure::Engine(Box::new(e.into())))?;
    let data_dir = data_dir.unwrap_or_else(|| cli.project.join(&config.target_path).join("daemon"));
    // Printed for clients to read: absolute, whatever the daemon's folder.
    let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
    let mut options = orbital_daemon::DaemonOptions::new(cli.project.clone(), listen, data_dir);
    options.grace = grace;
    options.max_body = max_body;
    options.peer_listen = peer_listen;
    let shutdown = CancellationToken::new();
    stop_on_signal(shutdown.clone())?;
    let json = cli.json;
    orbital_daemon::serve(engine.clone(), options, shutdown, |bound| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = if json {
            writeln!(
                out,
                "{}",
                serde_json::json!({
                    "listening": bound.addr.to_string(),
                    "peering": bound.peer_addr.map(|a| a.to_string()),
                    "certificate": bound.certificate_path.display().to_string(),
                    "certificate_sha256": bound.fingerprint,
                    "token_file": bound.token_path.display().to_string(),
                })
            )
        } else {
            writeln!(
                out,
                "orbital daemon listening on https://{} (HTTP/3)\ncertificate: {} (sha256 {})\ntoken: {}{}",
                bound.addr,
                bound.certificate_path.display(),
                bound.fingerprint,
                bound.token_path.display(),
                bound
                    .peer_addr
                    .map(|a| format!("\npeers: {a} (QUIC)"))
                    .unwrap_or_default()
            )
        };
        let _ = out.flush();
    })
    .await
    .map_err(|e| Failure::Environment(e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}

/// Fires `shutdown` on the first SIGINT or SIGTERM. The handlers are
/// installed before this returns: a signal sent as soon as the daemon says
/// it listens must stop it cleanly, not kill it.
fn stop_on_signal(shutdown: CancellationToken) -> Result<(), Failure> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let install = |kind| {
            signal(kind)
                .map_err(|e| Failure::Environment(format!("cannot handle stop signals: {e}")))
        };
        let (mut term, mut int) = (
            install(SignalKind::terminate())?,
            install(SignalKind::interrupt())?,
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            shutdown.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            shutdown.cancel();
        }
    });
    Ok(())
}

/// `seed`, `run`, `build` and `test`: the engine runs, this shows its
/// events. The first Ctrl-C cancels the run; a second ends the process.
async fn run_nodes(
    engine: &Engine,
    request: RunRequest,
    output: &report::Output,
) -> Result<ExitCode, Failure> {
    let cancel = CancellationToken::new();
    let interrupt = tokio::spawn(cancel_on_ctrl_c(cancel.clone(), output.json));
    let (events, received) = tokio::sync::mpsc::unbounded_channel();
    let shown = output.progress(received);
    let (outcome, shown) = tokio::join!(engine.run(request, events, cancel), shown);
    interrupt.abort();
    let outcome = outcome?;
    output.summary(&shown, &outcome.results, outcome.elapsed);
    if let Some(error) = outcome.error {
        return Err(error.into());
    }
    Ok(run_exit(outcome.status, output.json))
}

/// A finished run's exit code, saying so when it was cancelled.
pub(crate) fn run_exit(status: RunStatus, json: bool) -> ExitCode {
    match status {
        RunStatus::Cancelled => {
            if !json {
                eprintln!(
                    "Cancelled: nothing was published; what was built is left for `orbital gc`."
                );
            }
            ExitCode::from(diagnostics::CANCELLED)
        }
        RunStatus::Failed => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}

async fn cancel_on_ctrl_c(cancel: CancellationToken, json: bool) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    if !json {
        eprintln!(
            "\nCancelling: stopping running statements and plugins (Ctrl-C again to quit now)..."
        );
    }
    cancel.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        std::process::exit(i32::from(diagnostics::CANCELLED));
    }
}

/// Rust ignores SIGPIPE, so `orbital runs | head` would panic on the closed
/// pipe; like other Unix tools, let it end the process quietly instead.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; resetting
    // a signal's disposition to the default touches no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_tracing(verbose: bool) {
    // sqlx warns about every slow statement; building big tables is slow by
    // design. wasmtime's wasi:http warns of each failed connection, which a
    // plugin's own error already reports.
    let default = if verbose {
        "info,sqlx=warn,wasmtime_wasi_http=error"
    } else {
        "warn,sqlx=error,wasmtime_wasi_http=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORBITAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Where compiled plugins are cached: `ORBITAL_CACHE_DIR`, else the user's cache folder.
pub(crate) fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ORBITAL_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("orbital").join("plugins"))
}

async fn compile(
    engine: &Engine,
    cli: &Cli,
    select: &SelectArgs,
    model: Option<&str>,
    output: &report::Output,
) -> Result<ExitCode, Failure> {
    let compiled = engine
        .compile(CompileRequest {
            project: cli.project.clone(),
            selector: select.selector(),
            listing: Listing::Models,
        })
        .await?;
    let dag = &compiled.compiled.dag;
    let printed = match model {
        Some(name) => {
            let id = dag
                .find(name)
                .filter(|id| !dag.nodes[*id].is_seed())
                .ok_or_else(|| {
                    Failure::Usage(format!("no model named `{name}` (orbital ls lists them)"))
                })?;
            Some(id)
        }
        None => None,
    };
    let written = compiled.write()?;
    output.compiled(
        dag,
        &compiled.selection.nodes,
        printed,
        &compiled.out_dir(),
        written,
    );
    Ok(ExitCode::SUCCESS)
}
