//! `orbital docs`: the docs site of jaffle_shop, its data checked as JSON
//! and its page opened in headless Chromium from disk.

mod support;

use serde_json::Value;
use support::TestProject;

/// The entry of `list` (an array of objects with a `name`) named `name`.
fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

fn node<'a>(document: &'a Value, name: &str) -> &'a Value {
    named(&document["nodes"], name)
}

#[test]
fn the_docs_site_shows_nodes_columns_tests_and_lineage() {
    let project = TestProject::jaffle_shop();
    let orders = std::fs::read_to_string(project.path().join("models/marts/orders.sql")).unwrap();
    project.write(
        "models/marts/orders.sql",
        &format!(
            "-- config: description = 'One row per order, with what was paid how.'\n\
             -- config: columns.status.description = 'Where the order is.'\n{orders}"
        ),
    );
    project.orbital(&["build"]).expect_code(0);
    let written = project.orbital(&["docs", "--json"]).expect_code(0).json();
    let page = std::path::PathBuf::from(written["page"].as_str().unwrap());
    let page = project.path().join(page.strip_prefix(".").unwrap_or(&page));
    let data = project.path().join("target/docs/docs.json");
    let document: Value = serde_json::from_str(&std::fs::read_to_string(&data).unwrap()).unwrap();
    assert_eq!(
        written["nodes"],
        document["nodes"].as_array().unwrap().len()
    );

    // What a node page shows.
    let orders = node(&document, "orders");
    assert_eq!(
        orders["description"],
        "One row per order, with what was paid how."
    );
    assert_eq!(orders["materialized"], "table");
    assert!(
        orders["sql"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("select")
    );
    assert_eq!(orders["fingerprint"].as_str().unwrap().len(), 64);
    let status = named(&orders["columns"], "status");
    assert_eq!(status["description"], "Where the order is.");
    let card = named(&orders["columns"], "credit_card_amount");
    assert!(
        card["lineage"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["node"] == "stg_payments"
                && e["column"] == "payment_method"
                && e["kind"] == "filter"),
        "{card}"
    );
    let tests = orders["tests"].as_array().unwrap();
    assert!(
        tests.contains(&Value::from("unique_orders_order_id")),
        "{tests:?}"
    );
    assert_eq!(
        node(&document, "unique_orders_order_id")["last"]["status"],
        "pass"
    );
    assert_eq!(node(&document, "raw_orders")["columns"][0]["name"], "id");

    // The page opens from disk and draws it.
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("/*ORBITAL_DOCS_DATA*/"),
        "the data is embedded"
    );
    checks_the_page(&page, &document, "disk");

    // The same page from the daemon, saved as a browser would.
    let daemon = support::daemon::Daemon::start(&project);
    let served = support::daemon::runtime().block_on(async {
        let mut client = daemon.client().await;
        client.request("GET", "/", None).await.unwrap()
    });
    assert_eq!(served.status, 200);
    let from_daemon = project.path().join("served.html");
    std::fs::write(&from_daemon, &served.body).unwrap();
    checks_the_page(&from_daemon, &document, "daemon");
}

