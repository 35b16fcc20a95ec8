//! # orbital: the CLI box
//!
//! Parses the command line, drives load -> compile -> select -> run through
//! the core and the runner, and shows the results: a progress bar and
//! dbt-style lines on a terminal, one JSON document with `--json`.
//!
//! Exit codes: 0 success; 1 a seed or model failed; 2 the project, a model,
//! a selector or the command line is wrong; 3 the environment failed (the
//! database, a plugin component, the state store); 4 another orbital
//! process holds the environment.

mod diagnostics;
mod lock;
mod macros;
mod manage;
mod plugin;
mod report;
mod run;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use orbital_core::{CompiledProject, Project, Selection};

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
    /// List past runs with per-node status, timing and fingerprints.
    Runs {
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
}

/// Which node kinds a command runs.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Scope {
    Seeds,
    Models,
    /// `build`: seeds, models and their tests.
    Both,
    Tests,
}

impl Scope {
    /// Whether a command of this scope acts on `node`. Ephemeral models are
    /// inlined into their readers, never run.
    pub(crate) fn includes(self, node: &orbital_core::Node) -> bool {
        match self {
            Scope::Seeds => node.is_seed(),
            Scope::Models => node.as_model().is_some() && !node.is_ephemeral(),
            Scope::Both => !node.is_ephemeral(),
            Scope::Tests => node.is_test(),
        }
    }
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let output = report::Output::new(cli.json);
    let result = match &cli.command {
        Command::Compile { model, select } => compile(&cli, select, model.as_deref(), &output),
        Command::Ls { select } => list(&cli, select, &output),
        Command::Seed(args) => run::run(&cli, args, Scope::Seeds, "seed", &output),
        Command::Run(args) => run::run(&cli, args, Scope::Models, "run", &output),
        Command::Build(args) => run::run(&cli, args, Scope::Both, "build", &output),
        Command::Test(args) => run::run(&cli, args, Scope::Tests, "test", &output),
        Command::Plan { select, env } => manage::plan(&cli, select, env.as_deref(), &output),
        Command::Promote { from, to, select } => manage::promote(&cli, select, from, to, &output),
        Command::Gc { dry_run, select } => manage::gc(&cli, select, *dry_run, &output),
        Command::Runs { limit } => manage::runs(&cli, *limit, &output),
        Command::Plugin { command } => plugin::command(&cli, command, &output),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            diagnostics::report(&failure, &cli.project, &output);
            failure.exit_code()
        }
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
    // sqlx warns about every slow statement; building big tables is slow by design.
    let default = if verbose {
        "info,sqlx=warn"
    } else {
        "warn,sqlx=error"
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

/// Load, pick the target, compile, select: the synchronous front half of every command.
struct Prepared {
    project: Project,
    compiled: CompiledProject,
    selection: Selection,
}

fn prepare(cli: &Cli, select: &SelectArgs, scope: Scope) -> Result<Prepared, Failure> {
    let project = Project::load(&cli.project)?;
    let (_, target) = project.config.target(select.target.as_deref())?;
    let macros = session::project_macros(&project.root, &project.config)?;
    let compiled = orbital_core::compile_with(&project, target, &orbital_core::NoCache, &macros)?;
    let mut selection = Selection::resolve(&compiled.dag, &select.select, &select.exclude)?;
    selection.nodes.retain(|&id| match scope {
        // `compile` and `ls` show ephemeral models too.
        Scope::Models => compiled.dag.nodes[id].as_model().is_some(),
        Scope::Both => true,
        _ => scope.includes(&compiled.dag.nodes[id]),
    });
    if matches!(scope, Scope::Seeds | Scope::Both) {
        check_seeds(&project, &compiled, &selection)?;
    }
    Ok(Prepared {
        project,
        compiled,
        selection,
    })
}

/// Reads every selected seed before anything runs, so a malformed CSV stops
/// the command with nothing written.
pub(crate) fn check_seeds(
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
            orbital_core::NodeKind::Model(_) | orbital_core::NodeKind::Test(_) => None,
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

/// The async runtime of one command.
pub(crate) fn async_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Environment(format!("cannot start the async runtime: {e}")))
}
