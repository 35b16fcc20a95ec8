use super::render::*;
use super::types::*;
use super::*;
use crate::project::Project;

fn project(models: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orbital.toml"),
        "name = \"p\"\n[targets.dev]\nurl = \"sqlite://p.db\"\n[sources.raw]\ntables = [\"events\"]\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::create_dir_all(dir.path().join("seeds")).unwrap();
    std::fs::write(dir.path().join("seeds/raw_orders.csv"), "id\n1\n").unwrap();
    for (name, sql) in models {
        std::fs::write(dir.path().join(format!("models/{name}.sql")), sql).unwrap();
    }
    let project = Project::load(dir.path()).unwrap();
    (dir, project)
}

fn compile_project(models: &[(&str, &str)]) -> Result<CompiledProject> {
    let (_dir, project) = project(models);
    let target = project.config.target(None).unwrap().1.clone();
    compile(&project, &target, Default::default())
}

/// A generated model whose expression is a 20,000-level tree: the parse
/// threads' stacks hold it, where a default 2 MiB thread overflows and
/// aborts the process. (A release build holds 400,000 levels; this test's
/// debug frames are several times larger.)
#[test]
fn a_very_deep_expression_compiles() {
    let terms: Vec<String> = (0..20_000).map(|i| format!("c{i}")).collect();
    let deep = format!("select {} as total from raw_orders", terms.join(" + "));
    let compiled = compile_project(&[("deep", &deep)]).unwrap();
    let (node, deep) = model(&compiled, "deep");
    assert_eq!(node.depends_on.len(), 1);
    assert!(
        deep.sql.contains("c19998 + c19999 AS total"),
        "{}",
        &deep.sql[..200]
    );
}

fn model<'a>(compiled: &'a CompiledProject, name: &str) -> (&'a Node, &'a CompiledModel) {
    let node = compiled.dag.nodes.iter().find(|n| n.name == name).unwrap();
    match &node.kind {
        NodeKind::Model(m) => (node, m),
        _ => panic!("{name} is not a model"),
    }
}

