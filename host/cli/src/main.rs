//! # orbital: the CLI box
//!
//! Parses the command line, drives load -> compile -> select -> run through
//! the core and the runner, and shows the results: a progress bar and
//! dbt-style lines on a terminal, one JSON document with `--json`.
//!
//! Exit codes: 0 success; 1 a seed or model failed; 2 the project, a model,
//! a selector or the command line is wrong; 3 the environment failed (the
//! database, a plugin component).

mod diagnostics;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use orbital_core::{CompiledProject, Project, Selection, Target};
use orbital_plugins::Limits;
use orbital_runner::{Component, RunOptions, Runtime};

use crate::diagnostics::Failure;

#[derive(Parser)]
#[command(
    name = "orbital",
    version,
    about = "Build a SQL warehouse from a folder of plain SQL models."
)]
struct Cli {
    /// The project folder (holding orbital.toml).
    #[arg(long, global = true, default_value = ".", value_name = "DIR")]
    project: PathBuf,
    /// Print one JSON document instead of human output.
    #[arg(long, global = true)]
    json: bool,
    /// Show plugin log lines and more detail.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile models to SQL under the target folder; print one model's SQL.
    Compile {
        /// Print this model's compiled SQL.
        model: Option<String>,
        #[command(flatten)]
        select: SelectArgs,
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
    /// Load seeds, then build models, in dependency order.
    Build(RunArgs),
}

#[derive(Args, Clone)]
struct SelectArgs {
    /// Nodes to act on: names, `+name`, `name+`, `tag:x`, `path:dir`; space = union, comma = intersection.
    #[arg(short, long, num_args = 1.., value_name = "SELECTOR")]
    select: Vec<String>,
    /// Nodes to leave out, same syntax as --select.
    #[arg(long, num_args = 1.., value_name = "SELECTOR")]
    exclude: Vec<String>,
    /// The target in orbital.toml (default: default-target, or the only one).
    #[arg(short, long)]
    target: Option<String>,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    select: SelectArgs,
    /// How many nodes build at once (default: the target's `threads`, else 4).
    #[arg(long)]
    threads: Option<usize>,
    /// Ask materializations to rebuild from scratch.
    #[arg(long)]
    full_refresh: bool,
}

/// Which node kinds a command runs.
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    Seeds,
    Models,
    Both,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let output = report::Output::new(cli.json);
    let result = match &cli.command {
        Command::Compile { model, select } => compile(&cli, select, model.as_deref(), &output),
        Command::Ls { select } => list(&cli, select, &output),
        Command::Seed(args) => run(&cli, args, Scope::Seeds, &output),
        Command::Run(args) => run(&cli, args, Scope::Models, &output),
        Command::Build(args) => run(&cli, args, Scope::Both, &output),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            diagnostics::report(&failure, &cli.project, &output);
            failure.exit_code()
        }
    }
}

