use crate::both;
use serde_json::json;

both!(
    async fn usage_is_recorded_for_metered_items_only(app: TestApp) {
        let customer = app.customer().await;
        let metered = app.metered_price().await;
        let sub = app.subscription(&customer, &metered).await;
        let item = sub["items"][0]["id"].as_str().unwrap();
        let u = app
            .post(
                "/v1/usage_records",
                json!({"subscription_item": item, "quantity": 120}),
            )
            .await
            .ok();
        assert_eq!(u["quantity"], 120);
        assert_eq!(u["action"], "increment");
        let s = app
            .post(
                "/v1/usage_records",
                json!({"subscription_item": item, "quantity": 7, "action": "set"}),
            )
            .await
            .ok();
        assert_eq!(s["action"], "set");

        let licensed = app.monthly_price(100).await;
        let sub2 = app.subscription(&customer, &licensed).await;
        let r = app
            .post(
                "/v1/usage_records",
                json!({"subscription_item": sub2["items"][0]["id"], "quantity": 1}),
            )
            .await;
        assert_eq!(r.status.as_u16(), 422);
        assert_eq!(r.error_code(), "price_not_metered");
    }
);

both!(
    async fn usage_is_totalled_per_period_with_a_set_replacing_what_came_before(app: TestApp) {
        app.set_clock("2027-01-01T00:00:00Z").await;
        let customer = app.customer().await;
        let metered = app.metered_price().await;
        let s = app.subscription(&customer, &metered).await;
        let item = s["items"][0]["id"].as_str().unwrap().to_owned();
        let post = |quantity: u64, action: &'static str, ts: &'static str| {
            let (app, item) = (&app, item.clone());
            async move {
                app.post("/v1/usage_records", serde_json::json!({"subscription_item": item, "quantity": quantity, "action": action, "timestamp": ts}))
                    .await
                    .ok();
            }
        };
        app.advance("2027-01-20T00:00:00Z").await;
        post(10, "increment", "2027-01-02T00:00:00Z").await;
        post(5, "set", "2027-01-03T00:00:00Z").await;
        // Same instant as the set but recorded after it: counted on top.
        post(3, "increment", "2027-01-03T00:00:00Z").await;
        post(2, "increment", "2027-01-04T00:00:00Z").await;
        post(1, "set", "2027-01-01T00:00:00Z").await;
        app.advance("2027-02-10T00:00:00Z").await;
        post(7, "increment", "2027-02-05T00:00:00Z").await;
        app.advance("2027-03-01T00:00:00Z").await;
        let inv = app.invoices_of(s["id"].as_str().unwrap()).await;
        let quantities: Vec<i64> = inv
            .iter()
            .map(|i| i["lines"][0]["quantity"].as_i64().unwrap())
            .collect();
        // January: the set of the 3rd (5), then 3 and 2 after it; February: 7.
        assert_eq!(quantities, [10, 7], "{inv:?}");
    }
);

/// A metered subscription started on 2027-01-01, its clock on 2027-01-20: the subscription
/// and its item.
async fn metered_subscription(app: &crate::support::TestApp) -> (serde_json::Value, String) {
    app.set_clock("2027-01-01T00:00:00Z").await;
    let customer = app.customer().await;
    let metered = app.metered_price().await;
    let sub = app.subscription(&customer, &metered).await;
    let item = sub["items"][0]["id"].as_str().unwrap().to_owned();
    app.advance("2027-01-20T00:00:00Z").await;
    (sub, item)
}

/// A batch of `n` records on one item, identifiers `{tag}-0..n`, one a minute from `from`.
fn batch(item: &str, tag: &str, n: usize, quantity: u64) -> serde_json::Value {
    let records: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "subscription_item": item,
                "quantity": quantity,
                "timestamp": format!("2027-01-02T{:02}:{:02}:00Z", i / 60, i % 60),
                "identifier": format!("{tag}-{i}"),
            })
        })
        .collect();
    json!({ "records": records })
}

