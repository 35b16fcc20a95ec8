//! `orbital docs`: the docs site of jaffle_shop, its data checked as JSON
//! and its page opened in headless Chromium from disk.

mod support;

use serde_json::Value;
use support::TestProject;

fn node<'a>(document: &'a Value, name: &str) -> &'a Value {
    document["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name}"))
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
    let status = orders["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "status")
        .unwrap();
    assert_eq!(status["description"], "Where the order is.");
    let card = orders["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "credit_card_amount")
        .unwrap();
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

    // The page opens from disk and draws it: the list, the graph with the
    // node's upstream and downstream marked, the node, a column's lineage.
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("/*ORBITAL_DOCS_DATA*/"),
        "the data is embedded"
    );
    let dom = support::rendered_dom(&page, "orders.credit_card_amount");
    let count = |needle: &str| dom.matches(needle).count();
    let nodes = document["nodes"].as_array().unwrap().len();
    assert_eq!(count("<li data-node="), nodes, "every node in the list");
    assert_eq!(
        count(" data-node=") - count("<li data-node="),
        nodes,
        "every node in the graph"
    );
    assert!(dom.contains("id=\"node-name\">orders<"), "the node's page");
    assert!(dom.contains("One row per order, with what was paid how."));
    assert!(dom.contains("class=\"model current\""));
    assert!(
        dom.contains("class=\"model up\""),
        "stg_orders and stg_payments"
    );
    assert!(dom.contains("class=\"seed up\""), "the raw seeds");
    assert!(dom.contains("class=\"test down\""), "its tests");
    assert!(
        dom.contains("data-column=\"stg_payments.payment_method\"")
            && dom.contains("data-column=\"raw_payments.amount\""),
        "the column's lineage, down to the seed"
    );
    assert!(dom.contains("Where the order is."));
}
