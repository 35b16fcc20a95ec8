//! The `/v1` API: routing, authentication, request bodies and the JSON
//! documents each endpoint answers (docs/api.md describes them).

use std::sync::Arc;

use http::{Method, StatusCode};
use orbital_engine::{
    CompileRequest, Details, EngineError, EnvironmentsRequest, ErrorKind, Listing, PlanRequest,
    PromoteRequest, RunCommand, RunRequest, Selector,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::server::Daemon;

/// What a request gets back.
pub(crate) enum Reply {
    Json(StatusCode, Value),
    /// A JSON body made before (200).
    Body(Arc<crate::body::Body>),
    /// Raw bytes (a stored object); `head`: the headers only.
    Bytes {
        bytes: Vec<u8>,
        head: bool,
    },
    Error(ApiError),
    /// An HTML page (the docs site), 200.
    Html(String),
    /// A run's event stream, from the event after `after`.
    Events {
        run: u64,
        after: u64,
    },
}

/// A request that failed: `{"error": {"code", "message", "locations"}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    code: String,
    message: String,
    locations: Vec<Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            locations: Vec::new(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "request.malformed", message)
    }

    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request.too_large",
            format!("the request body is over the daemon's limit of {limit} bytes"),
        )
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub(crate) fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    fn unauthorized() -> Self {
        // Nothing else is said: not whether a token was sent or how it differs.
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong token",
        )
    }

    pub(crate) fn body(&self) -> Value {
        json!({ "error": {
            "code": self.code,
            "message": self.message,
            "locations": self.locations,
        }})
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        let status = match (error.kind(), &error) {
            (_, EngineError::Internal(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            (ErrorKind::Input, _) => StatusCode::UNPROCESSABLE_ENTITY,
            (ErrorKind::Environment, _) => StatusCode::SERVICE_UNAVAILABLE,
            (ErrorKind::Busy | ErrorKind::Cancelled, _) => StatusCode::CONFLICT,
        };
        let locations = locations(&error);
        let mut api = Self::new(status, error.code(), error.to_string());
        api.locations = locations;
        api
    }
}

/// Each project error's file, line and column, where it has them.
fn locations(error: &EngineError) -> Vec<Value> {
    error
        .core_errors()
        .iter()
        .filter_map(|e| {
            let at = e.location()?;
            Some(json!({
                "path": at.path.display().to_string(),
                "line": at.line,
                "column": at.column,
                "message": e.to_string(),
            }))
        })
        .collect()
}

pub(crate) async fn route(daemon: &Arc<Daemon>, request: &http::Request<()>, body: &[u8]) -> Reply {
    match answer(daemon, request, body).await {
        Ok(reply) => reply,
        Err(error) => Reply::Error(error),
    }
}

async fn answer(
    daemon: &Arc<Daemon>,
    request: &http::Request<()>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let path = request.uri().path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method();
    if segments.as_slice() == ["v1", "health"] && method == Method::GET {
        return Ok(ok(
            json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }),
        ));
    }
    if !authorized(request, &daemon.token) {
        return Err(ApiError::unauthorized());
    }
    // Components the project names by hash and only a peer has.
    if daemon.peers.any()
        && let Ok(store) = daemon.engine.project_store(&daemon.options.project)
    {
        daemon
            .peers
            .fetch_plugins(&daemon.options.project, &store)
            .await;
    }
    let query = request.uri().query().unwrap_or("");
    match (method, segments.as_slice()) {
        (&Method::GET, ["v1", "project"]) => project(daemon).await,
        (&Method::GET, ["v1", "models", name]) => model(daemon, name).await.map(ok),
        (&Method::POST, ["v1", "plan"]) => plan(daemon, body).await,
        (&Method::POST, ["v1", "runs"]) => {
            let id = crate::runs::submit(daemon, run_request(daemon, body)?).await?;
            Ok(Reply::Json(StatusCode::ACCEPTED, json!({ "run": id })))
        }
        (&Method::GET, ["v1", "runs"]) => runs(daemon, query).map(ok),
        (&Method::GET, ["v1", "lineage"]) => lineage(daemon, query).await.map(ok),
        (&Method::GET, ["v1", "docs"]) => docs(daemon, query).await.map(|document| {
            let json = serde_json::to_vec(&document).unwrap_or_default();
            Reply::Body(Arc::new(crate::body::Body::new(json)))
        }),
        (&Method::GET, [""]) => docs(daemon, "")
            .await
            .map(|document| Reply::Html(orbital_engine::docs_site(&document))),
        (&Method::GET, ["v1", "runs", id]) => run(daemon, run_id(id)?),
        (&Method::POST, ["v1", "runs", id, "cancel"]) => {
            crate::runs::cancel(daemon, run_id(id)?)?;
            Ok(Reply::Json(
                StatusCode::ACCEPTED,
                json!({ "cancelling": true }),
            ))
        }
        (&Method::GET, ["v1", "environments"]) => environments(daemon, query).await.map(ok),
        (&Method::GET, ["v1", "environments", name]) => {
            environment(daemon, name, query).await.map(ok)
        }
        (&Method::POST, ["v1", "environments", to, "promote"]) => {
            promote(daemon, to, body).await.map(ok)
        }
        (&Method::GET, ["v1", "peers"]) => Ok(ok(json!({ "peers": daemon.peers.status().await }))),
        (&Method::GET, ["v1", "plugins"]) => plugins(daemon).await.map(ok),
        (&Method::POST, ["v1", "plugins"]) => {
            let installed = install(daemon, body).await?;
            Ok(Reply::Json(StatusCode::CREATED, installed))
        }
        (&Method::GET | &Method::HEAD, ["v1", "objects", hash]) => {
            object(daemon, hash, method == Method::HEAD)
        }
        (&Method::GET, ["v1", "runs", id, "events"]) => {
            let run = run_id(id)?;
            let after = last_event_id(request)?;
            crate::runs::check_followable(daemon, run)?;
            Ok(Reply::Events { run, after })
        }
        (_, ["v1", ..]) if known(&segments) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "request.method",
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(ApiError::not_found(format!("no endpoint {path}"))),
    }
}

