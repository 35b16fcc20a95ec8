//! The daemon as a user runs it: a real `orbital daemon` process on
//! 127.0.0.1, spoken to over real QUIC and HTTP/3 by a client that pins its
//! certificate.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use orbital_daemon::client::Client;
use serde_json::{Value, json};
use support::TestProject;
use support::daemon::{
    Daemon, finished, follow, pg_scalar, postgres_project, runtime, start_run, stop,
};

/// (method, path, body, status, error code)
type Case = (
    &'static str,
    &'static str,
    Option<Vec<u8>>,
    u16,
    &'static str,
);

fn error_code(response: &orbital_daemon::client::Response) -> String {
    response.json().unwrap()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_build_over_http3_with_its_event_stream_and_history() {
    let project = TestProject::jaffle_shop();
    let daemon = Daemon::start(&project);
    #[cfg(unix)]
    for name in ["cert.pem", "key.pem", "token"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(daemon.data_dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    runtime().block_on(async {
        let mut client = daemon.client().await;
        let project_listing = client.request("GET", "/v1/project", None).await.unwrap();
        assert_eq!(project_listing.status, 200);
        let listing = project_listing.json().unwrap();
        let names: Vec<&str> = listing["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"customers") && names.contains(&"raw_orders"),
            "{names:?}"
        );
        assert!(
            listing["edges"]
                .as_array()
                .unwrap()
                .contains(&json!(["stg_orders", "orders"])),
            "{listing}"
        );
        let node = |listing: &Value, name: &str| -> Value {
            listing["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["name"] == name)
                .cloned()
                .unwrap()
        };
        // Columns come from the CSV header and the SQL, before any build;
        // fingerprints cover the plugins, unknown until a run has loaded them.
        assert_eq!(
            node(&listing, "raw_customers")["columns"],
            json!(["id", "first_name", "last_name"])
        );
        let stg = node(&listing, "stg_customers");
        assert_eq!(
            stg["columns"],
            json!(["customer_id", "first_name", "last_name"]),
            "{stg}"
        );
        assert!(stg["fingerprint"].is_null(), "{stg}");

        let model = client
            .request("GET", "/v1/models/orders", None)
            .await
            .unwrap();
        assert_eq!(model.status, 200);
        let model = model.json().unwrap();
        assert!(
            model["sql"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("select")
        );
        assert!(
            model["upstream"]
                .as_array()
                .unwrap()
                .contains(&json!("stg_orders"))
        );
        // The docs site's data, as `orbital docs` writes it.
        let docs = client.request("GET", "/v1/docs", None).await.unwrap();
        assert_eq!(docs.status, 200);
        let docs = docs.json().unwrap();
        assert!(
            docs["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["name"] == "orders"
                    && n["columns"].as_array().is_some_and(|c| !c.is_empty())),
            "{docs}"
        );
        // A column's lineage, as `orbital lineage --json` gives it.
        let lineage = client
            .request("GET", "/v1/lineage?column=orders.credit_card_amount", None)
            .await
            .unwrap();
        assert_eq!(lineage.status, 200);
        let lineage = lineage.json().unwrap();
        let method = lineage["lineage"]["children"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["node"] == "stg_payments" && c["column"] == "payment_method")
            .unwrap_or_else(|| panic!("{lineage}"));
        assert_eq!(method["kinds"], json!(["filter"]));

        let run = start_run(&mut client, json!({ "command": "build" })).await;

        // Follow the run to its end.
        let mut events: Vec<(u64, String, Value)> = Vec::new();
        let status = client
            .events(&format!("/v1/runs/{run}/events"), None, |id, name, data| {
                events.push((id, name.to_string(), serde_json::from_str(data).unwrap()));
                true
            })
            .await
            .unwrap();
        assert_eq!(status, 200);
        let names: Vec<&str> = events.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"run_started"), "{names:?}");
        assert_eq!(names.last(), Some(&"run_finished"), "{names:?}");
        assert_eq!(events.last().unwrap().2["status"], "succeeded");
        let ids: Vec<u64> = events.iter().map(|(id, _, _)| *id).collect();
        assert_eq!(ids, (1..=events.len() as u64).collect::<Vec<_>>());
        let started_nodes = names.iter().filter(|n| **n == "node_started").count();
        let finished_nodes = names.iter().filter(|n| **n == "node_finished").count();
        assert_eq!(started_nodes, finished_nodes);
        assert!(finished_nodes > 10, "{names:?}");

        // A client that saw up to event 3 gets the rest, and only the rest.
        let mut resumed = Vec::new();
        client
            .events(&format!("/v1/runs/{run}/events"), Some(3), |id, _, _| {
                resumed.push(id);
                true
            })
            .await
            .unwrap();
        assert_eq!(resumed, ids[3..].to_vec());

        let record = client
            .request("GET", &format!("/v1/runs/{run}"), None)
            .await
            .unwrap();
        assert_eq!(record.status, 200);
        // The client accepts gzip and the record is large: it came gzipped,
        // and a client that does not accept gzip gets the same JSON plain.
        assert!(record.gzipped);
        let plain = client
            .request_with("GET", &format!("/v1/runs/{run}"), None, &[])
            .await
            .unwrap();
        assert!(!plain.gzipped);
        assert_eq!(plain.json().unwrap(), record.json().unwrap());
        let record = record.json().unwrap();
        assert_eq!(record["status"], "succeeded");
        assert_eq!(record["nodes"].as_array().unwrap().len(), finished_nodes);

        let history = client
            .request("GET", "/v1/runs?limit=5", None)
            .await
            .unwrap();
        assert_eq!(history.json().unwrap()["runs"][0]["id"], run);

        // Built: the plan reuses everything.
        let plan = client
            .request("POST", "/v1/plan", Some(&json!({})))
            .await
            .unwrap();
        assert_eq!(plan.status, 200);
        let plan = plan.json().unwrap();
        assert!(
            plan["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["action"] == "reuse"),
            "{plan}"
        );
        // Now the fingerprints are known, and they are the plan's.
        let planned = plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "orders")
            .unwrap()["fingerprint"]
            .clone();
        let orders = client
            .request("GET", "/v1/models/orders", None)
            .await
            .unwrap();
        assert_eq!(orders.json().unwrap()["fingerprint"], planned);
        let listing = client.request("GET", "/v1/project", None).await.unwrap();
        assert_eq!(
            node(&listing.json().unwrap(), "orders")["fingerprint"],
            planned
        );

        // Environments: promote prod's builds to dev, then look at both.
        let promoted = client
            .request(
                "POST",
                "/v1/environments/dev/promote",
                Some(&json!({ "from": "prod" })),
            )
            .await
            .unwrap();
        assert_eq!(
            promoted.status,
            200,
            "{}",
            String::from_utf8_lossy(&promoted.body)
        );
        assert!(promoted.json().unwrap()["promoted"].as_u64().unwrap() > 0);
        let listed = client
            .request("GET", "/v1/environments", None)
            .await
            .unwrap();
        let listed = listed.json().unwrap();
        let names: Vec<&str> = listed["environments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["dev", "prod"], "{listed}");
        let dev = client
            .request("GET", "/v1/environments/dev", None)
            .await
            .unwrap();
        let dev = dev.json().unwrap();
        let orders = dev["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"] == "orders")
            .unwrap();
        assert!(
            orders["build"]
                .as_str()
                .unwrap()
                .starts_with("orbital__orders__"),
            "{dev}"
        );
        let missing = client
            .request("GET", "/v1/environments/nope", None)
            .await
            .unwrap();
        assert_eq!(missing.status, 404);
        let bad = client
            .request(
                "POST",
                "/v1/environments/dev/promote",
                Some(&json!({ "from": "nope" })),
            )
            .await
            .unwrap();
        assert_eq!(bad.status, 422, "{}", String::from_utf8_lossy(&bad.body));

        // Plugins: upload a component, find it listed and stored by hash.
        let component =
            std::fs::read(orbital_bundle::test_component("orbital-test-range-tests")).unwrap();
        let installed = client
            .request_with("POST", "/v1/plugins", Some(component.clone()), &[])
            .await
            .unwrap();
        assert_eq!(
            installed.status,
            201,
            "{}",
            String::from_utf8_lossy(&installed.body)
        );
        let hash = installed.json().unwrap()["hash"]
            .as_str()
            .unwrap()
            .to_string();
        let plugins = client.request("GET", "/v1/plugins", None).await.unwrap();
        let plugins = plugins.json().unwrap();
        assert!(
            plugins["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["hash"] == hash.as_str()),
            "{plugins}"
        );
        let stored = client
            .request("GET", &format!("/v1/objects/{hash}"), None)
            .await
            .unwrap();
        assert_eq!((stored.status, stored.body == component), (200, true));
        let head = client
            .request_with("HEAD", &format!("/v1/objects/{hash}"), None, &[])
            .await
            .unwrap();
        assert_eq!((head.status, head.body.len()), (200, 0));
        let unknown = client
            .request(
                "GET",
                &format!("/v1/objects/blake3:{}", "0".repeat(64)),
                None,
            )
            .await
            .unwrap();
        assert_eq!(unknown.status, 404);
        // Not wasm; a core module, not a component; a component that
        // exports no plugin world (the empty component).
        let uploads: [(&[u8], &str); 3] = [
            (b"not a component", "component"),
            (b"\0asm\x01\0\0\0", "component"),
            (b"\0asm\x0d\0\x01\0", "exports none of the worlds"),
        ];
        for (not_a_plugin, says) in uploads {
            let refused = client
                .request_with("POST", "/v1/plugins", Some(not_a_plugin.to_vec()), &[])
                .await
                .unwrap();
            assert_eq!(
                (refused.status, error_code(&refused)),
                (422, "plugin.invalid".into()),
                "{}",
                String::from_utf8_lossy(&refused.body)
            );
            let message = refused.json().unwrap()["error"]["message"].clone();
            assert!(message.as_str().unwrap().contains(says), "{message}");
        }
        client.close().await;
    });
    // The CLI sees the daemon's run in the shared state store.
    let runs = project.orbital(&["runs", "--json"]).expect_code(0).json();
    assert_eq!(runs["runs"][0]["status"], "succeeded");
    assert_eq!(daemon.stop(), 0);
}

#[test]
fn bad_requests_are_clear_4xx_and_the_daemon_keeps_serving() {
    let project = TestProject::jaffle_shop();
    let daemon = Daemon::start(&project);
    runtime().block_on(async {
        // Health needs no token; everything else does, and says nothing more.
        let mut anonymous = Client::connect(daemon.addr, &daemon.fingerprint, None)
            .await
            .unwrap();
        assert_eq!(
            anonymous
                .request("GET", "/v1/health", None)
                .await
                .unwrap()
                .status,
            200
        );
        let refused = anonymous.request("GET", "/v1/project", None).await.unwrap();
        assert_eq!(
            (refused.status, error_code(&refused)),
            (401, "unauthorized".into())
        );
        let mut wrong = Client::connect(daemon.addr, &daemon.fingerprint, Some("x".repeat(64)))
            .await
            .unwrap();
        let refused = wrong.request("GET", "/v1/runs", None).await.unwrap();
        assert_eq!(refused.status, 401);
        assert!(!String::from_utf8_lossy(&refused.body).contains(&daemon.token));
        // The docs site takes the token in its URL too (a browser sends no
        // header), and only the right one.
        let page = anonymous
            .request("GET", &format!("/?token={}", daemon.token), None)
            .await
            .unwrap();
        assert_eq!(page.status, 200);
        let html = String::from_utf8_lossy(&page.body);
        assert!(
            html.starts_with("<!doctype html>") && html.contains("\"stg_orders\""),
            "{html}"
        );
        let refused = anonymous
            .request("GET", "/?token=nope", None)
            .await
            .unwrap();
        assert_eq!(refused.status, 401);
        let refused = anonymous
            .request("GET", &format!("/v1/docs?token={}", daemon.token), None)
            .await
            .unwrap();
        assert_eq!(
            refused.status, 401,
            "only the page takes the token in its URL"
        );

        let mut client = daemon.client().await;
        let cases: Vec<Case> = vec![
            (
                "POST",
                "/v1/plan",
                Some(b"{not json".to_vec()),
                400,
                "request.malformed",
            ),
            (
                "POST",
                "/v1/plan",
                Some(br#"{"envv": "dev"}"#.to_vec()),
                422,
                "request.invalid",
            ),
            (
                "POST",
                "/v1/plan",
                Some(br#"{"select": 3}"#.to_vec()),
                422,
                "request.invalid",
            ),
            (
                "POST",
                "/v1/runs",
                Some(br#"{"command": "explode"}"#.to_vec()),
                422,
                "request.invalid",
            ),
            (
                "POST",
                "/v1/plan",
                Some(br#"{"select": ["nope"]}"#.to_vec()),
                422,
                "selector.unknown",
            ),
            (
                "POST",
                "/v1/runs",
                Some(br#"{"command": "run", "select": ["nope"]}"#.to_vec()),
                422,
                "selector.unknown",
            ),
            ("GET", "/v1/runs/999", None, 404, "not_found"),
            ("GET", "/v1/runs/abc", None, 404, "not_found"),
            ("POST", "/v1/runs/999/cancel", None, 404, "not_found"),
            ("GET", "/v1/models/nope", None, 404, "not_found"),
            ("GET", "/v1/nothing", None, 404, "not_found"),
            ("DELETE", "/v1/project", None, 405, "request.method"),
            ("GET", "/v1/runs?limit=0", None, 422, "request.invalid"),
            ("GET", "/v1/lineage", None, 422, "request.invalid"),
            (
                "GET",
                "/v1/lineage?column=nope.x",
                None,
                422,
                "request.invalid",
            ),
            (
                "GET",
                "/v1/lineage?column=orders.x&colour=red",
                None,
                422,
                "request.invalid",
            ),
        ];
        for (method, path, body, status, code) in cases {
            let response = client
                .request_with(method, path, body.clone(), &[])
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&response.body).to_string();
            assert_eq!(
                (response.status, error_code(&response)),
                (status, code.to_string()),
                "{method} {path} {:?}: {text}",
                body.map(|b| String::from_utf8_lossy(&b).to_string())
            );
            assert!(
                !response.json().unwrap()["error"]["message"]
                    .as_str()
                    .unwrap()
                    .is_empty()
            );
        }
        // Serde's message names the field.
        let unknown = client
            .request_with(
                "POST",
                "/v1/plan",
                Some(br#"{"envv": "dev"}"#.to_vec()),
                &[],
            )
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&unknown.body).contains("envv"));

        // A body over the limit (this daemon's is 64 KiB), and a
        // 10,000-character header.
        let over = vec![b' '; (64 << 10) + 1];
        let response = client
            .request_with("POST", "/v1/plan", Some(over), &[])
            .await
            .unwrap();
        assert_eq!(
            (response.status, error_code(&response)),
            (413, "request.too_large".into())
        );
        // The daemon advertises its header limit in its HTTP/3 settings: a
        // client that has them does not even send the header; one that
        // sends it first is answered 431.
        let mut client = daemon.client().await;
        let long = "a".repeat(10_000);
        match client
            .request_with("GET", "/v1/project", None, &[("x-long", &long)])
            .await
        {
            Ok(response) => assert_eq!(response.status, 431),
            Err(refused) => {
                let refused = refused.to_string();
                assert!(refused.contains("max size: 8192"), "{refused}");
            }
        }

        // Still serving, on a new connection too.
        let mut client = daemon.client().await;
        assert_eq!(
            client
                .request("GET", "/v1/project", None)
                .await
                .unwrap()
                .status,
            200
        );

        // A client pinning another certificate refuses the daemon.
        let pinned = Client::connect(daemon.addr, &"0".repeat(64), None).await;
        let error = pinned
            .err()
            .expect("a mismatched pin is refused")
            .to_string();
        assert!(
            error.contains("pinned") || error.contains("certificate"),
            "{error}"
        );
    });
    // A broken model: the daemon keeps the last good listing and says why.
    runtime().block_on(async {
        let mut client = daemon.client().await;
        assert_eq!(
            client
                .request("GET", "/v1/project", None)
                .await
                .unwrap()
                .status,
            200
        );
        project.write("models/marts/orders.sql", "select from from");
        let listing = client.request("GET", "/v1/project", None).await.unwrap();
        assert_eq!(listing.status, 200);
        let listing = listing.json().unwrap();
        let diagnostic = &listing["diagnostics"][0];
        assert_eq!(diagnostic["code"], "project.parse", "{listing}");
        assert!(
            diagnostic["locations"][0]["path"]
                .as_str()
                .unwrap()
                .ends_with("orders.sql")
        );
        assert!(!listing["nodes"].as_array().unwrap().is_empty());
        let refused = client
            .request("POST", "/v1/runs", Some(&json!({ "command": "run" })))
            .await
            .unwrap();
        assert_eq!(
            (refused.status, error_code(&refused)),
            (422, "project.parse".into())
        );
        // Fixed, and a folder's config changed in orbital.toml alone (no
        // model's text changed): the listing says so, not a kept one.
        project.write("models/marts/orders.sql", "select order_id from stg_orders");
        let fixed = client.request("GET", "/v1/project", None).await.unwrap();
        assert_eq!(fixed.json().unwrap()["diagnostics"], json!([]));
        let config = std::fs::read_to_string(project.path().join("orbital.toml")).unwrap();
        project.write(
            "orbital.toml",
            &config.replace("tags = [\"marts\"]", "tags = [\"marts\", \"gold\"]"),
        );
        let listing = client.request("GET", "/v1/project", None).await.unwrap();
        let listing = listing.json().unwrap();
        assert_eq!(listing["diagnostics"], json!([]), "{listing}");
        let orders = listing["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "orders")
            .unwrap();
        assert_eq!(orders["tags"], json!(["marts", "gold"]), "{orders}");
    });
    assert_eq!(daemon.stop(), 0);
}

#[test]
fn the_identity_is_made_once_and_kept_across_restarts() {
    let project = TestProject::jaffle_shop();
    let first = Daemon::start(&project);
    let (fingerprint, token) = (first.fingerprint.clone(), first.token.clone());
    let data_dir = tempfile::tempdir().unwrap();
    // Copy the identity into a folder that outlives the first daemon.
    for name in ["cert.pem", "key.pem", "token"] {
        std::fs::copy(first.data_dir.path().join(name), data_dir.path().join(name)).unwrap();
    }
    assert_eq!(first.stop(), 0);
    let output = Command::new(env!("CARGO_BIN_EXE_orbital"))
        .args(["daemon", "--listen", "127.0.0.1:0", "--json", "--data-dir"])
        .arg(data_dir.path())
        .arg("--project")
        .arg(project.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = output;
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let bound: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(bound["certificate_sha256"], fingerprint.as_str());
    let again = std::fs::read_to_string(bound["token_file"].as_str().unwrap()).unwrap();
    assert_eq!(again.trim(), token);
    stop(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));

    // An incomplete folder is refused with what is missing.
    std::fs::remove_file(data_dir.path().join("key.pem")).unwrap();
    let refused = project.orbital(&[
        "daemon",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.path().to_str().unwrap(),
    ]);
    assert_ne!(refused.code(), 0);
    assert!(refused.stderr().contains("key.pem"), "{}", refused.stderr());
}

/// Starts `orbital run --threads 1` on the daemon's [`TestProject::slow`]
/// project; returns its id once `slow` is building.
async fn run_until_slow_builds(daemon: &Daemon) -> u64 {
    let mut client = daemon.client().await;
    let run = start_run(&mut client, json!({ "command": "run", "threads": 1 })).await;
    client
        .events(&format!("/v1/runs/{run}/events"), None, |_, name, data| {
            !(name == "node_started" && data.contains("\"slow\""))
        })
        .await
        .unwrap();
    run
}

#[test]
fn runs_on_one_environment_queue_and_a_cancelled_run_publishes_nothing() {
    let project = TestProject::slow(100_000_000);
    let daemon = Daemon::start(&project);
    runtime().block_on(async {
        // Cancel once `slow` is building.
        let run = run_until_slow_builds(&daemon).await;
        let mut client = daemon.client().await;
        // The CLI finds the environment busy while the daemon runs on it.
        let busy = project.orbital(&["run"]);
        assert_eq!(busy.code(), 4, "{}", busy.stderr());
        let cancelled = client
            .request("POST", &format!("/v1/runs/{run}/cancel"), None)
            .await
            .unwrap();
        assert_eq!(cancelled.status, 202);
        let events = follow(&mut client, run).await;
        let (last, data) = events.last().unwrap();
        assert_eq!(
            (last.as_str(), &data["status"]),
            ("run_finished", &json!("cancelled"))
        );
        let record = client
            .request("GET", &format!("/v1/runs/{run}"), None)
            .await
            .unwrap();
        assert_eq!(record.json().unwrap()["status"], "cancelled");
        let again = client
            .request("POST", &format!("/v1/runs/{run}/cancel"), None)
            .await
            .unwrap();
        assert_eq!(
            (again.status, error_code(&again)),
            (409, "run.finished".into())
        );
    });
    // Nothing was published: the environment has no `slow`.
    let db = project.path().join("target/slow.db");
    assert_eq!(
        support::scalar(
            &db,
            "SELECT count(*) FROM sqlite_master WHERE name = 'slow'"
        ),
        "0"
    );

    // Two runs on one environment: the second queues, both succeed.
    project.write(
        "models/slow.sql",
        "-- config: materialized = 'table'\n\
         with recursive c(x) as (select 1 union all select x + 1 from c where x < 3000000)\n\
         select count(*) as n, max(fast.version) as version from c, fast",
    );
    runtime().block_on(async {
        let mut client = daemon.client().await;
        let first = start_run(&mut client, json!({ "command": "run" })).await;
        let second = start_run(
            &mut client,
            json!({ "command": "run", "full_refresh": true }),
        )
        .await;
        assert_ne!(first, second);
        let second_events = follow(&mut client, second).await;
        let first_events = follow(&mut client, first).await;
        assert_eq!(second_events[0].0, "run_queued", "{second_events:?}");
        for events in [&first_events, &second_events] {
            let (last, data) = events.last().unwrap();
            assert_eq!(
                (last.as_str(), &data["status"]),
                ("run_finished", &json!("succeeded"))
            );
        }
    });
    assert_eq!(support::scalar(&db, "SELECT n FROM slow"), "3000000");
    // History pages: newest first, each page's cursor asks for the next.
    runtime().block_on(async {
        let mut client = daemon.client().await;
        let page = client
            .request("GET", "/v1/runs?limit=2", None)
            .await
            .unwrap();
        let page = page.json().unwrap();
        assert_eq!(page["runs"].as_array().unwrap().len(), 2);
        let cursor = page["next_cursor"].as_u64().unwrap();
        let rest = client
            .request("GET", &format!("/v1/runs?limit=2&cursor={cursor}"), None)
            .await
            .unwrap();
        let rest = rest.json().unwrap();
        let ids: Vec<u64> = [&page, &rest]
            .iter()
            .flat_map(|p| {
                p["runs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["id"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(ids, [3, 2, 1]);
        assert!(rest["next_cursor"].is_null(), "{rest}");
    });
    assert_eq!(daemon.stop(), 0);
}

#[test]
fn a_stop_signal_lets_runs_finish_within_the_grace_and_cancels_the_rest() {
    let project = TestProject::slow(200_000_000);
    let daemon = Daemon::start_with(&project, &["--grace", "1"]);
    let run = runtime().block_on(run_until_slow_builds(&daemon));
    // SIGTERM: the run outlives the one-second grace, is cancelled and
    // recorded so, and the daemon exits 0.
    assert_eq!(daemon.stop(), 0);
    let runs = project.orbital(&["runs", "--json"]).expect_code(0).json();
    assert_eq!(runs["runs"][0]["id"], run);
    assert_eq!(runs["runs"][0]["status"], "cancelled");
}

/// A virtual environment with niquests (an HTTP/3 client nobody here
/// wrote), made under target/ on first use.
fn niquests_python() -> std::path::PathBuf {
    support::python_venv("niquests", &["niquests==3.21.2"]).join("bin/python")
}

#[test]
fn an_http3_client_nobody_here_wrote_drives_the_api() {
    let python = niquests_python();
    let project = TestProject::jaffle_shop();
    let data_dir = tempfile::tempdir().unwrap();
    let bound_file = data_dir.path().join("bound.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_orbital"))
        .args(["daemon", "--listen", "127.0.0.1:0", "--json", "--data-dir"])
        .arg(data_dir.path().join("daemon"))
        .arg("--project")
        .arg(project.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    std::fs::write(&bound_file, &line).unwrap();
    let checked = Command::new(&python)
        .arg(support::workspace().join("tests/clients/niquests_check.py"))
        .arg(&bound_file)
        .output()
        .unwrap();
    stop(&child);
    let code = child.wait().unwrap().code();
    let out = String::from_utf8_lossy(&checked.stdout);
    let err = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{out}\n{err}");
    assert!(out.contains(" passed, 0 failed"), "{out}");
    assert_eq!(code, Some(0));
}

#[test]
fn a_daemon_killed_mid_run_restarts_with_history_and_environment_intact() {
    let Some((project, database)) = postgres_project("daemon_kill_9") else {
        return;
    };
    let table = "-- config: materialized = 'table'\n";
    project.write("models/fast.sql", &format!("{table}select 1 as version"));
    project.write(
        "models/slow.sql",
        &format!("{table}select version from fast"),
    );
    project.orbital(&["run"]).expect_code(0);
    project.write("models/fast.sql", &format!("{table}select 2 as version"));
    project.write(
        "models/slow.sql",
        &format!("{table}select version, pg_sleep(4) is null as slept from fast"),
    );
    let daemon = Daemon::start(&project);
    let run = runtime().block_on(run_until_slow_builds(&daemon));
    let fingerprint = daemon.fingerprint.clone();
    let restarted = daemon.kill_and_restart(&project);
    assert_eq!(
        restarted.fingerprint, fingerprint,
        "the same identity after a restart"
    );
    runtime().block_on(async {
        let mut client = restarted.client().await;
        let record = client
            .request("GET", &format!("/v1/runs/{run}"), None)
            .await
            .unwrap();
        assert_eq!(record.json().unwrap()["status"], "interrupted");
        let history = client.request("GET", "/v1/runs", None).await.unwrap();
        let history = history.json().unwrap();
        let statuses: Vec<&str> = history["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["interrupted", "succeeded"]);
        // Users still see the environment as it was before the killed run.
        assert_eq!(pg_scalar(&database.url, "SELECT version FROM fast"), "1");
        // A new run completes (once the server has ended the dead one's query).
        let next = start_run(&mut client, json!({ "command": "run" })).await;
        let events = follow(&mut client, next).await;
        let (last, data) = events.last().unwrap();
        assert_eq!(
            (last.as_str(), &data["status"]),
            ("run_finished", &json!("succeeded")),
            "{events:?}"
        );
    });
    assert_eq!(pg_scalar(&database.url, "SELECT version FROM fast"), "2");
    assert_eq!(restarted.stop(), 0);
}

#[test]
fn runs_on_two_environments_go_at_once_and_build_what_they_share_once() {
    let Some((project, database)) = postgres_project("daemon_two_envs") else {
        return;
    };
    let table = "-- config: materialized = 'table'\n";
    project.write(
        "models/shared.sql",
        &format!("{table}select 7 as n, pg_sleep(2) is null as slept"),
    );
    project.write(
        "models/doubled.sql",
        "-- config: materialized = 'view'\nselect n * 2 as n from shared",
    );
    let daemon = Daemon::start(&project);
    let (dev, staging) = runtime().block_on(async {
        let mut client = daemon.client().await;
        let dev = start_run(&mut client, json!({ "command": "run", "env": "dev" })).await;
        let staging = start_run(&mut client, json!({ "command": "run", "env": "staging" })).await;
        let staging_events = follow(&mut client, staging).await;
        let dev_events = follow(&mut client, dev).await;
        (dev_events, staging_events)
    });
    // Neither queued behind the other: they share no environment.
    for events in [&dev, &staging] {
        assert_eq!(events[0].0, "run_started", "{events:?}");
        let (last, data) = events.last().unwrap();
        assert_eq!(
            (last.as_str(), &data["status"]),
            ("run_finished", &json!("succeeded")),
            "{events:?}"
        );
    }
    // `shared` was built by one run; the other waited on its claim and
    // reused that build (had they run one after the other, the second
    // would have found it recorded and repointed without waiting).
    let (a, b) = (finished(&dev, "shared"), finished(&staging, "shared"));
    let mut statuses = [a["status"].as_str().unwrap(), b["status"].as_str().unwrap()];
    statuses.sort_unstable();
    assert_eq!(statuses, ["reused", "success"], "{a} {b}");
    let reused = if a["status"] == "reused" { a } else { b };
    assert!(
        reused["message"]
            .as_str()
            .unwrap()
            .contains("built it meanwhile"),
        "{reused}"
    );
    assert_eq!(
        pg_scalar(
            &database.url,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%shared%'"
        ),
        "1",
        "one physical table"
    );
    for env in ["dev", "staging"] {
        assert_eq!(
            pg_scalar(&database.url, &format!("SELECT n FROM {env}__doubled")),
            "14"
        );
    }
    assert_eq!(daemon.stop(), 0);
}

/// Output without what differs between two runs of one command: timings,
/// the order parallel nodes finished in, run ids and timestamps.
fn normalized(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|line| {
            let line = line.trim_start();
            let line = match line.split_once(" of ") {
                Some((index, rest)) if index.chars().all(|c| c.is_ascii_digit()) => {
                    rest.split_once(' ').map_or(rest, |(_, r)| r)
                }
                _ => line,
            };
            line.split(' ')
                .map(|word| {
                    let digits = word.trim_end_matches(['s', ']', '.', ',', ')']);
                    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
                    {
                        "N".to_string()
                    } else {
                        word.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn the_cli_through_a_daemon_prints_what_it_prints_locally() {
    let local = TestProject::jaffle_shop();
    let served = TestProject::jaffle_shop();
    let daemon = Daemon::start(&served);
    let config = tempfile::tempdir().unwrap();
    let token_file = daemon.data_dir.path().join("token");
    let url = format!("https://{}", daemon.addr);
    let orbital = |project: &TestProject, args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_orbital"))
            .args(args)
            .arg("--project")
            .arg(project.path())
            .env("ORBITAL_CONFIG_DIR", config.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    // `orbital login URL --token-file F --cert-sha256 HASH [--name team]`.
    let login = |token_file: &std::path::Path, sha256: &str, name: Option<&str>| {
        let token_file = token_file.to_str().unwrap();
        let mut args = vec![
            "login",
            &url,
            "--token-file",
            token_file,
            "--cert-sha256",
            sha256,
        ];
        if let Some(name) = name {
            args.extend(["--name", name]);
        }
        orbital(&served, &args)
    };
    // An empty token file is refused before anything is sent.
    let empty = served.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    let (code, _, err) = login(&empty, &daemon.fingerprint, None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is empty"), "{err}");
    assert!(!config.path().join("remotes.toml").exists());
    // A wrong pin is refused, and nothing is saved.
    let (code, _, err) = login(&token_file, &"0".repeat(64), None);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("pinned"), "{err}");
    assert!(!config.path().join("remotes.toml").exists());
    let (code, out, err) = login(&token_file, &daemon.fingerprint, Some("team"));
    assert_eq!(code, 0, "{out}{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(config.path().join("remotes.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The remote project is the daemon's: `--project` only finds the config.
    let remote = |args: &[&str]| {
        let mut all = vec!["--remote", "team"];
        all.extend_from_slice(args);
        orbital(&local, &all)
    };
    let same = |args: &[&str]| {
        let (local_code, local_out, local_err) = orbital(&local, args);
        let (remote_code, remote_out, remote_err) = remote(args);
        assert_eq!(
            local_code, remote_code,
            "{args:?}\n{local_err}\n{remote_err}"
        );
        assert_eq!(
            normalized(&local_out),
            normalized(&remote_out),
            "{args:?}\nlocal:\n{local_out}\nremote:\n{remote_out}"
        );
        (remote_code, remote_out, remote_err)
    };
    same(&["ls"]);
    same(&["build"]);
    same(&["plan"]);
    same(&["run", "--env", "dev", "-s", "stg_orders"]);
    same(&["promote", "dev", "--to", "staging"]);
    for project in [&local, &served] {
        project.write(
            "models/marts/customers.sql",
            &std::fs::read_to_string(project.path().join("models/marts/customers.sql"))
                .unwrap()
                .replace("customer_lifetime_value", "lifetime_value"),
        );
    }
    let (_, plan, _) = same(&["plan"]);
    assert!(plan.contains("lifetime_value"), "{plan}");
    same(&["plan", "--json"]);
    // Errors: the same exit code and message.
    let (code, _, err) = same(&["run", "-s", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("nope"), "{err}");
    let (local_runs, remote_runs) = (
        orbital(&local, &["runs", "--json"]).1,
        remote(&["runs", "--json"]).1,
    );
    let statuses = |text: &str| -> Vec<String> {
        let runs: Value = serde_json::from_str(text).unwrap();
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{} {}", r["command"], r["status"]))
            .collect()
    };
    assert_eq!(statuses(&local_runs), statuses(&remote_runs));
    // A plugin installed through the daemon lands in its project.
    let component = orbital_bundle::test_component("orbital-test-range-tests");
    let (code, out, err) = remote(&["plugin", "install", component.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("blake3:"), "{out}");
    // Commands that only run locally say so.
    let (code, _, err) = remote(&["gc"]);
    assert_eq!(code, 2);
    assert!(err.contains("only locally"), "{err}");
    assert_eq!(daemon.stop(), 0);
}
