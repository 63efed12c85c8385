//! Bulk writes for imports and the benchmark: many customers and subscriptions per statement,
//! and the baseline the billing benchmark is measured against (the same rows written the
//! fastest way each backend has: `COPY` on PostgreSQL, batched multi-row INSERTs on SQLite).

use super::rows::{to_db_int, to_json};
use super::{StoreError, Tx, on_tx};
use crate::domain::customer::Customer;
use crate::domain::ids::TenantId;
use crate::domain::subscription::Subscription;
use chrono::{DateTime, Utc};

pub async fn insert_customers(
    tx: &mut Tx,
    tenant: &TenantId,
    customers: &[Customer],
) -> Result<(), StoreError> {
    for chunk in customers.chunks(1000) {
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO customers (tenant_id, id, external_id, name, email, currency, tax_ids, tax_exempt, pm_provider, pm_token, pm_customer, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut b, cu| {
                b.push_bind(tenant.as_str())
                    .push_bind(cu.id.as_str())
                    .push_bind(cu.external_id.as_deref())
                    .push_bind(cu.name.as_str())
                    .push_bind(cu.email.as_ref().map(|e| e.as_str().to_owned()))
                    .push_bind(cu.currency.map(|x| x.code().to_owned()))
                    .push_bind("[]")
                    .push_bind(cu.tax_exempt.as_str())
                    .push_bind(cu.payment_method.as_ref().map(|p| p.provider.as_str()))
                    .push_bind(cu.payment_method.as_ref().map(|p| p.token.clone()))
                    .push_bind(cu.payment_method.as_ref().and_then(|p| p.customer.clone()))
                    .push_bind(cu.created)
                    .push_bind(cu.updated);
            });
            q.build()
                .execute(&mut *c)
                .await
                .map_err(StoreError::from_write)?;
        });
    }
    Ok(())
}

pub async fn insert_subscriptions(
    tx: &mut Tx,
    tenant: &TenantId,
    subs: &[Subscription],
) -> Result<(), StoreError> {
    for chunk in subs.chunks(500) {
        let rates: Vec<String> = chunk
            .iter()
            .map(|s| to_json(&s.default_tax_rates))
            .collect::<Result<_, _>>()?;
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO subscriptions (tenant_id, id, customer_id, status, currency, interval_unit, interval_count, collection_method,
                     days_until_due, coupon_id, default_tax_rates, proration_behavior, start_date, trial_end, billing_cycle_anchor,
                     current_period_start, current_period_end, cancel_at_period_end, created_at, updated_at, next_billing_at, discount_invoices) ",
            );
            q.push_values(chunk.iter().zip(&rates), |mut b, (s, rates)| {
                b.push_bind(tenant.as_str())
                    .push_bind(s.id.as_str())
                    .push_bind(s.customer.as_str())
                    .push_bind(s.status.as_str())
                    .push_bind(s.currency.code())
                    .push_bind(s.interval.unit().as_str())
                    .push_bind(i64::from(s.interval.count()))
                    .push_bind(s.collection_method.as_str())
                    .push_bind(s.days_until_due.map(i64::from))
                    .push_bind(s.coupon.as_ref().map(|c| c.as_str().to_owned()))
                    .push_bind(rates.as_str())
                    .push_bind(s.proration_behavior.as_str())
                    .push_bind(s.start_date)
                    .push_bind(s.trial_end)
                    .push_bind(s.billing_cycle_anchor)
                    .push_bind(s.current_period_start)
                    .push_bind(s.current_period_end)
                    .push_bind(s.cancel_at_period_end)
                    .push_bind(s.created)
                    .push_bind(s.created)
                    .push_bind(s.next_billing_at)
                    .push_bind(i64::from(s.discount_invoices));
            });
            q.build()
                .execute(&mut *c)
                .await
                .map_err(StoreError::from_write)?;
        });
        let items: Vec<(&Subscription, usize)> = chunk
            .iter()
            .flat_map(|s| (0..s.items.len()).map(move |i| (s, i)))
            .collect();
        let quantities: Vec<i64> = items
            .iter()
            .map(|(s, i)| to_db_int(s.items[*i].quantity, "quantity"))
            .collect::<Result<_, _>>()?;
        on_tx!(tx, |c| {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO subscription_items (tenant_id, id, subscription_id, price_id, quantity, position, created_at) ",
            );
            q.push_values(items.iter().zip(&quantities), |mut b, ((s, i), qty)| {
                b.push_bind(tenant.as_str())
                    .push_bind(s.items[*i].id.as_str())
                    .push_bind(s.id.as_str())
                    .push_bind(s.items[*i].price.as_str())
                    .push_bind(*qty)
                    .push_bind(*i as i64)
                    .push_bind(s.created);
            });
            q.build()
                .execute(&mut *c)
                .await
                .map_err(StoreError::from_write)?;
        });
    }
    Ok(())
}

