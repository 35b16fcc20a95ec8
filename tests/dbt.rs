//! dbt projects run as they are: the original jaffle_shop dbt project,
//! unmodified, built by the real `orbital` binary on SQLite.

mod support;

use serde_json::Value;
use support::{TestProject, query};

#[test]
fn the_unmodified_dbt_jaffle_shop_builds_and_its_schema_tests_pass() {
    let dbt = TestProject::jaffle_shop_dbt();
    let built = dbt.orbital(&["build", "--json"]).expect_code(0);
    let models = built.statuses();
    assert_eq!(models.len(), 8, "{models:?}");
    assert!(
        models.values().all(|status| status == "success"),
        "{models:?}"
    );
    let tests = built.test_statuses();
    // schema.yml and staging/schema.yml declare 20 generic tests.
    assert_eq!(tests.len(), 20, "{tests:?}");
    assert!(tests.values().all(|status| status == "pass"), "{tests:?}");
    for name in [
        "relationships_orders_customer_id__customers",
        "accepted_values_stg_payments_payment_method",
    ] {
        assert!(tests.contains_key(name), "{name}: {tests:?}");
    }

    // The same rows as the native example on the same seeds, where the
    // logic is the same (dbt's staging divides integer cents by 100, which
    // SQLite truncates; the example's macro does not).
    let native = TestProject::jaffle_shop();
    for name in ["raw_customers.csv", "raw_orders.csv", "raw_payments.csv"] {
        std::fs::copy(
            dbt.path().join("seeds").join(name),
            native.path().join("seeds").join(name),
        )
        .unwrap();
    }
    native.orbital(&["build"]).expect_code(0);
    let (dbt_db, native_db) = (dbt.path().join("target/jaffle_shop.db"), native.database());
    for sql in [
        "select customer_id, first_name, last_name, first_order, most_recent_order, \
         number_of_orders from customers order by customer_id",
        "select order_id, customer_id, order_date, status from orders order by order_id",
    ] {
        let rows = query(&dbt_db, sql);
        assert_eq!(rows.len(), if sql.contains("customers") { 100 } else { 99 });
        assert_eq!(rows, query(&native_db, sql), "{sql}");
    }
    // The pivot its Jinja loop writes: each method's column and the total
    // agree with the seeds.
    let wrong = query(
        &dbt_db,
        "select o.order_id from orders o where o.amount <> \
         (select coalesce(sum(p.amount / 100), 0) from raw_payments p where p.order_id = o.order_id) \
         or o.credit_card_amount <> (select coalesce(sum(p.amount / 100), 0) from raw_payments p \
         where p.order_id = o.order_id and p.payment_method = 'credit_card')",
    );
    assert!(wrong.is_empty(), "{wrong:?}");

    // Nothing changed: everything is reused.
    let again = dbt.orbital(&["build", "--json"]).expect_code(0);
    assert!(
        again.statuses().values().all(|status| status == "reused"),
        "{:?}",
        again.statuses()
    );
}

/// (name, change) of each node of `orbital plan --json`.
fn changes(project: &TestProject) -> Vec<(String, String)> {
    let plan: Value = project.orbital(&["plan", "--json"]).expect_code(0).json();
    plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["change"] != "unchanged")
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["change"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_macro_edit_rebuilds_exactly_the_models_whose_rendered_sql_changed() {
    let dbt = TestProject::jaffle_shop_dbt();
    dbt.orbital(&["build"]).expect_code(0);
    // The same SQL written through a macro of macro-paths: nothing changes.
    dbt.write(
        "macros/dollars.sql",
        "{% macro to_dollars(column) %}{{ column }} / 100{% endmacro %}",
    );
    let staging = dbt.path().join("models/staging/stg_payments.sql");
    let text = std::fs::read_to_string(&staging).unwrap();
    dbt.write(
        "models/staging/stg_payments.sql",
        &text.replace(
            "amount / 100 as amount",
            "{{ to_dollars('amount') }} as amount",
        ),
    );
    assert_eq!(changes(&dbt), Vec::<(String, String)>::new());
    // The macro changes what one model renders: that model is modified,
    // and only what reads it is rebuilt.
    dbt.write(
        "macros/dollars.sql",
        "{% macro to_dollars(column) %}{{ column }} / 100.0{% endmacro %}",
    );
    let expected: Vec<(String, String)> = [
        ("stg_payments", "modified"),
        ("customers", "indirect"),
        ("orders", "indirect"),
    ]
    .iter()
    .map(|(name, change)| (name.to_string(), change.to_string()))
    .collect();
    assert_eq!(changes(&dbt), expected);
    let built = dbt.orbital(&["run", "--json"]).expect_code(0);
    let statuses = built.statuses();
    let rebuilt: Vec<&str> = statuses
        .iter()
        .filter(|(_, status)| *status == "success")
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        rebuilt,
        ["customers", "orders", "stg_payments"],
        "{statuses:?}"
    );
    let cents = query(
        &dbt.path().join("target/jaffle_shop.db"),
        "select amount from stg_payments where payment_id = 1",
    );
    assert_eq!(cents, [["10.00"]]);
}

