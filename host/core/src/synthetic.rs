//! Synthetic projects for benchmarks and scale tests: `n` models with the
//! SQL real projects have (CTEs, joins, aggregates, CASE), each reading one to
//! five earlier models, over a few seeds. Deterministic for a given `n` and
//! seed. Pure: it returns the files; the caller writes them.

use std::path::PathBuf;

/// The seeds every synthetic project starts from.
const SEEDS: [&str; 3] = ["raw_events", "raw_users", "raw_accounts"];

/// The files of a synthetic project with `models` models.
pub fn project(models: usize, seed: u64) -> Vec<(PathBuf, String)> {
    let mut random = Lcg(seed
        .wrapping_mul(2862933555777941757)
        .wrapping_add(3037000493));
    let mut files = vec![(
        PathBuf::from("orbital.toml"),
        "name = \"synthetic\"\n[targets.dev]\nurl = \"sqlite://target/synthetic.db\"\n[models.marts]\nmaterialized = \"table\"\n"
            .to_string(),
    )];
    for seed_name in SEEDS {
        files.push((
            PathBuf::from(format!("seeds/{seed_name}.csv")),
            "id,key,amount,created_at\n1,a,10,2024-01-01\n".into(),
        ));
    }
    for i in 0..models {
        let upstream: Vec<String> = if let Some(seed_name) = SEEDS.get(i) {
            vec![seed_name.to_string()]
        } else {
            let count = 1 + random.below(5).min(i as u64 - 1) as usize;
            let mut picked: Vec<usize> = (0..count)
                .map(|_| random.below(i as u64) as usize)
                .collect();
            picked.sort_unstable();
            picked.dedup();
            picked.into_iter().map(model_name).collect()
        };
        let folder = if i % 4 == 0 { "marts" } else { "staging" };
        files.push((
            PathBuf::from(format!("models/{folder}/{}.sql", model_name(i))),
            model_sql(i, &upstream),
        ));
    }
    files
}

fn model_name(i: usize) -> String {
    format!("model_{i:06}")
}

fn model_sql(i: usize, upstream: &[String]) -> String {
    let mut sql = format!("-- config: tags = ['group_{}']\nwith\n", i % 10);
    for (n, source) in upstream.iter().enumerate() {
        sql.push_str(&format!(
            "source_{n} as (\n    select id, key, amount, created_at\n    from {source}\n    where amount is not null\n),\n"
        ));
    }
    sql.push_str("combined as (\n    select source_0.id, source_0.key, source_0.created_at,\n        source_0.amount");
    for n in 1..upstream.len() {
        sql.push_str(&format!(" + coalesce(source_{n}.amount, 0)"));
    }
    sql.push_str(" as amount\n    from source_0\n");
    for n in 1..upstream.len() {
        sql.push_str(&format!(
            "    left join source_{n} on source_0.id = source_{n}.id\n"
        ));
    }
    sql.push_str(
        "),\n\nsummary as (\n    select id, key,\n        min(created_at) as created_at,\n        sum(amount) as amount,\n        \
         count(*) as row_count,\n        case when sum(amount) > 100 then 'large' else 'small' end as size\n    \
         from combined\n    group by id, key\n)\n\nselect id, key, amount, created_at from summary\n",
    );
    sql
}

/// A small deterministic generator, so benchmarks see the same project each time.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound.max(1)
    }
}

/// Endless runs of one to `longest` of `pieces`, drawn by xorshift from
/// `seed`: random test text that reproduces.
#[cfg(test)]
pub(crate) fn piece_runs<'a>(
    pieces: &'a [&'a str],
    longest: usize,
    seed: u64,
) -> impl Iterator<Item = Vec<&'a str>> + 'a {
    let mut state = seed;
    let mut random = move |below: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % below as u64) as usize
    };
    std::iter::repeat_with(move || {
        let length = 1 + random(longest);
        (0..length).map(|_| pieces[random(pieces.len())]).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_projects_compile() {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in project(200, 7) {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        let loaded = crate::Project::load(dir.path()).unwrap();
        let target = loaded.config.target(None).unwrap().1.clone();
        let compiled = crate::compile(&loaded, &target, Default::default()).unwrap();
        assert_eq!(compiled.dag.nodes.len(), 203);
        let edges: usize = compiled.dag.nodes.iter().map(|n| n.depends_on.len()).sum();
        assert!(
            edges > 200 * 2,
            "models should read several upstreams, got {edges} edges"
        );
        assert_eq!(project(200, 7), project(200, 7));
    }
}