/// Baseline tables shaped like the real ones, with the same indexes, empty, private to the
/// benchmark: the baseline pays for the same index maintenance as the billing run.
pub async fn create_baseline_tables(tx: &mut Tx) -> Result<(), StoreError> {
    let statements: &[&str] = match tx {
        Tx::Postgres(_) => &[
            "CREATE TABLE baseline_invoices (LIKE invoices INCLUDING ALL)",
            "CREATE TABLE baseline_invoice_lines (LIKE invoice_lines INCLUDING ALL)",
            "CREATE TABLE baseline_events (LIKE events INCLUDING ALL)",
        ],
        Tx::Sqlite(..) => &[
            "CREATE TABLE baseline_invoices AS SELECT * FROM invoices WHERE 1 = 0",
            "CREATE UNIQUE INDEX baseline_invoices_pk ON baseline_invoices (tenant_id, id)",
            "CREATE UNIQUE INDEX baseline_invoices_period ON baseline_invoices (tenant_id, subscription_id, period_start) WHERE billing_reason IN ('subscription_create', 'subscription_cycle')",
            "CREATE UNIQUE INDEX baseline_invoices_number ON baseline_invoices (tenant_id, number)",
            "CREATE INDEX baseline_invoices_customer ON baseline_invoices (tenant_id, customer_id)",
            "CREATE INDEX baseline_invoices_subscription ON baseline_invoices (tenant_id, subscription_id)",
            "CREATE INDEX baseline_invoices_status ON baseline_invoices (tenant_id, status)",
            "CREATE UNIQUE INDEX baseline_invoices_hosted ON baseline_invoices (hosted_token) WHERE hosted_token IS NOT NULL",
            "CREATE INDEX baseline_invoices_pdf_pending ON baseline_invoices (tenant_id, id) WHERE number IS NOT NULL AND pdf_sha256 IS NULL",
            "CREATE TABLE baseline_invoice_lines AS SELECT * FROM invoice_lines WHERE 1 = 0",
            "CREATE UNIQUE INDEX baseline_lines_pk ON baseline_invoice_lines (tenant_id, id)",
            "CREATE INDEX baseline_lines_invoice ON baseline_invoice_lines (tenant_id, invoice_id, position)",
            "CREATE TABLE baseline_events AS SELECT * FROM events WHERE 1 = 0",
            "CREATE UNIQUE INDEX baseline_events_pk ON baseline_events (tenant_id, id)",
            "CREATE INDEX baseline_events_type ON baseline_events (tenant_id, type, id)",
        ],
    };
    for sql in statements {
        on_tx!(tx, |c| sqlx::query(*sql)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// Writes `n` invoices with `lines_per` lines and `events_per` events each into the baseline
/// tables, in one transaction, as fast as the backend allows.
pub async fn write_baseline(
    tx: &mut Tx,
    tenant: &TenantId,
    n: usize,
    lines_per: usize,
    events_per: usize,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let ts = at.to_rfc3339();
    match tx {
        Tx::Postgres(t) => {
            let conn: &mut sqlx::PgConnection = &mut *t;
            for (table, per, row) in [
                ("baseline_invoices", 1, 0u8),
                ("baseline_invoice_lines", lines_per, 1),
                ("baseline_events", events_per, 2),
            ] {
                let mut copy = conn
                    .copy_in_raw(&format!("COPY {table} FROM STDIN WITH (FORMAT text)"))
                    .await?;
                let mut buf = String::with_capacity(1 << 20);
                for i in 0..n * per {
                    buf.push_str(&baseline_row(row, tenant.as_str(), i, &ts, '\t', "\\N"));
                    if buf.len() > (1 << 20) {
                        copy.send(buf.as_bytes()).await?;
                        buf.clear();
                    }
                }
                copy.send(buf.as_bytes()).await?;
                copy.finish().await?;
            }
        }
        Tx::Sqlite(t, _) => {
            let conn: &mut sqlx::SqliteConnection = &mut *t;
            for (table, per, row) in [
                ("baseline_invoices", 1, 0u8),
                ("baseline_invoice_lines", lines_per, 1),
                ("baseline_events", events_per, 2),
            ] {
                let total = n * per;
                let mut i = 0;
                while i < total {
                    let end = (i + 500).min(total);
                    let values: Vec<String> = (i..end)
                        .map(|k| {
                            format!(
                                "({})",
                                baseline_row(row, tenant.as_str(), k, &ts, ',', "NULL")
                            )
                        })
                        .collect();
                    let sql = format!("INSERT INTO {table} VALUES {}", values.join(","));
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .execute(&mut *conn)
                        .await?;
                    i = end;
                }
            }
        }
    }
    Ok(())
}

/// One synthetic row of the given table kind (0 invoice, 1 line, 2 event), in column order.
fn baseline_row(kind: u8, tenant: &str, i: usize, ts: &str, sep: char, null: &str) -> String {
    let q = |s: &str| {
        if sep == ',' {
            format!("'{s}'")
        } else {
            s.to_owned()
        }
    };
    let cols: Vec<String> = match kind {
        0 => vec![
            q(tenant),
            q(&format!("in_b{i:030}")),
            q(&format!("B-{i}")),
            q("cus_b"),
            q(&format!("sub_b{i}")),
            q("open"),
            q("subscription_cycle"),
            q("charge_automatically"),
            q("EUR"),
            q(ts),
            q(ts),
            "4900".into(),
            "0".into(),
            "1127".into(),
            "6027".into(),
            q("[]"),
            q("none"),
            "0".into(),
            "6027".into(),
            "0".into(),
            null.into(),
            null.into(),
            q(ts),
            q(ts),
            null.into(),
            null.into(),
            null.into(),
            // first_failed_at, awaiting_payment_method, amount_credited, amount_refunded
            null.into(),
            (if sep == '\t' { "f" } else { "0" }).into(),
            "0".into(),
            "0".into(),
            // starting_balance, ending_balance
            "0".into(),
            "0".into(),
            // pdf_sha256, hosted_token: rendered later, off the billing path
            null.into(),
            null.into(),
            // announce_pdf
            (if sep == '\t' { "t" } else { "1" }).into(),
            // document_purged_at
            null.into(),
        ],
        1 => vec![
            q(tenant),
            q(&format!("il_b{i:030}")),
            q(&format!("in_b{i:030}")),
            "0".into(),
            q("subscription"),
            q("1 × Pro (2027-01-01 – 2027-02-01)"),
            q("price_b"),
            q("si_b"),
            "1".into(),
            q("4900"),
            "4900".into(),
            "4900".into(),
            "0".into(),
            q(ts),
            q(ts),
            q("[]"),
        ],
        _ => vec![
            q(tenant),
            q(&format!("evt_b{i:030}")),
            q(crate::domain::event::EventType::InvoiceCreated.as_str()),
            q(&format!("in_b{i:030}")),
            q(
                r#"{"id":"in_b","object":"invoice","status":"open","subtotal":4900,"tax":1127,"total":6027,"amount_due":6027,"currency":"EUR","period_start":"2027-01-01T00:00:00Z","period_end":"2027-02-01T00:00:00Z","customer":"cus_b","subscription":"sub_b","number":"INV-2027-000001"}"#,
            ),
            q(ts),
            // request_key, request_id, api_key: the billing run's events belong to no request
            null.into(),
            null.into(),
            null.into(),
        ],
    };
    let mut line = cols.join(&sep.to_string());
    if sep == '\t' {
        line.push('\n');
    }
    line
}

/// Rows the billing run wrote for a tenant: (invoices, invoice lines, events).
pub async fn billing_row_counts(
    tx: &mut Tx,
    tenant: &TenantId,
) -> Result<(i64, i64, i64), StoreError> {
    let mut out = [0i64; 3];
    for (slot, sql) in out.iter_mut().zip([
        "SELECT COUNT(*) FROM invoices WHERE tenant_id = $1",
        "SELECT COUNT(*) FROM invoice_lines WHERE tenant_id = $1",
        "SELECT COUNT(*) FROM events WHERE tenant_id = $1",
    ]) {
        *slot = on_tx!(tx, |c| sqlx::query_scalar(sql)
            .bind(tenant.as_str())
            .fetch_one(&mut *c)
            .await?);
    }
    Ok((out[0], out[1], out[2]))
}

/// Drops a PostgreSQL schema made for a benchmark run.
pub async fn drop_schema(tx: &mut Tx, schema: &str) -> Result<(), StoreError> {
    on_tx!(tx, |c| sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

pub async fn create_schema(tx: &mut Tx, schema: &str) -> Result<(), StoreError> {
    on_tx!(tx, |c| sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA {schema}"
    )))
    .execute(&mut *c)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Refreshes planner statistics after a bulk load (PostgreSQL plans badly on tables it believes
/// empty; autovacuum would get there, but only later). SQLite needs nothing here.
/// Refreshes PostgreSQL's statistics of the tables a billing pass fills, after a pass that
/// made many invoices: with the statistics of before (no open invoice), the planner read the
/// collection pass's claim through the status index and sorted every open invoice on each
/// claim, a pass over N invoices taking time in N² until autovacuum caught up.
pub async fn analyze_invoices(db: &super::Db) -> Result<(), StoreError> {
    if let super::Db::Postgres(pool) = db {
        sqlx::query("ANALYZE invoices, invoice_lines")
            .execute(pool)
            .await?;
    }
    Ok(())
}

pub async fn analyze(db: &super::Db) -> Result<(), StoreError> {
    if let super::Db::Postgres(pool) = db {
        sqlx::query("ANALYZE customers, subscriptions, subscription_items")
            .execute(pool)
            .await?;
    }
    Ok(())
}
