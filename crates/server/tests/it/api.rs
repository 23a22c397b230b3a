use serde_json::Value;

use crate::{event, spawn_app, spawn_app_with};

const JSON: &str = "application/json";

fn deal_created(id: &str, deal: &str, stage: &str) -> String {
    event(
        "deal.created",
        id,
        "2026-11-01T09:00:00Z",
        &format!(r#""deal":"{deal}""#),
        &format!(r#"{{"stage":"{stage}","owner":"sam@acme.example","amount":1000}}"#),
    )
}

#[tokio::test]
async fn a_single_event_is_stored_then_recognised_as_a_duplicate() {
    let app = spawn_app().await;
    let body = deal_created("1", "D-1", "discovery");
    let (status, json) = app.post(&app.writer, JSON, body.clone()).await;
    assert_eq!(status, 201, "{json}");
    assert_eq!(json["status"], "stored");
    let id = json["id"].clone();
    let (status, json) = app.post(&app.writer, JSON, body).await;
    assert_eq!(status, 200);
    assert_eq!(json["status"], "duplicate");
    assert_eq!(json["id"], id);
    let (status, deal) = app.get(&app.reader, "/api/v1/deals/D-1").await;
    assert_eq!(status, 200);
    assert_eq!(deal["record"]["stage"], "discovery");
    assert_eq!(deal["record"]["amount"]["minor"], 100_000);
    assert_eq!(deal["timeline"].as_array().unwrap().len(), 1);
    // "Now" is the manual clock: 2026-11-20T12:00, 19 days after the deal entered discovery.
    assert_eq!(deal["facts"]["days_in_stage"], 19);
    app.clock
        .advance(std::time::Duration::from_secs(86_400 * 3));
    let (_, deal) = app.get(&app.reader, "/api/v1/deals/D-1").await;
    assert_eq!(deal["facts"]["days_in_stage"], 22);
    let lead = event(
        "lead.created",
        "l",
        "2026-11-10T12:00:00Z",
        r#""lead":"L-1""#,
        r#"{"name":"Ann"}"#,
    );
    app.post(&app.writer, JSON, lead).await;
    let (status, lead) = app.get(&app.reader, "/api/v1/leads/L-1").await;
    assert_eq!(status, 200);
    assert_eq!(lead["record"]["name"], "Ann");
    assert_eq!(lead["facts"]["days_since_activity"], 13);
}

#[tokio::test]
async fn batches_arrive_as_arrays_and_as_ndjson() {
    let app = spawn_app().await;
    let array = format!(
        "[{},{},{}]",
        deal_created("1", "D-1", "discovery"),
        deal_created("2", "D-2", "demo"),
        deal_created("1", "D-1", "discovery")
    );
    let (status, json) = app.post(&app.writer, JSON, array).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        (json["stored"].as_u64(), json["duplicates"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(json["results"][2]["status"], "duplicate");
    let ndjson = format!(
        "{}\n\n{}\n",
        deal_created("3", "D-3", "demo"),
        deal_created("4", "D-4", "legal")
    );
    let (status, json) = app.post(&app.writer, "application/x-ndjson", ndjson).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["stored"], 2);
    assert_eq!(app.store.event_count().await.unwrap(), 4);
}

async fn assert_refused(app: &crate::TestApp, body: &str, status: u16, code: &str) -> Value {
    let before = app.store.event_count().await.unwrap();
    let (got, json) = app.post(&app.writer, JSON, body.to_owned()).await;
    assert_eq!(got, status, "{json}");
    assert_eq!(json["error"]["code"], code, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert_eq!(
        app.store.event_count().await.unwrap(),
        before,
        "a refused body stored something"
    );
    json
}

#[tokio::test]
async fn bad_bodies_get_precise_documented_errors_and_store_nothing() {
    let app = spawn_app().await;
    let json = assert_refused(
        &app,
        "{\"type\": \"deal.created\",\n \"source\": }",
        400,
        "malformed_json",
    )
    .await;
    assert_eq!(json["error"]["problems"][0]["line"], 2);
    assert_eq!(json["error"]["problems"][0]["column"], 12);

    let json = assert_refused(
        &app,
        &deal_created("1", "D-1", "x").replace("deal.created", "deal.teleported"),
        422,
        "unknown_event_type",
    )
    .await;
    assert_eq!(json["error"]["problems"][0]["field"], "type");

    let missing =
        r#"{"type":"deal.won","source":"crm","deal":"D-1","occurred_at":"2026-11-01T09:00:00Z"}"#;
    let json = assert_refused(&app, missing, 422, "missing_field").await;
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("source_id")
    );

    let wrong = "{\"type\":\"deal.created\",\"source\":\"crm\",\"source_id\":\"1\",\"deal\":\"D-1\",\n\"occurred_at\":\"2026-11-01T09:00:00Z\",\n\"data\":{\"amount\":\"lots\"}}";
    let json = assert_refused(&app, wrong, 422, "invalid_field").await;
    let p = &json["error"]["problems"][0];
    assert_eq!(
        (
            p["field"].as_str(),
            p["line"].as_u64(),
            p["column"].as_u64()
        ),
        (Some("data.amount"), Some(3), Some(23))
    );

    let unknown = deal_created("1", "D-1", "x").replace(r#""stage""#, r#""stag""#);
    let json = assert_refused(&app, &unknown, 422, "unknown_field").await;
    assert_eq!(json["error"]["problems"][0]["field"], "data.stag");

    let no_ref = deal_created("1", "D-1", "x").replace(r#""deal":"D-1","#, "");
    assert_refused(&app, &no_ref, 422, "missing_field").await;

    // One bad event refuses the whole batch, naming each bad one by index.
    let batch = format!("[{},{}]", deal_created("1", "D-1", "x"), unknown);
    let json = assert_refused(&app, &batch, 422, "unknown_field").await;
    assert_eq!(json["error"]["problems"][0]["index"], 1);

    let (status, json) = app
        .post(&app.writer, "text/plain", deal_created("1", "D-1", "x"))
        .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let (status, json) = app.post(&app.writer, JSON, vec![0xff_u8, 0xfe]).await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (400, Some("malformed_json"))
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 1024).await;
    let big = format!("[{}]", vec![deal_created("1", "D-1", "x"); 20].join(","));
    assert!(big.len() > 1024);
    let (status, json) = app.post(&app.writer, JSON, big.clone()).await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );
    // Without a Content-Length (chunked), the limit still holds while reading.
    let stream = futures_stream(big);
    let r = app
        .http
        .post(app.url("/api/v1/events"))
        .bearer_auth(&app.writer)
        .header("content-type", JSON)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(app.store.event_count().await.unwrap(), 0);
}

fn futures_stream(
    text: String,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let chunks: Vec<Vec<u8>> = text.into_bytes().chunks(100).map(<[u8]>::to_vec).collect();
    tokio_stream::iter(chunks.into_iter().map(Ok))
}

#[tokio::test]
async fn tokens_gate_every_route_by_role() {
    let app = spawn_app().await;
    let body = deal_created("1", "D-1", "x");
    let r = app
        .http
        .post(app.url("/api/v1/events"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let json: Value = r.json().await.unwrap();
    assert_eq!(json["error"]["code"], "unauthorized");
    let (status, _) = app.post("pw_not_a_real_token", JSON, body.clone()).await;
    assert_eq!(status, 401);
    let (status, json) = app.post(&app.reader, JSON, body.clone()).await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = app.post(&app.admin, JSON, body.clone()).await;
    assert_eq!(status, 201);
    let (status, _) = app.get(&app.writer, "/api/v1/deals").await;
    assert_eq!(status, 200);
    // Revocation takes effect on the next request.
    let writer_id = app
        .store
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "writer")
        .unwrap()
        .id;
    app.store.revoke_token(&writer_id).await.unwrap();
    let (status, json) = app.post(&app.writer, JSON, body).await;
    assert_eq!(status, 401, "{json}");
    // Metrics are not open by default.
    assert_eq!(
        app.http
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(&app.reader)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("pipewright_events_ingested_total"), "{text}");
    assert!(text.contains("pipewright_http_request_seconds"), "{text}");
    assert!(
        text.contains("pipewright_outbox_effects{status=\"dead\"}"),
        "{text}"
    );
    assert!(
        text.contains("pipewright_outbox_oldest_pending_seconds"),
        "{text}"
    );
}

#[tokio::test]
async fn records_are_listed_with_filters_and_pages() {
    let app = spawn_app().await;
    let events: Vec<String> = (0..12)
        .map(|i| {
            deal_created(
                &i.to_string(),
                &format!("D-{i:02}"),
                if i < 8 { "demo" } else { "legal" },
            )
        })
        .collect();
    app.post(&app.writer, JSON, format!("[{}]", events.join(",")))
        .await;
    let (status, page) = app
        .get(&app.reader, "/api/v1/deals?stage=demo&limit=5")
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, page) = app
        .get(
            &app.reader,
            &format!("/api/v1/deals?stage=demo&limit=5&cursor={next}"),
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert!(page["next"].is_null());
    let (_, page) = app
        .get(
            &app.reader,
            "/api/v1/deals?owner=sam@acme.example&updated_since=2026-11-20T00:00:00Z",
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 12);
    let (_, page) = app
        .get(
            &app.reader,
            "/api/v1/deals?updated_since=2026-11-21T00:00:00Z",
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    let (status, json) = app.get(&app.reader, "/api/v1/deals?limit=0").await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, json) = app
        .get(&app.reader, "/api/v1/deals?updated_since=yesterday")
        .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, json) = app.get(&app.reader, "/api/v1/deals?colour=red").await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, json) = app.get(&app.reader, "/api/v1/deals/D-99").await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = app.get(&app.reader, "/api/v1/widgets").await;
    assert_eq!(status, 404);
    let (status, json) = app.get(&app.reader, "/api/v1/events").await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (status, _) = app.get(&app.reader, "/api/v1/people").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn health_readiness_and_openapi_are_served() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        assert_eq!(
            app.http
                .get(app.url(path))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );
    }
    let doc = app.get_open("/api/v1/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/api/v1/events"]["post"].is_object());
    assert!(doc["paths"]["/api/v1/{collection}/{id}"]["get"].is_object());
    let types = doc["components"]["schemas"]["EventEnvelope"]["properties"]["type"]["enum"]
        .as_array()
        .unwrap();
    assert_eq!(types.len(), domain::EventType::ALL.len());
    assert!(doc["components"]["securitySchemes"]["token"].is_object());
    let schema = app.get_open("/api/v1/playbooks/schema").await;
    assert_eq!(schema["title"], "pipewright playbook");
}
