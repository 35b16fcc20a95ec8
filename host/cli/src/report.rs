//! Human and JSON output: listings, compiled SQL, progress and the run summary.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use orbital_core::plan::{Action, Change, Repair};
use orbital_core::{Dag, NodeId};
use orbital_engine::{Collected, Event, NodeResult, PlanReport, Promoted, RunRecord, Status};

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
            let nodes: Vec<serde_json::Value> = selection
                .iter()
                .map(|&id| orbital_engine::node_json(dag, id))
                .collect();
            emit_json(&serde_json::json!({ "nodes": nodes }));
            return;
        }
        let rows: Vec<ListRow> = selection
            .iter()
            .map(|&id| {
                let node = &dag.nodes[id];
                ListRow {
                    kind: node.kind_name().to_string(),
                    name: node.name.clone(),
                    materialized: node
                        .as_model()
                        .map_or(String::new(), |m| m.config.materialized.clone()),
                    path: node.path.display().to_string(),
                }
            })
            .collect();
        self.list_rows(&rows);
    }

    /// `ls`'s lines: kind, name, materialization and file of each node.
    /// Where `orbital docs` wrote the site.
    pub fn docs(&self, written: &crate::docs::Written, nodes: usize) {
        if self.json {
            emit_json(&serde_json::json!({
                "page": written.page.display().to_string(),
                "data": written.data.display().to_string(),
                "nodes": nodes,
            }));
            return;
        }
        let noun = if nodes == 1 { "node" } else { "nodes" };
        println!(
            "Wrote the docs of {nodes} {noun} to {} (open it in a browser; it needs no server)",
            written.page.display()
        );
    }

    /// Rows `orbital show` read.
    pub fn rows(&self, rows: &orbital_engine::Rows) {
        if self.json {
            emit_json(rows);
            return;
        }
        print!("{}", table(rows, ""));
        let count = rows.rows.len();
        println!("({count} {})", if count == 1 { "row" } else { "rows" });
    }

    /// A column's lineage tree; unknowns last under the column they are of.
    pub fn lineage(&self, tree: &orbital_core::lineage::Tree, downstream: bool) {
        if self.json {
            emit_json(&serde_json::json!({ "lineage": tree, "downstream": downstream }));
            return;
        }
        let mut lines = vec![format!("{}.{}", tree.node, tree.column)];
        self.lineage_below(tree, "", &mut lines);
        println!("{}", lines.join("\n"));
    }

    fn lineage_below(
        &self,
        tree: &orbital_core::lineage::Tree,
        indent: &str,
        lines: &mut Vec<String>,
    ) {
        let count = tree.children.len() + tree.unknown.len();
        for (index, child) in tree.children.iter().enumerate() {
            let last = index + 1 == count;
            let kinds: Vec<&str> = child.kinds.iter().map(|k| k.label()).collect();
            let kind = kinds.join(", ");
            let repeated = if child.repeated { " (above)" } else { "" };
            lines.push(format!(
                "{indent}{}{}.{}  {}{repeated}",
                if last { "└─ " } else { "├─ " },
                child.node,
                child.column,
                self.paint(&kind, Paint::Dim)
            ));
            let deeper = format!("{indent}{}", if last { "   " } else { "│  " });
            self.lineage_below(child, &deeper, lines);
        }
        for (index, why) in tree.unknown.iter().enumerate() {
            let last = tree.children.len() + index + 1 == count;
            lines.push(format!(
                "{indent}{}{}",
                if last { "└─ " } else { "├─ " },
                self.paint(&format!("unknown: {why}"), Paint::Yellow)
            ));
        }
    }

    pub fn list_rows(&self, rows: &[ListRow]) {
        let width = rows.iter().map(|r| r.materialized.len()).max().unwrap_or(0);
        // One buffer: stdout's own line buffer makes a write per node.
        use std::io::Write;
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        for row in rows {
            let line = writeln!(
                out,
                "{:<6} {:<32} {:<width$} {}",
                row.kind, row.name, row.materialized, row.path
            );
            // A closed stdout (`| head`) is the reader's choice.
            if line.is_err() {
                return;
            }
        }
        let _ = out.flush();
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
                    let mut value = orbital_engine::node_json(dag, id);
                    value["sql"] = user_sql(dag, id).into();
                    value
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({ "models": models, "output_dir": out_dir.display().to_string() })
            );
            return;
        }
        match printed.and_then(|id| user_sql(dag, id)) {
            Some(sql) => println!("{sql}"),
            None => println!("Compiled {written} models into {}", out_dir.display()),
        }
    }

    /// Shows a run's events as they come: a progress bar and one line per
    /// finished node. Returns each finished node's file, by name, for the
    /// summary.
    pub async fn progress(
        &self,
        mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    ) -> HashMap<String, String> {
        let mut paths = HashMap::new();
        let bar = if self.json || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed}] {bar:30} {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let (mut done, mut total, mut running) = (0, 0, Vec::new());
        while let Some(event) = events.recv().await {
            match event {
                Event::RunStarted {
                    threads,
                    seeds,
                    models,
                    tests,
                    ..
                } => {
                    total = seeds + models + tests;
                    bar.set_length(total as u64);
                    bar.enable_steady_tick(Duration::from_millis(120));
                    if !self.json {
                        println!(
                            "Running {} on {threads} thread{}",
                            counts(seeds, models, tests),
                            if threads == 1 { "" } else { "s" }
                        );
                    }
                }
                Event::NodeStarted { node, .. } => running.push(node),
                Event::NodeFinished { path, result, .. } => {
                    running.retain(|n| n != &result.name);
                    done += 1;
                    bar.inc(1);
                    if !self.json {
                        let line = self.result_line(done, total, &result);
                        bar.suspend(|| println!("{line}"));
                    }
                    paths.insert(result.name, path);
                }
                Event::RunQueued { environment, .. } if !self.json => {
                    bar.suspend(|| {
                        eprintln!("Waiting for another run on environment `{environment}`...")
                    });
                }
                _ => {}
            }
            bar.set_message(running.join(", "));
        }
        bar.finish_and_clear();
        paths
    }

    fn result_line(&self, index: usize, total: usize, result: &NodeResult) -> String {
        let width = total.to_string().len();
        let (label, paint, detail) = match result.status {
            // The warehouse disagreed with the state store: say so.
            Status::Success | Status::Reused if result.repair.is_some() => {
                ("REPAIR", Paint::Yellow, result.message.clone())
            }
            Status::Success => ("OK", Paint::Green, result.message.clone()),
            Status::Reused => ("REUSE", Paint::Dim, "reused".to_string()),
            Status::Error => ("ERROR", Paint::Red, "error".to_string()),
            Status::Skipped => ("SKIP", Paint::Yellow, "skipped".to_string()),
            Status::Pass => ("PASS", Paint::Green, "pass".to_string()),
            Status::Fail => ("FAIL", Paint::Red, result.message.clone()),
            Status::Warn => ("WARN", Paint::Yellow, result.message.clone()),
            Status::Cancelled => ("CANCEL", Paint::Yellow, "cancelled".to_string()),
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

    pub fn summary(
        &self,
        paths: &HashMap<String, String>,
        results: &[NodeResult],
        elapsed: Duration,
    ) {
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        if self.json {
            emit_json(&serde_json::json!({ "results": results, "elapsed_ms": elapsed_ms }));
            return;
        }
        let count = |status| results.iter().filter(|r| r.status == status).count();
        let (pass, reuse, warn, error, skip) = (
            count(Status::Success) + count(Status::Pass),
            count(Status::Reused),
            count(Status::Warn),
            count(Status::Error) + count(Status::Fail),
            count(Status::Skipped),
        );
        println!();
        println!("Finished in {:.2}s.", elapsed.as_secs_f64());
        let failures: Vec<&NodeResult> = results
            .iter()
            .filter(|r| matches!(r.status, Status::Error | Status::Fail))
            .collect();
        if !failures.is_empty() {
            println!();
            println!("{}", self.paint("Errors:", Paint::Red));
            for failure in failures {
                let path = paths.get(&failure.name).cloned().unwrap_or_default();
                println!(
                    "  {} `{}` ({path}): {}",
                    failure.kind,
                    failure.name,
                    failure.error.as_deref().unwrap_or("failed")
                );
                if let Some(rows) = &failure.failing_rows {
                    let total = failure.failures.unwrap_or(0) as usize;
                    if total > rows.rows.len() {
                        println!("    the first {} of {total}:", rows.rows.len());
                    }
                    print!("{}", table(rows, "    "));
                }
            }
        }
        println!();
        let repaired = results.iter().filter(|r| r.repair.is_some()).count();
        let repaired = match repaired {
            0 => String::new(),
            n => format!(" REPAIRED={n}"),
        };
        let cancelled = match count(Status::Cancelled) {
            0 => String::new(),
            n => format!(" CANCELLED={n}"),
        };
        let done = format!(
            "Done. PASS={pass} REUSE={reuse}{repaired} WARN={warn} ERROR={error} SKIP={skip}{cancelled} TOTAL={}",
            results.len()
        );
        println!(
            "{}",
            self.paint(&done, if error > 0 { Paint::Red } else { Paint::Green })
        );
    }
}

impl Output {
    pub fn plan(&self, report: &PlanReport) {
        if self.json {
            emit_json(report);
            return;
        }
        let (environment, entries, removed) = (&report.environment, &report.nodes, &report.removed);
        let count = |change| entries.iter().filter(|e| e.change == change).count();
        println!(
            "Plan for environment `{environment}`: {} added, {} modified, {} affected downstream, {} removed, {} unchanged",
            count(Change::Added),
            count(Change::Modified),
            count(Change::Indirect),
            removed.len(),
            count(Change::Unchanged),
        );
        for entry in entries {
            let (sign, paint, what) = match entry.change {
                Change::Added => ("+", Paint::Green, "added"),
                Change::Modified => ("~", Paint::Yellow, "modified"),
                Change::Indirect => ("~", Paint::Dim, "upstream changed"),
                Change::Unchanged if entry.action == Action::Reuse => continue,
                Change::Unchanged => ("=", Paint::Dim, "unchanged"),
            };
            let continued;
            let action = match entry.action {
                Action::Build if entry.repair.is_some() => "build again",
                Action::Build => "build",
                Action::Repoint if entry.repair.is_some() => "point it back at its build",
                Action::Repoint => "reuse a build from another environment",
                Action::Reuse => "reuse",
                Action::Refresh => "rebuild in place: it reads a table this run continues",
                Action::Continue => match &entry.continues {
                    Some(previous) if previous != &entry.fingerprint => {
                        continued = format!(
                            "continue: copy table {} forward and add the increment",
                            previous.short()
                        );
                        &continued
                    }
                    _ => "continue its table with the increment",
                },
            };
            let repair = match entry.repair {
                Some(Repair::Missing) => ": its build is missing from the warehouse",
                Some(Repair::Repoint) => {
                    ": the environment's relation is missing or reads another build"
                }
                None => "",
            };
            println!(
                "{} {} {} ({what}; will {action}{repair}) {}",
                self.paint(sign, paint),
                entry.kind,
                entry.name,
                self.paint(&entry.fingerprint.short(), Paint::Dim)
            );
            if !entry.affects.is_empty() {
                println!("    affects: {}", entry.affects.join(", "));
            }
            if let Some(diff) = &entry.diff {
                for line in diff.lines() {
                    let paint = match line.chars().next() {
                        Some('+') => Paint::Green,
                        Some('-') => Paint::Red,
                        _ => Paint::Dim,
                    };
                    println!("    {}", self.paint(line, paint));
                }
            }
        }
        for name in removed {
            println!(
                "{} {name} (removed from the project)",
                self.paint("-", Paint::Red)
            );
        }
    }

    pub fn promoted(&self, promoted: &Promoted) {
        let (from, to, moved, dropped) = (
            &promoted.from,
            &promoted.to,
            promoted.promoted,
            promoted.removed,
        );
        if self.json {
            println!(
                "{}",
                serde_json::json!({ "from": from, "to": to, "promoted": moved, "removed": dropped })
            );
        } else {
            println!(
                "Promoted `{from}` to `{to}`: {moved} relation{} repointed, {dropped} removed; no model SQL ran.",
                if moved == 1 { "" } else { "s" }
            );
        }
    }

    pub fn garbage(&self, collected: &Collected) {
        let (dropped, objects, parses, dry_run) = (
            &collected.relations,
            collected.objects,
            collected.parses,
            collected.dry_run,
        );
        if self.json {
            let relations: Vec<serde_json::Value> = dropped
                .iter()
                .map(|(fp, r)| {
                    serde_json::json!({
                        "node": r.node, "relation": r.relation.to_string(), "fingerprint": fp,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "dry_run": dry_run, "relations": relations,
                    "objects": objects, "parse_cache_entries": parses,
                })
            );
            return;
        }
        let verb = if dry_run { "Would drop" } else { "Dropped" };
        for (_, record) in dropped {
            println!(
                "{verb} {} ({} of `{}`)",
                record.relation, record.kind, record.node
            );
        }
        println!(
            "{verb} {} relation{}, {objects} store object{} and {parses} parse cache entr{}.",
            dropped.len(),
            if dropped.len() == 1 { "" } else { "s" },
            if objects == 1 { "" } else { "s" },
            if parses == 1 { "y" } else { "ies" },
        );
    }

    pub fn runs(&self, runs: &[RunRecord]) {
        if self.json {
            emit_json(&serde_json::json!({ "runs": runs }));
            return;
        }
        if runs.is_empty() {
            println!("No runs recorded yet.");
        }
        for run in runs {
            let failed = run.nodes.iter().filter(|n| n.status.failed()).count();
            println!(
                "#{} {} {} (target {}, environment {}) {}: {} nodes, {} failed, {:.2}s{}",
                run.id,
                run.started_at,
                run.command,
                run.target,
                run.environment,
                json_word(&run.status),
                run.nodes.len(),
                failed,
                run.elapsed_ms as f64 / 1000.0,
                run.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
            for node in &run.nodes {
                println!(
                    "    {:<8} {:<32} {:>8.2}s {}{}",
                    json_word(&node.status),
                    node.name,
                    node.duration_ms as f64 / 1000.0,
                    node.fingerprint.map(|f| f.short()).unwrap_or_default(),
                    node.error
                        .as_deref()
                        .map(|e| format!(" {e}"))
                        .unwrap_or_default()
                );
            }
        }
    }
}

/// A model's SQL as users read it: references by their relation names.
fn user_sql(dag: &Dag, id: NodeId) -> Option<String> {
    orbital_engine::user_sql(dag, id)
}

/// How a serde enum names `value` (its JSON string).
fn json_word(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn counts(seeds: usize, models: usize, tests: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let parts: Vec<String> = [(seeds, "seed"), (models, "model"), (tests, "test")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, kind)| plural(n, kind))
        .collect();
    match parts.as_slice() {
        [] => "0 models".to_string(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// One line of `ls`.
pub struct ListRow {
    kind: String,
    name: String,
    materialized: String,
    path: String,
}

/// `ls`'s rows from the nodes of a daemon's `/v1/project`.
/// `rows` as an aligned text table, each line after `indent`; cells cut
/// at 40 characters, NULL as `NULL`.
pub fn table(rows: &orbital_engine::Rows, indent: &str) -> String {
    const WIDEST: usize = 40;
    let cut = |text: &str| -> String {
        let one_line = text.replace(['\n', '\r'], " ");
        match one_line.chars().count() > WIDEST {
            true => one_line.chars().take(WIDEST - 1).chain(['…']).collect(),
            false => one_line,
        }
    };
    let cells: Vec<Vec<String>> = rows
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| cut(c.as_deref().unwrap_or("NULL")))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = rows
        .columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let widest = cells
                .iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max();
            widest.unwrap_or(0).max(cut(name).chars().count())
        })
        .collect();
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{indent}{}\n", padded.join(" | ").trim_end())
    };
    let mut out = line(rows.columns.iter().map(|c| cut(c)).collect());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("{indent}{}\n", rule.join("-+-")));
    for row in cells {
        out.push_str(&line(row));
    }
    out
}

pub fn rows_of(nodes: &serde_json::Value) -> Vec<ListRow> {
    let text = |node: &serde_json::Value, key: &str| node[key].as_str().unwrap_or("").to_string();
    nodes
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|node| ListRow {
                    kind: text(node, "kind"),
                    name: text(node, "name"),
                    materialized: text(node, "materialized"),
                    path: text(node, "path"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `value` and a newline to stdout through one buffer: stdout's own
/// line buffer would make a thousand writes of a 10k-node plan.
fn emit_json(value: &impl serde::Serialize) {
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    // A closed stdout (`| head`) is the reader's choice, not an error.
    let _ = serde_json::to_writer(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush());
}