fn init_tracing(verbose: bool) {
    let default = if verbose { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ORBITAL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Where compiled plugins are cached: `ORBITAL_CACHE_DIR`, else the user's cache folder.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ORBITAL_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("orbital").join("wasmtime"))
}

/// Load, pick the target, compile, select: the synchronous front half of every command.
struct Prepared {
    project: Project,
    target_name: String,
    target: Target,
    compiled: CompiledProject,
    selection: Selection,
}

fn prepare(cli: &Cli, select: &SelectArgs, scope: Scope) -> Result<Prepared, Failure> {
    let project = Project::load(&cli.project)?;
    let (target_name, target) = project.config.target(select.target.as_deref())?;
    let (target_name, target) = (target_name.to_string(), target.clone());
    let compiled = orbital_core::compile(&project, &target)?;
    let mut selection = Selection::resolve(&compiled.dag, &select.select, &select.exclude)?;
    selection.nodes.retain(|&id| match scope {
        Scope::Seeds => compiled.dag.nodes[id].is_seed(),
        Scope::Models => !compiled.dag.nodes[id].is_seed(),
        Scope::Both => true,
    });
    if scope != Scope::Models {
        check_seeds(&project, &compiled, &selection)?;
    }
    Ok(Prepared {
        project,
        target_name,
        target,
        compiled,
        selection,
    })
}

/// Reads every selected seed before anything runs, so a malformed CSV stops
/// the command with nothing written.
fn check_seeds(
    project: &Project,
    compiled: &CompiledProject,
    selection: &Selection,
) -> Result<(), Failure> {
    let errors: Vec<orbital_core::Error> = selection
        .nodes
        .iter()
        .map(|&id| &compiled.dag.nodes[id])
        .filter_map(|node| match &node.kind {
            orbital_core::NodeKind::Seed(config) => orbital_core::seed::read(
                &node.name,
                &project.absolute(&node.path),
                &node.path,
                config,
            )
            .err(),
            orbital_core::NodeKind::Model(_) => None,
        })
        .collect();
    Ok(orbital_core::Error::collect(errors)?)
}

fn compile(
    cli: &Cli,
    select: &SelectArgs,
    model: Option<&str>,
    output: &report::Output,
) -> Result<ExitCode, Failure> {
    let prepared = prepare(cli, select, Scope::Models)?;
    let dag = &prepared.compiled.dag;
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
    let out_dir = prepared
        .project
        .root
        .join(&prepared.project.config.target_path)
        .join("compiled");
    let written = report::write_compiled(dag, &prepared.selection.nodes, &out_dir)?;
    output.compiled(dag, &prepared.selection.nodes, printed, &out_dir, written);
    Ok(ExitCode::SUCCESS)
}

fn list(cli: &Cli, select: &SelectArgs, output: &report::Output) -> Result<ExitCode, Failure> {
    let prepared = prepare(cli, select, Scope::Both)?;
    output.list(&prepared.compiled.dag, &prepared.selection.nodes);
    Ok(ExitCode::SUCCESS)
}

fn run(
    cli: &Cli,
    args: &RunArgs,
    scope: Scope,
    output: &report::Output,
) -> Result<ExitCode, Failure> {
    let started = Instant::now();
    let prepared = prepare(cli, &args.select, scope)?;
    let dag = Arc::new(prepared.compiled.dag);
    let threads = args.threads.or(prepared.target.threads).unwrap_or(4).max(1);
    let settings = &prepared.project.config.plugins;
    let limits = Limits {
        timeout: Duration::from_millis(settings.timeout_ms),
        memory_bytes: usize::try_from(settings.memory_limit_mb << 20).unwrap_or(usize::MAX),
        concurrency: u32::try_from(threads).unwrap_or(u32::MAX),
        cache_dir: cache_dir(),
    };
    let mut components: Vec<Component> = orbital_bundle::FIRST_PARTY
        .iter()
        .map(|(name, bytes)| Component {
            label: format!("bundled:{name}"),
            bytes: bytes.to_vec(),
            bundled: true,
        })
        .collect();
    for path in &settings.components {
        components.push(Component::read(&prepared.project.root.join(path))?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Environment(format!("cannot start the async runtime: {e}")))?;
    let results = runtime.block_on(async {
        let rt = Runtime::start(
            &prepared.target_name,
            &prepared.target,
            &prepared.project.root,
            components,
            limits,
        )
        .await?;
        let strategies = prepared.selection.nodes.iter().filter_map(|&id| {
            let node = &dag.nodes[id];
            node.as_model()
                .map(|m| (node.name.as_str(), m.config.materialized.as_str()))
        });
        rt.check_strategies(strategies)?;
        let options = RunOptions {
            threads,
            full_refresh: args.full_refresh,
        };
        let results = output
            .run(rt.clone(), dag.clone(), &prepared.selection.nodes, &options)
            .await;
        rt.close().await;
        Ok::<_, Failure>(results)
    })?;
    output.summary(&dag, &results, started.elapsed());
    let failed = results
        .iter()
        .any(|r| r.status == orbital_runner::Status::Error);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