fn ok(value: Value) -> Reply {
    Reply::Json(StatusCode::OK, value)
}

/// Whether `segments` names an endpoint under some method.
fn known(segments: &[&str]) -> bool {
    matches!(
        segments,
        [
            "v1",
            "health"
                | "project"
                | "plan"
                | "runs"
                | "environments"
                | "plugins"
                | "peers"
                | "lineage"
                | "docs"
        ] | ["v1", "models" | "environments" | "objects", _]
            | ["v1", "environments", _, "promote"]
            | ["v1", "runs", _]
            | ["v1", "runs", _, "cancel" | "events"]
    )
}

/// `Authorization: Bearer <token>`, compared in constant time.
fn authorized(request: &http::Request<()>, token: &str) -> bool {
    let header = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    // A browser opening the docs site cannot send the header: `/` also
    // takes `?token=`.
    let in_query = || {
        (request.uri().path() == "/")
            .then(|| request.uri().query())
            .flatten()
            .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("token=")))
            .map(str::as_bytes)
    };
    let Some(given) = header.or_else(in_query) else {
        return false;
    };
    let expected = token.as_bytes();
    given.len() == expected.len()
        && std::hint::black_box(
            given
                .iter()
                .zip(expected)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b)),
        ) == 0
}

fn run_id(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::not_found(format!("no run `{text}`: run ids are numbers")))
}

fn last_event_id(request: &http::Request<()>) -> Result<u64, ApiError> {
    match request.headers().get("last-event-id") {
        None => Ok(0),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be an event number")),
    }
}

/// A JSON body into `T`, refusing unknown fields and wrong types with what
/// serde says (which names the field, line and column).
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        let status = if e.is_syntax() || e.is_eof() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        let code = if status == StatusCode::BAD_REQUEST {
            "request.malformed"
        } else {
            "request.invalid"
        };
        ApiError::new(status, code, format!("the request body: {e}"))
    })
}

/// What `plan` and the runs take to pick nodes.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PlanBody {
    env: Option<String>,
    select: Vec<String>,
    exclude: Vec<String>,
    target: Option<String>,
    /// A dbt project's vars (a JSON object) over its own.
    vars: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    command: RunCommand,
    #[serde(default)]
    select: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    target: Option<String>,
    /// A dbt project's vars (a JSON object) over its own.
    #[serde(default)]
    vars: Option<Value>,
    #[serde(default)]
    threads: Option<usize>,
    #[serde(default)]
    full_refresh: bool,
    #[serde(default)]
    peers: Vec<String>,
    #[serde(default)]
    store_failures: bool,
}