both!(
    async fn a_usage_batch_is_recorded_in_order_once_and_billed_as_a_sum(app: TestApp) {
        let (sub, item) = metered_subscription(&app).await;

        let r = app
            .post("/v1/usage_records/batch", batch(&item, "a", 1000, 2))
            .await
            .ok();
        assert_eq!(r["object"], "usage_record_batch");
        assert_eq!(
            (r["created"].as_u64(), r["duplicates"].as_u64()),
            (Some(1000), Some(0))
        );
        let data = r["data"].as_array().unwrap();
        assert_eq!(data.len(), 1000);
        assert_eq!(data[999]["identifier"], "a-999");
        assert_eq!(data[0]["duplicate"], false);
        // One event for the batch, naming every stored record.
        assert_eq!(app.count_events("usage_record.created").await, 0);
        assert_eq!(app.count_events("usage_record.batch_created").await, 1);

        // Sent again (a client retrying after a timeout): answered, counted once.
        let before = app.row_counts().await;
        let again = app
            .post("/v1/usage_records/batch", batch(&item, "a", 1000, 2))
            .await
            .ok();
        assert_eq!(
            (again["created"].as_u64(), again["duplicates"].as_u64()),
            (Some(0), Some(1000))
        );
        assert_eq!(again["data"][5]["id"], data[5]["id"]);
        assert_eq!(again["data"][5]["duplicate"], true);
        assert_eq!(app.row_counts().await, before);

        // Half old, half new: the new half is stored, in the order sent; a set followed by an
        // increment at the same instant keeps that order.
        let mut mixed = batch(&item, "a", 10, 2);
        let records = mixed["records"].as_array_mut().unwrap();
        records.truncate(5);
        records.push(
            json!({"subscription_item": item, "quantity": 100, "action": "set",
            "timestamp": "2027-01-15T00:00:00Z", "identifier": "b-set"}),
        );
        records.push(json!({"subscription_item": item, "quantity": 1,
            "timestamp": "2027-01-15T00:00:00Z", "identifier": "b-inc"}));
        let m = app.post("/v1/usage_records/batch", mixed).await.ok();
        assert_eq!(
            (m["created"].as_u64(), m["duplicates"].as_u64()),
            (Some(2), Some(5))
        );

        app.advance("2027-02-10T00:00:00Z").await;
        let inv = app.invoices_of(sub["id"].as_str().unwrap()).await;
        // The set (100) and the increment after it (1); the 2,000 before the set are replaced.
        assert_eq!(inv[0]["lines"][0]["quantity"], 101, "{inv:?}");
    }
);