#[test]
fn jinja_and_yaml_errors_say_where() {
    let dbt = TestProject::jaffle_shop_dbt();
    dbt.write("models/bad.sql", "select 1 as x\nfrom {{ nothing_here }}\n");
    let failed = dbt.orbital(&["compile"]);
    assert_eq!(failed.code(), 2, "{}", failed.stderr());
    let stderr = failed.stderr();
    assert!(
        stderr.contains("models/bad.sql:2:9") && stderr.contains("`nothing_here` is undefined"),
        "{stderr}"
    );
    // A ref() to nothing is caught at the call, with the nearest name.
    dbt.write("models/bad.sql", "select * from {{ ref('stg_order') }}");
    let failed = dbt.orbital(&["compile"]);
    assert_eq!(failed.code(), 2, "{}", failed.stderr());
    assert!(
        failed.stderr().contains("models/bad.sql:1:18")
            && failed.stderr().contains("did you mean `stg_orders`?"),
        "{}",
        failed.stderr()
    );
    std::fs::remove_file(dbt.path().join("models/bad.sql")).unwrap();

    dbt.write(
        "models/broken.yml",
        "version: 2\nmodels:\n  - name: x\n    columns: [\n",
    );
    let failed = dbt.orbital(&["build"]);
    assert_eq!(failed.code(), 2, "{}", failed.stderr());
    assert!(
        failed.stderr().contains("models/broken.yml:5:1"),
        "{}",
        failed.stderr()
    );
    assert!(
        !dbt.path().join("target/jaffle_shop.db").exists(),
        "nothing built"
    );
    std::fs::remove_file(dbt.path().join("models/broken.yml")).unwrap();

    // A profile output whose name cannot name a lock file, and a project
    // without a usable name, are refused.
    dbt.write(
        "profiles.yml",
        "jaffle_shop:\n  outputs:\n    \"my target\": {type: sqlite, path: target/x.db}\n",
    );
    let failed = dbt.orbital(&["compile"]);
    assert_eq!(failed.code(), 2, "{}", failed.stderr());
    assert!(
        failed.stderr().contains("output name `my target`"),
        "{}",
        failed.stderr()
    );
    std::fs::remove_file(dbt.path().join("profiles.yml")).unwrap();
    let project_file = std::fs::read_to_string(dbt.path().join("dbt_project.yml")).unwrap();
    dbt.write(
        "dbt_project.yml",
        &project_file.replace("name: 'jaffle_shop'", "name: ''"),
    );
    let failed = dbt.orbital(&["compile"]);
    assert_eq!(failed.code(), 2, "{}", failed.stderr());
    assert!(
        failed.stderr().contains("dbt_project.yml:1:1: name ``"),
        "{}",
        failed.stderr()
    );
    dbt.write("dbt_project.yml", &project_file);

    // A typo in a config key is caught, not built with the folder default.
    let orders = std::fs::read_to_string(dbt.path().join("models/orders.sql")).unwrap();
    dbt.write(
        "models/orders.sql",
        &format!("{{{{ config(materialzed='view') }}}}\n{orders}"),
    );
    let failed = dbt.orbital(&["compile"]);
    assert_eq!(failed.code(), 2, "{}", failed.stderr());
    assert!(
        failed.stderr().contains("materialzed") && failed.stderr().contains("materialized"),
        "{}",
        failed.stderr()
    );
    // One Orbital knows of and does not do yet says so.
    dbt.write(
        "models/orders.sql",
        &format!("{{{{ config(grants={{'select': ['reporter']}}) }}}}\n{orders}"),
    );
    let failed = dbt.orbital(&["compile"]);
    assert_eq!(failed.code(), 2, "{}", failed.stderr());
    assert!(
        failed
            .stderr()
            .contains("dbt config `grants`, which Orbital does not support yet"),
        "{}",
        failed.stderr()
    );
}

