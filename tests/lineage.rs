//! Column lineage through the real binary: `orbital lineage` on the
//! jaffle_shop example and on the original dbt jaffle_shop project.

mod support;

use serde_json::Value;
use support::TestProject;

/// The lineage tree of `column` as JSON.
fn tree(project: &TestProject, column: &str, downstream: bool) -> Value {
    let mut args = vec!["lineage", column, "--json"];
    if downstream {
        args.push("--downstream");
    }
    project.orbital(&args).expect_code(0).json()["lineage"].clone()
}

/// The child of `tree` for `node.column`, and how it is reached.
fn child<'a>(tree: &'a Value, node: &str, column: &str) -> (&'a Value, Vec<String>) {
    let found = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["node"] == node && c["column"] == column)
        .unwrap_or_else(|| panic!("no {node}.{column} under {tree}"));
    let kinds = found["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    (found, kinds)
}

#[test]
fn jaffle_shop_columns_trace_to_the_seeds_exactly() {
    let project = TestProject::jaffle_shop();
    // customer_lifetime_value: a sum of the staged amount, itself computed
    // from the seed's, over payments joined to orders on order_id.
    let clv = tree(&project, "customers.customer_lifetime_value", false);
    let (amount, kinds) = child(&clv, "stg_payments", "amount");
    assert_eq!(kinds, ["transformation"]);
    let (raw, kinds) = child(amount, "raw_payments", "amount");
    assert_eq!(kinds, ["transformation"]);
    assert!(raw["children"].as_array().unwrap().is_empty());
    assert_eq!(child(&clv, "stg_orders", "order_id").1, ["join"]);
    assert_eq!(child(&clv, "stg_payments", "order_id").1, ["join"]);
    // Every upstream column it has is one of these: nothing guessed.
    let names: Vec<String> = clv["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}.{}",
                c["node"].as_str().unwrap(),
                c["column"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "stg_customers.customer_id",
            "stg_orders.customer_id",
            "stg_orders.order_id",
            "stg_payments.amount",
            "stg_payments.order_id"
        ]
    );

    // credit_card_amount: the amount, where the method is credit_card.
    let card = tree(&project, "orders.credit_card_amount", false);
    let (amount, kinds) = child(&card, "stg_payments", "amount");
    assert_eq!(kinds, ["transformation"]);
    child(amount, "raw_payments", "amount");
    let (method, kinds) = child(&card, "stg_payments", "payment_method");
    assert_eq!(kinds, ["filter"]);
    assert_eq!(child(method, "raw_payments", "payment_method").1, ["copy"]);

    // first_name: a copy, all the way down.
    let name = tree(&project, "customers.first_name", false);
    let (staged, kinds) = child(&name, "stg_customers", "first_name");
    assert_eq!(kinds, ["copy"]);
    assert_eq!(child(staged, "raw_customers", "first_name").1, ["copy"]);

    // Downstream: what the seed's amount reaches.
    let down = tree(&project, "raw_payments.amount", true);
    let (staged, _) = child(&down, "stg_payments", "amount");
    assert_eq!(
        child(staged, "customers", "customer_lifetime_value").1,
        ["transformation"]
    );
    assert_eq!(
        child(staged, "orders", "credit_card_amount").1,
        ["transformation"]
    );

    // The text tree says the same.
    let text = project
        .orbital(&["lineage", "orders.credit_card_amount"])
        .expect_code(0)
        .stdout();
    assert!(
        text.contains("stg_payments.payment_method  filter\n")
            && text.contains("raw_payments.amount  transformation"),
        "{text}"
    );
}

#[test]
fn what_cannot_be_resolved_is_unknown_and_bad_names_are_errors() {
    let project = TestProject::jaffle_shop();
    project.write("models/odd.sql", "select status, mystery from stg_orders");
    let odd = tree(&project, "odd.mystery", false);
    assert!(odd["children"].as_array().unwrap().is_empty(), "{odd}");
    let unknown = odd["unknown"][0].as_str().unwrap();
    assert!(
        unknown.contains("`stg_orders` has no such column"),
        "{unknown}"
    );

    let failed = project.orbital(&["lineage", "orders.amont"]).expect_code(2);
    assert!(
        failed.stderr().contains("did you mean `amount`?"),
        "{}",
        failed.stderr()
    );
    let failed = project.orbital(&["lineage", "order.amount"]).expect_code(2);
    assert!(
        failed.stderr().contains("did you mean `orders`?"),
        "{}",
        failed.stderr()
    );
    let failed = project.orbital(&["lineage", "orders"]).expect_code(2);
    assert!(
        failed.stderr().contains("MODEL.COLUMN"),
        "{}",
        failed.stderr()
    );
}

#[test]
fn a_dbt_projects_lineage_is_read_after_its_jinja() {
    let dbt = TestProject::jaffle_shop_dbt();
    // The pivot its Jinja loop writes, traced like the native one.
    let card = tree(&dbt, "orders.credit_card_amount", false);
    assert_eq!(child(&card, "stg_payments", "amount").1, ["transformation"]);
    assert_eq!(child(&card, "stg_payments", "payment_method").1, ["filter"]);
}