/// The page at `page` shows `document`: every model in the list, a search
/// that filters it, `orders` with its columns and SQL, the graph with its
/// upstream and downstream marked, and the lineage of one of its columns
/// down to `raw_payments`. A screenshot of each step goes to
/// target/test-artifacts/docs-<from>-<step>.png.
fn checks_the_page(page: &std::path::Path, document: &Value, from: &str) {
    let nodes = document["nodes"].as_array().unwrap();
    let start = support::rendered_dom(page, "");
    assert_eq!(
        start.matches("<li data-node=").count(),
        nodes.len(),
        "every node listed"
    );
    for model in nodes.iter().filter(|n| n["kind"] == "model") {
        let name = model["name"].as_str().unwrap();
        assert!(
            start.contains(&format!("<li data-node=\"{name}\">")),
            "{name} listed"
        );
    }
    support::screenshot(page, "", &format!("docs-{from}-list"));

    let searched = support::rendered_dom(page, "search=stg_");
    let listed: Vec<&str> = searched
        .split("<li data-node=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(
        listed.len() >= 3 && listed.len() < nodes.len(),
        "{listed:?}"
    );
    assert!(
        listed.iter().all(|name| name.contains("stg_")),
        "{listed:?}"
    );
    for model in ["stg_customers", "stg_orders", "stg_payments"] {
        assert!(listed.contains(&model), "{model} in {listed:?}");
    }
    support::screenshot(page, "search=stg_", &format!("docs-{from}-search"));

    let orders = support::rendered_dom(page, "orders");
    assert!(orders.contains("id=\"node-name\">orders<"));
    assert!(orders.contains("<table id=\"columns\">") && orders.contains(">credit_card_amount<"));
    assert!(orders.contains("<pre id=\"sql\">"));
    assert!(orders.contains("One row per order, with what was paid how."));
    assert!(orders.contains("Where the order is."));
    // In the graph: the node, what it reads up to the seeds, its tests.
    assert_eq!(
        orders.matches(" data-node=").count(),
        2 * nodes.len(),
        "every node in the graph too"
    );
    assert!(orders.contains("class=\"model current\""));
    assert!(
        orders.contains("class=\"model up\""),
        "stg_orders and stg_payments"
    );
    assert!(orders.contains("class=\"seed up\""), "the raw seeds");
    assert!(orders.contains("class=\"test down\""), "its tests");
    support::screenshot(page, "orders", &format!("docs-{from}-orders"));

    let lineage = support::rendered_dom(page, "orders.credit_card_amount");
    assert!(lineage.contains("<ul class=\"tree\" id=\"lineage\">"));
    assert!(
        lineage.contains("data-column=\"stg_payments.payment_method\"")
            && lineage.contains("data-column=\"raw_payments.amount\""),
        "the column's lineage, down to the seed"
    );
    support::screenshot(
        page,
        "orders.credit_card_amount",
        &format!("docs-{from}-lineage"),
    );
}

/// A project too large to draw whole: the list comes a page at a time and
/// the graph shows the selected node's neighbourhood, centred on it.
#[test]
fn a_large_project_lists_a_page_at_a_time_and_draws_a_neighbourhood() {
    const MODELS: usize = 450;
    let project = TestProject::empty();
    project.write(
        "orbital.toml",
        "name = \"large\"\n[targets.dev]\nurl = \"sqlite://target/large.db\"\n",
    );
    project.write("models/m_000.sql", "select 1 as id, 2 as amount\n");
    for i in 1..MODELS {
        // Each model reads the one before it and one further up.
        project.write(
            &format!("models/m_{i:03}.sql"),
            &format!(
                "select a.id, a.amount + b.amount as amount from m_{:03} as a join m_{:03} as b on a.id = b.id\n",
                i - 1,
                i / 2
            ),
        );
    }
    project.orbital(&["docs"]).expect_code(0);
    let page = project.path().join("target/docs/index.html");

    let start = support::rendered_dom(&page, "");
    assert_eq!(start.matches("<li data-node=").count(), 200, "one page");
    assert!(
        start.contains("<li class=\"more\">250 more</li>"),
        "and how many more"
    );
    assert!(start.contains("450 nodes: pick one to draw its neighbourhood."));
    assert_eq!(start.matches("<g class=").count(), 0, "no graph drawn yet");
    let drawn: u64 = start
        .split("data-drawn-ms=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|ms| ms.parse().ok())
        .expect("the page says when it drew the list");
    assert!(drawn > 0);

    // A search finds nodes past the first page.
    let searched = support::rendered_dom(&page, "search=m_44");
    let listed: Vec<&str> = searched
        .split("<li data-node=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(
        listed,
        (440..450).map(|i| format!("m_{i}")).collect::<Vec<_>>()
    );

    // A node past the first page: its details, and its neighbourhood.
    let shown = support::rendered_dom(&page, "m_300.amount");
    assert!(shown.contains("id=\"node-name\">m_300<"));
    assert!(shown.contains("<pre id=\"sql\">"));
    assert!(shown.contains("class=\"model current\" transform"));
    assert!(
        shown.contains("<li data-node=\"m_300\" class=\"current pinned\">"),
        "not drawn in the list yet: pinned at its top"
    );
    for near in ["m_299", "m_150", "m_301", "m_449"] {
        assert!(
            shown.contains(&format!("data-node=\"{near}\"><rect")),
            "{near} drawn beside m_300"
        );
    }
    let drawn_nodes = shown.matches("<g class=").count();
    assert!(
        drawn_nodes > 100 && drawn_nodes <= 301,
        "a neighbourhood, not the whole graph: {drawn_nodes}"
    );
    assert!(
        shown.contains("data-column=\"m_000.amount\""),
        "the column's lineage down to the first model"
    );
    support::screenshot(&page, "m_300", "docs-large-neighbourhood");
}