/// Each row of `schema.relation` as JSON text, sorted: what two builds of
/// one model are compared by (types print alike: a date as a date).
fn rows_of(database: &support::backends::PgDatabase, schema: &str, relation: &str) -> Vec<String> {
    let rows = support::backends::psql(
        &database.url,
        &format!("SELECT row_to_json(r)::text FROM {schema}.{relation} r ORDER BY 1"),
    )
    .unwrap_or_else(|e| panic!("{schema}.{relation}: {e}"));
    rows.lines().map(str::to_string).collect()
}

/// A profiles.yml output named `schema` for `database`, building into the
/// schema of that name (the password through `env_var()`).
fn postgres_output(database: &support::backends::PgDatabase, schema: &str) -> String {
    let (rest, dbname) = database.url.rsplit_once('/').unwrap();
    let (credentials, address) = rest
        .trim_start_matches("postgres://")
        .split_once('@')
        .unwrap();
    let (user, password) = credentials
        .split_once(':')
        .unwrap_or((credentials, "unused"));
    let (host, port) = address.split_once(':').unwrap();
    format!(
        "      {schema}:\n        type: postgres\n        host: {host}\n        port: {port}\n        \
         user: {user}\n        password: \"{{{{ env_var('ORBITAL_TEST_PG_PASSWORD', '{password}') }}}}\"\n        \
         dbname: {dbname}\n        schema: {schema}\n        threads: 4\n"
    )
}

#[test]
fn on_postgresql_it_builds_exactly_the_rows_dbt_core_builds() {
    let Some(support::backends::Backend::Postgres(database)) =
        support::backends::Backend::postgres("dbt_parity")
    else {
        return;
    };
    let dbt_core =
        support::python_venv("dbt", &["dbt-core==1.11.16", "dbt-postgres==1.11.0"]).join("bin/dbt");
    let project = TestProject::jaffle_shop_dbt();
    // One profile, two outputs on one server: dbt-core builds into one
    // schema, Orbital into another.
    project.write(
        "profiles.yml",
        &format!(
            "jaffle_shop:\n  target: orbital_built\n  outputs:\n{}{}",
            postgres_output(&database, "dbt_built"),
            postgres_output(&database, "orbital_built")
        ),
    );
    let dbt_run = std::process::Command::new(&dbt_core)
        .args(["build", "--target", "dbt_built", "--profiles-dir", "."])
        .current_dir(project.path())
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .output()
        .expect("run dbt");
    assert!(
        dbt_run.status.success(),
        "dbt build failed:\n{}",
        String::from_utf8_lossy(&dbt_run.stdout)
    );
    // dbt-core leaves its own files; Orbital reads none of them.
    let built = project.orbital(&["build", "--json"]).expect_code(0);
    assert!(
        built.test_statuses().values().all(|s| s == "pass"),
        "{:?}",
        built.test_statuses()
    );
    assert_eq!(built.test_statuses().len(), 20);
    for relation in [
        "raw_customers",
        "raw_orders",
        "raw_payments",
        "stg_customers",
        "stg_orders",
        "stg_payments",
        "customers",
        "orders",
    ] {
        let theirs = rows_of(&database, "dbt_built", relation);
        assert!(!theirs.is_empty(), "{relation}");
        assert_eq!(
            rows_of(&database, "orbital_built", relation),
            theirs,
            "{relation}"
        );
    }
}

#[test]
fn an_incremental_dbt_model_continues_its_table_with_the_is_incremental_build() {
    let project = TestProject::empty();
    project.write("dbt_project.yml", "name: events\nprofile: events\n");
    project.write("seeds/raw_events.csv", "id,kind,amount\n1,a,10\n2,b,20\n");
    project.write(
        "models/events.sql",
        "{{ config(materialized='incremental', unique_key='id') }}\n\
         select id, kind, amount from {{ ref('raw_events') }}\n\
         {% if is_incremental() %}\n\
         where id > (select max(id) from {{ this }})\n\
         {% endif %}\n",
    );
    project.orbital(&["build"]).expect_code(0);
    let database = project.path().join("target/events.db");
    let rows = |sql: &str| query(&database, sql);
    assert_eq!(rows("select count(*) from events"), [["2"]]);
    // New rows come, and an old one changes: the incremental build takes
    // only rows past the table's newest id, so the old one stays as it was.
    project.write(
        "seeds/raw_events.csv",
        "id,kind,amount\n1,a,99\n2,b,20\n3,c,30\n4,d,40\n",
    );
    project.orbital(&["build"]).expect_code(0);
    assert_eq!(
        rows("select id, amount from events order by id"),
        [["1", "10"], ["2", "20"], ["3", "30"], ["4", "40"]]
    );
    // A full refresh builds it from scratch, with the full build's SQL.
    project.orbital(&["build", "--full-refresh"]).expect_code(0);
    assert_eq!(rows("select amount from events where id = 1"), [["99"]]);
}

