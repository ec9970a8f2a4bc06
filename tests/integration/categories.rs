//! Categories, actions and data: stored, pushed with the event (in full
//! only where the whole message goes), listed and filtered, and counted
//! unread per category in one call, for two users of one account while a
//! second account's messages cross nothing.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::{
    helpers::wait_for,
    tenancy::{world, Tenant, World},
};

/// Sends `body` (a message of `tenant`'s account) over `/v1/messages`;
/// returns the message id.
async fn send(world: &World, tenant: &Tenant, mut body: Value) -> String {
    body["accountId"] = json!(tenant.account.to_hex());
    let (status, answer) = world.post("/v1/messages", &tenant.token, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    answer["messageId"].as_str().expect("an id").to_owned()
}

fn message(title: &str, category: Option<&str>) -> Value {
    let mut body = json!({ "title": title, "content": "c" });
    if let Some(category) = category {
        body["category"] = json!(category);
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn categories_are_listed_filtered_and_counted_per_user_and_cross_no_account() {
    let world = world(&[], true).await;
    let (a, b) = (&world.a, &world.b);
    // Account A: two billing and one export message to everyone, one
    // billing message to user 0, one without a category to everyone.
    let mut to_everyone = Vec::new();
    for (title, category) in [
        ("invoice 1", Some("billing")),
        ("invoice 2", Some("billing")),
        ("export ready", Some("export")),
        ("hello", None),
    ] {
        to_everyone.push(send(&world, a, message(title, category)).await);
    }
    let mut personal = message("your invoice", Some("billing"));
    personal["to"] = json!({ "id": a.users[0].to_hex(), "target": "user" });
    send(&world, a, personal).await;
    // Account B uses the same category names.
    for i in 0..3 {
        send(&world, b, message(&format!("b {i}"), Some("billing"))).await;
    }
    wait_for("eight messages stored", || async {
        (world.env.message_count(mongodb::bson::doc! {}).await == 8).then_some(())
    })
    .await;

    let counts = |user: usize| {
        let path = format!("{}/unread-counts", World::inbox(a, user));
        let token = a.user_tokens[user].clone();
        let world = &world;
        async move {
            let (status, counts) = world.get(&path, &token).await;
            assert_eq!(status, StatusCode::OK, "{counts}");
            counts
        }
    };
    assert_eq!(
        counts(0).await,
        json!({"unread": 5, "categories": {"billing": 3, "export": 1}, "uncategorized": 1})
    );
    assert_eq!(
        counts(1).await,
        json!({"unread": 4, "categories": {"billing": 2, "export": 1}, "uncategorized": 1})
    );
    // User 1 reads one billing message: their counts move, user 0's do not.
    let (status, marked) = world
        .post(
            &format!("{}/{}/read", World::inbox(a, 1), to_everyone[0]),
            &a.user_tokens[1],
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{marked}");
    assert_eq!(
        counts(1).await,
        json!({"unread": 3, "categories": {"billing": 1, "export": 1}, "uncategorized": 1})
    );
    assert_eq!(counts(0).await["unread"], 5);
    // The one-category count agrees, and the list filters the same way.
    let (_, one) = world
        .get(
            &format!("{}/unread-count?category=billing", World::inbox(a, 1)),
            &a.user_tokens[1],
        )
        .await;
    assert_eq!(one, json!({"unread": 1}));
    let (_, page) = world
        .get(
            &format!("{}?category=billing", World::inbox(a, 0)),
            &a.user_tokens[0],
        )
        .await;
    let mut titles: Vec<&str> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["title"].as_str().unwrap_or_default())
        .collect();
    // Messages stored within one millisecond list in any order.
    titles.sort_unstable();
    assert_eq!(titles, ["invoice 1", "invoice 2", "your invoice"]);
    let (_, account_page) = world
        .get(
            &format!("/v1/accounts/{}/messages?category=export", a.account),
            &a.token,
        )
        .await;
    assert_eq!(account_page["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(account_page["messages"][0]["category"], "export");

    // Nothing of B's is counted for A, and nobody else reaches A's counts.
    let path = format!("{}/unread-counts", World::inbox(a, 0));
    for (token, expected) in [
        (Some(b.token.as_str()), StatusCode::FORBIDDEN),
        (Some(a.user_tokens[1].as_str()), StatusCode::FORBIDDEN),
        (Some(b.user_tokens[0].as_str()), StatusCode::FORBIDDEN),
        (None, StatusCode::UNAUTHORIZED),
    ] {
        let (status, answer) = world.call(reqwest::Method::GET, &path, token, None).await;
        assert_eq!(status, expected, "{answer}");
        assert!(!answer.to_string().contains("billing"), "{answer}");
    }
    let (status, bad) = world
        .get(
            &format!("{}/unread-count?category=no%20spaces", World::inbox(a, 0)),
            &a.user_tokens[0],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(bad.to_string().contains("category"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_and_data_are_stored_pushed_with_the_event_and_checked_at_the_door() {
    let world = world(&[], true).await;
    let a = &world.a;
    let mut body = message("invoice due", Some("billing"));
    body["actionUrl"] = json!("/invoices/42");
    body["data"] = json!({ "invoice": 42, "lines": ["a", "b"], "payer": { "id": 7 } });
    body["to"] = json!({ "id": a.users[0].to_hex(), "target": "user" });
    let id = send(&world, a, body).await;
    let events = wait_for("the user's event and the account's notice", || async {
        let events = world.env.delivered("new_message").await;
        (events.len() == 2).then_some(events)
    })
    .await;
    let (full, notice): (Vec<_>, Vec<_>) = events
        .iter()
        .partition(|event| event.data.get("title").is_some());
    assert_eq!(full.len(), 1, "{events:?}");
    let full = &full[0].data;
    assert_eq!(full["category"], "billing");
    assert_eq!(full["actionUrl"], "/invoices/42");
    assert_eq!(full["data"]["payer"]["id"], 7);
    // The account channel's notice carries none of it.
    for name in ["category", "actionUrl", "data", "title"] {
        assert!(
            notice[0].data.get(name).is_none(),
            "{name}: {:?}",
            notice[0].data
        );
    }
    let (status, page) = world.get(&World::inbox(a, 0), &a.user_tokens[0]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed = &page["messages"][0];
    assert_eq!(listed["id"], id.as_str());
    assert_eq!(listed["actionUrl"], "/invoices/42");
    assert_eq!(
        listed["data"],
        json!({ "invoice": 42, "lines": ["a", "b"], "payer": { "id": 7 } })
    );
    // User 1 sees nothing of it.
    let (_, other) = world.get(&World::inbox(a, 1), &a.user_tokens[1]).await;
    assert_eq!(other["messages"], json!([]));

    // Each wrong field is refused with 400 naming it; nothing is enqueued.
    for (field, value) in [
        ("category", json!("two words")),
        ("actionUrl", json!("javascript:alert(1)")),
        ("actionUrl", json!("//evil.example.com/")),
        ("actionUrl", json!("http://plain.example.com/")),
        ("data", json!(["not", "an", "object"])),
        ("data", json!({ "$where": "1" })),
        ("data", json!({ "deep": { "deeper": { "deepest": 1 } } })),
        ("data", json!({ "big": "x".repeat(5000) })),
    ] {
        let mut body = message("refused", None);
        body["accountId"] = json!(a.account.to_hex());
        body[field] = value.clone();
        let (status, answer) = world.post("/v1/messages", &a.token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}={value}: {answer}");
        assert!(answer.to_string().contains(field), "{field}: {answer}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(world.env.message_count(mongodb::bson::doc! {}).await, 1);
}
