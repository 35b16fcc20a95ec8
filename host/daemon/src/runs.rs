//! The runs this daemon started: each one's cancel token and its events,
//! numbered from 1 and kept in memory while the run lives and for the last
//! [`KEEP_FINISHED`] finished runs, so a client that reconnects with
//! `Last-Event-ID` gets what it missed. The run records themselves are the
//! engine's, in the project's state store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use orbital_engine::{CancellationToken, Event, RunRequest};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::api::ApiError;
use crate::server::{Daemon, ResponseStream};

/// How often an idle event stream says it is alive: well within any
/// client's and the connection's idle timeout.
const PING_EVERY: Duration = Duration::from_secs(10);

/// Finished runs whose events stay followable: a client reconnecting soon
/// after a run ended still gets its end, and a daemon that lives for months
/// does not keep every event of every run (their records stay).
const KEEP_FINISHED: usize = 100;

#[derive(Default)]
pub(crate) struct Runs {
    tracked: Mutex<HashMap<u64, Arc<Tracked>>>,
    /// Set at shutdown: no new run starts.
    closed: std::sync::atomic::AtomicBool,
    /// Every run's task, to wait for at shutdown.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

struct Tracked {
    cancel: CancellationToken,
    log: Mutex<Log>,
    changed: Notify,
}

#[derive(Default)]
struct Log {
    /// (event name, JSON) in order; event n is at index n - 1.
    events: Vec<(String, String)>,
    finished: bool,
}

impl Tracked {
    fn push(&self, name: &str, value: &Value) {
        if let Ok(mut log) = self.log.lock() {
            log.events.push((name.to_string(), value.to_string()));
        }
        self.changed.notify_waiters();
    }

    fn finish(&self) {
        if let Ok(mut log) = self.log.lock() {
            log.finished = true;
        }
        self.changed.notify_waiters();
    }

    /// The events after `after`, and whether the run has finished.
    fn since(&self, after: u64) -> (Vec<(u64, String, String)>, bool) {
        let Ok(log) = self.log.lock() else {
            return (Vec::new(), true);
        };
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(log.events.len());
        let events = log.events[start..]
            .iter()
            .enumerate()
            .map(|(i, (name, data))| ((start + i + 1) as u64, name.clone(), data.clone()))
            .collect();
        (events, log.finished)
    }
}

impl Runs {
    fn get(&self, id: u64) -> Option<Arc<Tracked>> {
        self.tracked.lock().ok()?.get(&id).cloned()
    }

    /// Forgets the events of all but the newest [`KEEP_FINISHED`]
    /// finished runs.
    fn evict_finished(&self) {
        let Ok(mut tracked) = self.tracked.lock() else {
            return;
        };
        let mut finished: Vec<u64> = tracked
            .iter()
            .filter(|(_, t)| t.since(u64::MAX).1)
            .map(|(id, _)| *id)
            .collect();
        if finished.len() <= KEEP_FINISHED {
            return;
        }
        finished.sort_unstable();
        for id in &finished[..finished.len() - KEEP_FINISHED] {
            tracked.remove(id);
        }
    }

    pub(crate) fn refuse_new(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Waits up to `grace` for running runs, then cancels those left and
    /// waits for them to record themselves.
    pub(crate) async fn finish(&self, grace: Duration) {
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        let mut all = futures::future::join_all(tasks);
        if tokio::time::timeout(grace, &mut all).await.is_ok() {
            return;
        }
        if let Ok(tracked) = self.tracked.lock() {
            tracked.values().for_each(|t| t.cancel.cancel());
        }
        all.await;
    }
}

/// The event's name on the stream and its run.
fn describe(event: &Event) -> (&'static str, u64) {
    match event {
        Event::RunQueued { run, .. } => ("run_queued", *run),
        Event::RunStarted { run, .. } => ("run_started", *run),
        Event::NodeStarted { run, .. } => ("node_started", *run),
        Event::NodeFinished { run, .. } => ("node_finished", *run),
        Event::Publishing { run, .. } => ("publishing", *run),
        Event::Recorded { run } => ("recorded", *run),
        Event::RunFinished { run, .. } => ("run_finished", *run),
    }
}

fn to_json(event: &Event) -> Value {
    serde_json::to_value(event).unwrap_or(Value::Null)
}

/// Starts `request` and answers with its run id once the engine gave it
/// one (the run is queued or started); a request the engine refuses before
/// that (the project does not compile, a bad selector) is the error.
pub(crate) async fn submit(daemon: &Arc<Daemon>, request: RunRequest) -> Result<u64, ApiError> {
    if daemon.runs.closed.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::conflict(
            "daemon.stopping",
            "the daemon is stopping: it starts no run",
        ));
    }
    let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let engine = daemon.engine.clone();
    let mut running = tokio::spawn({
        let cancel = cancel.clone();
        async move { engine.run(request, events, cancel).await }
    });
    let first = tokio::select! {
        event = received.recv() => event,
        finished = &mut running => {
            // No event came first: the engine refused the run.
            return ended_early(finished);
        }
    };
    let Some(first) = first else {
        return ended_early(running.await);
    };
    let (name, id) = describe(&first);
    let tracked = Arc::new(Tracked {
        cancel,
        log: Mutex::new(Log::default()),
        changed: Notify::new(),
    });
    tracked.push(name, &to_json(&first));
    if let Ok(mut all) = daemon.runs.tracked.lock() {
        all.insert(id, tracked.clone());
    }
    let daemon_for_eviction = daemon.clone();
    let follow = tokio::spawn(async move {
        while let Some(event) = received.recv().await {
            tracked.push(describe(&event).0, &to_json(&event));
        }
        // The events ended with the run; its result says what else failed.
        match running.await {
            Ok(Ok(outcome)) => {
                if let Some(error) = outcome.error {
                    tracked.push("run_error", &error_json(&error));
                }
            }
            Ok(Err(error)) => tracked.push("run_error", &error_json(&error)),
            Err(e) => tracked.push(
                "run_error",
                &json!({ "code": "internal", "message": e.to_string() }),
            ),
        }
        tracked.finish();
        daemon_for_eviction.peers.changed();
        daemon_for_eviction.runs.evict_finished();
    });
    if let Ok(mut tasks) = daemon.runs.tasks.lock() {
        tasks.retain(|t| !t.is_finished());
        tasks.push(follow);
    }
    Ok(id)
}