#[test]
fn ephemeral_models_become_ctes_of_their_readers_innermost_first() {
    let e = "-- config: materialized = 'ephemeral'\n";
    let compiled = compile_project(&[
        ("inner", &format!("{e}select id from raw_orders")),
        ("outer", &format!("{e}select id from inner where id > 0")),
        ("plain", "select * from outer"),
        ("own_ctes", "with x as (select * from outer) select * from x"),
        ("recursive", "with recursive r(n) as (select 1 union all select n + 1 from r where n < 3) select * from r, inner"),
    ])
    .unwrap();
    let dag = &compiled.dag;
    let id = |name: &str| dag.find(name).unwrap();
    // Compared with whitespace collapsed: the layout is sqlparser's.
    let render = |name: &str| {
        let sql = render_model(dag, id(name), |dep| {
            format!("\"{}_built\"", dag.nodes[dep].name)
        })
        .unwrap();
        sql.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    // Readers also wait for what the inlined SQL reads.
    assert!(
        dag.nodes[id("plain")]
            .depends_on
            .contains(&id("raw_orders"))
    );

    let plain = render("plain");
    assert!(plain.starts_with("WITH \"__orbital_ephemeral__inner\" AS ( SELECT id FROM \"raw_orders_built\" AS raw_orders ), \"__orbital_ephemeral__outer\" AS ( SELECT id FROM \"__orbital_ephemeral__inner\" AS inner WHERE id > 0 )"), "{plain}");
    assert!(
        plain.ends_with(") SELECT * FROM \"__orbital_ephemeral__outer\" AS outer"),
        "{plain}"
    );

    let own = render("own_ctes");
    assert_eq!(own.matches("WITH ").count(), 1, "{own}");
    assert!(
        own.ends_with(
            " ), x AS ( SELECT * FROM \"__orbital_ephemeral__outer\" AS outer ) SELECT * FROM x"
        ),
        "{own}"
    );

    let recursive = render("recursive");
    assert!(
        recursive.starts_with("WITH RECURSIVE \"__orbital_ephemeral__inner\" AS ("),
        "{recursive}"
    );
    // What the ephemeral model reads it would render itself too.
    assert!(render("outer").contains("__orbital_ephemeral__inner"));
}

#[test]
fn resolves_models_seeds_and_sources_but_not_ctes() {
    let compiled = compile_project(&[
        ("stg", "select id from raw_orders"),
        ("mart", "with stg_x as (select * from stg) select * from stg_x join raw.events e on true, generate_series(1, 3)"),
    ])
    .unwrap();
    let (node, mart) = model(&compiled, "mart");
    let deps: Vec<&str> = node
        .depends_on
        .iter()
        .map(|d| compiled.dag.nodes[*d].name.as_str())
        .collect();
    assert_eq!(deps, vec!["stg"]);
    assert_eq!(mart.sources, vec!["raw.events"]);
    let rendered = mart.render(|id| format!("\"{}_physical\"", compiled.dag.nodes[id].name));
    let flat = rendered.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(flat.contains("FROM \"stg_physical\" AS stg"), "{flat}");
    assert!(flat.contains("JOIN \"events\" e ON"), "{flat}");
    let readable = readable(&mart.sql)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(readable.contains("FROM stg AS stg"), "{readable}");
    assert!(readable.contains("JOIN raw.events e"), "{readable}");
    let (stg_node, _) = model(&compiled, "stg");
    assert_eq!(
        compiled.dag.nodes[stg_node.depends_on[0]].name,
        "raw_orders"
    );
}

#[test]
fn a_cte_shadows_a_model_of_the_same_name() {
    let compiled = compile_project(&[
        ("a", "select 1 as x"),
        ("b", "with a as (select 2 as x) select * from a"),
    ])
    .unwrap();
    assert!(model(&compiled, "b").0.depends_on.is_empty());
}

/// CTE names follow SQL's scoping, construct by construct (the same
/// queries run on both warehouses in tests/trust.rs).
#[test]
fn cte_names_are_resolved_by_scope() {
    let cases: [(&str, &[&str]); 9] = [
        (
            "with stg as (select * from stg) select * from stg",
            &["stg"],
        ),
        (
            "select * from (with a as (select 1 as x) select * from a) s join a on true",
            &["a"],
        ),
        (
            "with a as (select 1 as x), b as (select * from a) select * from b",
            &[],
        ),
        (
            "with b as (select * from a), a as (select 1 as x) select * from b",
            &["a"],
        ),
        (
            "with recursive stg as (select 1 as x union all select x + 1 from stg where x < 3) select * from stg",
            &[],
        ),
        (
            "with a as (select 1 as x) select * from (select * from a) s",
            &[],
        ),
        (
            "select (with a as (select 1 as x) select x from a) as y from a",
            &["a"],
        ),
        (
            "with a as (select * from b) select * from a union all (with b as (select 1 as x) select * from b)",
            &["b"],
        ),
        (
            "with a as (with stg as (select 1 as x) select * from stg) select * from a, stg",
            &["stg"],
        ),
    ];
    for (sql, expected) in cases {
        let compiled = compile_project(&[
            ("a", "select 1 as x"),
            ("b", "select 1 as x"),
            ("stg", "select 1 as x"),
            ("q", sql),
        ])
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let deps: Vec<&str> = model(&compiled, "q")
            .0
            .depends_on
            .iter()
            .map(|&d| compiled.dag.nodes[d].name.as_str())
            .collect();
        assert_eq!(deps, expected, "{sql}");
    }
}

#[test]
fn a_second_statement_is_pointed_at() {
    for (sql, at) in [
        ("select 1 as x;\n  drop table t", "models/m.sql:2:3"),
        ("select 1 as x; select 2", "models/m.sql:1:16"),
        (
            "select ';' as x;\n\n-- c\ninsert into t values (1)",
            "models/m.sql:4:1",
        ),
    ] {
        let err = compile_project(&[("m", sql)]).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{at}: model `m` holds more than one statement")),
            "{sql}: {err}"
        );
    }
}