#[test]
fn vars_come_from_the_project_and_the_command_line() {
    let project = TestProject::empty();
    project.write("dbt_project.yml", "name: v\nvars:\n  low: 1\n");
    project.write("seeds/numbers.csv", "n\n1\n2\n3\n");
    project.write(
        "models/above.sql",
        "{{ config(materialized='table') }}\nselect n from {{ ref('numbers') }} where n > {{ var('low') }}",
    );
    project.orbital(&["build"]).expect_code(0);
    let database = project.path().join("target/v.db");
    assert_eq!(query(&database, "select count(*) from above"), [["2"]]);
    // YAML or JSON; the command line wins over dbt_project.yml.
    for vars in ["{low: 2}", "{\"low\": 2}"] {
        let plan: Value = project
            .orbital(&["plan", "--json", "--vars", vars])
            .expect_code(0)
            .json();
        let above = plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "above")
            .unwrap();
        assert_eq!(above["change"], "modified", "{vars}: {plan}");
    }
    project
        .orbital(&["build", "--vars", "{low: 2}"])
        .expect_code(0);
    assert_eq!(query(&database, "select count(*) from above"), [["1"]]);
    let bad = project.orbital(&["plan", "--vars", "{low: [2"]);
    assert_eq!(bad.code(), 2, "{}", bad.stderr());
    assert!(bad.stderr().contains("--vars"), "{}", bad.stderr());
    // A native project has no templates to give vars to.
    let native = TestProject::jaffle_shop();
    let refused = native.orbital(&["compile", "--vars", "{a: 1}"]);
    assert_eq!(refused.code(), 2, "{}", refused.stderr());
    assert!(
        refused.stderr().contains("vars are for dbt projects"),
        "{}",
        refused.stderr()
    );
}

#[test]
fn editing_descriptions_and_docs_blocks_rebuilds_nothing() {
    let dbt = TestProject::jaffle_shop_dbt();
    dbt.orbital(&["build"]).expect_code(0);
    for file in ["models/schema.yml", "models/docs.md", "models/overview.md"] {
        let text = std::fs::read_to_string(dbt.path().join(file)).unwrap();
        let edited = text
            .replace(
                "This table has basic information",
                "This table has some information",
            )
            .replace(
                "{% docs orders_status %}",
                "{% docs orders_status %}\nEdited.\n",
            )
            .replace("is a fictional", "is an imaginary");
        assert_ne!(edited, text, "{file}");
        dbt.write(file, &edited);
    }
    assert_eq!(changes(&dbt), Vec::<(String, String)>::new());
    // A description naming a docs block that is not there says where.
    let schema = std::fs::read_to_string(dbt.path().join("models/schema.yml")).unwrap();
    dbt.write(
        "models/schema.yml",
        &schema.replace("doc(\"orders_status\")", "doc(\"order_status\")"),
    );
    let failed = dbt.orbital(&["compile"]);
    assert_eq!(failed.code(), 2, "{}", failed.stderr());
    assert!(
        failed.stderr().contains("models/schema.yml:54:")
            && failed
                .stderr()
                .contains("no docs block is named `order_status`")
            && failed.stderr().contains("did you mean `orders_status`?"),
        "{}",
        failed.stderr()
    );
}