/// A run that ended before its first event: the engine refused it.
fn ended_early(
    finished: Result<
        Result<orbital_engine::RunOutcome, orbital_engine::EngineError>,
        tokio::task::JoinError,
    >,
) -> Result<u64, ApiError> {
    match finished {
        Ok(Err(error)) => Err(ApiError::from(error)),
        Ok(Ok(outcome)) => Ok(outcome.run),
        Err(e) => Err(ApiError::from(orbital_engine::EngineError::Internal(
            e.to_string(),
        ))),
    }
}

fn error_json(error: &orbital_engine::EngineError) -> Value {
    json!({ "code": error.code(), "message": error.to_string() })
}

pub(crate) fn cancel(daemon: &Daemon, id: u64) -> Result<(), ApiError> {
    let Some(tracked) = daemon.runs.get(id) else {
        return Err(ApiError::not_found(format!(
            "no run {id} is running in this daemon"
        )));
    };
    if tracked.since(u64::MAX).1 {
        return Err(ApiError::conflict(
            "run.finished",
            format!("run {id} has finished"),
        ));
    }
    tracked.cancel.cancel();
    Ok(())
}

pub(crate) fn check_followable(daemon: &Daemon, id: u64) -> Result<(), ApiError> {
    match daemon.runs.get(id) {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!(
            "this daemon keeps no events of run {id} (it did not start it, or it finished long ago); its record is at /v1/runs/{id}"
        ))),
    }
}

/// Writes run `id`'s events after `after` as server-sent events, then the
/// new ones as they come, with a ping comment when idle; ends with the run.
pub(crate) async fn stream(
    daemon: &Daemon,
    id: u64,
    after: u64,
    stream: &mut ResponseStream,
) -> Result<(), String> {
    let Some(tracked) = daemon.runs.get(id) else {
        return Err(format!("run {id} is not followable"));
    };
    let headers = [
        ("content-type", "text/event-stream; charset=utf-8"),
        ("cache-control", "no-cache"),
    ];
    crate::server::send_head(stream, http::StatusCode::OK, &headers).await?;
    let mut sent = after;
    loop {
        // Registered before looking, so an event pushed in between wakes it.
        let changed = tracked.changed.notified();
        let (events, finished) = tracked.since(sent);
        if !events.is_empty() {
            let mut text = String::new();
            for (number, name, data) in &events {
                text.push_str(&format!("id: {number}\nevent: {name}\ndata: {data}\n\n"));
                sent = *number;
            }
            stream
                .send_data(Bytes::from(text))
                .await
                .map_err(|e| e.to_string())?;
        }
        if finished {
            break;
        }
        if tokio::time::timeout(PING_EVERY, changed).await.is_err() {
            stream
                .send_data(Bytes::from_static(b": ping\n\n"))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    stream.finish().await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(finished: bool) -> Arc<Tracked> {
        let tracked = Arc::new(Tracked {
            cancel: CancellationToken::new(),
            log: Mutex::new(Log::default()),
            changed: Notify::new(),
        });
        tracked.push("run_started", &json!({}));
        if finished {
            tracked.finish();
        }
        tracked
    }

    #[test]
    fn only_the_newest_finished_runs_keep_their_events() {
        let runs = Runs::default();
        {
            let mut all = runs.tracked.lock().unwrap();
            for id in 1..=(KEEP_FINISHED as u64 + 10) {
                all.insert(id, tracked(true));
            }
            // An old run still running keeps its events whatever its age.
            all.insert(0, tracked(false));
        }
        runs.evict_finished();
        assert!(runs.get(0).is_some());
        assert!(runs.get(10).is_none());
        assert!(runs.get(11).is_some());
        assert_eq!(runs.tracked.lock().unwrap().len(), KEEP_FINISHED + 1);
    }
}