#[test]
fn a_column_named_twice_is_pointed_at() {
    for (sql, at, name) in [
        ("select 1 as a,\n  2 as A", "models/m.sql:2:8", "a"),
        ("select x.id, y.id from x, y", "models/m.sql:1:16", "id"),
        (
            "select id, 2 as id from x union all select 1, 2",
            "models/m.sql:1:17",
            "id",
        ),
        (
            "select 1 as a from x union all select 2 as a from y",
            "",
            "",
        ),
        ("select *, id from x", "", ""),
    ] {
        let models = [("x", "select 1 as id"), ("y", "select 2 as id"), ("m", sql)];
        match compile_project(&models) {
            Ok(_) => assert!(at.is_empty(), "{sql}: not refused"),
            Err(err) => {
                let err = err.to_string();
                assert!(
                    err.starts_with(&format!("{at}: model `m` returns column `{name}` twice")),
                    "{sql}: {err}"
                );
            }
        }
    }
}

#[test]
fn reading_a_disabled_model_says_it_is_disabled() {
    let err = compile_project(&[
        ("off", "-- config: enabled = false\nselect 1 as x"),
        ("m", "select * from off"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("refers to unknown table `off`: model `off` is disabled (enabled = false)"),
        "{err}"
    );
}

#[test]
fn a_write_anywhere_in_a_model_is_refused_at_its_position() {
    let err = compile_project(&[
        ("raw", "select 1 as id"),
        (
            "m",
            "with d as (\n  delete from raw returning *\n) select * from d",
        ),
    ])
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "models/m.sql:2:3: model `m` contains a DELETE: a model or test is a query that only reads (Orbital writes the DDL)"
    );
}

#[test]
fn whitespace_and_comments_do_not_change_compiled_sql() {
    let one = compile_project(&[("a", "select 1 as x")]).unwrap();
    let two = compile_project(&[("a", "-- a comment\nSELECT   1\n  AS x  /* more */")]).unwrap();
    assert_eq!(model(&one, "a").1.sql, model(&two, "a").1.sql);
}

#[test]
fn unknown_table_points_at_the_reference() {
    let err = compile_project(&[("a", "select *\nfrom raw_ordrs")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "models/a.sql:2:6: model `a` refers to unknown table `raw_ordrs`; did you mean `raw_orders`?"
    );
}

#[test]
fn a_jinja_model_in_a_native_project_says_where_a_dbt_project_goes() {
    let err = compile_project(&[("a", "select * from {{ ref('b') }}")]).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("models/a.sql:1:15: SQL syntax error"),
        "{message}"
    );
    assert!(
        message.contains("looks like Jinja") && message.contains("dbt_project.yml"),
        "{message}"
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    let err = compile_project(&[("a", "select a\n  b c from x")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "models/a.sql:2:5: SQL syntax error in model `a`: Expected: end of statement, found: c"
    );
    let err = compile_project(&[("a", "select *\nfrom raw_orders where\n")]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("models/a.sql:2:22: SQL syntax error"),
        "{err}"
    );
}

#[test]
fn a_model_must_be_one_select() {
    let err = compile_project(&[("a", "select 1; select 2")]).unwrap_err();
    assert!(err.to_string().contains("more than one statement"), "{err}");
    let err = compile_project(&[("a", "delete from raw_orders")]).unwrap_err();
    assert!(err.to_string().contains("must be a SELECT"), "{err}");
}

#[test]
fn cycles_are_named() {
    let err = compile_project(&[
        ("a", "select * from c"),
        ("b", "select * from a"),
        ("c", "select * from b"),
    ])
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("dependency cycle: a -> c -> b -> a"),
        "{text}"
    );
    assert!(text.starts_with("models/a.sql:1:15"), "{text}");
}

#[test]
fn a_generic_test_named_like_a_model_or_another_test_is_refused() {
    let err = compile_project(&[
        ("o", "-- config: tests.id = ['not_null']\nselect 1 as id"),
        ("not_null_o_id", "select 1 as x"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("duplicate name `not_null_o_id`: also defined at models/not_null_o_id.sql"),
        "{err}"
    );
    // `a-b` and `a_b` both name the test `not_null_t_a_b`.
    let err = compile_project(&[(
        "t",
        "-- config: tests.\"a-b\" = ['not_null']\n-- config: tests.a_b = ['not_null']\nselect 1 as a_b",
    )])
    .unwrap_err()
    .to_string();
    assert!(err.contains("duplicate name `not_null_t_a_b`"), "{err}");
}

#[test]
fn several_errors_are_all_reported() {
    let err = compile_project(&[
        ("a", "select * from nope"),
        ("b", "select * from"),
        ("c", "select 1"),
    ])
    .unwrap_err();
    assert_eq!(err.flatten().len(), 2);
}

#[test]
fn an_incremental_model_has_a_full_and_an_incremental_build() {
    let compiled = compile_project(&[
        ("raw", "select 1 as id, 10 as ts"),
        (
            "increments",
            "-- config: materialized = 'incremental'\n\
             select id, ts, is_incremental() as continued from raw\n\
             where if_incremental(ts > (select max(ts) from this))",
        ),
    ])
    .unwrap();
    let id = compiled.dag.find("increments").unwrap();
    let name = |_: NodeId| "\"raw_table\"".to_string();
    let flat = |sql: String| sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let full = flat(render_build(&compiled.dag, id, None, name).unwrap());
    assert!(full.contains("(1 = 0) AS continued"), "{full}");
    assert!(full.contains("WHERE (1 = 1)"), "{full}");
    assert!(!full.contains("max"), "{full}");
    let incremental = flat(render_build(&compiled.dag, id, Some("\"events_v1\""), name).unwrap());
    assert!(
        incremental.contains("(1 = 1) AS continued"),
        "{incremental}"
    );
    assert!(
        incremental.contains("(SELECT max(ts) FROM \"events_v1\" AS this)"),
        "{incremental}"
    );
    // `this` is the model itself, not an upstream.
    assert_eq!(
        compiled.dag.nodes[id].depends_on,
        vec![compiled.dag.find("raw").unwrap()]
    );
}

#[test]
fn incremental_syntax_errors_point_at_the_call() {
    let err = compile_project(&[(
        "t",
        "-- config: materialized = 'table'\nselect 1 as x where if_incremental(x > 0)",
    )])
    .unwrap_err()
    .to_string();
    assert!(err.contains("t.sql:2:21"), "{err}");
    assert!(
        err.contains("only a model whose materialization keeps history may"),
        "{err}"
    );
    let err = compile_project(&[(
        "i",
        "-- config: materialized = 'incremental'\nselect * from this",
    )])
    .unwrap_err()
    .to_string();
    assert!(err.contains("i.sql:2:15"), "{err}");
    assert!(err.contains("outside if_incremental"), "{err}");
    let err = compile_project(&[(
        "i",
        "-- config: materialized = 'incremental'\nselect 1 as x where if_incremental(1, 2, 3)",
    )])
    .unwrap_err()
    .to_string();
    assert!(err.contains("with 3 arguments"), "{err}");
}

#[test]
fn a_model_where_a_source_table_lives_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orbital.toml"),
        "name = \"p\"\n[targets.dev]\nurl = \"sqlite://p.db\"\n[sources.app]\ntables = [\"events\"]\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::write(
        dir.path().join("models/events.sql"),
        "select * from app.events",
    )
    .unwrap();
    let project = Project::load(dir.path()).unwrap();
    let target = project.config.target(None).unwrap().1.clone();
    let err = compile(&project, &target, Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("where the declared source table `app.events` lives"),
        "{err}"
    );
}

/// Options for a compile after the models `changed` of `before` changed.
fn after<'a>(before: &'a CompiledProject, changed: &'a [usize]) -> CompileOptions<'a> {
    CompileOptions {
        previous: Some(Previous {
            dag: &before.dag,
            changed,
        }),
        ..Default::default()
    }
}

/// Compiles `project` again after `edits` (model name, new SQL) both ways,
/// from scratch and from `before` with [`Previous`], and checks the graphs
/// and the fingerprints agree.
fn recompile_both_ways(dir: &std::path::Path, before: &CompiledProject, edits: &[(&str, &str)]) {
    for (name, sql) in edits {
        std::fs::write(dir.join(format!("models/{name}.sql")), sql).unwrap();
    }
    let project = Project::load(dir).unwrap();
    let target = project.config.target(None).unwrap().1.clone();
    let mut changed: Vec<usize> = (project.models.iter().enumerate())
        .filter(|(_, m)| edits.iter().any(|(name, _)| m.name == *name))
        .map(|(index, _)| index)
        .collect();
    changed.sort_unstable();
    let whole = compile(&project, &target, Default::default()).unwrap();
    let again = compile(&project, &target, after(before, &changed)).unwrap();
    assert_eq!(format!("{:?}", again.dag), format!("{:?}", whole.dag));
    let plugins = crate::fingerprint::PluginHashes {
        adapter: Hash::of(b"adapter"),
        strategies: ["view", "table"]
            .into_iter()
            .map(|s| (s.to_string(), Hash::of(s.as_bytes())))
            .collect(),
    };
    // Fingerprints read only seeds from the project, which no edit touches.
    let earlier = crate::fingerprint::fingerprint(&project, &before.dag, &plugins).unwrap();
    let seeds = project.seeds.len();
    let ids: Vec<NodeId> = changed.iter().map(|m| seeds + m).collect();
    let since =
        crate::fingerprint::fingerprint_since(&project, &again.dag, &plugins, &earlier, &ids)
            .unwrap();
    let from_scratch = crate::fingerprint::fingerprint(&project, &whole.dag, &plugins).unwrap();
    assert_eq!(since, from_scratch);
}

#[test]
fn a_compile_of_the_changed_models_is_the_whole_compile() {
    let (dir, project) = project(&[
        (
            "stg",
            "-- config: materialized = 'ephemeral'\nselect id from raw_orders",
        ),
        ("mid", "select id from stg"),
        ("top", "select m.id from mid m join stg s on s.id = m.id"),
        ("other", "select * from raw.events"),
    ]);
    let target = project.config.target(None).unwrap().1.clone();
    let mut before = compile(&project, &target, Default::default()).unwrap();
    // A comment, a real change, a new upstream, an ephemeral model turned
    // into a table and back: each from the compile before it.
    let edits: [&[(&str, &str)]; 5] = [
        &[("mid", "select id from stg -- a comment")],
        &[("mid", "select id + 1 as id from stg")],
        &[("mid", "select s.id from stg s join other o on o.id = s.id")],
        &[(
            "stg",
            "-- config: materialized = 'table'\nselect id from raw_orders",
        )],
        &[
            (
                "stg",
                "-- config: materialized = 'ephemeral'\nselect id, 2 as two from raw_orders",
            ),
            ("other", "select 1 as id"),
        ],
    ];
    for edit in edits {
        recompile_both_ways(dir.path(), &before, edit);
        let project = Project::load(dir.path()).unwrap();
        before = compile(&project, &target, Default::default()).unwrap();
    }
}

#[test]
fn a_compile_from_a_graph_that_does_not_line_up_starts_afresh() {
    let (dir, project) = project(&[("a", "select 1 as x"), ("b", "select x from a")]);
    let target = project.config.target(None).unwrap().1.clone();
    let before = compile(&project, &target, Default::default()).unwrap();
    std::fs::write(dir.path().join("models/aa.sql"), "select 2 as x").unwrap();
    let project = Project::load(dir.path()).unwrap();
    let again = compile(&project, &target, after(&before, &[])).unwrap();
    let whole = compile(&project, &target, Default::default()).unwrap();
    assert_eq!(format!("{:?}", again.dag), format!("{:?}", whole.dag));
}

#[test]
fn an_error_found_from_a_previous_compile_is_the_whole_compiles_error() {
    let (dir, project) = project(&[("a", "select 1 as x"), ("b", "select x from a")]);
    let target = project.config.target(None).unwrap().1.clone();
    let before = compile(&project, &target, Default::default()).unwrap();
    // A cycle through an unchanged model: its location is where `a` reads `b`.
    std::fs::write(dir.path().join("models/a.sql"), "select x from b").unwrap();
    let project = Project::load(dir.path()).unwrap();
    let index = project.models.iter().position(|m| m.name == "a").unwrap();
    let again = compile(&project, &target, after(&before, &[index]))
        .unwrap_err()
        .to_string();
    let whole = compile(&project, &target, Default::default())
        .unwrap_err()
        .to_string();
    assert_eq!(again, whole);
    assert!(again.contains("cycle"), "{again}");
}
