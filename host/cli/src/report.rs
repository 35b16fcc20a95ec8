//! Human and JSON output: listings, compiled SQL, progress and the run summary.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use orbital_core::{Dag, NodeId};
use orbital_runner::{Event, NodeResult, RunOptions, Runtime, Status};

use crate::diagnostics::Failure;

const DOTS_TO: usize = 56;

pub struct Output {
    pub json: bool,
    color: bool,
}

#[derive(Clone, Copy)]
enum Paint {
    Green,
    Red,
    Yellow,
    Dim,
}

impl Output {
    pub fn new(json: bool) -> Self {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Self { json, color }
    }

    fn paint(&self, text: &str, paint: Paint) -> String {
        if !self.color {
            return text.to_string();
        }
        let code = match paint {
            Paint::Green => "32",
            Paint::Red => "31",
            Paint::Yellow => "33",
            Paint::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    pub fn list(&self, dag: &Dag, selection: &[NodeId]) {
        if self.json {
            let nodes: Vec<serde_json::Value> =
                selection.iter().map(|&id| node_json(dag, id)).collect();
            println!("{}", serde_json::json!({ "nodes": nodes }));
            return;
        }
        for &id in selection {
            let node = &dag.nodes[id];
            let detail = node
                .as_model()
                .map(|m| m.config.materialized.as_str())
                .unwrap_or("");
            println!(
                "{:<6} {:<32} {:<8} {}",
                node.kind_name(),
                node.name,
                detail,
                node.path.display()
            );
        }
    }

    pub fn compiled(
        &self,
        dag: &Dag,
        selection: &[NodeId],
        printed: Option<NodeId>,
        out_dir: &Path,
        written: usize,
    ) {
        if self.json {
            let models: Vec<serde_json::Value> = selection
                .iter()
                .chain(printed.iter())
                .filter(|id| !dag.nodes[**id].is_seed())
                .map(|&id| {
                    let mut value = node_json(dag, id);
                    value["sql"] = dag.nodes[id].as_model().map(|m| m.sql.clone()).into();
                    value
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({ "models": models, "output_dir": out_dir.display().to_string() })
            );
            return;
        }
        match printed.and_then(|id| dag.nodes[id].as_model()) {
            Some(model) => println!("{}", model.sql),
            None => println!("Compiled {written} models into {}", out_dir.display()),
        }
    }

    /// Runs the nodes, showing a progress bar and one line per finished node.
    pub async fn run(
        &self,
        runtime: Arc<Runtime>,
        dag: Arc<Dag>,
        selection: &[NodeId],
        options: &RunOptions,
    ) -> Vec<NodeResult> {
        let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
        let total = selection.len();
        let bar = if self.json || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total as u64)
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed}] {bar:30} {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        if !self.json {
            println!(
                "Running {} on {} thread{}",
                counts(&dag, selection),
                options.threads,
                if options.threads == 1 { "" } else { "s" }
            );
        }
        let work = orbital_runner::execute(runtime, dag.clone(), selection, options, sender);
        let show = async {
            let (mut done, mut running) = (0, Vec::new());
            while let Some(event) = events.recv().await {
                match event {
                    Event::Started { id } => running.push(dag.nodes[id].name.clone()),
                    Event::Finished(result) => {
                        running.retain(|n| n != &result.name);
                        done += 1;
                        bar.inc(1);
                        if !self.json {
                            let line = self.result_line(done, total, &result);
                            bar.suspend(|| println!("{line}"));
                        }
                    }
                }
                bar.set_message(running.join(", "));
            }
        };
        let (results, ()) = tokio::join!(work, show);
        bar.finish_and_clear();
        results
    }

    fn result_line(&self, index: usize, total: usize, result: &NodeResult) -> String {
        let width = total.to_string().len();
        let (label, paint, detail) = match result.status {
            Status::Success => ("OK", Paint::Green, result.message.clone()),
            Status::Error => ("ERROR", Paint::Red, "error".to_string()),
            Status::Skipped => ("SKIP", Paint::Yellow, "skipped".to_string()),
        };
        let what = format!("{} {} ", result.kind, result.relation);
        let dots = ".".repeat(DOTS_TO.saturating_sub(what.len()).max(3));
        format!(
            "{index:>width$} of {total} {:<5} {what}{} [{detail} in {:.2}s]",
            self.paint(label, paint),
            self.paint(&dots, Paint::Dim),
            result.duration_ms as f64 / 1000.0
        )
    }

    pub fn summary(&self, dag: &Dag, results: &[NodeResult], elapsed: Duration) {
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        if self.json {
            println!(
                "{}",
                serde_json::json!({ "results": results, "elapsed_ms": elapsed_ms })
            );
            return;
        }
        let count = |status| results.iter().filter(|r| r.status == status).count();
        let (pass, error, skip) = (
            count(Status::Success),
            count(Status::Error),
            count(Status::Skipped),
        );
        println!();
        println!("Finished in {:.2}s.", elapsed.as_secs_f64());
        let failures: Vec<&NodeResult> = results
            .iter()
            .filter(|r| r.status == Status::Error)
            .collect();
        if !failures.is_empty() {
            println!();
            println!("{}", self.paint("Errors:", Paint::Red));
            for failure in failures {
                let path = dag
                    .find(&failure.name)
                    .map(|id| dag.nodes[id].path.display().to_string())
                    .unwrap_or_default();
                println!(
                    "  {} `{}` ({path}): {}",
                    failure.kind,
                    failure.name,
                    failure.error.as_deref().unwrap_or("failed")
                );
            }
        }
        println!();
        let done = format!(
            "Done. PASS={pass} ERROR={error} SKIP={skip} TOTAL={}",
            results.len()
        );
        println!(
            "{}",
            self.paint(&done, if error > 0 { Paint::Red } else { Paint::Green })
        );
    }
}

fn counts(dag: &Dag, selection: &[NodeId]) -> String {
    let seeds = selection
        .iter()
        .filter(|id| dag.nodes[**id].is_seed())
        .count();
    let models = selection.len() - seeds;
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    match (seeds, models) {
        (0, m) => plural(m, "model"),
        (s, 0) => plural(s, "seed"),
        (s, m) => format!("{} and {}", plural(s, "seed"), plural(m, "model")),
    }
}

fn node_json(dag: &Dag, id: NodeId) -> serde_json::Value {
    let node = &dag.nodes[id];
    serde_json::json!({
        "name": node.name,
        "kind": node.kind_name(),
        "path": node.path.display().to_string(),
        "materialized": node.as_model().map(|m| m.config.materialized.clone()),
        "tags": node.tags,
        "depends_on": node.depends_on.iter().map(|d| dag.nodes[*d].name.clone()).collect::<Vec<_>>(),
    })
}

/// Writes each selected model's SQL to `out_dir/<model path>`, replacing the
/// folder only once everything is written.
pub fn write_compiled(dag: &Dag, selection: &[NodeId], out_dir: &Path) -> Result<usize, Failure> {
    let staging = out_dir.with_extension("partial");
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Failure::Write { path, source }
    };
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(write_error(&staging))?;
    }
    let mut written = 0;
    for &id in selection {
        let node = &dag.nodes[id];
        let Some(model) = node.as_model() else {
            continue;
        };
        let file: PathBuf = staging.join(&node.path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(write_error(parent))?;
        }
        std::fs::write(&file, format!("{}\n", model.sql)).map_err(write_error(&file))?;
        written += 1;
    }
    std::fs::create_dir_all(&staging).map_err(write_error(&staging))?;
    if out_dir.exists() {
        std::fs::remove_dir_all(out_dir).map_err(write_error(out_dir))?;
    }
    std::fs::rename(&staging, out_dir).map_err(write_error(out_dir))?;
    Ok(written)
}