both!(
    async fn a_usage_batch_with_any_refused_record_writes_nothing_and_names_each(app: TestApp) {
        let (sub, item) = metered_subscription(&app).await;
        let licensed = app.monthly_price(100).await;
        let other = app
            .subscription(sub["customer"].as_str().unwrap(), &licensed)
            .await;
        app.post("/v1/usage_records/batch", batch(&item, "kept", 1, 5))
            .await
            .ok();
        let before = app.row_counts().await;

        let good = |id: &str| json!({"subscription_item": item, "quantity": 1, "identifier": id});
        let mut records = vec![
            good("ok-1"),
            json!({"subscription_item": "si_00000000000000000000000000000000", "quantity": 1, "identifier": "x1"}),
            json!({"subscription_item": other["items"][0]["id"], "quantity": 1, "identifier": "x2"}),
            json!({"subscription_item": item, "quantity": 1, "identifier": "x3", "timestamp": "2027-03-01T00:00:00Z"}),
            json!({"subscription_item": item, "quantity": 1}),
            good("twice"),
            good("twice"),
            json!({"subscription_item": item, "quantity": 6, "identifier": "kept-0", "timestamp": "2027-01-02T00:00:00Z"}),
            json!({"subscription_item": item, "quantity": 1, "identifier": "x8", "timestamp": "2026-12-01T00:00:00Z"}),
            good("ok-2"),
        ];
        let refused = |r: &crate::support::Resp| -> Vec<(u64, String, String)> {
            assert_eq!(r.status.as_u16(), 422, "{:?}", r.body);
            assert_eq!(r.error_code(), "batch_rejected");
            r.body["error"]["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["index"].as_u64().unwrap(),
                        e["code"].as_str().unwrap().to_owned(),
                        e["param"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        };
        let r = app
            .post("/v1/usage_records/batch", json!({"records": records}))
            .await;
        // The API's shape checks answer first (a missing identifier); the stored state is only
        // read once every record is well formed.
        assert_eq!(
            refused(&r),
            [(
                4,
                "parameter_missing".into(),
                "records[4].identifier".into()
            )]
        );

        records.remove(4);
        let r = app
            .post("/v1/usage_records/batch", json!({"records": records}))
            .await;
        let got = refused(&r);
        let got: Vec<(u64, &str, &str)> = got
            .iter()
            .map(|(i, c, p)| (*i, c.as_str(), p.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1, "resource_missing", "records[1].subscription_item"),
                (2, "price_not_metered", "records[2].subscription_item"),
                (3, "parameter_invalid", "records[3].timestamp"),
                (5, "parameter_invalid", "records[5].identifier"),
                (6, "usage_identifier_reused", "records[6].identifier"),
                (7, "parameter_invalid", "records[7].timestamp"),
            ]
        );
        assert_eq!(app.row_counts().await, before);

        for (body, param) in [
            (json!({"records": []}), "records"),
            (batch(&item, "big", 1001, 1), "records"),
            (
                json!({"records": [{"subscription_item": item, "quantity": 1, "identifier": ""}]}),
                "records[0].identifier",
            ),
            (
                json!({"records": [{"subscription_item": item, "quantity": 1, "identifier": "a\nb"}]}),
                "records[0].identifier",
            ),
            (
                json!({"records": [{"subscription_item": item, "quantity": 1, "identifier": "x".repeat(256)}]}),
                "records[0].identifier",
            ),
        ] {
            let r = app.post("/v1/usage_records/batch", body).await;
            assert!(matches!(r.status.as_u16(), 400 | 422), "{:?}", r.body);
            let p = r.body["error"]["param"].as_str().unwrap();
            let inner = r.body["error"]["errors"][0]["param"].as_str();
            assert!(p == param || inner == Some(param), "{:?}", r.body);
        }
        assert_eq!(app.row_counts().await, before);
    }
);

both!(
    async fn two_clients_sending_the_same_batch_at_once_count_it_once(app: TestApp) {
        let (sub, item) = metered_subscription(&app).await;
        for round in 0..5 {
            let tag = format!("r{round}");
            let (a, b) = tokio::join!(
                app.post("/v1/usage_records/batch", batch(&item, &tag, 300, 1)),
                app.post("/v1/usage_records/batch", batch(&item, &tag, 300, 1)),
            );
            // Both succeed: what one stored, the other answers as duplicates.
            let mut created = 0;
            for r in [&a, &b] {
                assert_eq!(r.status.as_u16(), 200, "{:?}", r.body);
                created += r.body["created"].as_u64().unwrap();
                let dups = r.body["duplicates"].as_u64().unwrap();
                assert!(
                    dups == 0 || dups == 300,
                    "all or none: {:?}",
                    r.body["duplicates"]
                );
            }
            assert_eq!(created, 300, "round {round}: {:?} {:?}", a.body, b.body);
            let again = app
                .post("/v1/usage_records/batch", batch(&item, &tag, 300, 1))
                .await
                .ok();
            assert_eq!(again["duplicates"], 300);
        }
        app.advance("2027-02-10T00:00:00Z").await;
        let inv = app.invoices_of(sub["id"].as_str().unwrap()).await;
        assert_eq!(inv[0]["lines"][0]["quantity"], 1500, "{inv:?}");
    }
);