fn run_request(daemon: &Daemon, body: &[u8]) -> Result<RunRequest, ApiError> {
    let body: RunBody = parse(body)?;
    if let Some(unknown) = body.peers.iter().find(|name| !daemon.peers.lists(name)) {
        return Err(ApiError::bad_request(format!(
            "`peers`: `{unknown}` is not a peer in this daemon's peers.toml"
        )));
    }
    Ok(RunRequest {
        project: daemon.options.project.clone(),
        command: body.command,
        selector: Selector {
            select: body.select,
            exclude: body.exclude,
            target: body.target,
            vars: body.vars.map(|vars| vars.to_string()),
        },
        threads: body.threads,
        full_refresh: body.full_refresh,
        env: body.env,
        peers: body.peers,
        store_failures: body.store_failures,
    })
}

async fn plan(daemon: &Daemon, body: &[u8]) -> Result<Reply, ApiError> {
    let body: PlanBody = parse(body)?;
    let _turn = turn(daemon).await?;
    let report = daemon
        .engine
        .plan(PlanRequest {
            project: daemon.options.project.clone(),
            selector: Selector {
                select: body.select,
                exclude: body.exclude,
                target: body.target,
                vars: body.vars.map(|vars| vars.to_string()),
            },
            env: body.env,
        })
        .await?;
    // Written straight to bytes: 10k entries through a `Value` first took
    // twice as long.
    let json = serde_json::to_vec(&report)
        .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?;
    Ok(Reply::Body(Arc::new(crate::body::Body::new(json))))
}

/// Every node with its edges. While the project does not compile, the
/// last listing that did, with the errors as diagnostics; 422 if none did.
/// The listing's body is kept for the project's version ([`Details`]).
async fn project(daemon: &Daemon) -> Result<Reply, ApiError> {
    match compile(daemon, Listing::Detailed).await {
        Ok(compiled) => {
            let version = compiled.details.as_ref().map(|d| d.version);
            if let Ok(listed) = daemon.listing.lock()
                && let (Some((kept, body)), Some(version)) = (&*listed, version)
                && *kept == version
            {
                return Ok(Reply::Body(body.clone()));
            }
            let listing = listing(&compiled);
            if let Ok(mut last) = daemon.last_good.lock() {
                *last = Some(listing.clone());
            }
            let mut listing = listing;
            listing["diagnostics"] = json!([]);
            let json = serde_json::to_vec(&listing)
                .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?;
            let body = Arc::new(crate::body::Body::new(json));
            if let (Some(version), Ok(mut listed)) = (version, daemon.listing.lock()) {
                *listed = Some((version, body.clone()));
            }
            Ok(Reply::Body(body))
        }
        Err(error) => {
            let last = daemon.last_good.lock().ok().and_then(|l| l.clone());
            let Some(mut listing) = last else {
                return Err(ApiError::from(error));
            };
            listing["diagnostics"] = json!([ApiError::from(error).body()["error"]]);
            Ok(ok(listing))
        }
    }
}

/// The nodes and edges of a compiled project.
fn listing(compiled: &orbital_engine::Compiled) -> Value {
    let dag = &compiled.compiled.dag;
    let details = compiled.details.as_deref();
    let nodes: Vec<Value> = compiled
        .selection
        .nodes
        .iter()
        .map(|&id| {
            let mut node = orbital_engine::node_json(dag, id);
            describe(&mut node, details, id, &dag.nodes[id].name);
            node
        })
        .collect();
    let edges: Vec<Value> = compiled
        .selection
        .nodes
        .iter()
        .flat_map(|&id| {
            dag.nodes[id]
                .depends_on
                .iter()
                .map(move |&from| json!([dag.nodes[from].name, dag.nodes[id].name]))
        })
        .collect();
    json!({ "nodes": nodes, "edges": edges })
}

/// Adds node `id`'s fingerprint and columns, where known.
fn describe(node: &mut Value, details: Option<&Details>, id: usize, name: &str) {
    node["fingerprint"] = json!(
        details
            .and_then(|d| d.fingerprints.as_ref())
            .map(|f| f[id].to_string())
    );
    node["columns"] = json!(details.and_then(|d| d.columns.get(&name.to_lowercase())));
}

/// A turn to compile (see `Daemon::compiles`).
async fn turn(daemon: &Daemon) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    daemon
        .compiles
        .acquire()
        .await
        .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))
}

