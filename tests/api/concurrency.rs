//! Stock under concurrency: never oversold, no deadlocks.

use crate::helpers::TestApp;

both_backends!(
    two_hundred_buyers_race_for_fifty_units,
    overlapping_orders_in_opposite_order_do_not_deadlock,
);

async fn two_hundred_buyers_race_for_fifty_units(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Limited", "10.00", 50).await;
    let mut buyers = Vec::new();
    for _ in 0..4 {
        buyers.push(app.client_user().await.0);
    }
    let orders = (0..200).map(|i| {
        let (app, buyer, product) = (&app, &buyers[i % buyers.len()], product.as_str());
        async move { app.order(buyer, &[(product, 1)]).await }
    });
    let answers = futures::future::join_all(orders).await;

    let created = answers.iter().filter(|a| a.status == 201).count();
    let refused = answers
        .iter()
        .filter(|a| a.status == 409 && a.code() == "insufficient_stock")
        .count();
    assert_eq!(
        (created, refused),
        (50, 150),
        "other answers: {:?}",
        answers
            .iter()
            .filter(|a| a.status != 201 && a.status != 409)
            .map(|a| &a.body)
            .collect::<Vec<_>>()
    );
    assert_eq!(app.stock(&admin, &product).await, 0);
    let all = app.get("/orders?take=1", Some(&admin)).await;
    assert_eq!(all.expect(200)["totalCount"], 50);
}

async fn overlapping_orders_in_opposite_order_do_not_deadlock(app: TestApp) {
    let admin = app.admin().await;
    let a = app.product(&admin, "A", "1.00", 1000).await;
    let b = app.product(&admin, "B", "2.00", 1000).await;
    let c = app.product(&admin, "C", "3.00", 1000).await;
    let (client, _) = app.client_user().await;
    let orders = (0..60).map(|i| {
        let lines = match i % 3 {
            0 => vec![(a.as_str(), 1), (b.as_str(), 2), (c.as_str(), 3)],
            1 => vec![(c.as_str(), 3), (b.as_str(), 2), (a.as_str(), 1)],
            _ => vec![(b.as_str(), 2), (c.as_str(), 3), (a.as_str(), 1)],
        };
        let app = &app;
        let client = client.clone();
        async move { app.order(&client, &lines).await }
    });
    let answers = futures::future::join_all(orders).await;
    for answer in &answers {
        assert_eq!(answer.expect(201)["total"], "14.00");
    }
    assert_eq!(app.stock(&admin, &a).await, 1000 - 60);
    assert_eq!(app.stock(&admin, &b).await, 1000 - 120);
    assert_eq!(app.stock(&admin, &c).await, 1000 - 180);
}
