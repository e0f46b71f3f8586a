//! Socket.IO: handshake authentication and who hears which events.

use std::time::Duration;

use serde_json::Value;

use crate::{
    helpers::TestApp,
    socket::{Auth, Listener},
};

both_backends!(
    every_handshake_form_is_accepted,
    bad_or_missing_tokens_are_refused_and_the_server_keeps_serving,
    clients_hear_their_own_orders_and_admins_hear_all,
);

async fn every_handshake_form_is_accepted(app: TestApp) {
    let (token, _) = app.client_user().await;
    for namespace in ["/orders", "/payment"] {
        for auth in [
            Auth::Payload(&token),
            Auth::Header(&token),
            Auth::Query(&token),
        ] {
            let listener = Listener::connect(app.port, namespace, auth).await;
            assert!(
                listener.is_ok(),
                "{namespace} {auth:?}: {:?}",
                listener.err()
            );
            listener.unwrap().close().await;
        }
    }
}

async fn bad_or_missing_tokens_are_refused_and_the_server_keeps_serving(app: TestApp) {
    let (token, _) = app.client_user().await;
    let mut forged = token.clone();
    forged.push('x');
    for auth in [
        Auth::None,
        Auth::Payload("garbage"),
        Auth::Header(&forged),
        Auth::Query("not.a.jwt"),
    ] {
        let refused = Listener::connect(app.port, "/orders", auth).await;
        assert_eq!(refused.err().as_deref(), Some("unauthorized"), "{auth:?}");
    }
    app.get("/health", None).await.expect(200);
    let ok = Listener::connect(app.port, "/orders", Auth::Payload(&token)).await;
    ok.expect("a good token still connects").close().await;
}

async fn clients_hear_their_own_orders_and_admins_hear_all(app: TestApp) {
    let admin = app.admin().await;
    let product = app.product(&admin, "Loud", "3.00", 10).await;
    let (alice, _) = app.client_user().await;
    let (bob, _) = app.client_user().await;
    let mut alice_ear = Listener::connect(app.port, "/orders", Auth::Payload(&alice))
        .await
        .unwrap();
    let mut bob_ear = Listener::connect(app.port, "/orders", Auth::Payload(&bob))
        .await
        .unwrap();
    let mut admin_ear = Listener::connect(app.port, "/orders", Auth::Payload(&admin))
        .await
        .unwrap();

    let order = app.order(&alice, &[(&product, 1)]).await;
    let order = order.expect(201).clone();
    let heard = alice_ear
        .next(Duration::from_secs(10))
        .await
        .expect("alice hears her order");
    // The event is the order exactly as GET /orders/{id} shows it.
    assert_eq!(heard, order);
    let heard = admin_ear
        .next(Duration::from_secs(10))
        .await
        .expect("the admin hears it");
    assert_eq!(heard["id"], order["id"]);
    assert_eq!(heard["status"], "PENDING");

    // Bob hears his own order and nothing of Alice's.
    let his = app.order(&bob, &[(&product, 2)]).await;
    let his_id = his.expect(201)["id"].clone();
    let first: Value = bob_ear
        .next(Duration::from_secs(10))
        .await
        .expect("bob hears his order");
    assert_eq!(first["id"], his_id);
    assert!(bob_ear.next(Duration::from_millis(300)).await.is_none());
    assert!(alice_ear.next(Duration::from_millis(300)).await.is_none());
    assert_eq!(
        admin_ear.next(Duration::from_secs(10)).await.unwrap()["id"],
        his_id
    );

    for ear in [alice_ear, bob_ear, admin_ear] {
        ear.close().await;
    }
}