async fn compile(
    daemon: &Daemon,
    listing: Listing,
) -> Result<orbital_engine::Compiled, EngineError> {
    let _turn = daemon
        .compiles
        .acquire()
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    daemon
        .engine
        .compile(CompileRequest {
            project: daemon.options.project.clone(),
            selector: Selector::default(),
            listing,
        })
        .await
}

async fn model(daemon: &Daemon, name: &str) -> Result<Value, ApiError> {
    let compiled = compile(daemon, Listing::Detailed).await?;
    let dag = &compiled.compiled.dag;
    let Some(id) = dag
        .nodes
        .iter()
        .position(|n| n.name == name && n.as_model().is_some())
    else {
        return Err(ApiError::not_found(format!("no model `{name}`")));
    };
    let node = &dag.nodes[id];
    let names = |ids: &[orbital_core::NodeId]| -> Vec<String> {
        ids.iter().map(|&i| dag.nodes[i].name.clone()).collect()
    };
    let mut value = orbital_engine::node_json(dag, id);
    value["sql"] = json!(orbital_engine::user_sql(dag, id));
    value["config"] = node
        .as_model()
        .map(|m| serde_json::to_value(&m.config).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    describe(&mut value, compiled.details.as_deref(), id, name);
    value["upstream"] = json!(names(&node.depends_on));
    value["downstream"] = json!(names(&dag.children[id]));
    Ok(value)
}

/// `[?target=t]`: the docs site's data, as `orbital docs` writes it.
async fn docs(daemon: &Daemon, query: &str) -> Result<orbital_engine::DocsDocument, ApiError> {
    let request = orbital_engine::DocsRequest {
        project: daemon.options.project.clone(),
        selector: Selector {
            target: target_of(query)?,
            ..Selector::default()
        },
    };
    let _turn = turn(daemon).await?;
    Ok(daemon.engine.docs(request).await?)
}

/// `?column=model.column[&downstream=true][&target=t]`: the column's
/// lineage tree, as `orbital lineage --json` prints it.
async fn lineage(daemon: &Daemon, query: &str) -> Result<Value, ApiError> {
    let mut request = orbital_engine::LineageRequest {
        project: daemon.options.project.clone(),
        ..Default::default()
    };
    for (key, value) in query_params(query, &["column", "downstream", "target"])? {
        match key {
            "column" => request.column = value.to_string(),
            "target" => request.selector.target = Some(value.to_string()),
            "downstream" => {
                request.downstream = match value {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "request.invalid",
                            format!("downstream must be true or false, not `{other}`"),
                        ));
                    }
                }
            }
            // `query_params` refused any other.
            _ => {}
        }
    }
    if request.column.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "request.invalid",
            "name the column: ?column=model.column",
        ));
    }
    let downstream = request.downstream;
    let _turn = turn(daemon).await?;
    let tree = daemon.engine.lineage(request).await?;
    Ok(json!({ "lineage": tree, "downstream": downstream }))
}

/// A page of runs, newest first; `next_cursor` asks for the page after it.
fn runs(daemon: &Daemon, query: &str) -> Result<Value, ApiError> {
    let mut limit = 50;
    let mut before = u64::MAX;
    for (key, value) in query_params(query, &["limit", "cursor"])? {
        match key {
            "cursor" => {
                before = value.parse().map_err(|_| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "request.invalid",
                        "cursor must be the next_cursor of an earlier page",
                    )
                })?;
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        ApiError::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "request.invalid",
                            "limit must be a number from 1 to 1000",
                        )
                    })?;
            }
            // `query_params` refused any other.
            _ => {}
        }
    }
    let runs = daemon
        .engine
        .runs_before(&daemon.options.project, before, limit)?;
    let next = (runs.len() == limit)
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    Ok(json!({ "runs": runs, "next_cursor": next }))
}

/// One run's record; a finished run's body is made once and kept.
fn run(daemon: &Daemon, id: u64) -> Result<Reply, ApiError> {
    if let Some(body) = daemon.records.get(id) {
        return Ok(Reply::Body(body));
    }
    let Some(record) = daemon.engine.run_record(&daemon.options.project, id)? else {
        return Err(ApiError::not_found(format!("no run {id}")));
    };
    let json = serde_json::to_vec(&record)
        .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?;
    let body = Arc::new(crate::body::Body::new(json));
    if record.status.is_final() {
        daemon.records.keep(id, body.clone());
    }
    Ok(Reply::Body(body))
}

