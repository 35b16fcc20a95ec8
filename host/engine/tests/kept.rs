//! A long-lived engine (`keep_projects`, as the daemon runs it) answers
//! from its last compile and reads again only what changed, and still sees
//! every edit: changed models, new and removed files, broken and fixed ones.

use std::path::Path;

use orbital_engine::{CompileRequest, Engine, EngineOptions, Listing, Selector};

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

async fn sql_of(engine: &Engine, root: &Path, model: &str) -> Result<String, String> {
    let compiled = engine
        .compile(CompileRequest {
            project: root.to_path_buf(),
            selector: Selector::default(),
            listing: Listing::All,
        })
        .await
        .map_err(|e| e.to_string())?;
    let dag = &compiled.compiled.dag;
    let id = dag
        .nodes
        .iter()
        .position(|n| n.name == model)
        .ok_or_else(|| format!("no node {model}"))?;
    Ok(orbital_engine::user_sql(dag, id).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_project_sees_every_edit() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "orbital.toml",
        "name = \"kept\"\n[targets.dev]\nurl = \"sqlite://target/w.db\"\n",
    );
    write(root, "seeds/people.csv", "id,name\n1,ada\n");
    write(root, "models/a.sql", "select id from people");
    write(root, "models/b.sql", "select id from a");
    let engine = Engine::new(EngineOptions {
        keep_projects: true,
        ..EngineOptions::default()
    });
    assert!(sql_of(&engine, root, "b").await.unwrap().contains("a"));
    // Unchanged: answered from memory.
    assert!(sql_of(&engine, root, "b").await.unwrap().contains("a"));
    // One model changed (same size, so only its time stamp says so).
    write(root, "models/b.sql", "select id from p");
    let error = sql_of(&engine, root, "b").await.unwrap_err();
    assert!(error.contains("models/b.sql"), "{error}");
    write(root, "models/b.sql", "select 2 * id as id from a");
    assert!(sql_of(&engine, root, "b").await.unwrap().contains("2 * id"));
    // Again at once (its stamp is too fresh to trust): still the new text.
    write(root, "models/b.sql", "select 3 * id as id from a");
    assert!(sql_of(&engine, root, "b").await.unwrap().contains("3 * id"));
    // A file added and one removed.
    write(root, "models/c.sql", "select id from b");
    assert!(sql_of(&engine, root, "c").await.is_ok());
    std::fs::remove_file(root.join("models/c.sql")).unwrap();
    assert!(sql_of(&engine, root, "c").await.is_err());
    // A model turned off by its config is gone, as on a full read.
    write(
        root,
        "models/b.sql",
        "-- config: enabled = false\nselect 3 * id as id from a",
    );
    assert!(sql_of(&engine, root, "b").await.is_err());
    write(root, "models/b.sql", "select 4 * id as id from a");
    assert!(sql_of(&engine, root, "b").await.unwrap().contains("4 * id"));
}
