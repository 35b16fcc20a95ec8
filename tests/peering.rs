//! Peering as a team runs it: two or three real `orbital daemon` processes
//! on 127.0.0.1, each with its own data folder, port and project copy,
//! talking QUIC to each other.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use orbital_core::Hash;
use orbital_peer::{
    Hello, Identity, Limits, PeerClient, Request, Response, Server, encode, faults,
};

use serde_json::{Value, json};
use support::TestProject;
use support::daemon::{
    Daemon, finished, follow, free_udp_port, peer_entry, pg_scalar, postgres_project, runtime,
    start_run,
};

#[test]
fn daemons_that_list_each_other_connect_share_plugins_by_hash_and_refuse_a_wrong_key() {
    let (project_a, project_b) = (TestProject::jaffle_shop(), TestProject::jaffle_shop());
    let nobody = free_udp_port();
    let impostor = "ab".repeat(32);
    let (a, b) = pinned_pair(&project_a, &project_b, |port_b, b_print| {
        peer_entry("impostor", port_b, &impostor) + &peer_entry("gone", nobody, b_print)
    });
    runtime().block_on(async {
        let mut client = a.client().await;
        let peers = client.request("GET", "/v1/peers", None).await.unwrap();
        assert_eq!(peers.status, 200);
        let peers = peers.json().unwrap();
        let peer = |name: &str| -> Value {
            peers["peers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .cloned()
                .unwrap()
        };
        let b_seen = peer("b");
        assert_eq!(b_seen["connected"], true, "{b_seen}");
        assert_eq!(b_seen["protocol_versions"], json!([1, 2]));
        assert!(b_seen["rtt_ms"].as_f64().is_some(), "{b_seen}");
        assert!(b_seen["last_contact"].is_string(), "{b_seen}");
        let impostor_seen = peer("impostor");
        assert_eq!(impostor_seen["connected"], false);
        let error = impostor_seen["error"].as_str().unwrap();
        assert!(error.contains("not the one pinned"), "{error}");
        let gone = peer("gone");
        assert_eq!(
            (gone["connected"].clone(), gone["last_contact"].clone()),
            (json!(false), Value::Null)
        );
        // A plugin installed on A only...
        let component =
            std::fs::read(orbital_bundle::test_component("orbital-test-range-tests")).unwrap();
        let installed = client
            .request_with("POST", "/v1/plugins", Some(component), &[])
            .await
            .unwrap();
        assert_eq!(installed.status, 201);
        let hash = installed.json().unwrap()["hash"]
            .as_str()
            .unwrap()
            .to_string();
        // ...that B's project names by hash and uses (a generic test it provides).
        let config = std::fs::read_to_string(project_b.path().join("orbital.toml")).unwrap();
        project_b.write(
            "orbital.toml",
            &config.replace(
                "components = [\"plugins/jaffle_macros.wasm\"]",
                // `hash` reads `blake3:<hex>`, as orbital.toml names it.
                &format!("components = [\"plugins/jaffle_macros.wasm\", \"{hash}\"]"),
            ),
        );
        let orders =
            std::fs::read_to_string(project_b.path().join("models/marts/orders.sql")).unwrap();
        project_b.write(
            "models/marts/orders.sql",
            &format!("-- config: tests.amount = ['is_positive']\n{orders}"),
        );
        let mut client = b.client().await;
        let peers = client.request("GET", "/v1/peers", None).await.unwrap();
        assert_eq!(peers.json().unwrap()["peers"][0]["connected"], true);
        // B fetched it from A over QUIC (checked against its hash) and uses it.
        let listing = client.request("GET", "/v1/project", None).await.unwrap();
        assert_eq!(
            listing.status,
            200,
            "{}",
            String::from_utf8_lossy(&listing.body)
        );
        let listing = listing.json().unwrap();
        assert_eq!(listing["diagnostics"], json!([]), "{listing}");
        assert!(
            listing["nodes"].as_array().unwrap().iter().any(|n| n["kind"] == "test"
                && n["name"].as_str().unwrap().contains("is_positive")),
            "{listing}"
        );
        // What came from A is counted against it.
        let peers = client.request("GET", "/v1/peers", None).await.unwrap();
        let received = peers.json().unwrap()["peers"][0]["received"].clone();
        assert_eq!(
            (&received["objects"], &received["rejected"]),
            (&json!(1), &json!(0)),
            "{received}"
        );
        assert!(received["bytes"].as_u64().unwrap() > 1000, "{received}");
        let plugins = client.request("GET", "/v1/plugins", None).await.unwrap();
        assert!(
            plugins.json().unwrap()["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["hash"] == hash.as_str()),
        );
    });
    assert_eq!(a.stop(), 0);
    assert_eq!(b.stop(), 0);

    // A peers.toml that does not parse, or says nothing usable, stops the
    // daemon before it listens.
    let sha = "ab".repeat(32);
    let entry = |name: &str, tasks: &str| {
        format!(
            "[[peer]]\nname = \"{name}\"\naddress = \"127.0.0.1:9\"\nsha256 = \"{sha}\"\n{tasks}\n"
        )
    };
    for (text, says) in [
        ("[[peer]]\nname = 3\n".to_string(), "peers.toml"),
        (entry("b", "tasks = 0"), "tasks must be at least 1"),
        (entry(" ", ""), "empty name"),
        (entry("b", "") + &entry("b", ""), "listed twice"),
        (
            entry("b", "reaches = [\"dev\"]") + &entry("c", "reaches = [\"dev\"]"),
            "reached through peers `b` and `c`",
        ),
        (entry("b", "reaches = [\" \"]"), "an empty target name"),
    ] {
        let broken = tempfile::tempdir().unwrap();
        std::fs::write(broken.path().join("peers.toml"), &text).unwrap();
        let refused = Command::new(env!("CARGO_BIN_EXE_orbital"))
            .args(["daemon", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(broken.path())
            .arg("--project")
            .arg(project_a.path())
            .output()
            .unwrap();
        assert_ne!(refused.status.code(), Some(0), "{text}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("peers.toml") && stderr.contains(says),
            "{text}: {stderr}"
        );
    }
    // `orbital peers` asks a daemon.
    let local = project_a.orbital(&["peers"]);
    assert_eq!(local.code(), 2, "{}", local.stderr());
    assert!(local.stderr().contains("--remote"), "{}", local.stderr());
}

/// Daemons on `projects`, each listing all the others as peers (pinned by
/// the certificate its first start made) and serving them on a port of
/// its own.
fn peered(projects: &[&TestProject]) -> Vec<Daemon> {
    let first: Vec<Daemon> = projects.iter().map(|p| Daemon::start(p)).collect();
    let ports: Vec<u16> = projects.iter().map(|_| free_udp_port()).collect();
    for (i, daemon) in first.iter().enumerate() {
        let peers: String = first
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(j, other)| peer_entry(&format!("d{j}"), ports[j], &other.fingerprint))
            .collect();
        std::fs::write(daemon.data_dir.path().join("peers.toml"), peers).unwrap();
    }
    first
        .into_iter()
        .zip(projects)
        .zip(&ports)
        .map(|((daemon, project), port)| {
            daemon.restart_with(project, &["--peer-listen", &format!("127.0.0.1:{port}")])
        })
        .collect()
}

/// Daemons A and B on their projects, each listing the other (`b` in A's
/// list, then what `more_for_a` adds given B's port and certificate
/// SHA-256; `a` in B's) and serving it on a port of its own.
fn pinned_pair(
    project_a: &TestProject,
    project_b: &TestProject,
    more_for_a: impl FnOnce(u16, &str) -> String,
) -> (Daemon, Daemon) {
    // First starts make each daemon's identity; peers pin them.
    let (a, b) = (Daemon::start(project_a), Daemon::start(project_b));
    let (port_a, port_b) = (free_udp_port(), free_udp_port());
    std::fs::write(
        a.data_dir.path().join("peers.toml"),
        peer_entry("b", port_b, &b.fingerprint) + &more_for_a(port_b, &b.fingerprint),
    )
    .unwrap();
    std::fs::write(
        b.data_dir.path().join("peers.toml"),
        peer_entry("a", port_a, &a.fingerprint),
    )
    .unwrap();
    let listen = |port: u16| format!("127.0.0.1:{port}");
    (
        a.restart_with(project_a, &["--peer-listen", &listen(port_a)]),
        b.restart_with(project_b, &["--peer-listen", &listen(port_b)]),
    )
}

/// A copy of `project`'s orbital.toml and models in a new folder: the same
/// project, with a state store of its own.
fn copy_of(project: &TestProject) -> TestProject {
    let copy = TestProject::empty();
    copy.write(
        "orbital.toml",
        &std::fs::read_to_string(project.path().join("orbital.toml")).unwrap(),
    );
    for entry in std::fs::read_dir(project.path().join("models")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        copy.write(
            &format!("models/{name}"),
            &std::fs::read_to_string(&path).unwrap(),
        );
    }
    copy
}

/// The server log of the test PostgreSQL server (tests/bin/with-postgres
/// writes it beside the data folder), from byte `from`.
fn server_log(url: &str, from: u64) -> (String, u64) {
    let path = "current_setting('data_directory') || '/../server.log'";
    let size: u64 = pg_scalar(url, &format!("SELECT (pg_stat_file({path})).size"))
        .parse()
        .unwrap();
    let text = pg_scalar(
        url,
        &format!(
            "SELECT convert_from(pg_read_binary_file({path}, {from}, {}), 'UTF8')",
            size.saturating_sub(from)
        ),
    );
    (text, size)
}

/// (name, action) of each step of a `/v1/plan` answer.
fn actions(plan: &Value) -> Vec<(String, String)> {
    let mut actions: Vec<(String, String)> = plan["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{plan}"))
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    actions.sort();
    actions
}

#[test]
fn a_build_one_daemon_made_is_reused_by_another_that_runs_no_sql_for_it() {
    let Some((project_a, database)) = postgres_project("peer_builds") else {
        return;
    };
    let table = "-- config: materialized = 'table'\n";
    project_a.write(
        "models/answer.sql",
        &format!("{table}select 41 + 1 as answer"),
    );
    project_a.write(
        "models/doubled.sql",
        "-- config: materialized = 'view'\nselect answer * 2 as doubled from answer",
    );
    project_a.write(
        "models/dropped.sql",
        &format!("{table}select 'gone' as state"),
    );
    let project_b = copy_of(&project_a);
    // Every statement of a connection opened from now on is logged.
    let name = database.url.rsplit('/').next().unwrap().to_string();
    pg_scalar(
        &database.url,
        &format!("ALTER DATABASE \"{name}\" SET log_statement = 'all'"),
    );
    let daemons = peered(&[&project_a, &project_b]);
    let (a, b) = (&daemons[0], &daemons[1]);
    let (_, before_a) = server_log(&database.url, 0);
    runtime().block_on(async {
        let mut client = a.client().await;
        let run = start_run(&mut client, json!({ "command": "run" })).await;
        let events = follow(&mut client, run).await;
        assert_eq!(
            events.last().unwrap().1["status"],
            "succeeded",
            "{events:?}"
        );
    });
    // What a gc of A's would do to a build of A's that B has not seen.
    let dropped = pg_scalar(
        &database.url,
        "SELECT tablename FROM pg_tables WHERE tablename LIKE '%dropped__%'",
    );
    pg_scalar(&database.url, &format!("DROP TABLE \"{dropped}\" CASCADE"));
    let (by_a, before_b) = server_log(&database.url, before_a);
    assert!(by_a.contains("41 + 1"), "the statement log works: {by_a}");
    runtime().block_on(async {
        let mut client = b.client().await;
        // On an environment of its own: A's are B's too once exchanged.
        let plan = client
            .request("POST", "/v1/plan", Some(&json!({ "env": "dev" })))
            .await
            .unwrap();
        assert_eq!(plan.status, 200, "{}", String::from_utf8_lossy(&plan.body));
        let plan = plan.json().unwrap();
        // Both are A's builds, which B points its environment at.
        assert_eq!(
            actions(&plan),
            [
                ("answer".into(), "repoint".into()),
                ("doubled".into(), "repoint".into()),
                // The warehouse no longer has it: built again.
                ("dropped".into(), "build".into()),
            ],
            "{plan}"
        );
        let run = start_run(&mut client, json!({ "command": "run", "env": "dev" })).await;
        let events = follow(&mut client, run).await;
        assert_eq!(
            events.last().unwrap().1["status"],
            "succeeded",
            "{events:?}"
        );
        for node in ["answer", "doubled"] {
            let result = finished(&events, node);
            assert_eq!(result["status"], "reused", "{result}");
        }
        assert_eq!(finished(&events, "dropped")["status"], "success");
        let peers = client.request("GET", "/v1/peers", None).await.unwrap();
        let received = peers.json().unwrap()["peers"][0]["received"].clone();
        // The plan's three, and the run's one (`dropped` again: a build
        // the warehouse lacks is never recorded, so it is asked again).
        assert_eq!(received["builds"], 4, "{received}");
    });
    let (by_b, _) = server_log(&database.url, before_b);
    assert!(!by_b.contains("41 + 1"), "B ran the model's SQL: {by_b}");
    assert!(
        !by_b.contains("answer * 2"),
        "B ran the model's SQL: {by_b}"
    );
    // B's environment reads A's build.
    assert_eq!(
        pg_scalar(&database.url, "SELECT doubled FROM doubled"),
        "84"
    );
    for daemon in daemons {
        assert_eq!(daemon.stop(), 0);
    }
}

/// Each environment a daemon lists: name -> (version, model -> fingerprint).
type Pointers = std::collections::BTreeMap<String, (u64, Vec<(String, String)>)>;

async fn pointers(daemon: &Daemon) -> Pointers {
    let mut client = daemon.client().await;
    let mut get = async |path: &str| {
        let got = client.request("GET", path, None).await.unwrap();
        assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
        got.json().unwrap()
    };
    let listed = get("/v1/environments").await;
    let mut pointers = Pointers::new();
    for env in listed["environments"].as_array().unwrap() {
        let name = env["name"].as_str().unwrap();
        let detail = get(&format!("/v1/environments/{name}")).await;
        // (The listing's version may be older: an exchange may land between.)
        let models = detail["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["model"].as_str().unwrap().to_string(),
                    m["fingerprint"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        pointers.insert(
            name.to_string(),
            (detail["version"].as_u64().unwrap(), models),
        );
    }
    pointers
}

/// Waits (up to 30 s) until `daemons` list the same environments and
/// `check` holds for them; returns them.
async fn converged(daemons: &[&Daemon], check: impl Fn(&Pointers) -> bool) -> Pointers {
    let mut last = Vec::new();
    for _ in 0..300 {
        last.clear();
        for daemon in daemons {
            last.push(pointers(daemon).await);
        }
        if last.windows(2).all(|w| w[0] == w[1]) && check(&last[0]) {
            return last.remove(0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the daemons did not converge: {last:#?}");
}

async fn promote(daemon: &Daemon, from: &str, to: &str) {
    let mut client = daemon.client().await;
    let promoted = client
        .request(
            "POST",
            &format!("/v1/environments/{to}/promote"),
            Some(&json!({ "from": from })),
        )
        .await
        .unwrap();
    assert_eq!(
        promoted.status,
        200,
        "{}",
        String::from_utf8_lossy(&promoted.body)
    );
}

async fn run_on(daemon: &Daemon, env: &str) {
    let mut client = daemon.client().await;
    let run = start_run(&mut client, json!({ "command": "run", "env": env })).await;
    let events = follow(&mut client, run).await;
    assert_eq!(
        events.last().unwrap().1["status"],
        "succeeded",
        "{events:?}"
    );
}

fn version_model(version: u32) -> String {
    format!("-- config: materialized = 'table'\nselect {version} as version")
}

#[test]
fn a_promote_is_seen_by_peers_and_peers_converge_after_a_partition() {
    let Some((project_a, database)) = postgres_project("peer_environments") else {
        return;
    };
    project_a.write("models/release.sql", &version_model(1));
    let project_b = copy_of(&project_a);
    let mut daemons = peered(&[&project_a, &project_b]);
    let fingerprint_of = |pointers: &Pointers, env: &str| -> Option<String> {
        pointers.get(env).map(|(_, models)| models[0].1.clone())
    };
    let first = runtime().block_on(async {
        let (a, b) = (&daemons[0], &daemons[1]);
        run_on(a, "dev").await;
        promote(a, "dev", "prod").await;
        // B sees A's promote: the same pointers, at the same version.
        converged(&[a, b], |p| p.contains_key("prod")).await
    });
    assert_eq!(
        fingerprint_of(&first, "prod"),
        fingerprint_of(&first, "dev")
    );
    assert_eq!(pg_scalar(&database.url, "SELECT version FROM release"), "1");

    // A partition: B stops; both sides change prod (B through its CLI),
    // and B makes an environment A has never seen.
    let mut b = daemons.pop().unwrap();
    assert_eq!(b.pause(), 0);
    project_a.write("models/release.sql", &version_model(2));
    runtime().block_on(async {
        let a = &daemons[0];
        run_on(a, "dev").await;
        promote(a, "dev", "prod").await;
    });
    assert_eq!(pg_scalar(&database.url, "SELECT version FROM release"), "2");
    project_b.write("models/release.sql", &version_model(3));
    project_b.orbital(&["run", "--env", "prod"]).expect_code(0);
    project_b
        .orbital(&["run", "--env", "staging"])
        .expect_code(0);
    // B's change was the later one: the warehouse shows it.
    assert_eq!(pg_scalar(&database.url, "SELECT version FROM release"), "3");
    let b = b.resume(&project_b);
    let after = runtime().block_on(async {
        let a = &daemons[0];
        converged(&[a, &b], |p| p.contains_key("staging")).await
    });
    // Both keep B's prod (the higher version) and A's dev.
    assert_eq!(
        fingerprint_of(&after, "prod"),
        fingerprint_of(&after, "staging")
    );
    assert_ne!(
        fingerprint_of(&after, "prod"),
        fingerprint_of(&after, "dev")
    );
    assert!(after["prod"].0 > first["prod"].0 + 1, "{after:?}");
    // What they record is what the warehouse has: B's project (at
    // version 3) finds prod as it is; A's (at version 2) differs from it
    // by the SQL it fetched from B.
    let plan_on = async |daemon: &Daemon| -> Value {
        let mut client = daemon.client().await;
        let plan = client
            .request("POST", "/v1/plan", Some(&json!({ "env": "prod" })))
            .await
            .unwrap();
        plan.json().unwrap()
    };
    runtime().block_on(async {
        let on_b = plan_on(&b).await;
        assert_eq!(on_b["nodes"][0]["action"], "reuse", "{on_b}");
        // The SQL comes just after the pointers: the plan shows it once here.
        let mut on_a = Value::Null;
        for _ in 0..100 {
            on_a = plan_on(&daemons[0]).await;
            let diff = on_a["nodes"][0]["diff"].as_str().unwrap_or_default();
            if diff.contains("-  3 AS version") && diff.contains("+  2 AS version") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("A never showed B's SQL: {on_a}");
    });
    assert_eq!(b.stop(), 0);
}

/// A peer that answers every object with other bytes than asked for.
struct Lying;

impl orbital_peer::Objects for Lying {
    fn object(&self, _: &Hash) -> Result<Option<Vec<u8>>, orbital_peer::PeerError> {
        Ok(Some(b"not what you asked for".to_vec()))
    }
}

fn localhost() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The code of the error the daemon's peer endpoint at `addr` answers
/// `bytes` with (sent as the first request of a connection from
/// `identity`), once it has closed that connection.
async fn refused(
    identity: &Identity,
    addr: std::net::SocketAddr,
    daemon: &str,
    bytes: &[u8],
) -> String {
    let client = PeerClient::connect_without_hello(identity, addr, daemon, Limits::default())
        .await
        .unwrap();
    let answer = client.send_raw(bytes).await.unwrap();
    let Response::Error { code, .. } = answer else {
        panic!("not refused: {answer:?}");
    };
    for _ in 0..250 {
        if !client.is_open() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!client.is_open(), "{code}: the connection stays open");
    code
}

#[test]
fn a_lying_peer_is_distrusted_a_cut_transfer_resumes_and_bad_messages_only_close_their_connection()
{
    let project = TestProject::jaffle_shop();
    let daemon = Daemon::start(&project);
    let component =
        std::fs::read(orbital_bundle::test_component("orbital-test-range-tests")).unwrap();
    let hash = Hash::of(&component);
    // Two peers in this process: one lies about every object; one has the
    // component and streams it (its message limit makes a 50 KB object
    // large), and its first stream of it is cut after its first chunk.
    let runtime = runtime();
    let (liar, cutter) = (Identity::generate(), Identity::generate());
    let stranger = Identity::generate();
    let store_dir = tempfile::tempdir().unwrap();
    let allowed = BTreeSet::from([daemon.fingerprint.clone()]);
    let (liar_server, cutter_server) = runtime.block_on(async {
        let store = orbital_cas::Store::open(&store_dir.path().join("state.redb")).unwrap();
        store.write(|w| w.put_plugin(&component)).unwrap();
        let liar_server = Server::start(
            &liar,
            localhost(),
            allowed.clone(),
            Arc::new(Lying),
            Limits::default(),
        )
        .unwrap();
        let limits = Limits {
            max_message: 96 * 1024,
        };
        let cutter_server =
            Server::start(&cutter, localhost(), allowed, Arc::new(store), limits).unwrap();
        (liar_server, cutter_server)
    });
    faults::cut_once(hash, 30 * 1024);
    let port = |server: &Server| server.local_addr().unwrap().port();
    std::fs::write(
        daemon.data_dir.path().join("peers.toml"),
        peer_entry("liar", port(&liar_server), &liar.fingerprint())
            + &peer_entry("cutter", port(&cutter_server), &cutter.fingerprint()),
    )
    .unwrap();
    let peer_port = free_udp_port();
    let peer_addr: std::net::SocketAddr = format!("127.0.0.1:{peer_port}").parse().unwrap();
    let daemon = daemon.restart_with(&project, &["--peer-listen", &peer_addr.to_string()]);
    // The project names the component by hash only.
    let config = std::fs::read_to_string(project.path().join("orbital.toml")).unwrap();
    project.write(
        "orbital.toml",
        &config.replace(
            "components = [\"plugins/jaffle_macros.wasm\"]",
            &format!("components = [\"plugins/jaffle_macros.wasm\", \"blake3:{hash}\"]"),
        ),
    );
    runtime.block_on(async {
        let mut client = daemon.client().await;
        let listing = client.request("GET", "/v1/project", None).await.unwrap();
        let listing = listing.json().unwrap();
        assert_eq!(listing["diagnostics"], json!([]), "{listing}");
        let peers = client.request("GET", "/v1/peers", None).await.unwrap();
        let peers = peers.json().unwrap();
        let (liar_seen, cutter_seen) = (&peers["peers"][0], &peers["peers"][1]);
        // The liar's answer was refused, and it is asked for no object again.
        assert_eq!(liar_seen["received"]["rejected"], 1, "{liar_seen}");
        assert_eq!(liar_seen["received"]["objects"], 0, "{liar_seen}");
        assert_eq!(liar_seen["distrusted"], true, "{liar_seen}");
        // The cutter's transfer was resumed where it was cut: two streams,
        // no byte sent twice.
        assert_eq!(cutter_seen["received"]["objects"], 1, "{cutter_seen}");
        assert_eq!(cutter_seen["distrusted"], false, "{cutter_seen}");
        let served = cutter_server.served();
        assert_eq!(served.streams.load(Ordering::Relaxed), 2);
        assert_eq!(
            served.streamed_bytes.load(Ordering::Relaxed),
            component.len() as u64
        );
        let plugins = client.request("GET", "/v1/plugins", None).await.unwrap();
        let plugins = plugins.json().unwrap();
        assert!(
            plugins["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["hash"] == format!("blake3:{hash}")),
            "{plugins}"
        );

        // Bad messages to the daemon's peer endpoint: each is refused with
        // its code and closes its connection only.
        let fp = daemon.fingerprint.clone();
        let mut oversized = u32::MAX.to_be_bytes().to_vec();
        oversized.extend_from_slice(b"whatever");
        assert_eq!(
            refused(&liar, peer_addr, &fp, &oversized).await,
            "message.too_large"
        );
        let mut garbage = 5u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0xff; 5]);
        assert_eq!(
            refused(&liar, peer_addr, &fp, &garbage).await,
            "message.malformed"
        );
        let future = encode(&Request::Hello(Hello {
            versions: (7, 9),
            store_format: orbital_peer::STORE_FORMAT,
            max_message: 1024,
            peer: liar.fingerprint(),
        }))
        .unwrap();
        assert_eq!(
            refused(&liar, peer_addr, &fp, &future).await,
            "version.mismatch"
        );
        let early = encode(&Request::FindMissing(vec![hash])).unwrap();
        assert_eq!(
            refused(&liar, peer_addr, &fp, &early).await,
            "hello.missing"
        );
        // A peer the daemon does not list is refused in the handshake.
        let unlisted = PeerClient::connect(&stranger, peer_addr, &fp, Limits::default()).await;
        assert!(unlisted.is_err(), "an unlisted peer got in");
        // The daemon keeps serving its peers and its API.
        let listed = PeerClient::connect(&liar, peer_addr, &fp, Limits::default())
            .await
            .unwrap();
        assert!(listed.find_missing(&[hash]).await.unwrap().is_empty());
        listed.close().await;
        let health = client.request("GET", "/v1/health", None).await.unwrap();
        assert_eq!(health.status, 200);
    });
    liar_server.close();
    cutter_server.close();
    assert_eq!(daemon.stop(), 0);
}

fn sleeper(n: usize, seconds: u32) -> String {
    format!(
        "-- config: materialized = 'table'\nselect {n} as n, pg_sleep({seconds}) is null as slept"
    )
}

/// The node results of run `run` on `daemon`, followed to its end.
async fn run_with_peers(
    client: &mut orbital_daemon::client::Client,
    body: Value,
) -> (u64, Vec<(String, Value)>) {
    let run = start_run(client, body).await;
    (run, follow(client, run).await)
}

#[test]
fn a_run_hands_builds_to_a_peer_and_builds_here_what_a_killed_peer_was_building() {
    let Some((project_a, database)) = postgres_project("peer_tasks") else {
        return;
    };
    for i in 0..6 {
        // A second each: B's four slots stay taken while A offers the rest.
        project_a.write(&format!("models/m{i}.sql"), &sleeper(i, 1));
    }
    let project_b = copy_of(&project_a);
    // C's target has the same name and another database: not a place for
    // A's builds.
    let Some((project_c, _other)) = postgres_project("peer_tasks_other") else {
        return;
    };
    for i in 0..6 {
        project_c.write(&format!("models/m{i}.sql"), &sleeper(i, 1));
    }
    let mut daemons = peered(&[&project_a, &project_b, &project_c]);
    // A run naming B ("d1" in A's list) hands B its builds, four at a time
    // (B's slots), and builds the rest itself; only A records them. C
    // ("d2") refuses each: A builds those itself.
    let body = json!({ "command": "run", "threads": 6, "peers": ["d1"] });
    runtime().block_on(async {
        let mut client = daemons[0].client().await;
        let (_, events) = run_with_peers(&mut client, body.clone()).await;
        assert_eq!(
            events.last().unwrap().1["status"],
            "succeeded",
            "{events:?}"
        );
        let on_b = (0..6)
            .filter(|i| {
                let result = finished(&events, &format!("m{i}"));
                assert_eq!(result["status"], "success", "{result}");
                result["message"].as_str().unwrap().contains("(on peer d1)")
            })
            .count();
        assert_eq!(on_b, 4, "{events:?}");
        let (_, events) = run_with_peers(
            &mut client,
            json!({ "command": "run", "threads": 6, "peers": ["d2"], "full_refresh": true }),
        )
        .await;
        assert_eq!(
            events.last().unwrap().1["status"],
            "succeeded",
            "{events:?}"
        );
        // Each task C was offered (those it had a free slot for) it refused.
        let mut refused = 0;
        for i in 0..6 {
            let result = finished(&events, &format!("m{i}"));
            assert_eq!(result["status"], "success", "{result}");
            let message = result["message"].as_str().unwrap();
            assert!(!message.contains("on peer"), "{result}");
            refused += usize::from(message.contains("another warehouse"));
        }
        assert!(refused >= 1, "{events:?}");
        let unknown = client
            .request(
                "POST",
                "/v1/runs",
                Some(&json!({ "command": "run", "peers": ["nobody"] })),
            )
            .await
            .unwrap();
        assert_eq!(unknown.status, 400);
        let mut b = daemons[1].client().await;
        let history = b.request("GET", "/v1/runs", None).await.unwrap();
        assert_eq!(
            history.json().unwrap()["runs"],
            json!([]),
            "B records nothing"
        );
    });
    for i in 0..6 {
        assert_eq!(
            pg_scalar(&database.url, &format!("SELECT n FROM m{i}")),
            i.to_string()
        );
    }

    // Now B is killed while it builds: what it was building is built here,
    // and every model is built and recorded once.
    for i in 0..6 {
        project_a.write(&format!("models/m{i}.sql"), &sleeper(i + 10, 3));
        project_b.write(&format!("models/m{i}.sql"), &sleeper(i + 10, 3));
    }
    let (run, events) = runtime().block_on(async {
        let mut client = daemons[0].client().await;
        let run = start_run(&mut client, body).await;
        let mut started = 0;
        client
            .events(&format!("/v1/runs/{run}/events"), None, |_, name, _| {
                started += usize::from(name == "node_started");
                started < 6
            })
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        daemons[1].child.kill().unwrap();
        (run, follow(&mut client, run).await)
    });
    assert_eq!(
        events.last().unwrap().1["status"],
        "succeeded",
        "{events:?}"
    );
    let mut lost = 0;
    for i in 0..6 {
        let name = format!("m{i}");
        let results: Vec<_> = events
            .iter()
            .filter(|(event, data)| event == "node_finished" && data["result"]["name"] == name)
            .collect();
        assert_eq!(results.len(), 1, "{name}: {events:?}");
        let result = &results[0].1["result"];
        assert_eq!(result["status"], "success", "{result}");
        lost += usize::from(result["message"].as_str().unwrap().contains("was lost"));
        assert_eq!(
            pg_scalar(&database.url, &format!("SELECT n FROM m{i}")),
            (i + 10).to_string()
        );
    }
    assert_eq!(lost, 4, "{events:?}");
    runtime().block_on(async {
        let mut client = daemons[0].client().await;
        let record = client
            .request("GET", &format!("/v1/runs/{run}"), None)
            .await
            .unwrap()
            .json()
            .unwrap();
        let mut names: Vec<&str> = record["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["m0", "m1", "m2", "m3", "m4", "m5"], "{record}");
        let peers = client.request("GET", "/v1/peers", None).await.unwrap();
        let sent = peers.json().unwrap()["peers"][0]["sent"].clone();
        assert_eq!(
            (&sent["tasks"], &sent["tasks_lost"]),
            (&json!(4), &json!(4)),
            "{sent}"
        );
    });
    // `orbital peers` through A says the same.
    let config = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_orbital"))
            .args(args)
            .arg("--project")
            .arg(project_a.path())
            .env("ORBITAL_CONFIG_DIR", config.path())
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        out
    };
    let token = daemons[0].data_dir.path().join("token");
    cli(&[
        "login",
        &format!("https://{}", daemons[0].addr),
        "--token-file",
        token.to_str().unwrap(),
        "--cert-sha256",
        &daemons[0].fingerprint,
        "--name",
        "a",
    ]);
    let listed = cli(&["--remote", "a", "peers"]);
    assert!(listed.contains("built 4 tasks (4 lost)"), "{listed}");
    for daemon in [daemons.remove(2), daemons.remove(0)] {
        assert_eq!(daemon.stop(), 0);
    }
    // Without a daemon there are no peers to hand builds to.
    let local = project_a.orbital(&["run", "--peers", "d1"]);
    assert_eq!(local.code(), 2, "{}", local.stderr());
    assert!(
        local.stderr().contains("run it through a daemon"),
        "{}",
        local.stderr()
    );
}

#[test]
fn a_run_on_a_target_only_a_peer_reaches_runs_its_statements_and_tasks_there() {
    let Some((project_b, database)) = postgres_project("peer_reach") else {
        return;
    };
    for i in 0..4 {
        project_b.write(&format!("models/m{i}.sql"), &sleeper(i, 0));
    }
    project_b.write(
        "models/v.sql",
        "-- config: materialized = 'view'\nselect n from m0",
    );
    project_b.write(
        "models/inc.sql",
        "-- config: materialized = 'incremental', unique_key = 'n'\nselect n from m1",
    );
    // A has the same project, and a URL for the target that leads nowhere:
    // only B reaches the warehouse.
    let project_a = copy_of(&project_b);
    let config = std::fs::read_to_string(project_a.path().join("orbital.toml")).unwrap();
    project_a.write(
        "orbital.toml",
        &config.replace(&database.url, "postgres://orbital@127.0.0.1:1/unreachable"),
    );
    let (mut a, b) = pinned_pair(&project_a, &project_b, |_, _| {
        "reaches = [\"dev\"]\n".into()
    });
    runtime().block_on(async {
        let mut client = a.client().await;
        let (_, events) = run_with_peers(&mut client, json!({ "command": "run" })).await;
        assert_eq!(
            events.last().unwrap().1["status"],
            "succeeded",
            "{events:?}"
        );
        // Tables and views are built by B as tasks; the incremental model,
        // which continues its table under the run's lock, runs here with
        // its statements on B's connection.
        for name in ["m0", "m1", "m2", "m3", "v"] {
            let result = finished(&events, name);
            assert_eq!(result["status"], "success", "{result}");
            assert!(
                result["message"].as_str().unwrap().contains("(on peer b)"),
                "{result}"
            );
        }
        let inc = finished(&events, "inc");
        assert_eq!(inc["status"], "success", "{inc}");
        assert!(
            !inc["message"].as_str().unwrap().contains("on peer"),
            "{inc}"
        );
        // A's next plan reads the catalog through B: everything is reused.
        let plan = client
            .request("POST", "/v1/plan", Some(&json!({})))
            .await
            .unwrap();
        let plan = plan.json().unwrap();
        for (name, action) in actions(&plan) {
            if name != "inc" {
                assert_eq!(action, "reuse", "{name}: {plan}");
            }
        }
        let peers = client.request("GET", "/v1/peers", None).await.unwrap();
        let b_seen = peers.json().unwrap()["peers"][0].clone();
        assert_eq!(b_seen["reaches"], json!(["dev"]), "{b_seen}");
        assert_eq!(b_seen["sent"]["tasks"], 5, "{b_seen}");
        assert!(
            b_seen["sent"]["warehouse_calls"].as_u64().unwrap() > 0,
            "{b_seen}"
        );
        // Only A records the run.
        let mut on_b = b.client().await;
        let history = on_b.request("GET", "/v1/runs", None).await.unwrap();
        assert_eq!(history.json().unwrap()["runs"], json!([]));
    });
    for i in 0..4 {
        assert_eq!(
            pg_scalar(&database.url, &format!("SELECT n FROM m{i}")),
            i.to_string()
        );
    }
    assert_eq!(pg_scalar(&database.url, "SELECT n FROM v"), "0");
    assert_eq!(pg_scalar(&database.url, "SELECT count(*) FROM inc"), "1");

    // With B down nothing reaches the target: A's run fails, naming B. Once
    // B is back, A's next run reaches it again.
    let mut b = b;
    assert_eq!(b.pause(), 0);
    runtime().block_on(async {
        let mut client = a.client().await;
        let answer = client
            .request("POST", "/v1/runs", Some(&json!({ "command": "run" })))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&answer.body).to_string();
        let said = if answer.status == 202 {
            let run = answer.json().unwrap()["run"].as_u64().unwrap();
            format!("{:?}", follow(&mut client, run).await)
        } else {
            text
        };
        assert!(
            said.contains("peer b, which holds the target's connection: cannot be reached"),
            "{said}"
        );
    });
    let b = b.resume(&project_b);
    runtime().block_on(async {
        let mut client = a.client().await;
        let (_, events) = run_with_peers(&mut client, json!({ "command": "run" })).await;
        assert_eq!(
            events.last().unwrap().1["status"],
            "succeeded",
            "{events:?}"
        );
    });

    // A dies mid-run while B holds the environment's lock for it: B lets go
    // of what A held once A's connection ends, so a run on B's side gets
    // the environment (it would wait for it otherwise, and give up).
    project_a.write(
        "models/slow.sql",
        "-- config: materialized = 'incremental', unique_key = 'n'\n\
         select 99 as n, pg_sleep(600) is null as slept",
    );
    runtime().block_on(async {
        let mut client = a.client().await;
        let run = start_run(&mut client, json!({ "command": "run" })).await;
        client
            .events(&format!("/v1/runs/{run}/events"), None, |_, name, data| {
                !(name == "node_started" && data.contains("\"slow\""))
            })
            .await
            .unwrap();
    });
    let advisory = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'";
    assert_ne!(pg_scalar(&database.url, advisory), "0");
    a.child.kill().unwrap();
    let _ = a.child.wait();
    project_b.orbital(&["run", "--select", "m0"]).expect_code(0);
    // And its statement still running there is cancelled.
    // (An idle connection still shows the last statement it ran.)
    let sleeping = "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
                    AND query LIKE '%pg_sleep(600)%' AND pid <> pg_backend_pid()";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while pg_scalar(&database.url, sleeping) != "0" {
        assert!(std::time::Instant::now() < deadline, "still running on B");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(b.stop(), 0);
}