/// Query parameters `allowed` takes, refusing any other.
fn query_params<'a>(query: &'a str, allowed: &[&str]) -> Result<Vec<(&'a str, &'a str)>, ApiError> {
    let params: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    if let Some((other, _)) = params.iter().find(|(k, _)| !allowed.contains(k)) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "request.invalid",
            format!("unknown query parameter `{other}`"),
        ));
    }
    Ok(params)
}

fn target_of(query: &str) -> Result<Option<String>, ApiError> {
    Ok(query_params(query, &["target"])?
        .into_iter()
        .find(|(k, _)| *k == "target")
        .map(|(_, v)| v.to_string()))
}

async fn all_environments(
    daemon: &Daemon,
    query: &str,
) -> Result<Vec<orbital_engine::Environment>, ApiError> {
    Ok(daemon
        .engine
        .environments(EnvironmentsRequest {
            project: daemon.options.project.clone(),
            target: target_of(query)?,
        })
        .await?)
}

async fn environments(daemon: &Daemon, query: &str) -> Result<Value, ApiError> {
    let listed: Vec<Value> = all_environments(daemon, query)
        .await?
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "models": e.models.len(),
                "version": e.version,
                "changed_by": e.changed_by,
            })
        })
        .collect();
    Ok(json!({ "environments": listed }))
}

async fn environment(daemon: &Daemon, name: &str, query: &str) -> Result<Value, ApiError> {
    let found = all_environments(daemon, query)
        .await?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no environment `{name}` is recorded")))?;
    serde_json::to_value(found).map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    from: String,
    #[serde(default)]
    select: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    target: Option<String>,
    /// A dbt project's vars (a JSON object) over its own.
    #[serde(default)]
    vars: Option<Value>,
}

async fn promote(daemon: &Daemon, to: &str, body: &[u8]) -> Result<Value, ApiError> {
    let body: PromoteBody = parse(body)?;
    let promoted = daemon
        .engine
        .promote(PromoteRequest {
            project: daemon.options.project.clone(),
            selector: Selector {
                select: body.select,
                exclude: body.exclude,
                target: body.target,
                vars: body.vars.map(|vars| vars.to_string()),
            },
            from: body.from,
            to: to.to_string(),
        })
        .await?;
    daemon.peers.changed();
    Ok(json!({
        "from": promoted.from,
        "to": promoted.to,
        "promoted": promoted.promoted,
        "removed": promoted.removed,
    }))
}

async fn plugins(daemon: &Daemon) -> Result<Value, ApiError> {
    let listed = daemon.engine.list_plugins(&daemon.options.project).await?;
    Ok(json!({ "plugins": listed }))
}

/// An uploaded component, checked by loading it (it must be a component
/// exporting one of the plugin worlds) and stored by its hash.
async fn install(daemon: &Daemon, body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "plugin.invalid",
            "the request body is empty: send the component's bytes",
        ));
    }
    let folder = tempfile::tempdir()
        .map_err(|e| ApiError::from(EngineError::Internal(format!("a scratch folder: {e}"))))?;
    let file = folder.path().join("upload.wasm");
    tokio::fs::write(&file, body)
        .await
        .map_err(|e| ApiError::from(EngineError::Internal(format!("a scratch file: {e}"))))?;
    let installed = daemon
        .engine
        .install_plugin(&daemon.options.project, &file)
        .await
        .map_err(|e| {
            let mut error = ApiError::from(e);
            if error.status == StatusCode::UNPROCESSABLE_ENTITY {
                error.code = "plugin.invalid".into();
                error.message = error
                    .message
                    .replace(&file.display().to_string(), "the upload");
            }
            error
        })?;
    let mut described = serde_json::to_value(&installed.described)
        .map_err(|e| ApiError::from(EngineError::Internal(e.to_string())))?;
    described["source"] = json!("uploaded");
    described["orbital_toml"] = json!(installed.listed);
    Ok(described)
}

fn object(daemon: &Daemon, text: &str, head: bool) -> Result<Reply, ApiError> {
    let digits = text.strip_prefix("blake3:").unwrap_or(text);
    let hash: orbital_core::Hash = digits.parse().map_err(|_| {
        ApiError::not_found(format!(
            "no object `{text}`: objects are named by blake3 hash"
        ))
    })?;
    match daemon.engine.object(&daemon.options.project, &hash)? {
        Some(bytes) => Ok(Reply::Bytes { bytes, head }),
        None => Err(ApiError::not_found(format!("no object {text}"))),
    }
}