#[test]
fn init_from_dbt_writes_a_native_project_that_builds_the_same_rows() {
    let dbt = TestProject::jaffle_shop_dbt();
    dbt.orbital(&["build"]).expect_code(0);
    let native = TestProject::empty();
    let dir = native.path().join("jaffle");
    let wrote = dbt
        .orbital(&[
            "init",
            dir.to_str().unwrap(),
            "--from-dbt",
            dbt.path().to_str().unwrap(),
            "--json",
        ])
        .expect_code(0)
        .json();
    assert_eq!(wrote["files"].as_array().unwrap().len(), 9, "{wrote}");
    assert!(!dir.join("dbt_project.yml").exists());
    let orders = std::fs::read_to_string(dir.join("models/orders.sql")).unwrap();
    assert!(
        orders.starts_with("-- config: materialized = \"table\"\n") && !orders.contains("{{"),
        "{orders}"
    );
    let built = support::Run {
        output: std::process::Command::new(env!("CARGO_BIN_EXE_orbital"))
            .args(["build", "--json", "--project"])
            .arg(&dir)
            .output()
            .unwrap(),
    }
    .expect_code(0);
    assert_eq!(built.test_statuses().len(), 20);
    let (theirs, ours) = (
        dbt.path().join("target/jaffle_shop.db"),
        dir.join("target/jaffle_shop.db"),
    );
    for relation in ["stg_payments", "customers", "orders"] {
        let sql = format!("select * from {relation} order by 1");
        assert_eq!(query(&ours, &sql), query(&theirs, &sql), "{relation}");
    }
    // Nothing is overwritten: a second init into the same folder is refused.
    let again = dbt.orbital(&[
        "init",
        dir.to_str().unwrap(),
        "--from-dbt",
        dbt.path().to_str().unwrap(),
    ]);
    assert_eq!(again.code(), 2, "{}", again.stderr());
    assert!(
        again.stderr().contains("already exists"),
        "{}",
        again.stderr()
    );
    // A dbt project that does not render writes nothing.
    dbt.write("models/bad.sql", "select {{ nope }}");
    let elsewhere = native.path().join("other");
    let failed = dbt.orbital(&[
        "init",
        elsewhere.to_str().unwrap(),
        "--from-dbt",
        dbt.path().to_str().unwrap(),
    ]);
    assert_eq!(failed.code(), 2, "{}", failed.stderr());
    assert!(
        failed.stderr().contains("models/bad.sql:1:"),
        "{}",
        failed.stderr()
    );
    assert!(!elsewhere.exists());
}

