//! The schema is ready to be distributed by tenant (docs/SCALING.md): every primary key and
//! unique index leads with `tenant_id`, and every join of two tables matches their tenants.
//! The few lookups that find the tenant from something else are listed here with why.

use crate::both;
use recur::store::Db;
use std::collections::BTreeSet;

/// Unique keys that do not lead with `tenant_id`, each a lookup that finds the tenant (a
/// reference table under Citus, see docs/SCALING.md).
const GLOBAL_KEYS: &[(&str, &str, &str)] = &[
    // The tenant itself: its id is the distribution column.
    ("tenants", "id", "the tenant's own id"),
    // The installation key of a tenant before migration 0012, still unique.
    ("tenants", "api_key_hash", "authentication finds the tenant"),
    ("api_keys", "key_hash", "authentication finds the tenant"),
    (
        "invoices",
        "hosted_token",
        "the hosted page's link finds the tenant",
    ),
    (
        "provider_accounts",
        "webhook_id",
        "a webhook's URL finds the tenant",
    ),
    (
        "provider_events",
        "provider",
        "a provider's event id is global; the event names its tenant",
    ),
];

/// (table, index, first column) of every unique index and primary key.
async fn unique_keys(db: &Db) -> BTreeSet<(String, String, String)> {
    match db {
        Db::Sqlite(p, _) => {
            let rows: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT m.name, il.name, ii.name
                 FROM sqlite_master m, pragma_index_list(m.name) il, pragma_index_info(il.name) ii
                 WHERE m.type = 'table' AND m.name NOT LIKE '\\_%' ESCAPE '\\'
                   AND m.name NOT LIKE 'sqlite%' AND il.\"unique\" = 1 AND ii.seqno = 0",
            )
            .fetch_all(p)
            .await
            .expect("sqlite indexes");
            // A rowid primary key has no index of its own.
            let pks: Vec<(String, String)> = sqlx::query_as(
                "SELECT m.name, ti.name FROM sqlite_master m, pragma_table_info(m.name) ti
                 WHERE m.type = 'table' AND m.name NOT LIKE '\\_%' ESCAPE '\\'
                   AND m.name NOT LIKE 'sqlite%' AND ti.pk = 1",
            )
            .fetch_all(p)
            .await
            .expect("sqlite primary keys");
            rows.into_iter()
                .chain(pks.into_iter().map(|(t, c)| (t, "primary key".into(), c)))
                .collect()
        }
        Db::Postgres(p) => sqlx::query_as::<_, (String, String, String)>(
            "SELECT t.relname::text, i.relname::text, a.attname::text
             FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_class t ON t.oid = x.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
             WHERE x.indisunique AND n.nspname = current_schema() AND t.relname NOT LIKE '\\_%'",
        )
        .fetch_all(p)
        .await
        .expect("postgres indexes")
        .into_iter()
        .collect(),
    }
}

both!(
    async fn every_unique_key_leads_with_tenant_id_but_the_listed_lookups(app: TestApp) {
        let keys = unique_keys(&app.db).await;
        assert!(keys.len() > 30, "{keys:?}");
        let tables: BTreeSet<&str> = keys.iter().map(|(t, _, _)| t.as_str()).collect();
        assert!(tables.contains("usage_records") && tables.contains("invoices"));
        let offending: Vec<_> = keys
            .iter()
            .filter(|(t, _, first)| {
                first != "tenant_id"
                    && !GLOBAL_KEYS.iter().any(|(gt, gc, _)| gt == t && gc == first)
            })
            .collect();
        assert!(
            offending.is_empty(),
            "unique keys that do not lead with tenant_id: {offending:?}"
        );
        // Every listed exception still exists (a stale list hides nothing).
        for (t, c, why) in GLOBAL_KEYS {
            assert!(
                keys.iter().any(|(kt, _, kc)| kt == t && kc == c),
                "{t}.{c} ({why}) is no longer a unique key: remove it from GLOBAL_KEYS"
            );
        }
    }
);

/// Every JOIN of a stored table in the SQL under src/ matches tenants in its ON clause.
#[test]
fn every_join_of_two_tables_matches_their_tenants() {
    // Every table the migrations create: a new table is covered without editing this test.
    let migrations = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"));
    let mut tables = BTreeSet::new();
    for file in walk_ext(migrations, "sql") {
        let sql = std::fs::read_to_string(&file).expect("read migration");
        let words: Vec<&str> = sql.split_whitespace().collect();
        for w in words.windows(3) {
            if w[0] == "CREATE" && w[1] == "TABLE" {
                tables.insert(w[2].trim_end_matches('(').to_owned());
            }
        }
    }
    assert!(tables.len() >= 28, "{tables:?}");
    let mut joins = 0;
    let mut offending = Vec::new();
    let src = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
    for entry in walk_ext(src, "rs") {
        let text = std::fs::read_to_string(&entry).expect("read source");
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut rest = flat.as_str();
        while let Some(at) = rest.find(" JOIN ") {
            rest = &rest[at + 6..];
            let words: Vec<&str> = rest.splitn(4, ' ').collect();
            let Some(table) = words.first().filter(|w| tables.contains(**w)) else {
                continue;
            };
            joins += 1;
            let on = rest.find(" ON ").map(|i| &rest[i..]).unwrap_or_default();
            let clause: String = on.chars().take(120).collect();
            let alias = words.get(1).copied().unwrap_or(table);
            if !clause.contains(&format!("{alias}.tenant_id = ")) {
                offending.push(format!("{}: JOIN {table} {clause}", entry.display()));
            }
        }
    }
    assert!(
        joins >= 6,
        "the scan found {joins} joins: is it still reading the SQL?"
    );
    assert!(
        offending.is_empty(),
        "joins that do not match tenants: {offending:#?}"
    );
}

/// Files under `dir` whose name ends in `.{ext}`.
fn walk_ext(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir") {
        let path = e.expect("dir entry").path();
        if path.is_dir() {
            out.extend(walk_ext(&path, ext));
        } else if path.extension().is_some_and(|x| x == ext) {
            out.push(path);
        }
    }
    out
}