#[test]
fn init_starts_a_native_project_that_builds() {
    let folder = TestProject::empty();
    let dir = folder.path().join("fresh");
    folder
        .orbital(&["init", dir.to_str().unwrap()])
        .expect_code(0);
    let built = std::process::Command::new(env!("CARGO_BIN_EXE_orbital"))
        .args(["build", "--project"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert_eq!(
        query(
            &dir.join("target/warehouse.db"),
            "select greeting from example"
        ),
        [["hello"]]
    );
}

/// A dbt project whose marts folder has a schema of its own and a hook,
/// with a model published under an alias and a model with hooks of its
/// own (run after the folder's).
fn published_elsewhere() -> TestProject {
    let project = TestProject::empty();
    project.write(
        "dbt_project.yml",
        "name: shop\nprofile: shop\nmodels:\n  shop:\n    marts:\n      +schema: marts\n      \
         +materialized: table\n      \
         +post-hook: \"insert into {{ target.schema }}.audit_log (relation) values ('{{ this }}')\"\n",
    );
    project.write("seeds/raw_people.csv", "id,name\n1,ann\n2,bob\n");
    project.write(
        "models/staging/stg_people.sql",
        "{{ config(alias='people_clean') }}\nselect id, name from {{ ref('raw_people') }}\n",
    );
    project.write(
        "models/marts/people.sql",
        "{{ config(pre_hook=\"create table if not exists {{ target.schema }}.audit_log (relation text)\", \
         post_hook=[\"create index if not exists people_by_id on {{ this }} (id)\"]) }}\n\
         select id, upper(name) as name from {{ ref('stg_people') }}\n",
    );
    project
}

#[test]
fn schema_alias_and_hooks_on_postgresql() {
    let Some(support::backends::Backend::Postgres(database)) =
        support::backends::Backend::postgres("dbt_published")
    else {
        return;
    };
    let project = published_elsewhere();
    project.write(
        "profiles.yml",
        &format!(
            "shop:\n  target: analytics\n  outputs:\n{}",
            postgres_output(&database, "analytics")
        ),
    );
    let sql = |sql: &str| {
        support::backends::psql(&database.url, sql)
            .unwrap()
            .trim()
            .to_string()
    };
    let audited = || sql("select count(*) from analytics.audit_log");
    project.orbital(&["build"]).expect_code(0);
    // As dbt names them: `<target schema>_<schema>`, and the alias.
    assert_eq!(
        sql("select string_agg(name, ',' order by id) from analytics_marts.people"),
        "ANN,BOB"
    );
    assert_eq!(sql("select count(*) from analytics.people_clean"), "2");
    assert_eq!(
        sql("select to_regclass('analytics.stg_people') is null"),
        "t"
    );
    assert_eq!(sql("select to_regclass('analytics.people') is null"), "t");
    // The pre-hook ran before the build, the folder's post-hook and then the
    // model's after it, on the table the build made.
    assert_eq!(audited(), "1");
    let audit = sql("select relation from analytics.audit_log");
    assert!(
        audit.starts_with("\"analytics\".\"orbital__people__"),
        "{audit}"
    );
    let indexed = sql("select tablename from pg_indexes where indexname = 'people_by_id'");
    assert!(audit.contains(&indexed), "{indexed} in {audit}");

    // Hooks run with builds only: nothing changed, nothing built.
    project.orbital(&["build"]).expect_code(0);
    assert_eq!(audited(), "1");
    // Another environment gets its views in its own schemas, onto the same builds.
    project.orbital(&["build", "--env", "dev"]).expect_code(0);
    assert_eq!(sql("select count(*) from analytics_marts__dev.people"), "2");
    assert_eq!(sql("select count(*) from analytics__dev.people_clean"), "2");
    assert_eq!(audited(), "1");

    // A new alias moves the view and builds nothing: where a model is
    // published is not part of what it holds.
    project.write(
        "models/staging/stg_people.sql",
        "{{ config(alias='people_tidy') }}\nselect id, name from {{ ref('raw_people') }}\n",
    );
    let moved = project.orbital(&["build", "--json"]).expect_code(0);
    assert_eq!(
        moved.statuses()["stg_people"],
        "reused",
        "{:?}",
        moved.statuses()
    );
    assert_eq!(sql("select count(*) from analytics.people_tidy"), "2");
    assert_eq!(
        sql("select to_regclass('analytics.people_clean') is null"),
        "t"
    );
    assert_eq!(audited(), "1");
    // Promoting dev brings its views to the default environment's names.
    project.orbital(&["promote", "dev"]).expect_code(0);
    assert_eq!(sql("select count(*) from analytics.people_tidy"), "2");
    assert_eq!(sql("select count(*) from analytics_marts.people"), "2");

    // The project's own naming macros decide, as in dbt: here the custom
    // schema as it is, and aliases with a suffix.
    project.write(
        "macros/naming.sql",
        "{% macro generate_schema_name(custom_schema_name, node) -%}\n\
         {%- if custom_schema_name is none -%}{{ target.schema }}\n\
         {%- else -%}{{ custom_schema_name | trim }}{%- endif -%}\n\
         {%- endmacro %}\n\
         {% macro generate_alias_name(custom_alias_name=none, node=none) -%}\n\
         {%- if custom_alias_name is none -%}{{ node.name }}\n\
         {%- else -%}{{ custom_alias_name }}_v{%- endif -%}\n\
         {%- endmacro %}\n",
    );
    project.orbital(&["build"]).expect_code(0);
    assert_eq!(sql("select count(*) from marts.people"), "2");
    assert_eq!(sql("select count(*) from analytics.people_tidy_v"), "2");
    assert_eq!(
        sql("select to_regclass('analytics_marts.people') is null"),
        "t"
    );
    assert_eq!(
        sql("select to_regclass('analytics.people_tidy') is null"),
        "t"
    );
    assert_eq!(audited(), "1", "moving a model builds nothing");
    std::fs::remove_file(project.path().join("macros/naming.sql")).unwrap();
    project.orbital(&["build"]).expect_code(0);
    assert_eq!(sql("select count(*) from analytics_marts.people"), "2");

    // A failing hook fails its model, which is not published.
    project.write(
        "models/marts/people.sql",
        "{{ config(post_hook='select * from no_such_table') }}\n\
         select id, lower(name) as name from {{ ref('stg_people') }}\n",
    );
    let failed = project.orbital(&["build", "--json"]).expect_code(1);
    let error = failed.error_of("people");
    assert!(
        error.contains("post_hook 2 of 2 failed") && error.contains("no_such_table"),
        "{error}"
    );
    assert_eq!(
        sql("select string_agg(name, ',' order by id) from analytics_marts.people"),
        "ANN,BOB"
    );
}

#[test]
fn alias_and_hooks_on_sqlite_and_a_custom_schema_is_refused_there() {
    let project = published_elsewhere();
    // SQLite has no schemas: a custom one is an error naming the model.
    let refused = project.orbital(&["build"]).expect_code(2);
    assert!(
        refused.stderr().contains("models/marts/people.sql")
            && refused.stderr().contains("schema = 'main_marts'")
            && refused.stderr().contains("no schemas"),
        "{}",
        refused.stderr()
    );
    assert!(
        !project.path().join("target/shop.db").exists(),
        "nothing built"
    );
    let file = std::fs::read_to_string(project.path().join("dbt_project.yml")).unwrap();
    project.write(
        "dbt_project.yml",
        &file.replace("      +schema: marts\n", ""),
    );
    project.orbital(&["build"]).expect_code(0);
    let database = project.path().join("target/shop.db");
    assert_eq!(
        query(&database, "select count(*) from people_clean"),
        [["2"]]
    );
    assert_eq!(
        query(&database, "select name from people order by id"),
        [["ANN"], ["BOB"]]
    );
    assert_eq!(query(&database, "select count(*) from audit_log"), [["1"]]);
    assert_eq!(
        query(
            &database,
            "select count(*) from sqlite_master where type = 'index' and name = 'people_by_id'"
        ),
        [["1"]]
    );
    // Another environment names its views `<env>__<alias>`.
    project.orbital(&["build", "--env", "dev"]).expect_code(0);
    assert_eq!(
        query(&database, "select count(*) from dev__people_clean"),
        [["2"]]
    );
    // Two models published as one relation are refused.
    project.write(
        "models/staging/other.sql",
        "{{ config(alias='people_clean') }}\nselect 1 as id\n",
    );
    let clash = project.orbital(&["compile"]).expect_code(2);
    assert!(
        clash
            .stderr()
            .contains("is published as `people_clean`, as `")
            && clash.stderr().contains("other")
            && clash.stderr().contains("stg_people"),
        "{}",
        clash.stderr()
    );
}

#[test]
fn a_dbt_snapshot_keeps_the_history_of_its_rows() {
    let project = TestProject::empty();
    project.write(
        "dbt_project.yml",
        "name: crm\nprofile: crm\nsnapshots:\n  crm:\n    +strategy: timestamp\n",
    );
    project.write(
        "seeds/raw_customers.csv",
        "id,name,updated_at\n1,ann,2024-01-01\n2,bob,2024-01-01\n",
    );
    project.write(
        "snapshots/customers.sql",
        "{% snapshot customers_snapshot %}\n\
         {{ config(unique_key='id', updated_at='updated_at', invalidate_hard_deletes=True) }}\n\
         select id, name, updated_at from {{ ref('raw_customers') }}\n\
         {% endsnapshot %}\n",
    );
    project.write(
        "models/current_customers.sql",
        "select id, name from {{ ref('customers_snapshot') }} where valid_to is null\n",
    );
    project.orbital(&["build"]).expect_code(0);
    let database = project.path().join("target/crm.db");
    let rows = |sql: &str| query(&database, sql);
    assert_eq!(rows("select count(*) from customers_snapshot"), [["2"]]);
    // Bob is renamed, Ann is gone: Bob's old version and Ann's close.
    project.write(
        "seeds/raw_customers.csv",
        "id,name,updated_at\n2,robert,2024-02-01\n",
    );
    project.orbital(&["build"]).expect_code(0);
    assert_eq!(
        rows("select id, name, valid_to is null from customers_snapshot order by id, valid_from"),
        [["1", "ann", "0"], ["2", "bob", "0"], ["2", "robert", "1"]]
    );
    assert_eq!(
        rows("select id, name from current_customers"),
        [["2", "robert"]]
    );

    // A block that never ends says where it starts.
    project.write(
        "snapshots/broken.sql",
        "\n  {% snapshot broken %}\nselect 1 as id\n",
    );
    let failed = project.orbital(&["compile"]).expect_code(2);
    assert!(
        failed.stderr().contains("snapshots/broken.sql:2:3")
            && failed.stderr().contains("has no `{% endsnapshot %}`"),
        "{}",
        failed.stderr()
    );
}
